#!/bin/bash
# Fetch the Debian kernels of tools/scripts/kernels.txt for the VM tests:
# `apt-get download` of linux-image-KERNEL-unsigned (nothing is installed on
# this machine), unpacked into build/vm/KERNEL/root. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build/vm/debs
for k in $(grep -v '^#' tools/scripts/kernels.txt); do
	out=build/vm/$k
	[ -f "$out/.stamp" ] && continue
	pkg=linux-image-$k-unsigned
	deb=$(ls build/vm/debs/"${pkg}"_*.deb 2>/dev/null | head -n 1 || true)
	if [ -z "$deb" ]; then
		echo "vm-kernels: downloading $pkg"
		(cd build/vm/debs && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
		deb=$(ls build/vm/debs/"${pkg}"_*.deb 2>/dev/null | head -n 1 || true)
		[ -n "$deb" ] || { echo "vm-kernels: could not download $pkg (apt-get update?)" >&2; exit 1; }
	fi
	rm -rf "$out/root" && mkdir -p "$out/root"
	dpkg-deb -x "$deb" "$out/root"
	depmod -b "$out/root" "$k"	# modules.dep is made by postinst, not shipped
	touch "$out/.stamp"
	echo "vm-kernels: $k ready in $out"
done
