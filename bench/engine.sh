#!/bin/bash
# SPDX-License-Identifier: MIT
# pinfer vs llama.cpp on the same model file, same threads, same prompt and
# generation lengths, in one run: pp512 and tg128 tokens/s and the ratios,
# and the weight bandwidth generation reaches next to this machine's memory
# read bandwidth. llama.cpp comes from the PyPI package llama-cpp-python,
# built from source into build/bench-venv on first use (takes a while).
# Usage: bench/engine.sh [MODEL] [THREADS]   (not part of make check)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-$(nproc)}
venv=$(bench/bench-venv.sh)
make --no-print-directory -s build/pinfer
ours=$(build/pinfer bench -m "$model" -t "$threads" -p 512 -n 128 -r 3 --json)
"$venv/bin/python" - "$model" "$threads" "$ours" <<'PY'
import json, sys, time
import numpy as np
import llama_cpp

model, threads, ours = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ours = {r["test"]: r for r in map(json.loads, ours.splitlines())}
llm = llama_cpp.Llama(model_path=model, n_ctx=1024, n_batch=512, n_threads=threads,
                      n_threads_batch=threads, verbose=False)
rng = np.random.default_rng(1)
def pp(n):
    toks = [int(t) for t in rng.integers(100, llm.n_vocab(), n)]
    llm.reset(); t0 = time.perf_counter(); llm.eval(toks); return n / (time.perf_counter() - t0)
def tg(n):
    llm.reset(); llm.eval([1]); t0 = time.perf_counter()
    for _ in range(n):
        llm.eval([int(rng.integers(100, llm.n_vocab()))])
    return n / (time.perf_counter() - t0)
pp(512), tg(16)  # warm-up runs, untimed, as pinfer bench and llama-bench do
theirs = {"pp512": np.mean([pp(512) for _ in range(3)]), "tg128": np.mean([tg(128) for _ in range(3)])}
print(f"model {model}, {threads} threads, mean of 3 runs each after a warm-up run")
print(f"| test  | pinfer t/s | llama.cpp t/s | pinfer / llama.cpp |")
print(f"| ----- | ---------- | ------------- | ------------------ |")
for t in ("pp512", "tg128"):
    print(f"| {t} | {ours[t]['t_s']:10.1f} | {theirs[t]:13.1f} | {ours[t]['t_s'] / theirs[t]:17.2f}x |")
wb = ours["tg128"]["weight_bytes_per_token"]
print(f"generation reads {wb / 2**20:.1f} MiB of weights per token: pinfer "
      f"{wb * ours['tg128']['t_s'] / 1e9:.2f} GB/s, llama.cpp {wb * theirs['tg128'] / 1e9:.2f} GB/s; "
      f"memory read bandwidth ({threads} threads summing 512 MiB, measured by pinfer bench) "
      f"{ours['tg128']['mem_read_gbs']:.2f} GB/s")
print(f"pinfer backend: {ours['tg128']['backend']}")
PY
