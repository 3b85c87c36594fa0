#!/bin/bash
# SPDX-License-Identifier: MIT
# Fuzz what reads untrusted input, with libFuzzer (clang) under ASan + UBSan,
# allocations capped. Three targets (tests/fuzz/fuzz_*.c):
#   gguf   the GGUF reader
#   model  configuration, tensor binding, placement, loading, one token
#   text   tokenizer loading, encoding and decoding, chat templates
# Seeds come from the real model (tests/fuzz/make-seeds.py) and tiny models
# of pinfer synth; each target's corpus grows in build/fuzz/TARGET/corpus.
# Any crash, leak, time-out or out-of-memory input is saved in
# build/fuzz/TARGET/ and fails the run.
#
# Usage: run-fuzz.sh SECONDS [TARGET...]   fuzz each target for SECONDS on
#                                          every core (make fuzz)
#        run-fuzz.sh --check [SECONDS]     TAP: each target over its seeds
#                                          and saved corpus (regression),
#                                          then SECONDS (default 10) of
#                                          fuzzing from them (make check)
set -uo pipefail
cd "$(dirname "$0")/../.."
check=0
if [ "${1:-}" = --check ]; then
	check=1
	shift
fi
secs=${1:-$([ $check = 1 ] && echo 10 || echo 300)}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf model text)
out=build/fuzz
. tests/lib.sh

san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
build() {
	make -s CC=clang BUILD=$out/obj SAN_CFLAGS="$san" \
		$out/obj/libpinfer-engine.a $out/obj/libpinfer.a >/dev/null || return 1
	for t in "${targets[@]}"; do
		clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -Iengine -Iruntime \
			-Iuapi -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
			-o "$out/fuzz_$t" "tests/fuzz/fuzz_$t.c" $out/obj/libpinfer-engine.a \
			$out/obj/libpinfer.a -luring -lnuma -lm -lpthread -ldl || return 1
	done
}

seeds() {
	mkdir -p "$out/seeds/model"
	build/venv/bin/python tests/fuzz/make-seeds.py \
		models/SmolLM2-135M-Instruct.Q4_1.gguf "$out/seeds" >/dev/null || return 1
	# tiny models of every shape the engine takes
	build/pinfer synth --arch llama --type q8_0 --embd 32 --layers 1 --ff 64 --heads 2 \
		--kv-heads 1 --vocab 300 --ctx 64 -o "$out/seeds/model/llama-q8_0.gguf" 2>/dev/null &&
	build/pinfer synth --arch qwen2 --type q4_0 --embd 32 --layers 2 --ff 64 --heads 4 \
		--kv-heads 2 --vocab 300 --ctx 64 -o "$out/seeds/model/qwen2-q4_0.gguf" 2>/dev/null &&
	build/pinfer synth --arch llama --type f16 --embd 32 --layers 1 --ff 32 --heads 2 \
		--vocab 280 --ctx 64 --rope-freqs --rope-scale 2 \
		-o "$out/seeds/model/llama-f16-rope.gguf" 2>/dev/null &&
	build/pinfer synth --arch qwen3moe --type q8_0 --embd 32 --layers 2 --ff 32 --heads 2 \
		--kv-heads 1 --head-dim 32 --experts 4 --experts-used 2 --vocab 280 --ctx 64 \
		-o "$out/seeds/model/qwen3moe-q8_0.gguf" 2>/dev/null &&
	build/pinfer synth --arch llama --type q4_0 --embd 32 --layers 1 --ff 32 --heads 2 \
		--experts 3 --experts-used 2 --vocab 280 --ctx 64 \
		-o "$out/seeds/model/mixtral-q4_0.gguf" 2>/dev/null
}

# run TARGET ARGS...: the target on its corpus and seeds; prints "EXECS FINDINGS"
run() {
	local t=$1 dir=$out/$1
	shift
	mkdir -p "$dir/corpus"
	rm -f "$dir"/fuzz-*.log "$dir/fuzz.log"
	(cd "$dir" && ./../fuzz_$t -max_len=65536 -malloc_limit_mb=512 -rss_limit_mb=2048 \
		-timeout=20 -print_final_stats=1 -artifact_prefix=./ "$@" \
		corpus "../seeds/$t" >fuzz.log 2>&1)
	local execs findings
	execs=$(cat "$dir"/fuzz*.log | grep -o 'stat::number_of_executed_units: [0-9]*' |
		awk '{s+=$2} END {print s+0}')
	findings=$(ls "$dir" | grep -c -E '^(crash|leak|timeout|oom|slow-unit)-')
	echo "$execs $findings"
}

mkdir -p "$out"
if [ $check = 1 ]; then
	build
	check $? "the fuzz targets build with clang, libFuzzer, ASan and UBSan (${targets[*]})" || finish
	seeds
	check $? "seeds: from the real model's header, and tiny models of pinfer synth" || finish
	for t in "${targets[@]}"; do
		nseeds=$(ls "$out/seeds/$t" | wc -l)
		read -r execs findings < <(run "$t" -runs=0)
		[ "$findings" = 0 ] && grep -q "Done [0-9]* runs" "$out/$t/fuzz.log"
		check $? "fuzz_$t: each of its $nseeds seeds and its saved corpus once, no finding"
		read -r execs findings < <(run "$t" -max_total_time="$secs")
		[ "$findings" = 0 ]
		check $? "fuzz_$t: $execs executions in ${secs}s, $findings findings (build/fuzz/$t/)"
		[ "$findings" = 0 ] || ls "$out/$t" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' |
			sed 's/^/#   /'
	done
	finish
fi
build || exit 1
seeds || exit 1
bad=0
for t in "${targets[@]}"; do
	echo "fuzz: $t for ${secs}s on $(nproc) cores"
	read -r execs findings < <(run "$t" -max_total_time="$secs" -jobs="$(nproc)" -workers="$(nproc)")
	echo "fuzz: $t: $execs executions in ${secs}s, corpus $(ls "$out/$t/corpus" | wc -l) inputs, $findings findings (logs: $out/$t/fuzz-*.log)"
	[ "$findings" = 0 ] || bad=1
done
exit $bad
