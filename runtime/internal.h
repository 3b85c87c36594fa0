/* SPDX-License-Identifier: MIT */
/* libpinfer internals shared by its files. */
#ifndef LIBPINFER_INTERNAL_H
#define LIBPINFER_INTERNAL_H

#include "libpinfer.h"

#define PINFER_HUGE (2ul << 20)

/* For the loader: how a region is backed. */
int pinfer_region_kmod_fd(const struct pinfer_region *r);	/* -1 if not kmod */

#endif
