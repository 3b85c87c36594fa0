#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Run by dkms after installing pinfer.ko (POST_INSTALL in dkms.conf), from
# the source tree: the group pinfer and the udev rule that gives it
# /dev/pinfer (mode 0660).
set -e
cd "$(dirname "$0")"
getent group pinfer >/dev/null || groupadd --system pinfer
install -D -m 644 60-pinfer.rules /etc/udev/rules.d/60-pinfer.rules
if command -v udevadm >/dev/null; then
	udevadm control --reload || true
	udevadm trigger --subsystem-match=misc --sysname-match=pinfer || true
fi
