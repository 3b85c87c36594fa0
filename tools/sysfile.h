/* SPDX-License-Identifier: MIT */
/* Reading one value from /proc and /sys, for pinfer doctor and pinfer stat. */
#ifndef PINFER_SYSFILE_H
#define PINFER_SYSFILE_H

#include <stddef.h>
#include <stdint.h>

/* The first line of @path, without its trailing newline and spaces: 0, or -errno. */
int sysfile_line(const char *path, char *buf, size_t cap);

/* The unsigned decimal number @path holds: 0, -errno, or -EINVAL if it holds none. */
int sysfile_u64(const char *path, uint64_t *v);

#endif
