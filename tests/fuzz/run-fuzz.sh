#!/bin/bash
# SPDX-License-Identifier: MIT
# Fuzz the GGUF reader with libFuzzer (clang) under ASan + UBSan, with
# allocations capped, for SECONDS (default 300). Seeds come from the real
# model's header; the corpus grows in build/fuzz/corpus across runs; any
# crash is saved in build/fuzz/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-300}
out=build/fuzz
mkdir -p "$out/corpus" "$out/seeds"
clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -Iengine \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-o "$out/fuzz_gguf" tests/fuzz/fuzz_gguf.c engine/gguf.c engine/ggml_types.c
build/venv/bin/python tests/fuzz/make-seeds.py \
	models/SmolLM2-135M-Instruct.Q4_1.gguf "$out/seeds"
echo "fuzz: running for ${secs}s on $(nproc) cores"
# libFuzzer writes its per-job logs (fuzz-N.log) to the current directory.
cd "$out"
rm -f fuzz-*.log
./fuzz_gguf -max_total_time="$secs" -max_len=65536 \
	-malloc_limit_mb=256 -rss_limit_mb=2048 -timeout=10 \
	-jobs="$(nproc)" -workers="$(nproc)" -print_final_stats=1 \
	-artifact_prefix=./ corpus seeds >fuzz.log 2>&1 || true
execs=$(cat fuzz-*.log | grep -o 'stat::number_of_executed_units: [0-9]*' | awk '{s+=$2} END {print s+0}')
findings=$(ls | grep -c -E '^(crash|leak|timeout|oom|slow-unit)-' || true)
echo "fuzz: $execs executions in ${secs}s, corpus $(ls corpus | wc -l) inputs, $findings findings (logs: $out/fuzz-*.log)"
[ "$findings" -eq 0 ]
