#!/bin/bash
# SPDX-License-Identifier: MIT
# Writes tests/reference/genesis-kjv.txt, the longer public-domain text for
# perplexity (the Book of Genesis in the King James Version of 1611, whose
# copyright has long expired), from Debian's bible-kjv-text package: its
# `bible` program prints the verses, and this script drops the verse numbers
# and joins each verse's wrapped lines, one verse a line, a blank line and
# "Chapter N" before each chapter. The file is in the tree; this script says
# where it came from and makes it again (it needs apt-get download).
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)/genesis-kjv.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
apt-get download bible-kjv bible-kjv-text >/dev/null 2>&1 || {
	echo "make-genesis.sh: apt-get download bible-kjv bible-kjv-text failed" >&2
	exit 1
}
for f in *.deb; do dpkg -x "$f" root; done
root/usr/bin/bible -p root/usr/lib "gen1:1-gen50:26" |
	awk '/^Genesis [0-9]+$/ { if (v != "") print v; v = ""; if (NR > 2) print ""; print "Chapter " $2; next }
	     /^ +[0-9]+ / { if (v != "") print v; sub(/^ +[0-9]+ /, ""); v = $0; next }
	     /^$/ { next }
	     { v = v " " $0 }
	     END { if (v != "") print v }' >"$out"
echo "wrote $out ($(wc -c <"$out") bytes)"
