#!/bin/bash
# Install the Debian packages pinfer needs to build and test. Idempotent:
# when everything is present it only asks dpkg and returns.
set -euo pipefail
cd "$(dirname "$0")/../.."

kernels=$(grep -v '^#' tools/scripts/kernels.txt)
pkgs=(
	build-essential pkg-config git
	liburing-dev libopenblas-dev libnuma-dev	# the runtime and engine
	libcjson-dev libmicrohttpd-dev		# JSON and HTTP (bench --json, serve)
	fio					# the drive's reference in bench/runtime.sh
	python3-pip python3-venv			# test scripts (venv from PyPI)
	clang libclang-rt-14-dev			# libFuzzer for `make fuzz`
	dkms openssl qemu-system-x86 busybox-static cpio xz-utils kmod e2fsprogs # the module
	linux-source-6.12				# kselftest harness, checkpatch.pl
)
for k in $kernels; do
	pkgs+=("linux-headers-$k")
done
# Strip the comments that ride along in the array above.
want=()
for p in "${pkgs[@]}"; do
	case $p in '#'*) ;; *) want+=("$p") ;; esac
done

missing=()
for p in "${want[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#want[@]} Debian packages present"
	exit 0
fi
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: not root; run 'sudo make deps' or install: ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
