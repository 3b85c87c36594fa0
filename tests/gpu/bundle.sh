#!/bin/bash
# SPDX-License-Identifier: MIT
# Build what tests/gpu/run.sh needs and put it in build/gpu/, to carry to a
# machine with a GPU that has no build tools or libraries of ours: pinfer,
# the test helper print_logits, the unit test test_seqs, the CUDA backend, the shared libraries they
# load (all but glibc's and what a CUDA machine has) and, if
# bench/build-llama.sh cuda built it, llama.cpp's CUDA llama-bench, stripped
# and xz-compressed (79 MB as built; the carry limit is 64 MiB). Prints the
# bundle's size.
# Usage: tests/gpu/bundle.sh [OUT]   (default build/gpu)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/gpu}
make -s all tests cuda >&2
rm -rf "$out" && mkdir -p "$out/lib"
cp build/pinfer build/tests/print_logits build/tests/test_seqs build/libpinfer-cuda.so "$out/"
llama=build/llama.cpp/build-cuda/bin/llama-bench
for bin in "$out"/pinfer "$out"/print_logits "$out"/test_seqs "$out"/libpinfer-cuda.so; do
	ldd "$bin" | awk '$3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
	case $(basename "$lib") in
	libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
	libstdc++.so.*|libgcc_s.so.*) ;;	# newer there, and backward compatible
	libcuda.so.*|libcudart.so.*|libcublas*.so.*) ;;	# the GPU machine's own
	*) cp -L "$lib" "$out/lib/" ;;
	esac
done
if [ -x "$llama" ]; then	# its other libraries (CUDA's, NCCL, OpenSSL, libgomp) are there
	strip -o "$out/llama-bench" "$llama"
	xz -T0 -6 "$out/llama-bench"
fi
du -sh "$out" >&2
