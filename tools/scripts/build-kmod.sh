#!/bin/bash
# Usage: build-kmod.sh KERNEL
# Build pinfer.ko for KERNEL (headers in /usr/src/linux-headers-KERNEL) in
# its own copy of the sources, build/kmod/KERNEL, with W=1. The log is
# build/kmod/KERNEL/build.log; exit status is make's.
set -u
cd "$(dirname "$0")/../.."
k=$1
kdir=/usr/src/linux-headers-$k
out=build/kmod/$k
if [ ! -d "$kdir" ]; then
	echo "build-kmod: $kdir missing (make deps)" >&2
	exit 1
fi
rm -rf "$out" && mkdir -p "$out"
cp -r Kbuild kmod uapi "$out/"
make -C "$kdir" M="$PWD/$out" W=1 modules >"$out/build.log" 2>&1
