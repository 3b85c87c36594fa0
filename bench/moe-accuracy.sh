#!/bin/bash
# SPDX-License-Identifier: MIT
# Qwen3, Qwen3-MoE and Mixtral-layout models, pinfer and llama.cpp side by
# side on the same synthetic files (the shapes tests/e2e/test_moe.py uses)
# and the same 256 random token ids: for each engine the mean KL divergence
# of its next-token distribution from the numpy reference's
# (tests/reference/llama_ref.py, float64) and the top-1 agreement; then
# pinfer against llama.cpp directly, next to llama.cpp's own spread between
# a batch of 256 and one token at a time. test_moe.py takes its limits from
# llama.cpp's column.
# llama.cpp: llama-cpp-python 0.3.36 built from source into build/bench-venv.
# Usage: bench/moe-accuracy.sh [THREADS]   (not part of make check)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
venv=$(bench/bench-venv.sh)
make --no-print-directory -s build/pinfer tests
dir=build/moe-accuracy
mkdir -p "$dir"
small=(--embd 256 --layers 2 --heads 4 --kv-heads 2 --vocab 300)
synth() {	# name type args...
	local f="$dir/$1.$2.gguf"
	[ -f "$f" ] || build/pinfer synth "${small[@]}" "${@:3}" --type "$2" -o "$f" 2>/dev/null
}
synth qwen3 q8_0 --arch qwen3 --ff 512 --head-dim 96
synth qwen3moe q8_0 --arch qwen3moe --ff 256 --head-dim 64 --experts 16 --experts-used 4 --skew 0.5
synth qwen3moe q4_k --arch qwen3moe --ff 256 --head-dim 64 --experts 16 --experts-used 4 --skew 0.5
synth mixtral q4_0 --arch llama --ff 256 --experts 8 --experts-used 2
PINFER_THREADS=$threads "$venv/bin/python" - "$threads" "$dir" <<'PY'
import os, subprocess, sys
import numpy as np
sys.path.insert(0, "tests/reference")
import llama_cpp
from kld import kld
from llama_ref import LlamaRef

threads, d = int(sys.argv[1]), sys.argv[2]
ids = [int(t) for t in np.random.default_rng(5).integers(0, 300, 256)]
flags = open("/proc/cpuinfo").read()
paths = [None] + (["avx2"] if "avx512bw" in flags else []) + ["scalar"]


def llama(path, batch):
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=batch, n_ubatch=batch,
                          n_threads=threads, logits_all=True, verbose=False)
    llm.eval(ids)
    out = np.array(llm.scores[:len(ids)], np.float32)
    del llm
    return out


def cell(r):
    return f"{r[0]:.6f}, {100 * r[2]:.1f}%"


print(f"{len(ids)} random ids; mean KL, top-1 agreement; {threads} threads")
print("| model | llama.cpp vs reference | llama.cpp batch vs one by one | " +
      " | ".join(f"pinfer {p or 'native'} vs reference | vs llama.cpp" for p in paths) + " |")
print("|---" * (3 + 2 * len(paths)) + "|")
for name in ("qwen3.q8_0", "qwen3moe.q8_0", "qwen3moe.q4_k", "mixtral.q4_0"):
    path = f"{d}/{name}.gguf"
    ref = LlamaRef(path).forward(ids)
    batch, seq = llama(path, 512), llama(path, 1)
    cells = [cell(kld(ref, batch)), cell(kld(batch, seq))]
    for cpu in paths:
        env = dict(os.environ, PINFER_EXACT="0")
        if cpu:
            env["PINFER_CPU"] = cpu
        p = subprocess.run(["build/tests/print_logits", path, *map(str, ids)],
                           capture_output=True, env=env, check=True)
        ours = np.frombuffer(p.stdout, np.float32).reshape(len(ids), -1)
        cells += [cell(kld(ref, ours)), cell(kld(batch, ours))]
    print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
PY
