#!/bin/bash
# SPDX-License-Identifier: MIT
# Usage: mkdisk.sh IMAGE [BENCH_MB [MODEL]]
# An ext4 image for the VM's NVMe drive holding rand64m.bin (64 MiB of
# random bytes) and odd.bin (3 MiB + 1234 bytes), with BENCH_MB also
# bench.bin of that many MiB, and with MODEL a copy of it as smollm2.gguf.
# Made once; the VM writes to a snapshot of it (its tests' scratch files).
set -euo pipefail
img=$1 bench=${2:-0} model=${3:-}
[ -f "$img" ] && exit 0
files=$(mktemp -d)
trap 'rm -rf "$files"' EXIT
head -c $((64 << 20)) /dev/urandom >"$files/rand64m.bin"
head -c $((3 * 1048576 + 1234)) /dev/urandom >"$files/odd.bin"
[ "$bench" -gt 0 ] && head -c $((bench << 20)) /dev/urandom >"$files/bench.bin"
[ -n "$model" ] && cp "$model" "$files/smollm2.gguf"
mkfs.ext4 -q -F -L pinfer -E root_owner=0:0 -d "$files" "$img.tmp" $((bench + 384))M
mv "$img.tmp" "$img"
