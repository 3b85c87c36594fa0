/* SPDX-License-Identifier: MIT */
/* Helpers shared by the benchmark programs. */
#ifndef PINFER_BENCH_H
#define PINFER_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"	/* mono_now() */

/* Write back and drop the page cache (root only); says so if it cannot. */
static inline void bench_drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	sync();
	if (fd < 0 || write(fd, "3", 1) != 1)
		fprintf(stderr, "bench: cannot drop the page cache (%s): figures are warm\n",
			strerror(errno));
	if (fd >= 0)
		close(fd);
}

#endif
