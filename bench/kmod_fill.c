// SPDX-License-Identifier: MIT
/*
 * Runs inside the VM (bench/kmod-vm.sh): fill 1 GiB of memory from a file on
 * the emulated NVMe drive four ways and print GB/s side by side, the page
 * cache dropped before each:
 *   pinfer   pinfer.ko region, io_uring PINFER_URING_CMD_PREFETCH,
 *            1 MiB commands, 32 in flight (direct I/O into the region)
 *   read     read(2) into malloc'd memory, 1 MiB at a time (page cache)
 *   mmap     mmap of the file, one byte touched per 4 KiB page
 *   odirect  pread(2) with O_DIRECT into malloc'd memory, 1 MiB, depth 1
 * Usage: kmod_fill FILE [MiB]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "pinfer.h"
#include "bench.h"

#define CHUNK (1u << 20)
#define DEPTH 32



static int die(const char *what)
{
	fprintf(stderr, "kmod_fill: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double fill_pinfer(const char *path, size_t size)
{
	struct pinfer_region_create c = {
		.size = size, .numa_node = -1, .page_size = PINFER_PAGE_2M,
	};
	struct pinfer_bind_file b;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	size_t next = 0, done = 0;
	int dev, r, inflight = 0;
	double t0, t;

	dev = open("/dev/pinfer", O_RDWR);
	if (dev < 0)
		die("/dev/pinfer");
	r = ioctl(dev, PINFER_IOC_REGION_CREATE, &c);
	if (r < 0)
		die("region create");
	b = (struct pinfer_bind_file){ .fd = open(path, O_RDONLY) };
	if (b.fd < 0 || ioctl(r, PINFER_IOC_BIND_FILE, &b))
		die("bind");
	if (io_uring_queue_init(DEPTH, &ring, IORING_SETUP_SQE128))
		die("io_uring");
	t0 = mono_now();
	while (done < size) {
		while (inflight < DEPTH && next < size) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			struct pinfer_prefetch p = {
				.region_off = next, .file_off = next, .len = CHUNK,
			};

			io_uring_prep_rw(IORING_OP_URING_CMD, sqe, r, NULL, 0, 0);
			sqe->cmd_op = PINFER_URING_CMD_PREFETCH;
			memcpy(sqe->cmd, &p, sizeof(p));
			next += CHUNK;
			inflight++;
		}
		io_uring_submit(&ring);
		if (io_uring_wait_cqe(&ring, &cqe))
			die("wait");
		if (cqe->res != (int)CHUNK) {
			errno = cqe->res < 0 ? -cqe->res : EIO;
			die("prefetch");
		}
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
		done += CHUNK;
	}
	t = mono_now() - t0;
	io_uring_queue_exit(&ring);
	close(b.fd);
	close(r);
	close(dev);
	return t;
}

static double fill_read(const char *path, size_t size, int flags)
{
	uint8_t *buf = aligned_alloc(4096, size);
	int fd = open(path, O_RDONLY | flags);
	size_t off;
	double t0, t;

	if (!buf || fd < 0)
		die("read setup");
	memset(buf, 0, size);	/* fault the destination in first */
	t0 = mono_now();
	for (off = 0; off < size; off += CHUNK)
		if (pread(fd, buf + off, CHUNK, off) != CHUNK)
			die("read");
	t = mono_now() - t0;
	close(fd);
	free(buf);
	return t;
}

static double fill_mmap(const char *path, size_t size)
{
	int fd = open(path, O_RDONLY);
	volatile uint8_t *p;
	unsigned int sum = 0;
	size_t off;
	double t0, t;

	if (fd < 0)
		die("open");
	t0 = mono_now();
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	for (off = 0; off < size; off += 4096)
		sum += p[off];
	t = mono_now() - t0;
	munmap((void *)p, size);
	close(fd);
	if (sum == 0xffffffff)
		putchar(0);	/* keep the reads */
	return t;
}

int main(int argc, char **argv)
{
	const char *names[] = { "pinfer", "read", "mmap", "odirect" };
	const char *what[] = {
		"pinfer.ko uring_cmd prefetch, 1 MiB x 32 in flight",
		"read(2) into malloc, 1 MiB",
		"mmap + touch every 4 KiB page",
		"O_DIRECT pread into malloc, 1 MiB, depth 1",
	};
	size_t size;
	double t[4];
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: kmod_fill FILE [MiB]\n");
		return 2;
	}
	size = (size_t)(argc > 2 ? atol(argv[2]) : 1024) << 20;
	for (i = 0; i < 4; i++) {
		bench_drop_caches();
		t[i] = i == 0 ? fill_pinfer(argv[1], size) :
		       i == 1 ? fill_read(argv[1], size, 0) :
		       i == 2 ? fill_mmap(argv[1], size) :
				fill_read(argv[1], size, O_DIRECT);
	}
	printf("fill %zu MiB from %s (page cache dropped before each)\n",
	       size >> 20, argv[1]);
	printf("%-8s %8s %8s %10s  %s\n", "method", "seconds", "GB/s",
	       "vs pinfer", "what");
	for (i = 0; i < 4; i++)
		printf("%-8s %8.3f %8.3f %9.2fx  %s\n", names[i], t[i],
		       size / t[i] / 1e9, t[0] / t[i], what[i]);
	return 0;
}
