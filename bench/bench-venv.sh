#!/bin/bash
# SPDX-License-Identifier: MIT
# The benchmarks' llama.cpp through Python: build/bench-venv with numpy,
# gguf 0.17.1 and llama-cpp-python 0.3.36 built from source (pip; takes
# about 10 minutes on 2 cores), on first use. AMX off, as in
# bench/build-llama.sh: these machines' CPUs advertise AMX that the guest
# kernel does not enable, and ggml's AMX repack path crashes (SIGSEGV in
# llama-cpp-python on a Q6_K model; pinfer has no AMX kernels either).
# Prints the venv's directory.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import llama_cpp, gguf' 2>/dev/null; then
	echo "(building llama.cpp through pip install llama-cpp-python into $venv)" >&2
	rm -rf "$venv"
	/usr/bin/python3 -m venv "$venv"
	noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
	CMAKE_ARGS="-DCMAKE_C_FLAGS='$noamx' -DCMAKE_CXX_FLAGS='$noamx'" \
		"$venv/bin/pip" install -q --no-cache-dir numpy gguf==0.17.1 llama-cpp-python==0.3.36 >&2
fi
echo "$venv"
