#!/bin/bash
# SPDX-License-Identifier: MIT
# The GPU path's checks and benchmark, in one script for a machine with an
# NVIDIA GPU (Documentation/cuda.md); about 7 minutes on an H100 (estimated:
# it has not run on one yet), 3 of them the benchmark (--no-bench).
#
# It runs from build/gpu/ (tests/gpu/bundle.sh: pinfer, print_logits, the
# CUDA backend and their libraries, carried to a GPU machine that lacks
# them) or else from build/ (a machine that builds pinfer itself). Models
# are made there with `pinfer synth`: nothing is downloaded.
#
#  1. correctness (tests/gpu/compare.py, limits from the CPU's own figures):
#     each weight type the GPU has kernels for, and qwen3 (q/k norms) and
#     qwen2 (biases): reference mode on the GPU against the CPU's, the 8-bit
#     path at -ngl half and all against the CPU's KL, batch = one by one,
#     greedy generation, and (Q4_0, Q4_K, F16) layers streamed through a
#     GPU memory limit = resident; many sequences over the GPU's paged KV
#     cache (unit/test_seqs: the server's calls, bit for bit against one by
#     one); compute-sanitizer's memcheck;
#  2. benchmark: pinfer bench -ngl 999 (tg128, pp512) on synthetic models of
#     SmolLM2-135M (its vocabulary too), TinyLlama-1.1B and Llama-3-8B
#     shapes (synth's vocabulary of 512), next to llama.cpp's
#     CUDA llama-bench when the bundle has it (bench/build-llama.sh cuda),
#     and the 8B's generation as a fraction of the GPU's read bandwidth
#     (measured with PyTorch when it is there).
#
# Usage: tests/gpu/run.sh [--no-bench]. Exit 1 if a check failed.
# PINFER_GPU_BENCH="1B q4_0,8B q4_k": the benchmark's models (preset, type
# and vocabulary: SmolLM2's 49152 for 135M, else synth's default).
# PYTHON: a python3 with numpy (default python3).
# PINFER_GPU_DRY=1: everything on the CPU (-ngl 0), to try the script itself
# on a machine without a GPU; its verdicts and figures then mean nothing.
# PINFER_CUDA_LIB=$PWD/build/tests/libpinfer-cuda-emul.so: the backend's
# contract carried out on the CPU (tests/gpu/emul.c) instead of the GPU: a
# rehearsal of the whole script, the bundle's binaries included, whose
# checks then hold the engine's side (not the kernels) to the same limits.
set -uo pipefail
cd "$(dirname "$0")/../.."
bench=1
[ "${1:-}" = --no-bench ] && bench=0
B=${PINFER_GPU_BUNDLE:-build/gpu}
W=$(mktemp -d /tmp/pinfer-gpu.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/bin"
if [ -x "$B/pinfer" ]; then
	for p in pinfer print_logits test_seqs; do	# the bundle's libraries for these alone
		printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$PWD/$B/lib" "$PWD/$B/$p" >"$W/bin/$p"
		chmod +x "$W/bin/$p"
	done
	export PINFER_CUDA_LIB=${PINFER_CUDA_LIB:-$PWD/$B/libpinfer-cuda.so}	# or a stand-in: tests/gpu/emul.c
	llama=$W/bin/llama-bench
	[ -f "$B/llama-bench.xz" ] && python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as o:
    shutil.copyfileobj(f, o)' "$B/llama-bench.xz" "$llama" && chmod +x "$llama"
else
	ln -s "$PWD/build/pinfer" "$W/bin/pinfer"
	ln -s "$PWD/build/tests/print_logits" "$W/bin/print_logits"
	ln -s "$PWD/build/tests/test_seqs" "$W/bin/test_seqs"
	export PINFER_CUDA_LIB=${PINFER_CUDA_LIB:-$PWD/build/libpinfer-cuda.so}
	llama=build/llama.cpp/build-cuda/bin/llama-bench
fi
P=$W/bin/pinfer
PY=${PYTHON:-python3}	# with numpy
ngl=999
[ -n "${PINFER_GPU_DRY:-}" ] && ngl=0
failed=0
t0=$(date +%s)

echo "== GPU and build"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$P" --version

echo "== correctness (tests/gpu/compare.py)"
small=(--embd 512 --layers 6 --heads 8 --kv-heads 2 --ff 1536 --vocab 1000 -q)
for t in q4_0 q4_1 q8_0 q4_k q5_k q6_k f16; do
	"$P" synth "${small[@]}" --type "$t" -o "$W/$t.gguf" >/dev/null 2>&1 || failed=1
done
for t in q5_0 q5_1; do
	"$P" quantize "$W/f16.gguf" "$W/$t.gguf" "$t" >/dev/null 2>&1 || failed=1
done
"$P" synth "${small[@]}" --arch qwen3 --head-dim 128 --type q4_0 -o "$W/qwen3.gguf" >/dev/null 2>&1 ||
	failed=1
"$P" synth "${small[@]}" --arch qwen2 --type q8_0 -o "$W/qwen2.gguf" >/dev/null 2>&1 || failed=1
"$P" run -m "$W/q4_k.gguf" --plan -ngl 6 | grep GPU	# the device, the prompts' path
for f in q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k f16 qwen3 qwen2; do
	[ -f "$W/$f.gguf" ] || { echo "FAIL: $f.gguf was not made"; failed=1; continue; }
	case $f in	# streamed = resident: packed types and plain rows
	q4_0|q4_k|f16) $PY tests/gpu/compare.py "$W/bin/print_logits" "$W/$f.gguf" 6 "$P" || failed=1 ;;
	*) $PY tests/gpu/compare.py "$W/bin/print_logits" "$W/$f.gguf" 6 || failed=1 ;;
	esac
done

echo "== many sequences over the GPU's paged KV cache (unit/test_seqs, as pinfer serve runs)"
if [ -n "${PINFER_GPU_DRY:-}" ]; then
	echo "(on the CPU alone: skipped)"
elif "$W/bin/test_seqs" >"$W/seqs.log" 2>&1; then
	echo "ok: test_seqs: $(grep -c '^ok .*GPU' "$W/seqs.log") checks with layers on the GPU, bit for bit"
else
	echo "FAIL: test_seqs:"; grep -v '^ok' "$W/seqs.log" | tail -20; failed=1
fi

echo "== compute-sanitizer memcheck: one by one, a batch of 40 (cuBLAS), layers streamed"
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -z "$cs" ] || [ -n "${PINFER_GPU_DRY:-}" ]; then
	echo "(no compute-sanitizer here)"
else
	ids=$(seq 1 40 | tr '\n' ' ')
	lim=$($PY tests/gpu/compare.py --limit "$W/q4_k.gguf" 6 "$P")
	for mode in "" "--all" "stream"; do
		env=(PINFER_NGL=6 PINFER_CTX=256)
		if [ "$mode" = stream ]; then
			[ -n "$lim" ] || { echo "FAIL: no GPU memory limit streams two layers"; failed=1; continue; }
			env+=(PINFER_GPU_MEM=$lim)
			mode=--all
		fi
		if env "${env[@]}" "$cs" --error-exitcode 9 --leak-check full --target-processes all \
			"$W/bin/print_logits" $mode \
			"$W/q4_k.gguf" $ids >/dev/null 2>"$W/cs.err"; then
			echo "ok: memcheck ${mode:-one by one}${env[2]:+, streamed}: no errors"
		else
			echo "FAIL: memcheck ${mode:-one by one}:"; tail -30 "$W/cs.err"; failed=1
		fi
	done
fi

if [ $bench = 1 ]; then
	echo "== benchmark: tg128 and pp512, all layers on the GPU, t/s (mean of 3 after a warm-up)"
	bw=$($PY - <<'PYEOF' 2>/dev/null
import torch, time
x = torch.empty(1 << 29, dtype=torch.float32, device="cuda")   # 2 GiB
x.fill_(1.0)
torch.cuda.synchronize()
for i in range(3):
    x.sum()
torch.cuda.synchronize()
t = time.perf_counter()
for i in range(10):
    x.sum()
torch.cuda.synchronize()
print(f"{10 * x.numel() * 4 / (time.perf_counter() - t) / 1e9:.0f}")
PYEOF
)
	echo "GPU read bandwidth (PyTorch, sum of 2 GiB): ${bw:-not measured} GB/s"
	# llama-bench's CUDA, cuBLAS and NCCL libraries: the toolkit's, or PyTorch's wheels'
	llama_libs=/usr/local/cuda/lib64:/usr/local/cuda/lib:$($PY -c 'import glob, os, nvidia
print(":".join(sorted(glob.glob(os.path.join(list(nvidia.__path__)[0], "*", "lib")))))' 2>/dev/null)
	if [ -x "$llama" ] && ! LD_LIBRARY_PATH=$llama_libs ldd "$llama" | grep -q "not found$"; then
		echo "llama.cpp: $llama (CUDA, sm_90)"
	elif [ -x "$llama" ]; then
		echo "llama.cpp's llama-bench lacks libraries here:"
		LD_LIBRARY_PATH=$llama_libs ldd "$llama" | grep "not found"
	fi
	echo "| model            | pinfer tg | llama tg | pinfer pp | llama pp |  tg x |  pp x | tg/bw |"
	echo "|------------------|-----------|----------|-----------|----------|-------|-------|-------|"
	specs=${PINFER_GPU_BENCH:-135M q4_1 49152,135M q4_0 49152,1B q4_0,1B q4_k,8B q4_0,8B q4_k,8B q6_k}
	IFS=, read -ra specs <<<"$specs"
	for spec in "${specs[@]}"; do
		set -- $spec
		f=$W/bench-$1-$2.gguf
		"$P" synth --params "$1" --type "$2" ${3:+--vocab $3} -q -o "$f" >/dev/null 2>&1 ||
			{ echo "FAIL: synth $spec"; failed=1; continue; }
		if ! "$P" bench -m "$f" -ngl $ngl -p 512 -n 128 -r 3 --json >"$W/p.json" 2>"$W/p.err"; then
			echo "FAIL: pinfer bench on $spec:"; cat "$W/p.err"; failed=1; rm -f "$f"; continue
		fi
		: >"$W/l.json"
		[ -x "$llama" ] && LD_LIBRARY_PATH=$llama_libs "$llama" -m "$f" \
			-ngl 99 -p 512 -n 128 -r 3 \
			-o json >"$W/l.json" 2>/dev/null
		$PY tests/gpu/row.py "$spec" "$W/p.json" "$W/l.json" "${bw:-0}"
		rm -f "$f"
	done
	[ -x "$llama" ] || echo "(no llama.cpp CUDA build in the bundle: bench/build-llama.sh cuda llama-bench, then tests/gpu/bundle.sh)"
fi
echo "== $( [ $failed = 0 ] && echo all checks passed || echo SOME CHECKS FAILED ) in $(( $(date +%s) - t0 )) s"
exit $failed
