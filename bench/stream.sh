#!/bin/bash
# SPDX-License-Identifier: MIT
# A model larger than the memory it may use: pinfer (resident layers pinned,
# the rest streamed) vs llama.cpp (mmap and the page cache) vs the drive.
# Both run in one memory cgroup (v2 memory.max or v1 limit_in_bytes) of LIMIT, on a synthetic model
# written by pinfer synth (real shapes, random weights), after dropping the
# page cache; pinfer gets --mem LIMIT less 256 MiB for everything else the
# process has. Prints tokens/s, bytes read from the drive per token, and
# the floor the drive sets, side by side.
# Usage: bench/stream.sh [PARAMS] [TYPE] [LIMIT_MIB] [THREADS] [TOKENS]
#        (default 8B q4_1 3072 $(nproc) 4; needs root; not part of make check)
# Q4_1 by default: llama.cpp repacks Q4_0 (and Q8_0) weights into anonymous
# memory on AVX2/AVX-512 machines, so a Q4_0 model larger than the limit is
# killed by the cgroup's OOM killer instead of running from the page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
params=${1:-8B} type=${2:-q4_1} limit=${3:-3072} threads=${4:-$(nproc)} n=${5:-4}
model=build/bench/synth-$params-$type.gguf

[ "$(id -u)" = 0 ] || { echo "bench/stream.sh: run as root (a cgroup limits memory)" >&2; exit 1; }
venv=$(bench/bench-venv.sh)
make --no-print-directory -s build/pinfer
mkdir -p build/bench
[ -f "$model" ] || build/pinfer synth --params "$params" --type "$type" -o "$model"
size=$(stat -c %s "$model")

# the drive: sequential O_DIRECT reads of the model file, 4 MiB at QD 32
# (measured before and after the runs: virtual disks vary)
fio_gbs() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	fio --name=seq --filename="$model" --direct=1 --rw=read --bs=4M --iodepth=32 \
		--ioengine=io_uring --size=$((size < 4 << 30 ? size : 4 << 30)) --output-format=json |
		"$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"] / 1e9)'
}
drive1=$(fio_gbs)

# a memory cgroup: v2 (memory.max) or v1 (memory.limit_in_bytes)
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	cg=/sys/fs/cgroup/pinfer-bench
	mkdir -p "$cg"
	echo $((limit << 20)) >"$cg/memory.max"
	echo 0 >"$cg/memory.swap.max" 2>/dev/null || true
elif [ -d /sys/fs/cgroup/memory ]; then
	cg=/sys/fs/cgroup/memory/pinfer-bench
	mkdir -p "$cg"
	echo $((limit << 20)) >"$cg/memory.limit_in_bytes"
else
	echo "bench/stream.sh: no memory cgroup (v2 or v1) under /sys/fs/cgroup" >&2
	exit 1
fi
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
# in_cg CMD...: run CMD in the cgroup, with a cold page cache
in_cg() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}

if ! ours=$(in_cg build/pinfer bench -m "$model" -t "$threads" -p 32 -n "$n" -r 1 --json \
	--mem $((limit - 256))M); then
	echo "bench/stream.sh: pinfer failed (see above)" >&2
	exit 1
fi
theirs=$(in_cg "$venv/bin/python" - "$model" "$threads" "$n" <<'PY' || echo '{"failed": true}'
import json, sys, time
import llama_cpp

model, threads, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def read_bytes():
    for line in open("/proc/self/io"):
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
llm = llama_cpp.Llama(model_path=model, n_ctx=256, n_batch=32, n_threads=threads,
                      n_threads_batch=threads, verbose=False)
toks = [(i * 7919 + 13) % llm.n_vocab() for i in range(32)]
t0 = time.perf_counter(); llm.eval(toks); pp = 32 / (time.perf_counter() - t0)
b0, t0 = read_bytes(), time.perf_counter()
for i in range(n):
    llm.eval([(i * 31 + 5) % llm.n_vocab()])
tg = n / (time.perf_counter() - t0)
print(json.dumps({"pp": pp, "tg": tg, "read_per_token": (read_bytes() - b0) / n}))
PY
)
drive2=$(fio_gbs)
"$venv/bin/python" - "$model" "$size" "$limit" "$threads" "$n" "$drive1 $drive2" "$ours" "$theirs" <<'PY'
import json, sys
model, size, limit, threads, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
drives = [float(x) for x in sys.argv[6].split()]
drive = max(drives)
ours = {r["test"]: r for r in map(json.loads, sys.argv[7].splitlines())}
theirs = json.loads(sys.argv[8].splitlines()[-1])
if theirs.get("failed"):	# killed (OOM in the cgroup) or failed: no figures
    theirs = {"pp": float("nan"), "tg": float("nan"), "read_per_token": float("nan")}
    print("llama.cpp did not finish within the memory limit (see the kernel log for an OOM kill)")
pp, tg = ours["pp32"], ours[f"tg{n}"]
streamed = tg["streamed_bytes_per_token"]
print(f"model {model}: {size / 2**30:.2f} GiB; memory limit {limit} MiB (cgroup); {threads} threads")
print(f"drive (fio, O_DIRECT, 4 MiB, QD32): {drives[0]:.2f} GB/s before, {drives[1]:.2f} after; "
      f"the floor uses {drive:.2f}")
print(f"pinfer: {tg['resident_layers']} of {tg['layers']} layers resident, "
      f"{streamed / 2**20:.0f} MiB streamed per token: floor {streamed / (drive * 1e9):.3f} s/token")
print(f"| test  | pinfer t/s | llama.cpp t/s | pinfer / llama.cpp |")
print(f"| ----- | ---------- | ------------- | ------------------ |")
print(f"| pp32  | {pp['t_s']:10.3f} | {theirs['pp']:13.3f} | {pp['t_s'] / theirs['pp']:17.2f}x |")
print(f"| tg{n:<3d} | {tg['t_s']:10.3f} | {theirs['tg']:13.3f} | {tg['t_s'] / theirs['tg']:17.2f}x |")
print(f"generation: pinfer reads {streamed / 2**20:.0f} MiB per token from the drive at "
      f"{streamed * tg['t_s'] / 1e9:.2f} GB/s ({streamed * tg['t_s'] / 1e9 / drive:.0%} of fio); "
      f"llama.cpp reads {theirs['read_per_token'] / 2**20:.0f} MiB per token "
      f"({theirs['read_per_token'] * theirs['tg'] / 1e9:.2f} GB/s)")
PY
