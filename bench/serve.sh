#!/bin/bash
# SPDX-License-Identifier: MIT
# pinfer serve vs llama.cpp's llama-server on the same model, the same slots
# (--parallel / -np), the same threads and context per slot, in one run: a
# load generator of our own (bench/serve_load.py: asyncio + the openai
# client, streamed /v1/completions, fixed prompt lengths and max_tokens with
# ignore_eos) at 1, 4 and 16 concurrent clients. Prints aggregate generated
# tokens/s, time to first token and inter-token latency (p50/p99) of each,
# and the ratios. llama-server is built from the llama-cpp-python sdist
# (bench/build-llama.sh, pinned version) under build/.
# Usage: bench/serve.sh [MODEL] [THREADS] [MAX_TOKENS] [REQUESTS_PER_CLIENT]
# (not part of make check)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-$(nproc)}
max_tokens=${3:-64}
per_client=${4:-2}
slots=16
ctx=512
levels=1,4,16
prompt_words=48
make --no-print-directory -s build/pinfer venv
llama_server=$(bench/build-llama.sh native llama-server)/llama-server
py=build/venv/bin/python
pick_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() {
	for _ in $(seq 600); do
		curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "bench: the server on port $1 did not come up" >&2
	return 1
}
run_one() {	# name command...: the server's figures, one JSON line per level
	local name=$1 port pid out pidfile=build/serve-bench-$1.pid
	shift
	port=$(pick_port)
	# the server itself writes its pid (exec), not a subshell around it
	bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" --port "$port" \
		>/dev/null 2>"build/serve-bench-$name.log" &
	wait_up "$port"
	out=$($py bench/serve_load.py "http://127.0.0.1:$port/v1" "$levels" "$per_client" "$max_tokens" "$prompt_words") || true
	pid=$(cat "$pidfile")
	kill -TERM "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	rm -f "$pidfile"
	[ -n "$out" ] || { echo "bench: the load generator failed against $name (build/serve-bench-$name.log)" >&2; exit 1; }
	echo "$out"
}
ours=$(run_one pinfer build/pinfer serve -m "$model" -t "$threads" --parallel $slots --ctx $ctx --queue 1000)
theirs=$(run_one llama "$llama_server" -m "$model" -t "$threads" -tb "$threads" -np $slots \
	-c $((slots * ctx)) --host 127.0.0.1 --no-webui)
$py - "$model" "$threads" "$max_tokens" "$ours" "$theirs" <<'PY'
import json, sys
model, threads, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3]
ours = [json.loads(l) for l in sys.argv[4].splitlines()]
theirs = [json.loads(l) for l in sys.argv[5].splitlines()]
print(f"model {model}, {threads} threads, 16 slots, {max_tokens} tokens per request (ignore_eos), streamed")
print("| clients | pinfer t/s | llama-server t/s | ratio | TTFT p50/p99 ms pinfer | llama-server | ITL p50/p99 ms pinfer | llama-server |")
print("| ------- | ---------- | ---------------- | ----- | ---------------------- | ------------ | --------------------- | ------------ |")
for a, b in zip(ours, theirs):
    print(f"| {a['clients']:7d} | {a['tok_s']:10.1f} | {b['tok_s']:16.1f} | {a['tok_s'] / b['tok_s']:4.2f}x "
          f"| {a['ttft_p50'] * 1e3:6.0f} / {a['ttft_p99'] * 1e3:6.0f} | {b['ttft_p50'] * 1e3:5.0f} / {b['ttft_p99'] * 1e3:5.0f} "
          f"| {a['itl_p50'] * 1e3:6.1f} / {a['itl_p99'] * 1e3:6.1f} | {b['itl_p50'] * 1e3:5.1f} / {b['itl_p99'] * 1e3:5.1f} |")
PY
