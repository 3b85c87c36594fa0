#!/bin/bash
# SPDX-License-Identifier: MIT
# Usage: build-initramfs.sh KERNEL OUT PROGRAM=SECONDS[:ARGS]...
# A busybox initramfs for KERNEL (unpacked by tools/scripts/vm-kernels.sh):
# the nvme and ext4 drivers with their dependencies in load order (from
# modules.dep; .ko.xz decompressed, as busybox insmod cannot), pinfer.ko
# built for KERNEL, and the static test PROGRAMs from build/vm/bin, each
# with its time limit in the guest (tests/vm/init).
set -euo pipefail
cd "$(dirname "$0")/../.."
k=$1 out=$2
shift 2
root=build/vm/$k/root
mods=$root/lib/modules/$k
ko=build/kmod/$k/kmod/pinfer.ko
[ -f "$mods/modules.dep" ] || { echo "build-initramfs: $k not unpacked (tools/scripts/vm-kernels.sh)" >&2; exit 1; }
[ -f "$ko" ] || { echo "build-initramfs: $ko missing (tests/kmod/test_build.sh)" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"	# mktemp made it 0700: the guest's / must be searchable
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,mnt,lib/modules}
chmod 1777 "$stage/tmp"
cp /bin/busybox "$stage/bin/busybox"
cp tests/vm/init "$stage/init"
cp "$ko" "$stage/pinfer.ko"

# Each module after its dependencies (modules.dep lists them last-first).
declare -A seen=()
order=()
add() {
	local path=$1 line deps d i
	[ -n "${seen[$path]:-}" ] && return
	seen[$path]=1
	line=$(grep -m1 "^$path:" "$mods/modules.dep")
	read -r -a deps <<<"${line#*:}"
	for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
		add "${deps[i]}"
	done
	order+=("$path")
}
for name in crc32c_generic nvme ext4; do
	path=$(grep -m1 -E "/$name\.ko(\.xz)?:" "$mods/modules.dep" | cut -d: -f1)
	[ -n "$path" ] || { echo "build-initramfs: no $name module in $k" >&2; exit 1; }
	add "$path"
done
: >"$stage/modules.order"
for path in "${order[@]}"; do
	base=$(basename "${path%.xz}")
	case $path in
	*.xz) xz -dc "$mods/$path" >"$stage/lib/modules/$base" ;;
	*) cp "$mods/$path" "$stage/lib/modules/$base" ;;
	esac
	echo "$base" >>"$stage/modules.order"
done

: >"$stage/programs"
for p in "$@"; do
	spec=${p%%:*} args=
	[ "$p" = "$spec" ] || args=${p#*:}
	prog=${spec%%=*} limit=${spec#*=}
	[ "$limit" != "$spec" ] || { echo "build-initramfs: $p: no =SECONDS" >&2; exit 1; }
	cp "build/vm/bin/$prog" "$stage/bin/"
	echo "$prog $limit $args" >>"$stage/programs"
done
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
