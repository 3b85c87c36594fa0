/* SPDX-License-Identifier: MIT */
/* Seconds on the monotonic clock, for the engine's counters and deadlines. */
#ifndef PINFER_CLOCK_H
#define PINFER_CLOCK_H

#include <time.h>

static inline double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
