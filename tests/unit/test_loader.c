// SPDX-License-Identifier: MIT
/*
 * libpinfer loading, on every provider available: a random file loaded into
 * a region equals the file byte for byte; ranges at odd offsets, aligned and
 * not, zero-length, across 2 MiB pages; a file whose size is not a multiple
 * of 4 KiB; ranges past the end of the file or the region refused naming
 * them; a short read reported with its file offset; a file on tmpfs; many
 * tickets at once, polled and waited, with progress; freeing a loader with
 * reads in flight; direct reads leave the page cache alone; without
 * io_uring (RLIMIT_MEMLOCK 0, unprivileged) reads by pread(); a NULL
 * struct pinfer_err. Test files go to $PINFER_TEST_DIR (default /var/tmp).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include "libpinfer.h"
#include "../tap.h"

#define MiB (1ull << 20)

static char path[256], shm_path[64];
static uint8_t *file_data;
static size_t file_size;

static int write_random(const char *p, size_t size, uint8_t **data)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	uint64_t x = 0x9e3779b97f4a7c15ull ^ size;
	size_t i;

	*data = malloc(size);
	if (fd < 0 || !*data)
		return -1;
	for (i = 0; i < size; i++) {	/* xorshift: cheap, not compressible */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		(*data)[i] = (uint8_t)(x >> 24);
	}
	if (write(fd, *data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	fsync(fd);
	close(fd);
	return 0;
}

struct progress {
	uint64_t calls, last_done, total;
	bool monotonic;
};

static void on_progress(uint64_t done, uint64_t total, void *arg)
{
	struct progress *p = arg;

	p->monotonic = p->monotonic && done >= p->last_done && done <= total;
	p->calls++;
	p->last_done = done;
	p->total = total;
}

/* Write back and drop the file's pages from the page cache. */
static void drop_cache(const char *p)
{
	int fd = open(p, O_RDONLY);

	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/* The file's pages in the page cache (mincore on a mapping of it). */
static size_t cached_pages(const char *p)
{
	int fd = open(p, O_RDONLY);
	size_t pages = (file_size + 4095) / 4096, n = 0, i;
	unsigned char *vec = malloc(pages);
	void *m = fd < 0 ? MAP_FAILED : mmap(NULL, file_size, PROT_READ, MAP_SHARED, fd, 0);

	if (m != MAP_FAILED && vec && !mincore(m, file_size, vec))
		for (i = 0; i < pages; i++)
			n += vec[i] & 1;
	else
		n = pages;
	if (m != MAP_FAILED)
		munmap(m, file_size);
	if (fd >= 0)
		close(fd);
	free(vec);
	return n;
}

static bool same(const uint8_t *mem, const struct pinfer_range *rg)
{
	return !memcmp(mem + rg->region_off, file_data + rg->file_off, rg->len);
}

static void test_provider(enum pinfer_provider pv)
{
	const char *name = pinfer_provider_name(pv);
	struct pinfer_range whole = { 0, 0, file_size };
	struct pinfer_range odd[] = {
		{ 1000, 3, 5000 },			/* unaligned: buffered */
		{ 3 * 4096 + 17, 2 * MiB + 17, 3 * MiB },	/* head, direct body, tail */
		{ 8192, 5 * 4096, 9 * 4096 },		/* aligned: direct */
		{ 4096, 6 * MiB - 4096, 8192 },		/* across two 2 MiB pages */
		{ 123, 7 * MiB, 0 },			/* zero length */
		{ file_size - 777, 9 * MiB, 777 },	/* the unaligned end */
	};
	struct pinfer_loader_info li;
	struct pinfer_region *r;
	struct pinfer_loader *l;
	struct pinfer_err err = { 0 };
	struct progress pr = { .monotonic = true };
	struct pinfer_range bad;
	int tickets[3], i, done, ret;
	uint8_t *mem;
	bool good;

	if (pinfer_region_create(&r, 48 * MiB, -1, pv, &err)) {
		tap_skip("%s: provider unavailable (%s)", name, err.msg);
		return;
	}
	mem = pinfer_region_ptr(r);
	if (!ok(!pinfer_loader_create(&l, r, path, &err), "%s: loader (%s)", name, err.msg))
		goto free_region;
	pinfer_loader_info(l, &li);
	ok(li.uring && !li.note[0], "%s: reads through io_uring (%s), %u in flight, %llu-byte requests, fixed buffers %d",
	   name, li.kmod ? "pinfer.ko prefetch" : li.direct ? "O_DIRECT" : "buffered",
	   li.depth, (unsigned long long)li.chunk, li.fixed_buffers);

	drop_cache(path);
	pinfer_loader_set_progress(l, on_progress, &pr);
	ret = pinfer_load(l, &whole, 1, &err);
	ok(ret == 0 && same(mem, &whole), "%s: the whole %zu-byte file, byte for byte (%s)",
	   name, file_size, ret ? err.msg : "ok");
	if (li.direct)	/* direct reads leave the page cache as it was */
		ok(cached_pages(path) <= 2, "%s: direct reads: %zu of the file's pages in the page cache after loading it",
		   name, cached_pages(path));
	else
		tap_skip("%s: this file system refuses O_DIRECT: reads are buffered", name);
	ok(pr.calls > 1 && pr.monotonic && pr.last_done == file_size &&
	   pr.total == file_size, "%s: progress reported %llu times, ending at the total",
	   name, (unsigned long long)pr.calls);
	pinfer_loader_set_progress(l, NULL, NULL);

	memset(mem, 0xee, 12 * MiB);
	ret = pinfer_load(l, odd, sizeof(odd) / sizeof(odd[0]), &err);
	good = ret == 0;
	for (i = 0; i < (int)(sizeof(odd) / sizeof(odd[0])); i++)
		good = good && same(mem, &odd[i]);
	ok(good && mem[2] == 0xee && mem[3 + 5000] == 0xee,
	   "%s: odd, aligned, straddling, zero-length and tail ranges, nothing else touched (%s)",
	   name, ret ? err.msg : "ok");

	bad = (struct pinfer_range){ file_size - 10, 0, 20 };
	ok(pinfer_load(l, &bad, 1, &err) == -EINVAL && strstr(err.msg, "past the end of the file"),
	   "%s: a range past the end of the file: %s", name, err.msg);
	bad = (struct pinfer_range){ 0, 48 * MiB - 10, 20 };
	ok(pinfer_load(l, &bad, 1, &err) == -EINVAL && strstr(err.msg, "outside the region"),
	   "%s: a range past the region: %s", name, err.msg);
	bad = (struct pinfer_range){ UINT64_MAX - 5, 0, 10 };
	ok(pinfer_load(l, &bad, 1, &err) == -EINVAL, "%s: an offset that wraps: %s",
	   name, err.msg);

	/* three tickets at once, polled and waited in another order */
	memset(mem, 0, 48 * MiB);
	for (i = 0; i < 3; i++) {
		struct pinfer_range rg = { i * 10 * MiB, i * 12 * MiB, 10 * MiB };

		tickets[i] = pinfer_load_submit(l, &rg, 1, &err);
	}
	ok(tickets[0] > 0 && tickets[1] > tickets[0] && tickets[2] > tickets[1],
	   "%s: three tickets", name);
	for (done = 0, i = 0; i < 100000 && !done; i++) {	/* 10 s at most */
		done = pinfer_load_poll(l, tickets[1], &err);
		if (!done)
			usleep(100);
	}
	ok(done == 1, "%s: poll reports the middle ticket done", name);
	ok(pinfer_load_wait(l, tickets[2], &err) == 0 &&
	   pinfer_load_wait(l, tickets[0], &err) == 0, "%s: wait for the others", name);
	good = true;
	for (i = 0; i < 3; i++) {
		struct pinfer_range rg = { i * 10 * MiB, i * 12 * MiB, 10 * MiB };

		good = good && same(mem, &rg);
	}
	ok(good, "%s: all three landed where they belong", name);
	ok(pinfer_load_wait(l, tickets[1], &err) == -EINVAL,
	   "%s: a ticket cannot be waited twice: %s", name, err.msg);

	/* free with reads in flight: the loader waits for them */
	ret = pinfer_load_submit(l, &whole, 1, &err);
	ok(ret > 0, "%s: submit, then free the loader at once", name);
	pinfer_loader_free(l);
free_region:
	pinfer_region_free(r);
}

static void test_short_read(void)
{
	const char *sys = "/sys/kernel/mm/transparent_hugepage/enabled";
	struct pinfer_range rg = { 0, 0, 4096 };	/* sysfs says 4096, has less */
	struct pinfer_region *r;
	struct pinfer_loader *l;
	struct pinfer_err err = { 0 };

	if (access(sys, R_OK) ||
	    pinfer_region_create(&r, 2 * MiB, -1, PINFER_PROVIDER_PLAIN, &err)) {
		tap_skip("no sysfs file to read short from");
		return;
	}
	if (!pinfer_loader_create(&l, r, sys, &err)) {
		ok(pinfer_load(l, &rg, 1, &err) == -EIO &&
		   strstr(err.msg, "short read at file offset 0"),
		   "a short read names its file offset: %s", err.msg);
		pinfer_loader_free(l);
	}
	pinfer_region_free(r);
}

static void test_tmpfs(void)
{
	struct pinfer_region *r;
	struct pinfer_loader *l;
	struct pinfer_err err = { 0 };
	struct pinfer_range rg;
	uint8_t *data;
	size_t size = 3 * MiB + 999;

	snprintf(shm_path, sizeof(shm_path), "/dev/shm/pinfer-test-%d", getpid());
	if (write_random(shm_path, size, &data)) {
		tap_skip("no /dev/shm");
		free(data);
		return;
	}
	rg = (struct pinfer_range){ 0, 0, size };
	if (!pinfer_region_create(&r, 4 * MiB, -1, PINFER_PROVIDER_AUTO, &err)) {
		ok(!pinfer_loader_create(&l, r, shm_path, &err) &&
		   !pinfer_load(l, &rg, 1, &err) &&
		   !memcmp(pinfer_region_ptr(r), data, size),
		   "a file on tmpfs loads byte for byte (%s)", err.msg);
		pinfer_loader_free(l);
		pinfer_region_free(r);
	}
	unlink(shm_path);
	free(data);
}

/*
 * Load the file without io_uring: the loader says why (@why), reads by
 * pread(), byte for byte, two ranges on one ticket, polled then done.
 * 0, or which check failed.
 */
static int load_without_uring(const char *why)
{
	struct pinfer_range rg[2] = { { 0, 0, 0 }, { 3 * 4096 + 17, 44 * MiB + 17, 3 * MiB } };
	struct pinfer_loader_info li;
	struct pinfer_region *r;
	struct pinfer_loader *l;
	struct pinfer_err err = { 0 };
	int ticket, ret = 0;

	rg[0].len = file_size;
	if (pinfer_region_create(&r, 48 * MiB, -1, PINFER_PROVIDER_PLAIN, &err))
		return 11;
	if (pinfer_loader_create(&l, r, path, &err)) {
		pinfer_region_free(r);
		return 12;
	}
	pinfer_loader_info(l, &li);
	ticket = pinfer_load_submit(l, rg, 2, &err);
	if (li.uring || !strstr(li.note, why))
		ret = 13;
	else if (ticket <= 0 || pinfer_load_poll(l, ticket, &err) != 1)
		ret = 14;
	else if (!same(pinfer_region_ptr(r), &rg[0]) || !same(pinfer_region_ptr(r), &rg[1]))
		ret = 15;
	else if (pinfer_load_wait(l, ticket, &err) != -EINVAL)	/* reaped by the poll */
		ret = 16;
	pinfer_loader_free(l);
	pinfer_region_free(r);
	return ret;
}

/*
 * Without io_uring: turned off by PINFER_URING=0; and where the kernel
 * charges the ring to RLIMIT_MEMLOCK (6.18 does, 6.1 does not), as an
 * unprivileged process with a limit of 0, in a child that drops root.
 */
static void test_no_uring(void)
{
	int status = -1, ret;
	pid_t pid;

	setenv("PINFER_URING", "0", 1);
	ret = load_without_uring("io_uring turned off (PINFER_URING=0)");
	unsetenv("PINFER_URING");
	ok(!ret, "PINFER_URING=0: the loader says so and reads by pread(), byte for byte (%d)", ret);
	if (geteuid()) {
		tap_skip("RLIMIT_MEMLOCK 0: needs root to become an unprivileged user");
		return;
	}
	chmod(path, 0644);
	pid = fork();
	if (!pid) {
		struct rlimit zero = { 0, 0 };
		struct io_uring ring;

		if (setrlimit(RLIMIT_MEMLOCK, &zero) || setgid(65534) || setuid(65534))
			_exit(10);
		if (!io_uring_queue_init(8, &ring, 0))
			_exit(77);	/* this kernel does not charge the ring to it */
		_exit(load_without_uring("RLIMIT_MEMLOCK is 0 KiB"));
	}
	if (pid > 0)
		waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		tap_skip("RLIMIT_MEMLOCK 0, unprivileged: io_uring starts all the same on this kernel");
	else
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "io_uring refused (unprivileged, RLIMIT_MEMLOCK 0): the loader names the limit and reads by pread(), byte for byte (child status %d)",
		   WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Every function that takes a struct pinfer_err takes NULL too. */
static void test_null_err(void)
{
	struct pinfer_range past = { file_size - 10, 0, 100 };
	struct pinfer_region *r;
	struct pinfer_loader *l;

	ok(pinfer_region_create(&r, 1ull << 60, -1, PINFER_PROVIDER_THP, NULL) < 0 &&
	   pinfer_region_create(&r, 1ull << 60, -1, PINFER_PROVIDER_AUTO, NULL) < 0,
	   "a region that cannot be had, with err NULL: an error code, no crash");
	if (pinfer_region_create(&r, 2 * MiB, -1, PINFER_PROVIDER_PLAIN, NULL))
		return;
	ok(pinfer_loader_create(&l, r, "/nonexistent/x", NULL) == -ENOENT,
	   "a loader of a missing file, with err NULL: -ENOENT");
	if (!pinfer_loader_create(&l, r, path, NULL)) {
		ok(pinfer_load_submit(l, &past, 1, NULL) == -EINVAL &&
		   pinfer_load_poll(l, 12345, NULL) == -EINVAL &&
		   pinfer_load_wait(l, 12345, NULL) == -EINVAL,
		   "a range past the file's end, a ticket that does not exist, with err NULL: -EINVAL");
		pinfer_loader_free(l);
	}
	pinfer_region_free(r);
}

int main(void)
{
	const char *dir = getenv("PINFER_TEST_DIR");
	struct pinfer_region *r;
	struct pinfer_loader *l;
	struct pinfer_err err;
	int p;

	snprintf(path, sizeof(path), "%s/pinfer-loader-%d.bin", dir ? dir : "/var/tmp",
		 getpid());
	file_size = 40 * MiB + 1234;	/* not a multiple of 4 KiB */
	if (write_random(path, file_size, &file_data)) {
		printf("1..0 # SKIP cannot write %s\n", path);
		return 77;
	}
	for (p = 0; p < PINFER_PROVIDER_COUNT; p++)
		test_provider(p);
	test_short_read();
	test_tmpfs();
	test_no_uring();
	test_null_err();
	if (!pinfer_region_create(&r, 2 * MiB, -1, PINFER_PROVIDER_PLAIN, &err)) {
		ok(pinfer_loader_create(&l, r, "/nonexistent/x", &err) == -ENOENT &&
		   strstr(err.msg, "/nonexistent/x"), "a missing file: %s", err.msg);
		pinfer_region_free(r);
	}
	unlink(path);
	free(file_data);
	return tap_end();
}
