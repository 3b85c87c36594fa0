#!/bin/bash
# SPDX-License-Identifier: MIT
# pinfer vs llama.cpp over the whole speed table in one run: SmolLM2-135M in
# its file's type and in types pinfer quantize writes, and synthetic 1B and
# 8B models (pinfer synth) in each type; for each row pp and tg tokens/s of
# both engines, their ratio, and the weight bandwidth generation reaches as
# a fraction of this machine's memory read bandwidth. Each row runs quiet
# and again "loaded": a competing process keeps one core about 50% busy (a
# duty-cycled busy loop: 5 ms spinning, 5 ms asleep), both engines under
# the same load. "avx2" runs pinfer with PINFER_CPU=avx2 against a
# llama.cpp built for AVX2 only; "native" both at their best.
# llama.cpp: llama-bench from the llama-cpp-python sdist (bench/build-llama.sh).
#
# Usage: bench/engine-sweep.sh [options]   (not part of make check; the full
#        table takes hours on 2 cores: choose rows with the options)
#   --sizes "135M 1B 8B"   models (default all three)
#   --types "q4_0 ..."     synthetic models' types (default q4_0 q4_1 q8_0 q4_k q6_k)
#   --isa "native avx2"    kernel sets (default both)
#   --load "quiet loaded"  (default both)
#   -t N                   threads (default: nproc)
#   -p N, -n N, -r N       prompt, generated tokens, repetitions (512, 128, 2)
#   --json FILE            also every measurement as one JSON object per line
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="135M 1B 8B" types="q4_0 q4_1 q8_0 q4_k q6_k" isas="native avx2" loads="quiet loaded"
threads=$(nproc) pp=512 tg=128 reps=2 json=
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) sizes=$2; shift ;;
	--types) types=$2; shift ;;
	--isa) isas=$2; shift ;;
	--load) loads=$2; shift ;;
	-t) threads=$2; shift ;;
	-p) pp=$2; shift ;;
	-n) tg=$2; shift ;;
	-r) reps=$2; shift ;;
	--json) json=$2; shift ;;
	-h|--help) sed -n '3,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "engine-sweep: unknown option $1 (--help)" >&2; exit 2 ;;
	esac
	shift
done
make --no-print-directory -s build/pinfer
models=build/bench-models
mkdir -p "$models"
smol=models/SmolLM2-135M-Instruct.Q4_1.gguf

# The model files of the table, made once: "label path" lines.
rows=()
for size in $sizes; do
	if [ "$size" = 135M ]; then
		[ -f "$smol" ] || make --no-print-directory -s model
		rows+=("SmolLM2-135M Q4_1 (file)|$smol")
		for t in q4_0 q8_0; do
			f=$models/smollm2.$t.gguf
			[ -f "$f" ] || build/pinfer quantize "$smol" "$f" "$t" >&2
			rows+=("SmolLM2-135M $t (pinfer quantize)|$f")
		done
		continue
	fi
	for t in $types; do
		f=$models/synth-$size.$t.gguf
		[ -f "$f" ] || build/pinfer synth --params "$size" --type "$t" -o "$f" >&2
		rows+=("synthetic $size $t|$f")
	done
done

loadpid=
start_load() {
	python3 -c '
import time
while True:
    t = time.monotonic()
    while time.monotonic() - t < 0.005:
        pass
    time.sleep(0.005)' &
	loadpid=$!
}
stop_load() {
	if [ -n "$loadpid" ]; then
		kill "$loadpid" 2>/dev/null || true
		wait "$loadpid" 2>/dev/null || true
	fi
	loadpid=
}
trap stop_load EXIT

out=$(mktemp)
for isa in $isas; do
	llama=$(bench/build-llama.sh "$isa" llama-bench)/llama-bench
	cpu=; [ "$isa" = avx2 ] && cpu=avx2
	for load in $loads; do
		for row in "${rows[@]}"; do
			label=${row%%|*} file=${row#*|}
			echo "($isa, $load: $label)" >&2
			if [ "$load" = loaded ]; then start_load; fi
			ours=$(PINFER_CPU=$cpu build/pinfer bench -m "$file" -t "$threads" -p "$pp" -n "$tg" \
				-r "$reps" --json)
			theirs=$("$llama" -m "$file" -t "$threads" -p "$pp" -n "$tg" -r "$reps" -o json 2>/dev/null)
			stop_load
			python3 - "$isa" "$load" "$label" "$ours" "$theirs" >>"$out" <<'PY'
import json, sys
isa, load, label, ours, theirs = sys.argv[1:]
ours = [json.loads(l) for l in ours.splitlines()]
theirs = json.loads(theirs)
rec = {"isa": isa, "load": load, "model": label, "backend": ours[0]["backend"]}
for o in ours:
    kind = "pp" if o["test"].startswith("pp") else "tg"
    t = next(x for x in theirs if (x["n_prompt"] > 0) == (kind == "pp"))
    rec[kind] = {"test": o["test"], "pinfer": o["t_s"], "llama": t["avg_ts"],
                 "ratio": o["t_s"] / t["avg_ts"]}
    if kind == "tg":
        wb = o["weight_bytes_per_token"]
        rec["tg"].update(weight_bytes=wb, mem_read_gbs=o["mem_read_gbs"],
                         pinfer_gbs=wb * o["t_s"] / 1e9, llama_gbs=wb * t["avg_ts"] / 1e9)
print(json.dumps(rec))
PY
		done
	done
done
[ -n "$json" ] && cp "$out" "$json"
python3 - "$out" "$threads" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in recs:
    groups.setdefault((r["isa"], r["load"]), []).append(r)
for (isa, load), rs in groups.items():
    print(f"\n{isa} kernels ({rs[0]['backend']}), {load}, {sys.argv[2]} threads")
    print("| model | pp pinfer | pp llama.cpp | pp ratio | tg pinfer | tg llama.cpp | tg ratio "
          "| tg GB/s pinfer / llama.cpp / memory | pinfer's fraction |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rs:
        p, t = r.get("pp"), r.get("tg")
        pp = f"{p['pinfer']:.1f} | {p['llama']:.1f} | {p['ratio']:.2f}x" if p else "- | - | -"
        if t:
            frac = t["pinfer_gbs"] / t["mem_read_gbs"] if t["mem_read_gbs"] else 0
            tg = (f"{t['pinfer']:.1f} | {t['llama']:.1f} | {t['ratio']:.2f}x | "
                  f"{t['pinfer_gbs']:.1f} / {t['llama_gbs']:.1f} / {t['mem_read_gbs']:.1f} | {frac:.0%}")
        else:
            tg = "- | - | - | - | -"
        print(f"| {r['model']} | {pp} | {tg} |")
PY
rm -f "$out"
