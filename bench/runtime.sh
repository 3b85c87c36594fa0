#!/bin/bash
# SPDX-License-Identifier: MIT
# The runtime's benchmarks, figures side by side (run as root: it drops the
# page cache). `make bench-runtime` builds and runs this.
#  1. barrier round trip, 2 threads: pinfer pool vs pthread vs OpenMP
#  2. cold load of a 2 GiB file: pinfer's loader vs read() vs mmap+touch vs
#     fio (O_DIRECT, io_uring, 1 MiB blocks, queue depth 32): the drive's limit
# BENCH_FILE=path (default build/bench/load-2g.bin, made once, on the same
# file system as the build tree) and BENCH_MB=size choose the file.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
file=${BENCH_FILE:-$build/bench/load-2g.bin}
mb=${BENCH_MB:-2048}
command -v fio >/dev/null || { echo "bench: fio missing (make deps)" >&2; exit 1; }

echo "== 1. barrier"
"$build/bench/barrier" 2
echo
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -ne $((mb << 20)) ]; then
	echo "(making a ${mb} MiB file of random bytes: $file)"
	mkdir -p "$(dirname "$file")"
	head -c $((mb << 20)) /dev/urandom >"$file"
	sync
fi
dev=$(df --output=source "$file" | tail -n 1)
ra=$(cat "/sys/class/block/$(basename "$dev")/queue/read_ahead_kb" 2>/dev/null || echo "?")
echo "== 2. cold load of $file ($mb MiB on $dev, read_ahead_kb $ra; page cache dropped before each)"
echo "   3 rounds, each method once per round, interleaved; medians"
fio_run() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	fio --name=seqread --filename="$file" --readonly --rw=read --bs=1M \
		--iodepth=32 --ioengine=io_uring --direct=1 --size="${mb}M" \
		--output-format=json |
		python3 -c 'import json,sys; j=json.load(sys.stdin); print("fio - %.3f fio: O_DIRECT, io_uring, 1 MiB blocks, queue depth 32" % (j["jobs"][0]["read"]["bw_bytes"] / 1e9))'
}
# mmap again with the kernel's default readahead (128 KiB), to show what
# the device's readahead ($ra KiB) does for mmap; restored afterwards.
ra_file=/sys/class/block/$(basename "$dev")/queue/read_ahead_kb
mmap128() {
	[ -w "$ra_file" ] || return 0
	echo 128 >"$ra_file"
	"$build/bench/load" "$file" | awk '$1 == "mmap" {$1 = "mmap128"; $4 = $4 " (read_ahead_kb 128)"; print}'
	echo "$ra" >"$ra_file"
}
trap '[ -w "$ra_file" ] && echo "$ra" >"$ra_file"' EXIT
rounds=$(for r in 1 2 3; do "$build/bench/load" "$file"; fio_run; mmap128; done)
echo "$rounds" | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    f = line.split(None, 3)
    runs.setdefault(f[0], []).append((float(f[2]), " ".join(line.split()[3:])))
print("%-8s %8s  %-22s %s" % ("method", "GB/s", "(3 rounds)", "what"))
med = {}
for m, v in runs.items():
    med[m] = statistics.median(x for x, _ in v)
    print("%-8s %8.3f  %-22s %s" % (m, med[m], " ".join("%.2f" % x for x, _ in v), v[0][1]))
print("pinfer = %.0f%% of fio, %.1fx read(), %.1fx mmap" %
      (100 * med["pinfer"] / med["fio"], med["pinfer"] / med["read"], med["pinfer"] / med["mmap"])
      + (", %.1fx mmap at read_ahead_kb 128" % (med["pinfer"] / med["mmap128"]) if "mmap128" in med else ""))
'
