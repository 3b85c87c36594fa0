#!/bin/bash
# Extract the few files the project uses from Debian's linux-source-6.12
# tarball into build/linux-source (once): checkpatch.pl and its data files,
# and the kselftest harness headers. Prints the directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
tarball=/usr/src/linux-source-6.12.tar.xz
out=build/linux-source
files=(
	scripts/checkpatch.pl
	scripts/spelling.txt
	scripts/const_structs.checkpatch
	tools/testing/selftests/kselftest_harness.h
	tools/testing/selftests/kselftest.h
)
if [ ! -f "$out/.stamp" ]; then
	[ -f "$tarball" ] || { echo "linux-source: $tarball missing (make deps)" >&2; exit 1; }
	rm -rf "$out" && mkdir -p "$out"
	top=linux-source-6.12	# the tarball's top directory
	tar -xJf "$tarball" -C "$out" --strip-components=1 "${files[@]/#/$top/}"
	touch "$out/.stamp"
fi
echo "$out"
