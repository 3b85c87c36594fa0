# SPDX-License-Identifier: MIT
# Sourced by the shell tests: TAP output. `check STATUS WHAT` prints one
# case (STATUS 0 = passed); `finish` prints the plan and exits 0 or 1.
n=0
fail=0
check() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		fail=1
	fi
	return "$1"
}
finish() {
	echo "1..$n"
	exit $fail
}
