#!/bin/bash
# SPDX-License-Identifier: MIT
# pinfer.ko builds without a single warning (W=1) against the headers of
# every kernel in tools/scripts/kernels.txt, and its vermagic names that
# kernel. Each kernel builds in its own copy under build/kmod/KERNEL.
set -u
cd "$(dirname "$0")/../.."
n=0 fail=0
check() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}
for k in $(grep -v '^#' tools/scripts/kernels.txt); do
	kdir=/usr/src/linux-headers-$k
	if [ ! -d "$kdir" ]; then
		check 1 "$k: headers installed ($kdir missing: make deps)"
		continue
	fi
	out=build/kmod/$k
	rm -rf "$out" && mkdir -p "$out"
	cp -r Kbuild kmod uapi "$out/"
	log=$out/build.log
	make -C "$kdir" M="$PWD/$out" W=1 modules >"$log" 2>&1
	rc=$?
	check $rc "$k: module builds"
	[ $rc = 0 ] || sed 's/^/#   /' "$log" | tail -n 20
	grep -q -i 'warning' "$log"
	warn=$((1 - $?))
	check $warn "$k: no compiler or modpost warnings with W=1"
	[ $warn = 0 ] || grep -i -A3 'warning' "$log" | sed 's/^/#   /' | head -n 20
	vm=$(modinfo -F vermagic "$out/kmod/pinfer.ko" 2>/dev/null)
	[ "${vm%% *}" = "$k" ]
	check $? "$k: vermagic is '$k' ($vm)"
done
echo "1..$n"
exit $fail
