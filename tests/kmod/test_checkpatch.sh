#!/bin/bash
# SPDX-License-Identifier: MIT
# The module and the uapi header are clean under the kernel's
# checkpatch.pl --strict (from Debian's linux-source-6.12).
set -u
cd "$(dirname "$0")/../.."
src=$(tools/scripts/linux-source.sh) || { echo "not ok 1 - linux-source extracted"; exit 1; }
n=0 fail=0
for f in kmod/*.c kmod/*.h uapi/*.h; do
	[ -f "$f" ] || continue
	n=$((n + 1))
	out=$(perl "$src/scripts/checkpatch.pl" --strict --no-tree --terse \
		--show-types -f "$f" 2>&1)
	if [ $? -eq 0 ]; then
		echo "ok $n - checkpatch --strict: $f"
	else
		echo "not ok $n - checkpatch --strict: $f"
		echo "$out" | sed 's/^/#   /' | head -n 30
		fail=1
	fi
done
echo "1..$n"
exit $fail
