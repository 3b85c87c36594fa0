#!/bin/bash
# SPDX-License-Identifier: MIT
# Benchmark of pinfer.ko inside the test VM (TCG: absolute figures mean
# little, the ratios show the overheads): fill a 1 GiB region from a 1 GiB
# file on the emulated NVMe drive by uring_cmd prefetch, versus read() into
# malloc'd memory, mmap + touch, and O_DIRECT pread. For each kernel of
# tools/scripts/kernels.txt, or the one given.
# Usage: bench/kmod-vm.sh [KERNEL]
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory -s vm-setup build/vm/bin/kmod_fill
tests/vm/mkdisk.sh build/vm/bench-disk.img 1024
kernels=${1:-$(grep -v '^#' tools/scripts/kernels.txt)}
for k in $kernels; do
	[ -f "build/kmod/$k/kmod/pinfer.ko" ] || tools/scripts/build-kmod.sh "$k"
	tests/vm/build-initramfs.sh "$k" "build/vm/$k/bench.gz" "kmod_fill=1800:/mnt/bench.bin 1024"
	VM_NODE_MB=2048 tests/vm/run-vm.sh "$k" "build/vm/$k/bench.gz" \
		build/vm/bench-disk.img "build/vm/$k/bench.log" 900 || true
	echo "== $k (qemu TCG, 2 vCPUs, emulated NVMe)"
	sed -n '/^=== run kmod_fill/,/^=== rc kmod_fill/p' "build/vm/$k/bench.log" | grep -v '^==='
done
