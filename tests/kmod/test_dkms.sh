#!/bin/bash
# SPDX-License-Identifier: MIT
# dkms builds pinfer.ko from the tree as dkms.conf describes it, for every
# kernel of tools/scripts/kernels.txt. It runs in a private dkms tree
# (--sourcetree/--dkmstree/--installtree), so the system's dkms state is
# not touched (dkms may create its signing key in /var/lib/dkms, as it does
# on any first build).
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh
version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
[ "$version" = "$(sed -n 's/^VERSION := //p' Makefile)" ]
check $? "dkms.conf's version ($version) is the Makefile's"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
src=$t/src/pinfer-$version
mkdir -p "$src" "$t/dkms" "$t/install"
cp -r Kbuild kmod uapi dkms.conf "$src/"
opts=(--sourcetree "$t/src" --dkmstree "$t/dkms" --installtree "$t/install")
dkms add "pinfer/$version" "${opts[@]}" >"$t/add.log" 2>&1
check $? "dkms add" || sed 's/^/#   /' "$t/add.log"
for k in $(grep -v '^#' tools/scripts/kernels.txt); do
	dkms build "pinfer/$version" -k "$k" "${opts[@]}" >"$t/build.log" 2>&1
	rc=$?
	check $rc "$k: dkms build"
	[ $rc = 0 ] || tail -n 20 "$t/build.log" | sed 's/^/#   /'
	ko=$(find "$t/dkms/pinfer/$version/$k" -name 'pinfer.ko*' | head -n 1)
	vm=$(modinfo -F vermagic "$ko" 2>/dev/null)
	[ "${vm%% *}" = "$k" ]
	check $? "$k: dkms produced pinfer.ko for $k"
done
finish
