#!/usr/bin/env bash
# Runs the local demo: wasmxds on configs/local (example filters built here,
# loaded through file:// URLs, no registry), an upstream on 127.0.0.1:8081 and
# one Envoy bootstrapped from configs/local/envoy.yaml. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_BIN="${ENVOY_BIN:-$(command -v envoy || echo .tools/envoy-venv/bin/envoy)}"
CACHE_DIR="${CACHE_DIR:-.cache/wasmxds}"
# The demo's fixed ports must be free: a server left on one of them (an
# earlier make run, say) would answer in place of this one.
busy=()
for port in 18000 18080 18081 8081 9901 10000; do
  if timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$port" 2>/dev/null; then busy+=("$port"); fi
done
if [ ${#busy[@]} -gt 0 ]; then
  echo "make run: 127.0.0.1 port(s) ${busy[*]} already in use (is an earlier make run still running?)" >&2
  exit 1
fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM # exit runs cleanup

./bin/wasmxds serve --config-dir configs/local --cache-dir "$CACHE_DIR" \
  --xds-listen 127.0.0.1:18000 --http-listen 127.0.0.1:18080 &
wasmxds_pid=$!
pids+=("$wasmxds_pid")

upstream_root=$(mktemp -d)
echo "hello from the upstream" > "$upstream_root/index.html"
python3 -m http.server 8081 --bind 127.0.0.1 --directory "$upstream_root" >/dev/null 2>&1 &
pids+=($!)

ready=
for _ in $(seq 1 100); do
  if ! kill -0 "$wasmxds_pid" 2>/dev/null; then
    echo "make run: wasmxds exited (its error is above)" >&2
    exit 1
  fi
  curl -fsS http://127.0.0.1:18081/readyz >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "make run: wasmxds is not ready after 10 s (see its log above); Envoy starts anyway and waits for its config" >&2
fi

if [ -x "$ENVOY_BIN" ] || command -v "$ENVOY_BIN" >/dev/null 2>&1; then
  "$ENVOY_BIN" -c configs/local/envoy.yaml --concurrency 1 --log-level warn &
  pids+=($!)
  cat <<MSG

wasmxds is serving configs/local. Try:
  curl -si http://127.0.0.1:10000/        # response carries x-wasm and x-plugin-config headers
  ./bin/wasmxds status                    # nodes, plugins, modules
Edit configs/local/*.yaml and curl again; Ctrl-C stops everything.
MSG
else
  echo "envoy not found (run 'make deps'); serving xDS on 127.0.0.1:18000 without a local Envoy"
fi
wait -n "${pids[@]}"
