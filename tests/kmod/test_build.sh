#!/bin/bash
# SPDX-License-Identifier: MIT
# pinfer.ko builds without a single warning (W=1) against the headers of
# every kernel in tools/scripts/kernels.txt, and its vermagic names that
# kernel.
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh
for k in $(grep -v '^#' tools/scripts/kernels.txt); do
	log=build/kmod/$k/build.log
	tools/scripts/build-kmod.sh "$k"
	rc=$?
	check $rc "$k: module builds"
	[ $rc = 0 ] || tail -n 20 "$log" 2>/dev/null | sed 's/^/#   /'
	! grep -q -i 'warning' "$log" 2>/dev/null
	warn=$?
	check $warn "$k: no compiler or modpost warnings with W=1"
	[ $warn = 0 ] || grep -i -A3 'warning' "$log" | sed 's/^/#   /' | head -n 20
	vm=$(modinfo -F vermagic "build/kmod/$k/kmod/pinfer.ko" 2>/dev/null)
	[ "${vm%% *}" = "$k" ]
	check $? "$k: vermagic is '$k' ($vm)"
done
finish
