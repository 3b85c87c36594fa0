#!/bin/bash
# SPDX-License-Identifier: MIT
# The one runner for all of pinfer's tests. Each test is a program that
# prints TAP lines ("ok N - ..." / "not ok N - ...", "# SKIP") and exits
# 0 (pass), 1 (fail) or 77 (skipped). The runner gives each a time limit,
# renumbers their cases into one TAP stream, counts a crash, a time-out, a
# silent exit or a plan ("1..N") that is missing or does not match the cases
# run as a failure, as it does a missing test program (nothing built, no
# ASan build), and ends with "N passed, N failed, N skipped".
#
# Usage: tests/run-tests.sh [--unit-only] [NAME-FILTER]
#   PINFER_TEST_BUILD   build tree of the binaries (default build)
#   PINFER_TEST_TIMEOUT seconds per test program (default 900)
#   PINFER_TEST_ASAN    the ASan build tree (default build/asan)
#   PINFER_TEST_LOGS    where each test's output goes (default build/test-logs)
set -u
cd "$(dirname "$0")/.."

unit_only=0
if [ "${1:-}" = "--unit-only" ]; then
	unit_only=1
	shift
fi
filter=${1:-}
build=${PINFER_TEST_BUILD:-build}
limit=${PINFER_TEST_TIMEOUT:-900}
asan=${PINFER_TEST_ASAN:-build/asan}
logs=${PINFER_TEST_LOGS:-build/test-logs}
mkdir -p "$logs"

n=0 passed=0 failed=0 skipped=0

# run_test NAME COMMAND...: run one test program and fold its cases in.
run_test() {
	local name=$1 log rc line cases=0 bad=0 desc silent why plan=
	shift
	case $name in *"$filter"*) ;; *) return ;; esac
	log=$logs/${name//[\/ ]/_}.log
	timeout -k 10 "${test_limit:-$limit}" "$@" >"$log" 2>&1 </dev/null
	rc=$?
	while IFS= read -r line; do
		case $line in
		"ok "* | "not ok "*)
			cases=$((cases + 1))
			n=$((n + 1))
			desc=${line#ok }
			desc=${desc#not ok }
			desc=${desc#* - }
			if [ "${line#not }" != "$line" ]; then
				echo "not ok $n - $name: $desc"
				failed=$((failed + 1))
				bad=$((bad + 1))
			elif [[ $line == *"# SKIP"* ]]; then
				echo "ok $n - $name: $desc"
				skipped=$((skipped + 1))
			else
				echo "ok $n - $name: $desc"
				passed=$((passed + 1))
			fi
			;;
		"#"*) [ $bad -gt 0 ] && echo "$line" ;;
		"1.."[0-9]*) plan=${line#1..} plan=${plan%% *} ;;
		esac
	done <"$log"
	# A failure the program did not report itself: a crash, a time-out,
	# or a program that ran no case at all.
	silent=0
	if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ $bad -eq 0 ]; then
		silent=1
	fi
	if [ $cases -eq 0 ] && [ $rc -ne 77 ]; then
		silent=1
	fi
	# the plan: the program's own count of its cases, which a crash or an
	# early exit would leave out or contradict
	if [ $silent -eq 0 ] && [ $rc -ne 77 ] && [ "$plan" != "$cases" ]; then
		silent=2
	fi
	if [ $rc -eq 77 ] && [ $cases -eq 0 ]; then
		n=$((n + 1))
		skipped=$((skipped + 1))
		echo "ok $n - $name # SKIP $(grep -m1 -o 'SKIP.*' "$log" | cut -c6-)"
	elif [ $silent -ne 0 ]; then
		n=$((n + 1))
		failed=$((failed + 1))
		case $rc in
		124 | 137) why="timed out after ${test_limit:-$limit}s" ;;
		0) why="ran no test case" ;;
		*) why="exited with status $rc" ;;
		esac
		[ $silent -eq 2 ] && why="its plan (${plan:-none}) does not match the $cases cases it ran"
		echo "not ok $n - $name: $why (log: $log)"
		tail -n 20 "$log" | sed 's/^/#   /'
	fi
}

echo "TAP version 13"

# missing NAME WHY: a test that should be there and is not, as a failure.
missing() {
	case $1 in *"$filter"*) ;; *) return ;; esac
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1: $2"
}

# C unit tests, in the normal build and under ASan + UBSan: every test
# program of tests/unit must have been built in both.
for src in tests/unit/test_*.c; do
	t=$(basename "$src" .c)
	if [ -x "$build/tests/$t" ]; then
		run_test "unit/$t" "$build/tests/$t"
	else
		missing "unit/$t" "$build/tests/$t was not built (make tests)"
	fi
	[ $unit_only -eq 0 ] || continue
	if [ -x "$asan/tests/$t" ]; then
		run_test "asan/$t" "$asan/tests/$t"
	else
		missing "asan/$t" "$asan/tests/$t was not built (make SAN=1 tests)"
	fi
done

if [ $unit_only -eq 0 ]; then
	# End-to-end tests of the CLI on the real model (Python, in the venv).
	for t in tests/e2e/test_*.py; do
		if [ -x build/venv/bin/python ]; then
			run_test "e2e/$(basename "$t" .py)" build/venv/bin/python "$t"
		else
			missing "e2e/$(basename "$t" .py)" "no build/venv (make venv)"
		fi
	done
	# The kernel module: builds for each kernel, checkpatch; the VM suite
	# once per kernel, under the limits it sets itself (this one is a
	# backstop: tests/kmod/test_vm.sh).
	for t in tests/kmod/test_*.sh; do
		[ "$t" = tests/kmod/test_vm.sh ] && continue
		[ -x "$t" ] && run_test "kmod/$(basename "$t" .sh)" "$t"
	done
	for k in $(grep -v '^#' tools/scripts/kernels.txt); do
		test_limit=3600 run_test "kmod/test_vm $k" tests/kmod/test_vm.sh "$k"
	done
	# The fuzz targets, briefly: their seeds and saved corpora (make fuzz
	# runs them long).
	run_test fuzz/regression tests/fuzz/run-fuzz.sh --check 10
fi

echo "1..$n"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
