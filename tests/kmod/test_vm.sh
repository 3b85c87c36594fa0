#!/bin/bash
# SPDX-License-Identifier: MIT
# The module inside real Debian kernels: for each kernel of
# tools/scripts/kernels.txt, boot it in qemu (TCG) with two NUMA nodes and an
# emulated NVMe drive, load pinfer.ko, run the uapi tests
# (tests/kmod/pinfer_test.c, kselftest harness), the runtime's tests and
# the engine's streaming test (now with the kmod and hugetlb providers
# available, files and SmolLM2 on the NVMe drive), unload the module, and check the kernel log written after the
# module was loaded for Oops, WARNING:, BUG:, leaks and bad page states.
# Needs `make vm-setup` (done by `make check`).
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh
programs=(pinfer_test test_region test_loader test_pool test_stream)
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
	sed -i 's/\r$//' "$log"	# the serial console ends lines with CR LF
	grep -q "^=== vm kernel $k" "$log" 2>/dev/null
	check $? "$k: boots in qemu (TCG, 2 NUMA nodes, NVMe)"
	grep -q "^=== loaded pinfer" "$log" 2>/dev/null
	check $? "$k: pinfer.ko loads"
	# each program's cases, renumbered
	for p in "${programs[@]}"; do
		while IFS= read -r line; do
			case $line in
			"ok "* | "not ok "*)
				name=$(echo "$line" | sed -E 's/^(not )?ok [0-9]+ (- )?//')
				[ "${line#not}" = "$line" ] && r=0 || r=1
				check $r "$k: $p: $name"
				[ $r = 0 ] || grep -F -A3 "$line" "$log" | tail -n 3 | sed 's/^/#   /'
				;;
			esac
		done < <(sed -n "/^=== run $p\$/,/^=== rc $p /p" "$log")
	done
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
