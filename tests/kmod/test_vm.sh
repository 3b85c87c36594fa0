#!/bin/bash
# SPDX-License-Identifier: MIT
# The module inside real Debian kernels: for each kernel of
# tools/scripts/kernels.txt, boot it in qemu (TCG) with two NUMA nodes and an
# emulated NVMe drive, load pinfer.ko, run the uapi tests
# (tests/kmod/pinfer_test.c, kselftest harness), unload the module, and
# check the kernel log written after the module was loaded for Oops,
# WARNING:, BUG:, leaks and bad page states.
# Needs `make vm-setup` (done by `make check`).
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh
programs=(pinfer_test)
for p in "${programs[@]}" ; do
	if [ ! -x "build/vm/bin/$p" ] || [ ! -f build/vm/disk.img ]; then
		echo "not ok 1 - VM set up (build/vm/bin/$p or build/vm/disk.img missing: make vm-setup)"
		exit 1
	fi
done
for k in $(grep -v '^#' tools/scripts/kernels.txt); do
	dir=build/vm/$k
	log=$dir/console.log
	if [ ! -f "build/kmod/$k/kmod/pinfer.ko" ]; then
		tools/scripts/build-kmod.sh "$k"
	fi
	if ! tests/vm/build-initramfs.sh "$k" "$dir/initramfs.gz" "${programs[@]}"; then
		check 1 "$k: initramfs built"
		continue
	fi
	rm -f "$log"
	tests/vm/run-vm.sh "$k" "$dir/initramfs.gz" build/vm/disk.img "$log" 900
	rc=$?
	grep -q "^=== vm kernel $k" "$log" 2>/dev/null
	check $? "$k: boots in qemu (TCG, 2 NUMA nodes, NVMe)"
	grep -q "^=== loaded pinfer" "$log" 2>/dev/null
	check $? "$k: pinfer.ko loads"
	# the harness's cases, renumbered
	while IFS= read -r line; do
		case $line in
		"ok "* | "not ok "*)
			name=$(echo "$line" | sed -E 's/^(not )?ok [0-9]+ //')
			[ "${line#not}" = "$line" ] && r=0 || r=1
			check $r "$k: $name"
			if [ $r = 1 ]; then
				grep -E "^# .*(${name#*.})" "$log" | head -n 10 | sed 's/^/#   /'
			fi
			;;
		esac
	done < <(sed -n '/^=== run pinfer_test/,/^=== rc pinfer_test/p' "$log")
	for p in "${programs[@]}"; do
		grep -q "^=== rc $p 0" "$log"
		check $? "$k: $p exits 0"
	done
	grep -q "^=== unloaded pinfer" "$log"
	check $? "$k: rmmod succeeds once everything is closed"
	klog=$(sed -n '/pinfer-vm: start of the tests/,/^=== end/p' "$log")
	bad=$(echo "$klog" | grep -E 'Oops|WARNING:|BUG:|[Ll]eak|Bad page|general protection|Call Trace|refcount_t')
	[ -n "$klog" ] && [ -z "$bad" ]
	check $? "$k: kernel log clean after the module loaded"
	[ -z "$bad" ] || echo "$bad" | head -n 20 | sed 's/^/#   /'
	[ $rc = 0 ]
	check $? "$k: the VM powers off by itself (qemu status $rc)"
done
finish
