#!/bin/bash
# SPDX-License-Identifier: MIT
# Usage: run-vm.sh KERNEL INITRAMFS DISK LOG [TIMEOUT]
# Boot Debian's KERNEL in qemu with TCG (never KVM): 2 vCPUs, two NUMA nodes
# of VM_NODE_MB (default 1024) MiB each, DISK as an emulated NVMe drive (snapshot: never written),
# the serial console in LOG. Exits with qemu's status (124: timed out).
set -u
k=$1 initrd=$2 disk=$3 log=$4 limit=${5:-900}
kernel=build/vm/$k/root/boot/vmlinuz-$k
node=${VM_NODE_MB:-1024}M
timeout -k 10 "$limit" qemu-system-x86_64 -machine q35 -accel tcg -cpu max \
	-smp 2,sockets=2 -m $((2 * ${VM_NODE_MB:-1024}))M \
	-object memory-backend-ram,id=m0,size=$node \
	-object memory-backend-ram,id=m1,size=$node \
	-numa node,nodeid=0,cpus=0,memdev=m0 \
	-numa node,nodeid=1,cpus=1,memdev=m1 \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 loglevel=4 panic=-1 transparent_hugepage=madvise" \
	-drive file="$disk",if=none,id=nvm,format=raw,snapshot=on \
	-device nvme,serial=pinfer0,drive=nvm \
	-display none -serial file:"$log" -monitor none -no-reboot </dev/null
