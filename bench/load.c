// SPDX-License-Identifier: MIT
/*
 * Cold load of a file into memory, GB/s: pinfer's loader (a region from the
 * best provider here, O_DIRECT through io_uring, 4 MiB x 32 in flight) vs
 * read(2) into malloc'd memory (1 MiB at a time) vs mmap + touching every
 * page. The page cache is dropped before each (needs root).
 * Usage: load FILE  -- prints "method seconds GB/s" lines.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libpinfer.h"
#include "bench.h"



static void report(const char *method, double t, size_t size, const char *what)
{
	printf("%-8s %8.3f %8.3f  %s\n", method, t, size / t / 1e9, what);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct pinfer_range rg;
	struct pinfer_region_props props;
	struct pinfer_loader_info li;
	struct pinfer_region *r;
	struct pinfer_loader *l;
	struct pinfer_err err;
	struct stat st;
	char what[160];
	size_t size, off;
	uint8_t *buf;
	volatile uint8_t *m;
	unsigned int sum = 0;
	double t;
	int fd;

	if (argc != 2 || stat(argv[1], &st)) {
		fprintf(stderr, "usage: load FILE\n");
		return 2;
	}
	size = st.st_size;

	bench_drop_caches();
	if (pinfer_region_create(&r, size, -1, PINFER_PROVIDER_AUTO, &err) ||
	    pinfer_loader_create(&l, r, argv[1], &err)) {
		fprintf(stderr, "load: %s\n", err.msg);
		return 1;
	}
	pinfer_region_props(r, &props);
	pinfer_loader_info(l, &li);
	rg = (struct pinfer_range){ 0, 0, size };
	t = mono_now();
	if (pinfer_load(l, &rg, 1, &err)) {
		fprintf(stderr, "load: %s\n", err.msg);
		return 1;
	}
	t = mono_now() - t;
	snprintf(what, sizeof(what), "pinfer loader: %s region, %s, %llu KiB x %u in flight%s",
		 pinfer_provider_name(props.provider),
		 li.kmod ? "pinfer.ko prefetch" : li.direct ? "O_DIRECT io_uring" : "buffered io_uring",
		 (unsigned long long)li.chunk >> 10, li.depth,
		 li.fixed_buffers ? ", fixed buffers" : "");
	report("pinfer", t, size, what);
	pinfer_loader_free(l);
	pinfer_region_free(r);

	bench_drop_caches();
	buf = malloc(size);
	fd = open(argv[1], O_RDONLY);
	if (!buf || fd < 0)
		return 1;
	memset(buf, 0, size);		/* the destination faulted in first */
	t = mono_now();
	for (off = 0; off < size; off += 1 << 20) {
		size_t n = size - off < (1 << 20) ? size - off : 1 << 20;

		if (read(fd, buf + off, n) != (ssize_t)n)
			return 1;
	}
	t = mono_now() - t;
	report("read", t, size, "read(2) into malloc'd memory, 1 MiB at a time");
	close(fd);
	free(buf);

	bench_drop_caches();
	fd = open(argv[1], O_RDONLY);
	t = mono_now();
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return 1;
	for (off = 0; off < size; off += 4096)
		sum += m[off];
	t = mono_now() - t;
	report("mmap", t, size, "mmap + touch every 4 KiB page");
	munmap((void *)m, size);
	close(fd);
	return sum == 0xffffffffu;	/* keeps the reads */
}
