#!/bin/bash
# SPDX-License-Identifier: MIT
# Perplexity, pinfer against llama.cpp, on a text that ships in the tree:
# both tools on the same file (pinfer perplexity against llama-perplexity),
# and both quantizers from the same source file (pinfer quantize against
# llama-quantize), each file measured by both tools, and by its mean KL
# divergence from the source model on the same text (pinfer perplexity
# --kl-divergence-base; the base: the source as pinfer reads it, --exact
# for the reference mode, about 100 times slower). The source is also read
# by llama-perplexity with its attention in f32 (-fa off -ctk f32 -ctv f32),
# as pinfer computes it. llama.cpp: the tools built by bench/build-llama.sh
# from the pinned llama-cpp-python sdist.
#
# Usage: bench/perplexity.sh [-m SOURCE] [-f TEXT] [-c N] [--exact] [--types "q4_0 q8_0 ..."]
#   -m SOURCE   the model to quantize (default the SmolLM2 Q4_1 file; its
#               tensors are requantized, --allow-requantize for llama.cpp)
#   -f TEXT     the text (default tests/reference/alice-ch1.txt, 2.6k tokens;
#               tests/reference/genesis-kjv.txt has 50k)
#   -c N        tokens a chunk (default 256: ten chunks of Alice)
#   --exact     the KL base in pinfer's reference mode (Alice: 8 minutes)
#   --types     pinfer quantize types (default q4_0 q4_1 q5_0 q5_1 q8_0 q4_k_m
#               q5_k_m q6_k); llama-quantize gets the same names (q4_k and
#               q5_k as Q4_K_S and Q5_K_S, whose rules are not quite pinfer's
#               plain q4_k and q5_k)
# "pinfer's <= llama's" says, for each tool, whether pinfer's file scores a
# perplexity no higher than llama-quantize's. The last column counts the
# tensors whose type differs between the two files (read with the gguf
# package of build/venv: make venv).
set -euo pipefail
cd "$(dirname "$0")/.."
src=models/SmolLM2-135M-Instruct.Q4_1.gguf ctx=256 text=tests/reference/alice-ch1.txt
types="q4_0 q4_1 q5_0 q5_1 q8_0 q4_k_m q5_k_m q6_k" exact=
while [ $# -gt 0 ]; do
	case $1 in
	-m) src=$2; shift ;;
	-c) ctx=$2; shift ;;
	-f) text=$2; shift ;;
	--exact) exact=--exact ;;
	--types) types=$2; shift ;;
	-h|--help) sed -n '3,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "perplexity.sh: unknown option $1 (--help)" >&2; exit 2 ;;
	esac
	shift
done
make --no-print-directory -s build/pinfer venv
[ -f "$src" ] || make --no-print-directory -s model
bin=$(bench/build-llama.sh native llama-perplexity llama-quantize)
[ -f "$text" ] || { echo "perplexity.sh: no text $text" >&2; exit 1; }
dir=build/bench-models/ppl
mkdir -p "$dir"
threads=$(nproc)

ours() {
	build/pinfer perplexity -m "$1" -f $text -c "$ctx" -t "$threads" -q 2>/dev/null |
		sed -n 's/^PPL = \([0-9.]*\).*/\1/p'
}
theirs() {
	local m=$1
	shift
	"$bin/llama-perplexity" -m "$m" -f $text -c "$ctx" -t "$threads" "$@" 2>&1 |
		sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
kl() {
	build/pinfer perplexity -m "$1" -f $text -c "$ctx" -t "$threads" -q --kl-divergence-base "$dir/source.kl" 2>/dev/null |
		sed -n 's/^mean KL divergence = \([0-9.e-]*\).*/\1/p'
}
cell() { [ -n "$1" ] && echo "$1" || echo "(cannot read it)"; }
# "yes" when the first figure is no higher than the second
le() { python3 -c "import sys; print('yes' if float(sys.argv[1]) <= float(sys.argv[2]) else 'NO')" "$1" "$2" 2>/dev/null || echo "?"; }
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
echo "| file | pinfer perplexity | llama-perplexity | pinfer / llama | llama-perplexity, attention in f32 | pinfer / llama |"
echo "|---|---:|---:|---:|---:|---:|"
a=$(ours "$src") b=$(theirs "$src") c=$(theirs "$src" -fa off -ctk f32 -ctv f32)
# the base for KL: the source's log-probabilities
build/pinfer perplexity -m "$src" -f $text -c "$ctx" -t "$threads" -q $exact --save-base "$dir/source.kl" >/dev/null
echo "| $(basename "$src") | $a | $b | $(python3 -c "print(f'{$a / $b:.4f}')") | $c | $(python3 -c "print(f'{$a / $c:.4f}')") |"
echo
echo "| type | pinfer quantize: pinfer / llama.cpp PPL | llama-quantize: pinfer / llama.cpp PPL | pinfer's <= llama's, by pinfer / llama.cpp | KL from the source, pinfer's / llama's | size MiB, pinfer / llama | tensor types that differ |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for t in $types; do
	lt=$(echo "$t" | tr a-z A-Z)
	case $lt in Q4_K | Q5_K) lt=${lt}_S ;; esac
	p=$dir/pinfer.$t.gguf l=$dir/llama.$lt.gguf
	build/pinfer quantize "$src" "$p" "$t" >/dev/null 2>&1
	"$bin/llama-quantize" --allow-requantize "$src" "$l" "$lt" "$threads" >/dev/null 2>&1
	po=$(ours "$p") pt=$(theirs "$p") lo=$(ours "$l") lt2=$(theirs "$l")
	echo "| $t / $lt | $(cell "$po") / $(cell "$pt") |" \
	     "$(cell "$lo") / $(cell "$lt2") |" \
	     "$(le "$po" "$lo") / $(le "$pt" "$lt2") |" \
	     "$(cell "$(kl "$p")") / $(cell "$(kl "$l")") |" \
	     "$(($(stat -c %s "$p") >> 20)) / $(($(stat -c %s "$l") >> 20)) |" \
	     "$(differ "$p" "$l") |"
done
