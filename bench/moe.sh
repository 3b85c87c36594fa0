#!/bin/bash
# SPDX-License-Identifier: MIT
# Mixture of experts from the drive: synthetic Qwen3-30B-A3B shapes (pinfer
# synth --arch qwen3moe --params 30B-A3B, Q4_0, about 17 GB), in a memory
# cgroup of each size given, with a cold page cache: pinfer (its expert
# cache, sized by the cgroup's limit) against llama.cpp (mmap, the same
# file, the same cgroup and threads), pp32 and tg tokens/s, bytes read from
# the drive per generated token and GB/s next to fio's O_DIRECT figure on
# the same file; for uniform and skewed routing (--skew). Then a model that
# fits (the same shapes, fewer layers), resident, no cgroup.
#
# Both engines: one untimed warm-up (pp32 and a few tokens), then pp32 and
# tgN timed once (llama.cpp through llama-cpp-python 0.3.36, built from
# source into build/bench-venv, its Llama.eval() timed as pinfer bench times
# llm_eval). Drive bytes from /proc/diskstats around the timed generation.
#
# Usage: bench/moe.sh [-t THREADS] [-n TG] [--layers N] [--mems "8G 4G"]
#                     [--skews "0 1"] [--fit-layers N] [--policy lru|lfu]
#                     [--pinfer-only]   (no llama.cpp runs: to compare policies)
#        (root: it makes the cgroups and drops the page cache; not part of
#        make check)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=$(nproc) tg=16 layers=48 mems="8G 4G" skews="0 1" fit_layers=8 policy=lru peer=1
while [ $# -gt 0 ]; do
	case $1 in
	-t) threads=$2; shift 2 ;;
	-n) tg=$2; shift 2 ;;
	--layers) layers=$2; shift 2 ;;
	--mems) mems=$2; shift 2 ;;
	--skews) skews=$2; shift 2 ;;
	--fit-layers) fit_layers=$2; shift 2 ;;
	--policy) policy=$2; shift 2 ;;
	--pinfer-only) peer=0; shift ;;
	*) sed -n '2,20p' "$0" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/moe.sh: run as root (cgroups, drop_caches)" >&2; exit 2; }
venv=$(bench/bench-venv.sh)
make --no-print-directory -s build/pinfer
dir=build/bench-models
mkdir -p "$dir"

model() {	# skew layers -> path, written once
	local f="$dir/qwen3moe-30B-A3B.L$2.skew$1.q4_0.gguf"
	[ -f "$f" ] || build/pinfer synth --arch qwen3moe --params 30B-A3B --layers "$2" \
		--skew "$1" --type q4_0 -o "$f" >&2
	echo "$f"
}

# a child of this shell's memory cgroup (v2 or v1)
cg=
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
	cg=/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)/pinfer-moe-$$
	knob=memory.max
else
	cg=/sys/fs/cgroup/memory$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)/pinfer-moe-$$
	knob=memory.limit_in_bytes
fi
mkdir "$cg"
trap 'rmdir "$cg" 2>/dev/null || true' EXIT

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
in_cg() {	# LIMIT CMD...: CMD in the cgroup with LIMIT (max: none)
	local lim=$1; shift
	if [ "$lim" = max ]; then echo -1 > "$cg/$knob" 2>/dev/null || echo max > "$cg/$knob"
	else echo "$(numfmt --from=iec "$lim")" > "$cg/$knob"; fi
	( echo $BASHPID > "$cg/cgroup.procs"; exec "$@" )
}

# llama.cpp repacks Q4_0 weights into memory of its own on x86 (its CPU_REPACK
# buffers): all 16 GB, which a cgroup of 8 GB OOM-kills. In a cgroup it runs
# as its --no-repack flag makes it (use_extra_bufts off): on the mmap.
llama() {	# FILE REPACK(0|1) -> "pp32 tg drive_bytes_per_token drive_gbs"
	PYTHONPATH= "$venv/bin/python" - "$1" "$threads" "$tg" "$2" <<'PY'
import os, sys, time
import llama_cpp
import llama_cpp.llama_cpp as lc
path, threads, tg, repack = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
defaults = lc.llama_model_default_params


def params():
    p = defaults()
    p.use_extra_bufts = repack
    return p


lc.llama_model_default_params = params
st = os.stat(path)     # the file's block device
DEV = (os.major(st.st_dev), os.minor(st.st_dev))


def drive():
    """Bytes read from the file's device so far (/proc/diskstats: sectors read)."""
    with open("/proc/diskstats") as f:
        return sum(int(x.split()[5]) * 512 for x in f
                   if (int(x.split()[0]), int(x.split()[1])) == DEV)


llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_batch=256, n_threads=threads,
                      n_threads_batch=threads, verbose=False)
ids = [(i * 7919 + 13) % 512 for i in range(32 + tg)]
llm.eval(ids[:32])                       # warm-up: a prompt and a few tokens
for t in ids[32:36]:
    llm.eval([t])
llm.reset()
t0 = time.time()
llm.eval(ids[:32])
pp = 32 / (time.time() - t0)
b0, t0 = drive(), time.time()
for t in ids[32:32 + tg]:
    llm.eval([t])
dt, b = time.time() - t0, drive() - b0
print(f"{pp:.2f} {tg / dt:.3f} {b / tg:.0f} {b / dt / 1e9:.3f}")
PY
}

pinfer() {	# FILE -> "pp32 tg bytes_read_per_token read_gbs cached% guessed% slots"
	build/pinfer bench -m "$1" -p 32 -n "$tg" -r 1 -t "$threads" --expert-policy "$policy" \
		--json | "$venv/bin/python" -c '
import json, sys
r = {o["test"][:2]: o for o in map(json.loads, sys.stdin)}
tg = r["tg"]
need = tg.get("expert_hits", 0) + tg.get("expert_read_ahead", 0) + tg.get("expert_misses", 0)
print("%.2f %.3f %.0f %.3f %.1f %.1f %d" % (
    r["pp"]["t_s"], tg["t_s"], tg.get("expert_bytes_per_token", 0), tg.get("expert_read_gbs", 0),
    100.0 * tg.get("expert_hits", 0) / max(need, 1), 100 * tg.get("expert_guess_right", 0),
    tg.get("expert_slots", 0)))'
}

echo "pinfer $(build/pinfer --version | head -1); llama-cpp-python 0.3.36; $threads threads; tg$tg; policy $policy"
for skew in $skews; do
	f=$(model "$skew" "$layers")
	cold
	fio_gbs=$(fio --name=seq --filename="$f" --rw=read --bs=4M --direct=1 --ioengine=io_uring \
		--iodepth=32 --size=4G --output-format=json 2>/dev/null |
		"$venv/bin/python" -c 'import json, sys; bw = json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"]; print("%.2f" % (bw / 1e9))')
	echo
	echo "skew $skew: $f ($(du -h --apparent-size "$f" | cut -f1)); fio O_DIRECT sequential read $fio_gbs GB/s"
	echo "| cgroup | engine | pp32 t/s | tg$tg t/s | read MiB/token | read GB/s (of fio's) | experts cached | guesses right | cache (experts) |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for mem in $mems; do
		cold
		read -r pp t b g h q slots < <(in_cg "$mem" bash -c "$(declare -f pinfer); threads=$threads tg=$tg policy=$policy venv=$venv pinfer $f")
		printf "| %s | pinfer | %s | %s | %.0f | %s (%.0f%%) | %s%% | %s%% | %s |\n" "$mem" "$pp" "$t" \
			"$(echo "$b / 1048576" | bc -l)" "$g" "$(echo "100 * $g / $fio_gbs" | bc -l)" "$h" "$q" "$slots"
		[ "$peer" = 1 ] || continue
		cold
		read -r lpp lt lb lg < <(in_cg "$mem" bash -c "$(declare -f llama); threads=$threads tg=$tg venv=$venv llama $f 0")
		printf "| %s | llama.cpp (mmap, no repack) | %s | %s | %.0f | %s (%.0f%%) | | | |\n" "$mem" "$lpp" "$lt" \
			"$(echo "$lb / 1048576" | bc -l)" "$lg" "$(echo "100 * $lg / $fio_gbs" | bc -l)"
		echo "| $mem | pinfer / llama.cpp | $(echo "$pp / $lpp" | bc -l | cut -c1-4)x | $(echo "$t / $lt" | bc -l | cut -c1-4)x | | | | | |"
	done
done

[ "$peer" = 1 ] || exit 0
f=$(model 0 "$fit_layers")
echo
echo "resident, no cgroup: $f ($(du -h --apparent-size "$f" | cut -f1)), warm"
read -r pp t _ < <(pinfer "$f")
read -r lpp lt _ < <(llama "$f" 1)
echo "| engine | pp32 t/s | tg$tg t/s |"
echo "|---|---|---|"
echo "| pinfer | $pp | $t |"
echo "| llama.cpp | $lpp | $lt |"
echo "| pinfer / llama.cpp | $(echo "$pp / $lpp" | bc -l | cut -c1-4)x | $(echo "$t / $lt" | bc -l | cut -c1-4)x |"
