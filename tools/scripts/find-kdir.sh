#!/bin/bash
# Print the kernel build tree to build the module against: the running
# kernel's, else the newest installed Debian header tree (with a note on
# stderr saying so), else nothing.
running=/lib/modules/$(uname -r)/build
if [ -d "$running" ]; then
	echo "$running"
	exit 0
fi
kdir=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
if [ -n "$kdir" ]; then
	echo "find-kdir: no headers for the running kernel $(uname -r); using $kdir" >&2
	echo "$kdir"
fi
