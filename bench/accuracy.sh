#!/bin/bash
# SPDX-License-Identifier: MIT
# Quantization quality, pinfer and llama.cpp side by side: for the default
# model (Q4_1) and its versions written by pinfer quantize (f16, q8_0, q4_0,
# q5_0, q5_1, q4_k, q4_k_m, q5_k_m, q6_k; written afresh each run), the mean KL divergence of each engine's next-token
# distribution from the numpy reference's (tests/reference/llama_ref.py,
# float64 on the same dequantized weights) and their top-1 agreement, over
# the 332 positions of tests/reference/text.txt (tests/reference/kld.py:
# what llama-perplexity --kl-divergence computes). pinfer on each CPU path
# this machine has (native, PINFER_CPU=avx2, scalar). tests/e2e/test_forward.py
# takes its limits from llama.cpp's column.
# llama.cpp: llama-cpp-python 0.3.36 built from source into build/bench-venv.
# Usage: bench/accuracy.sh [THREADS]   (not part of make check)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
venv=$(bench/bench-venv.sh)
make --no-print-directory -s build/pinfer tests model
mkdir -p build/accuracy
types="f16 q8_0 q4_0 q5_0 q5_1 q4_k q4_k_m q5_k_m q6_k"
for t in $types; do
	build/pinfer quantize -q models/SmolLM2-135M-Instruct.Q4_1.gguf "build/accuracy/$t.gguf" "$t"
done
PINFER_THREADS=$threads "$venv/bin/python" - "$threads" $types <<'PY'
import os, subprocess, sys
import numpy as np
sys.path.insert(0, "tests/reference")
import llama_cpp
from kld import kld, text_tokens
from llama_ref import LlamaRef

threads = int(sys.argv[1])
files = [("q4_1", "models/SmolLM2-135M-Instruct.Q4_1.gguf")] + \
    [(t, f"build/accuracy/{t}.gguf") for t in sys.argv[2:]]
flags = open("/proc/cpuinfo").read()
paths = [None] + (["avx2"] if "avx512bw" in flags else []) + ["scalar"]
print(f"mean KL(reference || engine), top-1 agreement; {threads} threads")
print("| type | llama.cpp | " + " | ".join(f"pinfer {p or 'native'}" for p in paths) + " |")
print("|---" * (2 + len(paths)) + "|")
for qtype, path in files:
    ids = text_tokens("build/tests/print_tokens", path)
    ref = LlamaRef(path).forward(ids)
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads,
                          logits_all=True, verbose=False)
    llm.eval(ids)
    theirs = kld(ref, np.array(llm.scores[:len(ids)], np.float32))
    del llm
    cells = [f"{theirs[0]:.6f}, {100 * theirs[2]:.1f}%"]
    for cpu in paths:
        env = dict(os.environ, PINFER_EXACT="0")
        if cpu:
            env["PINFER_CPU"] = cpu
        p = subprocess.run(["build/tests/print_logits", path, *map(str, ids)],
                           capture_output=True, env=env, check=True)
        ours = kld(ref, np.frombuffer(p.stdout, np.float32).reshape(len(ids), -1))
        cells.append(f"{ours[0]:.6f}, {100 * ours[2]:.1f}%")
    print(f"| {qtype} | " + " | ".join(cells) + " |", flush=True)
PY
