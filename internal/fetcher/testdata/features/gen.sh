#!/usr/bin/env bash
# Regenerates every *.wasm here from its *.wat with wabt's wat2wasm (Debian:
# `apt-get install wabt`; these were made with wabt 1.0.32). Each .wat names
# its exact command on its "Built by gen.sh:" line; this script runs it.
set -euo pipefail
cd "$(dirname "$0")"
command -v wat2wasm >/dev/null || { echo "gen.sh: wat2wasm not found (apt-get install wabt)" >&2; exit 1; }
for wat in *.wat; do
	cmd=$(sed -n 's/^;; Built by gen.sh:  //p' "$wat")
	case "$cmd" in
	"wat2wasm "*) ;;
	*) echo "gen.sh: $wat has no 'Built by gen.sh:  wat2wasm ...' line" >&2; exit 1 ;;
	esac
	echo "$cmd"
	read -ra argv <<<"$cmd"
	"${argv[@]}"
done
