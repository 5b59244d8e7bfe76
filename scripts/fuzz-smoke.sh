#!/usr/bin/env bash
# Runs every Fuzz* target in the module for a fixed number of executions.
#
# The budget is a count (-fuzztime Nx), not a duration: Go 1.26's fuzz
# coordinator races its own -fuzztime deadline and, on a loaded machine, can
# fail a target with a bare "context deadline exceeded" and no failing input
# (go.dev/issue/75804, fixed in Go 1.27). A count has no deadline to race; a
# loaded machine only makes the run slower.
#
# A real finding always writes a reproducer under testdata/fuzz/<target>/ and
# fails the run. Should the coordinator still fail a target with nothing but
# "context deadline exceeded" and no new reproducer, the target is run once
# more; a second failure fails the run.
#
# Environment: GO (go binary), FUZZ_EXECS (executions per target, default 20000),
# FUZZ_PKGS (package patterns, default ./...).
set -euo pipefail

go=${GO:-go}
execs=${FUZZ_EXECS:-20000}
pkgs=${FUZZ_PKGS:-./...}
found=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# run_target PKG FN: one fuzzing run; returns go test's exit status.
run_target() {
	local pkg=$1 fn=$2
	set +e
	"$go" test -run '^$' -fuzz "^${fn}\$" -fuzztime "${execs}x" -timeout 10m "$pkg" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	set -e
	return "$rc"
}

# coordinator_flake: the failed run reported only the coordinator's deadline
# error and wrote no reproducer.
coordinator_flake() {
	grep -q 'context deadline exceeded' "$log" &&
		! grep -qE 'Failing input written to|panic:' "$log" &&
		! grep -qE '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+:' "$log"
}

for pkg in $("$go" list $pkgs); do
	dir=$("$go" list -f '{{.Dir}}' "$pkg")
	for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		found=$((found + 1))
		echo "fuzz $pkg $fn (${execs} executions)"
		if run_target "$pkg" "$fn"; then
			continue
		fi
		if coordinator_flake; then
			echo "fuzz $pkg $fn: the fuzz coordinator failed with no failing input (go.dev/issue/75804); running it once more"
			run_target "$pkg" "$fn" && continue
		fi
		echo "fuzz-smoke: $pkg $fn failed; a failing input, if one was found, is under $dir/testdata/fuzz/$fn/" >&2
		exit 1
	done
done
echo "fuzz-smoke: $found targets run, ${execs} executions each"
