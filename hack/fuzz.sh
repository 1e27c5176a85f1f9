#!/usr/bin/env bash
# Runs every fuzz target of the module, one after the other, each for the
# given time (default 2m; `make fuzz`), e.g. `hack/fuzz.sh 20s` for the quick
# pass `make test` runs. Targets are found with `go test -list`, so a new
# Fuzz function is picked up without editing this script. New crashers land
# in the package's testdata/fuzz/<Target>/ as Go writes them: commit them,
# they then run as regression cases in every `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${1:-2m}"
GO="${GO:-go}"

# Packages whose test files declare a fuzz target: only those are listed,
# which keeps the listing from building every test binary.
mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Fuzz' . |
	grep -v '^./examples/' | xargs -n1 dirname | sort -u)
if [ "${#pkgs[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

ran=0
for pkg in "${pkgs[@]}"; do
	mapfile -t targets < <("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
	for target in "${targets[@]}"; do
		echo "== $pkg $target ($fuzztime)"
		# -run keeps the package's other tests out; -fuzz takes one target.
		# Minimizing an interesting input is capped so that it cannot run
		# past -fuzztime.
		log="$(mktemp)"
		if ! "$GO" test -run "^${target}\$" -fuzz "^${target}\$" -fuzztime "$fuzztime" \
			-fuzzminimizetime 5s "$pkg" 2>&1 | tee "$log"; then
			# Go's fuzzing engine reports "context deadline exceeded" when
			# -fuzztime ends while a worker is still busy; that is no
			# finding. A finding always writes its input to testdata.
			if grep -q 'Failing input written' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
				rm -f "$log"
				exit 1
			fi
			echo "fuzz: $target: the time ran out while a worker was busy (no failing input); counted as run"
		fi
		rm -f "$log"
		ran=$((ran + 1))
	done
done
echo "fuzz: $ran targets, $fuzztime each"
