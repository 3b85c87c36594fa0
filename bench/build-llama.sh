#!/bin/bash
# SPDX-License-Identifier: MIT
# Build llama.cpp's own tools (llama-server, llama-bench, ...) from the
# llama-cpp-python sdist on PyPI, whose vendor/llama.cpp holds the whole
# tree, under build/llama.cpp/. The version is pinned.
#   native  GGML_NATIVE on, as llama.cpp ships by default, AMX off
#           (build/llama.cpp/build)
#   avx2    AVX2 and FMA only, no AVX-512 (build/llama.cpp/build-avx2), to
#           compare with pinfer's AVX2 path (PINFER_CPU=avx2) on any machine
#   cuda    the CUDA backend for sm_90 (H100, H200) with nvcc, and AVX2 on
#           the CPU (build/llama.cpp/build-cuda), static ggml: built here,
#           carried to a GPU machine by tests/gpu/run.sh (Documentation/cuda.md)
# Usage: bench/build-llama.sh [native|avx2|cuda] [TOOL...]   (default: native
#        llama-server). Prints the directory that holds the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.36
dir=build/llama.cpp
variant=${1:-native}
shift || true
tools=("${@:-llama-server}")
case $variant in
native) out=$dir/build
	# AMX off: these machines' CPUs advertise AMX that the guest kernel
	# does not enable (ggml's AMX path dies of SIGILL); pinfer has none
	flags=(-DCMAKE_C_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
		-DCMAKE_CXX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16") ;;
avx2) out=$dir/build-avx2
	flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
		-DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_VBMI=OFF
		-DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF) ;;
cuda) out=$dir/build-cuda
	nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
	flags=(-DGGML_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90
		-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
		-DBUILD_SHARED_LIBS=OFF) ;;
*) echo "usage: bench/build-llama.sh [native|avx2|cuda] [TOOL...]" >&2; exit 2 ;;
esac
missing=()
for t in "${tools[@]}"; do [ -x "$out/bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -eq 0 ]; then
	echo "$out/bin"
	exit 0
fi
mkdir -p "$dir"
if [ ! -d "$dir/src/vendor/llama.cpp" ]; then
	echo "(downloading llama-cpp-python==$version sdist)" >&2
	/usr/bin/python3 -m pip download -q --no-binary llama-cpp-python --no-deps \
		-d "$dir/dl" "llama-cpp-python==$version" >&2
	rm -rf "$dir/src" && mkdir -p "$dir/src"
	tar -xzf "$dir"/dl/llama_cpp_python-$version.tar.gz -C "$dir/src" --strip-components=1
fi
command -v cmake >/dev/null || { echo "bench: cmake missing (apt-get install cmake)" >&2; exit 1; }
echo "(building llama.cpp $variant: ${missing[*]}; takes a while)" >&2
cmake -S "$dir/src/vendor/llama.cpp" -B "$out" -DCMAKE_BUILD_TYPE=Release \
	-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_HTML=OFF \
	"${flags[@]}" >&2
cmake --build "$out" --target "${missing[@]}" -j "$(nproc)" >&2
echo "$out/bin"
