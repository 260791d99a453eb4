#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx in a _test.go file) for FUZZTIME each, one after another.
# Crashers land in the package's testdata/fuzz/FuzzXxx/ and fail the run: fix the bug, keep the file.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
# Minimizing a new input re-runs it many times; bound it so that slow targets (a real etcd, a watch's
# reconnect) keep fuzzing.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
failed=()
while IFS=: read -r file name; do
	pkg=$(dirname "$file")
	echo "fuzz: $pkg $name for $FUZZTIME" >&2
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg"; then
		failed+=("$pkg $name")
	fi
done < <(grep -rEo --include='*_test.go' --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*' . | sed 's/:func /:/' | sort -u)
if ((${#failed[@]})); then
	printf 'fuzz: FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: every target ran for $FUZZTIME without a failure" >&2
