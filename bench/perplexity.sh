#!/bin/bash
# SPDX-License-Identifier: MIT
# Perplexity, pinfer against llama.cpp, on the text that ships in the tree
# (tests/reference/alice-ch1.txt): both tools on the same file (pinfer
# perplexity against llama-perplexity), and both quantizers from the same
# source file (pinfer quantize against llama-quantize), each file measured
# by both tools. llama.cpp: the tools built by bench/build-llama.sh from the
# pinned llama-cpp-python sdist.
#
# Usage: bench/perplexity.sh [-m SOURCE] [-c N] [--types "q4_0 q8_0 ..."]
#   -m SOURCE   the model to quantize (default the SmolLM2 Q4_1 file; its
#               tensors are requantized, --allow-requantize for llama.cpp)
#   -c N        tokens a chunk (default 256: ten chunks of the text)
#   --types     pinfer quantize types (default q4_0 q4_1 q5_0 q5_1 q8_0 q4_k_m
#               q5_k_m q6_k); llama-quantize gets the same names (q4_k and
#               q5_k as Q4_K_S and Q5_K_S, whose rules are not quite pinfer's
#               plain q4_k and q5_k)
# The last column counts the tensors whose type differs between the two
# files (read with the gguf package of build/venv: make venv).
set -euo pipefail
cd "$(dirname "$0")/.."
src=models/SmolLM2-135M-Instruct.Q4_1.gguf ctx=256
types="q4_0 q4_1 q5_0 q5_1 q8_0 q4_k_m q5_k_m q6_k"
while [ $# -gt 0 ]; do
	case $1 in
	-m) src=$2; shift ;;
	-c) ctx=$2; shift ;;
	--types) types=$2; shift ;;
	-h|--help) sed -n '3,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "perplexity.sh: unknown option $1 (--help)" >&2; exit 2 ;;
	esac
	shift
done
make --no-print-directory -s build/pinfer venv
[ -f "$src" ] || make --no-print-directory -s model
bin=$(bench/build-llama.sh native llama-perplexity llama-quantize)
text=tests/reference/alice-ch1.txt
dir=build/bench-models/ppl
mkdir -p "$dir"
threads=$(nproc)

ours() {
	build/pinfer perplexity -m "$1" -f $text -c "$ctx" -t "$threads" -q 2>/dev/null |
		sed -n 's/^PPL = \([0-9.]*\).*/\1/p'
}
theirs() {
	"$bin/llama-perplexity" -m "$1" -f $text -c "$ctx" -t "$threads" 2>&1 |
		sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
cell() { [ -n "$1" ] && echo "$1" || echo "(cannot read it)"; }
# tensors whose type differs between two files, of all
differ() {
	build/venv/bin/python - "$1" "$2" <<'PY'
import sys
import gguf
a, b = ({t.name: t.tensor_type for t in gguf.GGUFReader(f).tensors} for f in sys.argv[1:])
print(f"{sum(a[k] != b.get(k) for k in a)} of {len(a)}")
PY
}

echo "text: $text, -c $ctx, $threads threads; source: $src"
echo
echo "| file | pinfer perplexity | llama-perplexity | pinfer / llama |"
echo "|---|---:|---:|---:|"
a=$(ours "$src") b=$(theirs "$src")
echo "| $(basename "$src") | $a | $b | $(python3 -c "print(f'{$a / $b:.4f}')") |"
echo
echo "| type | pinfer quantize: pinfer / llama.cpp PPL | llama-quantize: pinfer / llama.cpp PPL | size MiB, pinfer / llama | tensor types that differ |"
echo "|---|---:|---:|---:|---:|"
for t in $types; do
	lt=$(echo "$t" | tr a-z A-Z)
	case $lt in Q4_K | Q5_K) lt=${lt}_S ;; esac
	p=$dir/pinfer.$t.gguf l=$dir/llama.$lt.gguf
	build/pinfer quantize "$src" "$p" "$t" >/dev/null 2>&1
	"$bin/llama-quantize" --allow-requantize "$src" "$l" "$lt" "$threads" >/dev/null 2>&1
	echo "| $t / $lt | $(cell "$(ours "$p")") / $(cell "$(theirs "$p")") |" \
	     "$(cell "$(ours "$l")") / $(cell "$(theirs "$l")") |" \
	     "$(($(stat -c %s "$p") >> 20)) / $(($(stat -c %s "$l") >> 20)) |" \
	     "$(differ "$p" "$l") |"
done
