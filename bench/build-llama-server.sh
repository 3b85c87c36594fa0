#!/bin/bash
# SPDX-License-Identifier: MIT
# Build llama.cpp's own server (llama-server) from the llama-cpp-python sdist
# on PyPI, whose vendor/llama.cpp holds the whole tree, into
# build/llama.cpp/. The version is pinned; the build is CPU only, with
# the same baseline as ours (GGML_NATIVE on, as llama.cpp ships by default).
# Usage: bench/build-llama-server.sh   (prints the path of llama-server)
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.36
dir=build/llama.cpp
bin=$dir/build/bin/llama-server
if [ -x "$bin" ]; then
	echo "$bin"
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
echo "(building llama-server with cmake; takes a while)" >&2
cmake -S "$dir/src/vendor/llama.cpp" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release \
	-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_HTML=OFF >&2
cmake --build "$dir/build" --target llama-server -j "$(nproc)" >&2
echo "$bin"
