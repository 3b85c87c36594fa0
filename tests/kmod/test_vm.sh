#!/bin/bash
# SPDX-License-Identifier: MIT
# The module inside real Debian kernels: for each kernel of
# tools/scripts/kernels.txt, boot it in qemu (TCG) with two NUMA nodes and an
# emulated NVMe drive, load pinfer.ko, run the uapi tests
# (tests/kmod/pinfer_test.c, kselftest harness), the runtime's tests and
# the engine's streaming test (now with the kmod and hugetlb providers
# available, files and SmolLM2 on the NVMe drive), pinfer doctor's
# checks and pinfer stat's readings (the module seen from user space), unload the module, and check the kernel log written after the
# module was loaded for Oops, WARNING:, BUG:, leaks and bad page states.
# Each program runs under its own time limit in the guest (seconds, below:
# about three times what it takes under TCG with the host's other core
# busy, Documentation/testing.md), each kernel's VM under the sum of them
# and a margin for booting; each program's cases, its exit status and its
# time are TAP cases of their own.
# Usage: test_vm.sh [KERNEL...] (default: every kernel of kernels.txt; the
# runner gives each its own run). Needs `make vm-setup` (done by `make check`).
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh
declare -A limit=([pinfer_test]=240 [test_region]=120 [test_loader]=240 [test_pool]=120
	[test_stream]=600 [test_doctor]=60 [test_stat]=60)
programs=(pinfer_test test_region test_loader test_pool test_stream test_doctor test_stat)
specs=() vm_limit=180	# booting, loading drivers, the kernel log
for p in "${programs[@]}"; do
	specs+=("$p=${limit[$p]}")
	vm_limit=$((vm_limit + limit[$p]))
done
for p in "${programs[@]}" ; do
	if [ ! -x "build/vm/bin/$p" ] || [ ! -f build/vm/disk.img ]; then
		echo "not ok 1 - VM set up (build/vm/bin/$p or build/vm/disk.img missing: make vm-setup)"
		exit 1
	fi
done
kernels=("$@")
[ $# -gt 0 ] || kernels=($(grep -v '^#' tools/scripts/kernels.txt))
for k in "${kernels[@]}"; do
	dir=build/vm/$k
	log=$dir/console.log
	if [ ! -f "build/kmod/$k/kmod/pinfer.ko" ]; then
		tools/scripts/build-kmod.sh "$k"
	fi
	if ! tests/vm/build-initramfs.sh "$k" "$dir/initramfs.gz" "${specs[@]}"; then
		check 1 "$k: initramfs built"
		continue
	fi
	rm -f "$log"
	start=$(date +%s)
	tests/vm/run-vm.sh "$k" "$dir/initramfs.gz" build/vm/disk.img "$log" "$vm_limit"
	rc=$?
	echo "# $k: the VM ran $(($(date +%s) - start)) s (limit $vm_limit s)"
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
		line=$(grep -m1 "^=== rc $p " "$log")
		set -- $line
		# "=== rc PROG STATUS SECONDSs of LIMIT"; 137: killed at its limit
		[ "${4:-}" = 0 ]
		check $? "$k: $p exits 0 in ${5:-?} (limit ${limit[$p]} s)${4:+, status $4}"
	done
	grep -q "^=== unloaded pinfer" "$log"
	check $? "$k: rmmod succeeds once everything is closed"
	klog=$(sed -n '/pinfer-vm: start of the tests/,/^=== end/p' "$log")
	bad=$(echo "$klog" | grep -E 'Oops|WARNING:|BUG:|[Ll]eak|Bad page|general protection|Call Trace|refcount_t')
	[ -n "$klog" ] && [ -z "$bad" ]
	check $? "$k: kernel log clean after the module loaded"
	[ -z "$bad" ] || echo "$bad" | head -n 20 | sed 's/^/#   /'
	[ $rc = 0 ]
	check $? "$k: the VM powers off by itself within $vm_limit s (qemu status $rc)"
done
finish
