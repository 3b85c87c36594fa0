#!/bin/bash
# Create the test virtualenv (Python packages from PyPI, used by tests only).
# Usage: venv.sh DIR REQUIREMENTS
set -euo pipefail
dir=$1 req=$2
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if [ ! -x "$dir/bin/python" ]; then
	echo "venv: creating $dir"
	"$py" -m venv "$dir"
fi
"$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
touch "$dir/.stamp"
