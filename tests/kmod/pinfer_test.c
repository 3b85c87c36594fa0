// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of pinfer.ko through its uapi, run inside the VM (tests/vm) with the
 * module loaded and an ext4 file system on an emulated NVMe drive at
 * $PINFER_TEST_DIR holding rand64m.bin (64 MiB random) and odd.bin
 * (3 MiB + 1234 bytes). Written with the kernel's kselftest harness, taken
 * from Debian's linux-source at build time.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "pinfer.h"
#include "kselftest_harness.h"

#define MiB (1ULL << 20)
#define SYSFS "/sys/class/misc/pinfer/"

static const char *dir(void)
{
	const char *d = getenv("PINFER_TEST_DIR");

	return d ? d : "/mnt";
}

static int open_in_dir(const char *name, int flags)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir(), name);
	return open(path, flags | O_CLOEXEC);
}

static int dev_open(void)
{
	return open("/dev/pinfer", O_RDWR | O_CLOEXEC);
}

/* The region fd, or -errno. */
static int create(int dev, uint64_t size, int node)
{
	struct pinfer_region_create c = {
		.size = size, .numa_node = node, .page_size = PINFER_PAGE_2M,
	};
	int fd = ioctl(dev, PINFER_IOC_REGION_CREATE, &c);

	return fd < 0 ? -errno : fd;
}

static int create_with(int dev, struct pinfer_region_create *c)
{
	return ioctl(dev, PINFER_IOC_REGION_CREATE, c) < 0 ? -errno : 0;
}

static int bind_fd(int region, int fd)
{
	struct pinfer_bind_file b = { .fd = fd };

	return ioctl(region, PINFER_IOC_BIND_FILE, &b) < 0 ? -errno : 0;
}

/* A region of @size with the file @name of the test directory bound. */
static int create_bound(int dev, uint64_t size, const char *name)
{
	int r = create(dev, size, -1), fd, ret;

	if (r < 0)
		return r;
	fd = open_in_dir(name, O_RDONLY);
	ret = fd < 0 ? -errno : bind_fd(r, fd);
	if (fd >= 0)
		close(fd);
	if (ret) {
		close(r);
		return ret;
	}
	return r;
}

static long prefetch(int region, uint64_t roff, uint64_t foff, uint64_t len)
{
	struct pinfer_prefetch p = {
		.region_off = roff, .file_off = foff, .len = len,
	};
	long ret = ioctl(region, PINFER_IOC_PREFETCH, &p);

	return ret < 0 ? -errno : ret;
}

/* The number in the file at @path (a sysfs attribute), or -1. */
static unsigned long long read_ull(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = 0;
	close(fd);
	return strtoull(buf, NULL, 10);
}

static long sysfs_long(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), SYSFS "%s", name);
	return (long)read_ull(path);
}

static long meminfo_kb(const char *field)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)) && line[strlen(field)] == ':')
			v = atol(line + strlen(field) + 1);
	if (f)
		fclose(f);
	return v;
}

/*
 * Free memory in kB: MemFree plus the pages on the per-CPU free lists
 * (/proc/zoneinfo "count:"), where 6.12 keeps freed 2 MiB pages for a
 * while; MemFree alone does not count those.
 */
static long free_kb(void)
{
	char line[256];
	long pcp_pages = 0;
	FILE *f = fopen("/proc/zoneinfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		char *c = strstr(line, "count:");

		if (c && strspn(line, " ") == (size_t)(c - line))
			pcp_pages += atol(c + 6);
	}
	if (f)
		fclose(f);
	return meminfo_kb("MemFree") + pcp_pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A field of /proc/self/smaps for the mapping that starts at @addr, in kB. */
static long smaps_kb(void *addr, const char *field)
{
	char line[512], start[32];
	bool in = false;
	long v = -1;
	FILE *f = fopen("/proc/self/smaps", "r");

	snprintf(start, sizeof(start), "%lx-", (unsigned long)addr);
	while (f && fgets(line, sizeof(line), f)) {
		if (strchr(line, '-') && strchr(line, '-') < strchr(line, ' '))
			in = !strncmp(line, start, strlen(start));
		else if (in && !strncmp(line, field, strlen(field)))
			v = atol(line + strlen(field) + 1);
	}
	if (f)
		fclose(f);
	return v;
}

/* Poll until the module's pinned bytes are back to @want (or 20 s pass). */
static long wait_pinned(long want)
{
	long now = sysfs_long("pinned_bytes");
	int i;

	for (i = 0; i < 200 && now != want; i++) {
		usleep(100 * 1000);
		now = sysfs_long("pinned_bytes");
	}
	return now;
}

static void *read_file(const char *name, size_t *size)
{
	int fd = open_in_dir(name, O_RDONLY);
	struct stat st;
	void *buf;

	if (fd < 0 || fstat(fd, &st))
		return NULL;
	buf = malloc(st.st_size);
	if (buf && pread(fd, buf, st.st_size, 0) != st.st_size) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	*size = st.st_size;
	return buf;
}

static void *map(int region, size_t len, off_t off)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, region, off);
}

/* Queue one prefetch SQE on an SQE128 ring. */
static void queue_prefetch(struct io_uring *ring, int region, uint64_t roff,
			   uint64_t foff, uint64_t len, uint64_t data)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct pinfer_prefetch p = {
		.region_off = roff, .file_off = foff, .len = len,
	};

	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, region, NULL, 0, 0);
	sqe->cmd_op = PINFER_URING_CMD_PREFETCH;
	memcpy(sqe->cmd, &p, sizeof(p));
	sqe->user_data = data;
}

/* Reap @n CQEs into res[user_data]. Returns the number reaped. */
static int reap(struct io_uring *ring, int n, int *res)
{
	struct io_uring_cqe *cqe;
	int i;

	for (i = 0; i < n; i++) {
		if (io_uring_wait_cqe(ring, &cqe))
			break;
		res[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(ring, cqe);
	}
	return i;
}

/* ---- the device -------------------------------------------------------- */

TEST(version)
{
	struct pinfer_version v = { 0 };
	int dev = dev_open();

	ASSERT_LE(0, dev);
	ASSERT_EQ(0, ioctl(dev, PINFER_IOC_VERSION, &v));
	EXPECT_EQ(PINFER_ABI_VERSION, v.abi_version);
	EXPECT_EQ(PINFER_FEAT_REGION | PINFER_FEAT_PAGE_2M | PINFER_FEAT_PREFETCH |
		  PINFER_FEAT_URING_CMD, v.features);
	v.reserved = 1;
	EXPECT_EQ(-1, ioctl(dev, PINFER_IOC_VERSION, &v));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, ioctl(dev, PINFER_IOC_VERSION, (void *)16));
	EXPECT_EQ(EFAULT, errno);
	close(dev);
}

TEST(unknown_ioctls)
{
	struct pinfer_version v = { 0 };
	int dev = dev_open(), r;

	ASSERT_LE(0, dev);
	EXPECT_EQ(-1, ioctl(dev, _IO(PINFER_IOC_MAGIC, 0x77)));
	EXPECT_EQ(ENOTTY, errno);
	EXPECT_EQ(-1, ioctl(dev, PINFER_IOC_REGION_INFO, &v));
	EXPECT_EQ(ENOTTY, errno);
	r = create(dev, 2 * MiB, -1);
	ASSERT_LE(0, r);
	EXPECT_EQ(-1, ioctl(r, PINFER_IOC_VERSION, &v));
	EXPECT_EQ(ENOTTY, errno);
	EXPECT_EQ(-1, ioctl(r, PINFER_IOC_REGION_CREATE, &v));
	EXPECT_EQ(ENOTTY, errno);
	close(r);
	close(dev);
}

/* ---- creating regions ------------------------------------------------------ */

TEST(create_errors)
{
	struct pinfer_region_create c;
	long pinned = sysfs_long("pinned_bytes");
	long regions = sysfs_long("regions");
	int dev = dev_open();

	ASSERT_LE(0, dev);
	EXPECT_EQ(-EINVAL, create(dev, 0, -1));
	EXPECT_EQ(-EINVAL, create(dev, MiB, -1));
	EXPECT_EQ(-EINVAL, create(dev, 3 * MiB, -1));
	EXPECT_EQ(-EINVAL, create(dev, 2 * MiB, 64));
	EXPECT_EQ(-EINVAL, create(dev, 2 * MiB, -2));
	EXPECT_EQ(-ENOMEM, create(dev, 1ULL << 50, -1));
	memset(&c, 0, sizeof(c));
	c.size = 2 * MiB;
	c.numa_node = -1;
	c.page_size = 4096;
	EXPECT_EQ(-EINVAL, create_with(dev, &c));
	c.page_size = PINFER_PAGE_1G;
	c.size = 1ULL << 30;
	EXPECT_EQ(-EOPNOTSUPP, create_with(dev, &c));
	c.page_size = PINFER_PAGE_2M;
	c.size = 2 * MiB;
	c.flags = 1;
	EXPECT_EQ(-EINVAL, create_with(dev, &c));
	c.flags = 0;
	c.reserved[1] = 1;
	EXPECT_EQ(-EINVAL, create_with(dev, &c));
	EXPECT_EQ(-1, ioctl(dev, PINFER_IOC_REGION_CREATE, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	/* nothing allocated or charged by any of them */
	EXPECT_EQ(pinned, sysfs_long("pinned_bytes"));
	EXPECT_EQ(regions, sysfs_long("regions"));
	close(dev);
}

TEST(create_info_close)
{
	struct pinfer_region_create c = {
		.size = 8 * MiB, .numa_node = -1, .page_size = PINFER_PAGE_2M,
	};
	struct pinfer_region_info info;
	long pinned = sysfs_long("pinned_bytes");
	struct stat st;
	int dev = dev_open(), r;

	ASSERT_LE(0, dev);
	r = ioctl(dev, PINFER_IOC_REGION_CREATE, &c);
	ASSERT_LE(0, r);
	EXPECT_EQ(r, c.fd);
	EXPECT_EQ(FD_CLOEXEC, fcntl(r, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, ioctl(r, PINFER_IOC_REGION_INFO, &info));
	EXPECT_EQ(8 * MiB, info.size);
	EXPECT_EQ(PINFER_PAGE_2M, info.page_size);
	EXPECT_LE(0, info.numa_node);
	EXPECT_EQ(0, info.bytes_loaded);
	EXPECT_EQ(0, info.inflight);
	ASSERT_EQ(0, fstat(r, &st));
	EXPECT_EQ(8 * MiB, (uint64_t)st.st_size);	/* the inode's i_size */
	EXPECT_EQ(pinned + (long)(8 * MiB), sysfs_long("pinned_bytes"));
	close(r);
	EXPECT_EQ(pinned, wait_pinned(pinned));
	close(dev);
}

TEST(allocation_failing_midway_leaves_nothing)
{
	long pinned = sysfs_long("pinned_bytes");
	long regions = sysfs_long("regions");
	long free_before = free_kb();
	int dev = dev_open(), node = 1;

	ASSERT_LE(0, dev);
	if (access("/sys/devices/system/node/node1", F_OK))
		node = 0;
	/* more than the node has: the allocation fails part way through */
	EXPECT_EQ(-ENOMEM, create(dev, 1024 * MiB, node));
	EXPECT_EQ(pinned, sysfs_long("pinned_bytes"));
	EXPECT_EQ(regions, sysfs_long("regions"));
	EXPECT_GE(free_kb(), free_before - 16 * 1024);
	close(dev);
}

/* ---- mapping ------------------------------------------------------------ */

TEST(mmap_pmd_entries)
{
	const size_t len = 16 * MiB;
	int dev = dev_open(), r;
	uint64_t *p, i;

	ASSERT_LE(0, dev);
	r = create(dev, len, -1);
	ASSERT_LE(0, r);
	p = map(r, len, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, (uintptr_t)p % (2 * MiB));
	for (i = 0; i < len / 8; i++) {
		ASSERT_EQ(0, p[i]) TH_LOG("fresh memory must be zeroed");
	}
	for (i = 0; i < len / 8; i++)
		p[i] = i * 0x9e3779b97f4a7c15ull;
	for (i = 0; i < len / 8; i++) {
		ASSERT_EQ(i * 0x9e3779b97f4a7c15ull, p[i]);
	}
	EXPECT_EQ((long)(len >> 10), smaps_kb(p, "FilePmdMapped"));
	EXPECT_EQ(0, munmap(p, len));
	close(r);
	close(dev);
}

TEST(mmap_refusals_and_aliases)
{
	int dev = dev_open(), r;
	uint8_t *all, *part;

	ASSERT_LE(0, dev);
	r = create(dev, 8 * MiB, -1);
	ASSERT_LE(0, r);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 2 * MiB, PROT_READ, MAP_PRIVATE, r, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, map(r, 10 * MiB, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, map(r, 4 * MiB, 6 * MiB));
	EXPECT_EQ(EINVAL, errno);
	all = map(r, 8 * MiB, 0);
	part = map(r, 4 * MiB, 2 * MiB);
	ASSERT_NE(MAP_FAILED, all);
	ASSERT_NE(MAP_FAILED, part);
	part[5] = 0xab;
	EXPECT_EQ(0xab, all[2 * MiB + 5]);
	all[8 * MiB - 2 * MiB - 1] = 0xcd;
	EXPECT_EQ(0xcd, part[4 * MiB - 1]);
	EXPECT_EQ(4096, smaps_kb(part, "FilePmdMapped"));
	munmap(all, 8 * MiB);
	munmap(part, 4 * MiB);
	close(r);
	close(dev);
}

TEST(fork_shares_the_mapping)
{
	int dev = dev_open(), r, status;
	volatile uint32_t *p;
	pid_t pid;

	ASSERT_LE(0, dev);
	r = create(dev, 2 * MiB, -1);
	ASSERT_LE(0, r);
	p = map(r, 2 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	pid = fork();
	if (pid == 0) {
		p[1] = p[0] + 41;
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(42, p[1]);
	munmap((void *)p, 2 * MiB);
	close(r);
	close(dev);
}

TEST(mlocked_mapping_unmaps_cleanly)
{
	long pinned = sysfs_long("pinned_bytes");
	int dev = dev_open(), r;
	uint8_t *p;

	ASSERT_LE(0, dev);
	r = create(dev, 4 * MiB, -1);
	ASSERT_LE(0, r);
	p = map(r, 4 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 1;
	EXPECT_EQ(0, mlock(p, 4 * MiB));
	p[3 * MiB] = 2;
	EXPECT_EQ(0, munlock(p, 2 * MiB));
	EXPECT_EQ(0, munmap(p, 4 * MiB));	/* the rest is unmapped locked */
	close(r);
	EXPECT_EQ(pinned, wait_pinned(pinned));
	close(dev);
}

static long move_pages_query(void *addr, int *node)
{
	void *pages[1] = { addr };

	return syscall(SYS_move_pages, 0, 1, pages, NULL, node, 0);
}

TEST(pages_on_the_node_asked)
{
	struct pinfer_region_info info;
	int dev = dev_open(), r, node, want;
	uint8_t *p;
	size_t i;

	ASSERT_LE(0, dev);
	if (access("/sys/devices/system/node/node1", F_OK))
		SKIP(return, "one NUMA node only");
	for (want = 1; want >= 0; want--) {
		r = create(dev, 8 * MiB, want);
		ASSERT_LE(0, r);
		ASSERT_EQ(0, ioctl(r, PINFER_IOC_REGION_INFO, &info));
		EXPECT_EQ(want, info.numa_node);
		p = map(r, 8 * MiB, 0);
		ASSERT_NE(MAP_FAILED, p);
		for (i = 0; i < 8 * MiB; i += 2 * MiB) {
			p[i] = 1;
			node = -1;
			ASSERT_EQ(0, move_pages_query(p + i, &node));
			EXPECT_EQ(want, node);
		}
		munmap(p, 8 * MiB);
		close(r);
	}
	close(dev);
}

TEST(odirect_read_into_mapping)
{
	size_t size;
	uint8_t *want = read_file("rand64m.bin", &size), *p;
	int dev = dev_open(), r, fd;

	ASSERT_NE(NULL, want);
	ASSERT_LE(0, dev);
	r = create(dev, 8 * MiB, -1);
	ASSERT_LE(0, r);
	p = map(r, 8 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	fd = open_in_dir("rand64m.bin", O_RDONLY | O_DIRECT);
	ASSERT_LE(0, fd);
	EXPECT_EQ((ssize_t)(8 * MiB), pread(fd, p, 8 * MiB, 16 * MiB));
	EXPECT_EQ(0, memcmp(p, want + 16 * MiB, 8 * MiB));
	close(fd);
	munmap(p, 8 * MiB);
	close(r);
	close(dev);
	free(want);
}

/* ---- binding and prefetch -------------------------------------------------- */

TEST(bind_errors)
{
	struct pinfer_bind_file b = { 0 };
	int dev = dev_open(), r, fd;

	ASSERT_LE(0, dev);
	r = create(dev, 2 * MiB, -1);
	ASSERT_LE(0, r);
	EXPECT_EQ(-EBADF, prefetch(r, 0, 0, 4096));	/* nothing bound yet */
	EXPECT_EQ(-EBADF, bind_fd(r, -1));
	EXPECT_EQ(-EBADF, bind_fd(r, 1000));
	fd = open(dir(), O_RDONLY | O_DIRECTORY);
	EXPECT_EQ(-EINVAL, bind_fd(r, fd));
	close(fd);
	fd = open("/dev/null", O_RDONLY);
	EXPECT_EQ(-EINVAL, bind_fd(r, fd));
	close(fd);
	fd = open_in_dir("odd.bin", O_WRONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-EBADF, bind_fd(r, fd));
	close(fd);
	fd = open_in_dir("odd.bin", O_RDONLY);
	b.fd = fd;
	b.flags = 1;
	EXPECT_EQ(-1, ioctl(r, PINFER_IOC_BIND_FILE, &b));
	EXPECT_EQ(EINVAL, errno);
	b.flags = 0;
	b.reserved = 1;
	EXPECT_EQ(-1, ioctl(r, PINFER_IOC_BIND_FILE, &b));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, bind_fd(r, fd));
	EXPECT_EQ(0, bind_fd(r, fd));	/* binding again replaces */
	close(fd);			/* the region keeps its own reference */
	EXPECT_EQ(4096, prefetch(r, 0, 0, 4096));
	close(r);
	close(dev);
}

TEST(prefetch_ioctl_64m)
{
	struct pinfer_region_info info;
	size_t size, off;
	uint8_t *want = read_file("rand64m.bin", &size), *p;
	int dev = dev_open(), r;

	ASSERT_NE(NULL, want);
	ASSERT_EQ(64 * MiB, size);
	ASSERT_LE(0, dev);
	r = create_bound(dev, 64 * MiB, "rand64m.bin");
	ASSERT_LE(0, r);
	for (off = 0; off < size; off += 4 * MiB) {
		ASSERT_EQ((long)(4 * MiB), prefetch(r, off, off, 4 * MiB));
	}
	ASSERT_EQ(0, ioctl(r, PINFER_IOC_REGION_INFO, &info));
	EXPECT_EQ(64 * MiB, info.bytes_loaded);
	EXPECT_EQ(0, info.inflight);
	p = map(r, size, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, memcmp(p, want, size));
	munmap(p, size);
	close(r);
	close(dev);
	free(want);
}

TEST(prefetch_range_errors)
{
	struct pinfer_prefetch p = { .len = 4096 };
	int dev = dev_open(), r;

	ASSERT_LE(0, dev);
	r = create_bound(dev, 4 * MiB, "rand64m.bin");
	ASSERT_LE(0, r);
	EXPECT_EQ(-EINVAL, prefetch(r, 0, 0, 0));
	EXPECT_EQ(-EINVAL, prefetch(r, 0, 0, PINFER_PREFETCH_MAX + 4096));
	EXPECT_EQ(-EINVAL, prefetch(r, 4 * MiB - 4096, 0, 8192));
	EXPECT_EQ(-EINVAL, prefetch(r, 4 * MiB, 0, 4096));
	EXPECT_EQ(-EINVAL, prefetch(r, UINT64_MAX - 4095, 0, 8192));
	EXPECT_EQ(-EINVAL, prefetch(r, 0, UINT64_MAX - 4095, 8192));
	EXPECT_EQ(-EINVAL, prefetch(r, 0, (uint64_t)LLONG_MAX, 4096));
	p.flags = 1;
	EXPECT_EQ(-1, ioctl(r, PINFER_IOC_PREFETCH, &p));
	EXPECT_EQ(EINVAL, errno);
	p.flags = 0;
	p.reserved = 1;
	EXPECT_EQ(-1, ioctl(r, PINFER_IOC_PREFETCH, &p));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, ioctl(r, PINFER_IOC_PREFETCH, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	/* past the end of the file: a short read, then 0 */
	EXPECT_EQ((long)(2 * MiB), prefetch(r, 0, 62 * MiB, 4 * MiB));
	EXPECT_EQ(0, prefetch(r, 0, 64 * MiB, 4096));
	close(r);
	close(dev);
}

TEST(prefetch_unaligned_buffered)
{
	size_t size;
	uint8_t *want = read_file("odd.bin", &size), *p;
	int dev = dev_open(), r;

	ASSERT_NE(NULL, want);
	ASSERT_EQ(3 * MiB + 1234, size);
	ASSERT_LE(0, dev);
	r = create_bound(dev, 4 * MiB, "odd.bin");
	ASSERT_LE(0, r);
	p = map(r, 4 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* odd offsets everywhere: the page cache path */
	EXPECT_EQ(5000, prefetch(r, 3, 1001, 5000));
	EXPECT_EQ(0, memcmp(p + 3, want + 1001, 5000));
	/* the whole file, whose tail is not block aligned: short at EOF */
	EXPECT_EQ((long)size, prefetch(r, 0, 0, 4 * MiB));
	EXPECT_EQ(0, memcmp(p, want, size));
	/* across the boundary of two 2 MiB pages */
	memset(p, 0, 4 * MiB);
	EXPECT_EQ((long)MiB, prefetch(r, 2 * MiB - 4096, 0, MiB));
	EXPECT_EQ(0, memcmp(p + 2 * MiB - 4096, want, MiB));
	munmap(p, 4 * MiB);
	close(r);
	close(dev);
	free(want);
}

TEST(prefetch_from_tmpfs)
{
	static uint8_t buf[3 * 4096 + 100];
	const char *path = "/tmp/pinfer-tmpfs.bin";
	int dev = dev_open(), r, fd;
	uint8_t *p;
	size_t i;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)sizeof(buf), write(fd, buf, sizeof(buf)));
	ASSERT_LE(0, dev);
	r = create(dev, 2 * MiB, -1);
	ASSERT_LE(0, r);
	/* a file open for writing cannot be bound: its end could move */
	EXPECT_EQ(-ETXTBSY, bind_fd(r, fd));
	close(fd);
	fd = open(path, O_RDONLY);
	ASSERT_EQ(0, bind_fd(r, fd));
	EXPECT_EQ((long)sizeof(buf), prefetch(r, 0, 0, 4 * 4096));
	p = map(r, 2 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, memcmp(p, buf, sizeof(buf)));
	munmap(p, 2 * MiB);
	close(fd);
	close(r);
	unlink(path);
	close(dev);
}

/*
 * A prefetch writes the bytes it reports and no others: at the end of the
 * file, at a hole that runs to the end, through the ioctl and io_uring, on
 * the direct and the page cache path. The region is filled with 0xa5 first;
 * past the count, every byte must still be 0xa5.
 */
static int untouched_from(const uint8_t *p, size_t from, size_t to)
{
	size_t i;

	for (i = from; i < to; i++)
		if (p[i] != 0xa5)
			return (int)i;
	return -1;
}

static long uring_prefetch(int region, uint64_t roff, uint64_t foff, uint64_t len)
{
	struct io_uring ring;
	int res = -EIO;

	if (io_uring_queue_init(4, &ring, IORING_SETUP_SQE128))
		return -EIO;
	queue_prefetch(&ring, region, roff, foff, len, 0);
	if (io_uring_submit(&ring) != 1 || reap(&ring, 1, &res) != 1)
		res = -EIO;
	io_uring_queue_exit(&ring);
	return res;
}

TEST(prefetch_writes_only_what_it_reports)
{
	static const struct {
		uint64_t roff, foff, len;
	} cases[] = {
		{ 0, 3 * MiB, MiB },		/* direct, 1234 bytes left */
		{ 0, 2 * MiB, 2 * MiB },	/* direct, 1 MiB + 1234 left */
		{ 2 * MiB - 4096, 3 * MiB - 8192, MiB },	/* across two pages */
		{ 7, 3 * MiB + 1000, 4096 },	/* page cache, 234 left */
		{ 0, 3 * MiB + 1234, 4096 },	/* at the end: 0 */
	};
	size_t size, i;
	uint8_t *want = read_file("odd.bin", &size), *p;
	int dev = dev_open(), r, path;

	ASSERT_NE(NULL, want);
	ASSERT_LE(0, dev);
	r = create_bound(dev, 4 * MiB, "odd.bin");
	ASSERT_LE(0, r);
	p = map(r, 4 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (path = 0; path < 2; path++) {
		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			uint64_t roff = cases[i].roff, foff = cases[i].foff;
			long want_n = (long)(size - foff), n;

			memset(p, 0xa5, 4 * MiB);
			n = path ? uring_prefetch(r, roff, foff, cases[i].len) :
				   prefetch(r, roff, foff, cases[i].len);
			EXPECT_EQ(want_n, n) TH_LOG("%s case %zu", path ? "uring" : "ioctl", i);
			if (n != want_n)
				continue;
			EXPECT_EQ(0, memcmp(p + roff, want + foff, n));
			EXPECT_EQ(-1, untouched_from(p, roff + n, 4 * MiB))
				TH_LOG("%s case %zu: byte %d past the count changed",
				       path ? "uring" : "ioctl", i, untouched_from(p, roff + n, 4 * MiB));
			EXPECT_EQ(-1, untouched_from(p, 0, roff));
		}
	}
	munmap(p, 4 * MiB);
	close(r);
	close(dev);
	free(want);
}

TEST(prefetch_at_holes)
{
	char path[PATH_MAX];
	static uint8_t data[4096];
	const size_t size = MiB + 100;	/* a hole from 12 KiB to the end */
	int dev = dev_open(), r, fd, via;
	uint8_t *p;
	size_t i;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + 1);
	snprintf(path, sizeof(path), "%s/pinfer-holes.bin", dir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	ASSERT_EQ((ssize_t)sizeof(data), pwrite(fd, data, sizeof(data), 8192));
	ASSERT_EQ(0, fsync(fd));
	close(fd);
	ASSERT_LE(0, dev);
	r = create_bound(dev, 4 * MiB, "pinfer-holes.bin");
	ASSERT_LE(0, r);
	p = map(r, 4 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (via = 0; via < 2; via++) {
		memset(p, 0xa5, 4 * MiB);
		EXPECT_EQ((long)size, via ? uring_prefetch(r, 0, 0, 2 * MiB) :
					    prefetch(r, 0, 0, 2 * MiB));
		for (i = 0; i < 8192 && !p[i]; i++)
			;
		EXPECT_EQ(8192, i);		/* the hole before the data */
		EXPECT_EQ(0, memcmp(p + 8192, data, sizeof(data)));
		for (i = 12288; i < size && !p[i]; i++)
			;
		EXPECT_EQ(size, i);		/* the hole to the end */
		EXPECT_EQ(-1, untouched_from(p, size, 4 * MiB));
	}
	munmap(p, 4 * MiB);
	close(r);
	unlink(path);
	close(dev);
}

/*
 * The end of a bound file cannot move under a prefetch: while it is bound
 * (and while a command reads it), opening it for writing and truncating it
 * fail with ETXTBSY; once it is unbound they work again.
 */
TEST(bound_file_cannot_be_truncated_under_a_prefetch)
{
	char path[PATH_MAX];
	static uint8_t buf[MiB];
	struct io_uring ring;
	int dev = dev_open(), r, fd, res[32], i, refused = 0;
	uint8_t *p;

	for (i = 0; i < (int)sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	snprintf(path, sizeof(path), "%s/pinfer-trunc.bin", dir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ASSERT_LE(0, fd);
	for (i = 0; i < 8; i++)
		ASSERT_EQ((ssize_t)sizeof(buf), write(fd, buf, sizeof(buf)));
	ASSERT_EQ(0, fsync(fd));
	close(fd);
	ASSERT_LE(0, dev);
	r = create_bound(dev, 8 * MiB, "pinfer-trunc.bin");
	ASSERT_LE(0, r);
	p = map(r, 8 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	memset(p, 0xa5, 8 * MiB);
	ASSERT_EQ(0, io_uring_queue_init(32, &ring, IORING_SETUP_SQE128));
	for (i = 0; i < 32; i++)
		queue_prefetch(&ring, r, (uint64_t)i * 256 * 1024, (uint64_t)i * 256 * 1024,
			       256 * 1024, i);
	ASSERT_EQ(32, io_uring_submit(&ring));
	/* while they run */
	refused += truncate(path, 4096) == -1 && errno == ETXTBSY;
	refused += open(path, O_WRONLY) == -1 && errno == ETXTBSY;
	EXPECT_EQ(32, reap(&ring, 32, res));
	for (i = 0; i < 32; i++)
		EXPECT_EQ(256 * 1024, res[i]);
	EXPECT_EQ(2, refused);
	EXPECT_EQ(0, memcmp(p, buf, MiB));
	EXPECT_EQ(0, memcmp(p + 7 * MiB, buf, MiB));
	EXPECT_EQ(-1, truncate(path, 0));
	EXPECT_EQ(ETXTBSY, errno);
	io_uring_queue_exit(&ring);
	munmap(p, 8 * MiB);
	close(r);
	/* unbound: writable again */
	EXPECT_EQ(0, truncate(path, 4096));
	fd = open(path, O_WRONLY);
	EXPECT_LE(0, fd);
	close(fd);
	unlink(path);
	close(dev);
}

/* ---- io_uring ------------------------------------------------------------------- */

TEST(uring_64_commands_in_flight)
{
	struct pinfer_region_info info;
	struct io_uring ring;
	size_t size;
	uint8_t *want = read_file("rand64m.bin", &size), *p;
	int dev = dev_open(), r, i, res[64];

	ASSERT_NE(NULL, want);
	ASSERT_LE(0, dev);
	r = create_bound(dev, 64 * MiB, "rand64m.bin");
	ASSERT_LE(0, r);
	ASSERT_EQ(0, io_uring_queue_init(64, &ring, IORING_SETUP_SQE128));
	for (i = 0; i < 64; i++)
		queue_prefetch(&ring, r, i * MiB, i * MiB, MiB, i);
	ASSERT_EQ(64, io_uring_submit(&ring));
	ASSERT_EQ(64, reap(&ring, 64, res));
	for (i = 0; i < 64; i++) {
		EXPECT_EQ((int)MiB, res[i]) TH_LOG("command %d: %d", i, res[i]);
	}
	ASSERT_EQ(0, ioctl(r, PINFER_IOC_REGION_INFO, &info));
	EXPECT_EQ(64 * MiB, info.bytes_loaded);
	EXPECT_EQ(0, info.inflight);
	p = map(r, size, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, memcmp(p, want, size));
	munmap(p, size);
	io_uring_queue_exit(&ring);
	close(r);
	close(dev);
	free(want);
}

TEST(uring_errors)
{
	struct io_uring ring, small;
	struct io_uring_sqe *sqe;
	int dev = dev_open(), r, fd, res[4];

	ASSERT_LE(0, dev);
	r = create(dev, 2 * MiB, -1);
	ASSERT_LE(0, r);
	ASSERT_EQ(0, io_uring_queue_init(8, &ring, IORING_SETUP_SQE128));
	queue_prefetch(&ring, r, 0, 0, 4096, 0);	/* nothing bound */
	fd = open_in_dir("rand64m.bin", O_RDONLY);
	ASSERT_EQ(1, io_uring_submit(&ring));
	ASSERT_EQ(1, reap(&ring, 1, res));
	EXPECT_EQ(-EBADF, res[0]);
	ASSERT_EQ(0, bind_fd(r, fd));
	queue_prefetch(&ring, r, 2 * MiB, 0, 4096, 0);	/* past the region */
	queue_prefetch(&ring, r, 0, 0, 4096, 1);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, r, NULL, 0, 0);
	sqe->cmd_op = 0x1234;				/* unknown command */
	sqe->user_data = 2;
	queue_prefetch(&ring, r, 0, 0, 4096, 3);
	ASSERT_EQ(4, io_uring_submit(&ring));
	ASSERT_EQ(4, reap(&ring, 4, res));
	EXPECT_EQ(-EINVAL, res[0]);
	EXPECT_EQ(4096, res[1]);
	EXPECT_EQ(-ENOTTY, res[2]);
	EXPECT_EQ(4096, res[3]);
	/* a ring of 64-byte SQEs has no room for the command */
	ASSERT_EQ(0, io_uring_queue_init(8, &small, 0));
	sqe = io_uring_get_sqe(&small);
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, r, NULL, 0, 0);
	sqe->cmd_op = PINFER_URING_CMD_PREFETCH;
	sqe->user_data = 0;
	ASSERT_EQ(1, io_uring_submit(&small));
	ASSERT_EQ(1, reap(&small, 1, res));
	EXPECT_EQ(-EINVAL, res[0]);
	io_uring_queue_exit(&small);
	io_uring_queue_exit(&ring);
	close(fd);
	close(r);
	close(dev);
}

TEST(close_and_unmap_with_commands_in_flight)
{
	long pinned = sysfs_long("pinned_bytes");
	struct io_uring ring;
	int dev = dev_open(), r, i, res[64];
	void *p;

	ASSERT_LE(0, dev);
	r = create_bound(dev, 64 * MiB, "rand64m.bin");
	ASSERT_LE(0, r);
	p = map(r, 64 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, io_uring_queue_init(64, &ring, IORING_SETUP_SQE128));
	for (i = 0; i < 64; i++)
		queue_prefetch(&ring, r, i * MiB, i * MiB, MiB, i);
	ASSERT_EQ(64, io_uring_submit(&ring));
	/* let go of everything while the reads run: the commands keep it */
	munmap(p, 64 * MiB);
	close(r);
	ASSERT_EQ(64, reap(&ring, 64, res));
	for (i = 0; i < 64; i++) {
		EXPECT_EQ((int)MiB, res[i]);
	}
	io_uring_queue_exit(&ring);
	EXPECT_EQ(pinned, wait_pinned(pinned));
	close(dev);
}

TEST(sigkill_mid_prefetch)
{
	long pinned = sysfs_long("pinned_bytes");
	long regions = sysfs_long("regions");
	long free_before = free_kb();
	int pipefd[2], status, round;
	char c;
	pid_t pid;

	for (round = 0; round < 4; round++) {
		ASSERT_EQ(0, pipe(pipefd));
		pid = fork();
		if (pid == 0) {
			struct io_uring ring;
			int dev = dev_open(), r, fd, i;

			r = create(dev, 64 * MiB, -1);
			fd = open_in_dir("rand64m.bin", O_RDONLY);
			if (r < 0 || bind_fd(r, fd) ||
			    io_uring_queue_init(64, &ring, IORING_SETUP_SQE128))
				_exit(1);
			for (i = 0; i < 64; i++)
				queue_prefetch(&ring, r, i * MiB, i * MiB, MiB, i);
			if (io_uring_submit(&ring) != 64)
				_exit(1);
			if (write(pipefd[1], "x", 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		close(pipefd[1]);
		ASSERT_EQ(1, read(pipefd[0], &c, 1));
		close(pipefd[0]);
		if (round & 1)
			usleep(2000);
		kill(pid, SIGKILL);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		EXPECT_TRUE(WIFSIGNALED(status));
	}
	EXPECT_EQ(pinned, wait_pinned(pinned));
	EXPECT_EQ(regions, sysfs_long("regions"));
	/* the memory is back: within 16 MiB of where it was */
	EXPECT_GE(free_kb(), free_before - 16 * 1024);
}

/* ---- limits --------------------------------------------------------------- */

TEST(memlock_limit_unprivileged)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		struct rlimit rl = { 8 * MiB, 8 * MiB };
		int dev = dev_open(), a, b;

		/* the device is root's; an fd passed on keeps working */
		if (dev < 0 || setrlimit(RLIMIT_MEMLOCK, &rl) ||
		    setgid(65534) || setuid(65534))
			_exit(10);
		if (create(dev, 16 * MiB, -1) != -ENOMEM)
			_exit(11);
		a = create(dev, 4 * MiB, -1);
		b = create(dev, 4 * MiB, -1);
		if (a < 0 || b < 0)
			_exit(12);
		if (create(dev, 2 * MiB, -1) != -ENOMEM)
			_exit(13);
		close(a);
		if (create(dev, 2 * MiB, -1) < 0)	/* uncharged on close */
			_exit(14);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child step %d", WEXITSTATUS(status));
}

/* Become nobody with an RLIMIT_MEMLOCK of @bytes; false if that fails. */
static bool become_nobody(uint64_t bytes)
{
	struct rlimit rl = { bytes, bytes };

	return !setrlimit(RLIMIT_MEMLOCK, &rl) && !setgid(65534) && !setuid(65534);
}

/* The exit status of child @pid (its failing step), or 255 if it died. */
static int child_status(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return 255;
	return WEXITSTATUS(status);
}

/*
 * The exec'd half of memlock_charged_to_the_user_through_exec: this program
 * run again with PINFER_TEST_EXEC=DEV,REGION holding a region of 8 MiB (its
 * whole limit), checked before the harness starts.
 */
__attribute__((constructor)) static void exec_child(void)
{
	const char *arg = getenv("PINFER_TEST_EXEC");
	int dev, region;

	if (!arg || sscanf(arg, "%d,%d", &dev, &region) != 2)
		return;
	if (create(dev, 2 * MiB, -1) != -ENOMEM)
		_exit(21);	/* the inherited region no longer counted */
	close(region);
	region = create(dev, 8 * MiB, -1);
	_exit(region < 0 ? 22 : 0);
}

/*
 * RLIMIT_MEMLOCK holds for the user, whatever becomes of the process that
 * created a region: a region inherited by a child that outlives its
 * creator still counts, and closing it in the child uncharges it.
 */
TEST(memlock_charged_to_the_user_across_fork)
{
	int status, rc;
	pid_t pid;

	/* the grandchild, orphaned, becomes this process's to wait for */
	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
	pid = fork();
	if (pid == 0) {
		int dev = dev_open(), r, pipefd[2];
		char c;

		if (dev < 0 || pipe(pipefd) || !become_nobody(8 * MiB))
			_exit(10);
		r = create(dev, 8 * MiB, -1);
		if (r < 0)
			_exit(11);
		if (fork() == 0) {
			/* once the creator is gone (its end of the pipe closed) */
			close(pipefd[1]);
			if (read(pipefd[0], &c, 1) != 0)
				_exit(12);
			if (create(dev, 2 * MiB, -1) != -ENOMEM)
				_exit(13);	/* the inherited region not counted */
			close(r);
			r = create(dev, 8 * MiB, -1);
			_exit(r < 0 ? 14 : 0);	/* not uncharged on close */
		}
		_exit(0);
	}
	ASSERT_EQ(0, child_status(pid));
	ASSERT_LT(0, waitpid(-1, &status, 0));
	rc = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
	EXPECT_EQ(0, rc) TH_LOG("grandchild's failing step %d", rc);
}

TEST(memlock_charged_to_the_user_through_exec)
{
	pid_t pid = fork();
	int rc;

	if (pid == 0) {
		int dev = dev_open(), r;
		char arg[32];

		if (dev < 0 || !become_nobody(8 * MiB))
			_exit(10);
		r = create(dev, 8 * MiB, -1);
		if (r < 0 || fcntl(r, F_SETFD, 0) || fcntl(dev, F_SETFD, 0))
			_exit(11);
		snprintf(arg, sizeof(arg), "%d,%d", dev, r);
		setenv("PINFER_TEST_EXEC", arg, 1);
		execl("/proc/self/exe", "pinfer_test", (char *)NULL);
		_exit(12);
	}
	rc = child_status(pid);
	EXPECT_EQ(0, rc) TH_LOG("failing step %d", rc);
}

TEST(memlock_limit_waived_for_cap_ipc_lock)
{
	struct rlimit rl = { 0, 0 };
	int dev = dev_open(), r;

	ASSERT_LE(0, dev);
	ASSERT_EQ(0, setrlimit(RLIMIT_MEMLOCK, &rl));	/* this test's child only */
	r = create(dev, 4 * MiB, -1);
	EXPECT_LE(0, r);
	close(r);
	close(dev);
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), ret;

	if (fd < 0)
		return -1;
	ret = write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1;
	close(fd);
	return ret;
}

TEST(global_cap)
{
	const char *param = "/sys/module/pinfer/parameters/max_pinned_mb";
	long pinned = sysfs_long("pinned_bytes");
	char v[32];
	int dev = dev_open(), a, b;

	ASSERT_LE(0, dev);
	snprintf(v, sizeof(v), "%ld", pinned / (long)MiB + 8);
	ASSERT_EQ(0, write_str(param, v));
	EXPECT_EQ(pinned + (long)(8 * MiB), sysfs_long("max_pinned_bytes"));
	EXPECT_EQ(-ENOMEM, create(dev, 16 * MiB, -1));
	a = create(dev, 8 * MiB, -1);
	EXPECT_LE(0, a);
	b = create(dev, 2 * MiB, -1);
	EXPECT_EQ(-ENOMEM, b);
	EXPECT_EQ(0, write_str(param, "0"));
	close(a);
	EXPECT_EQ(pinned, wait_pinned(pinned));
	close(dev);
}

/* The cap in MiB: a value whose bytes do not fit in 64 bits is refused. */
TEST(max_pinned_mb_that_overflows_is_refused)
{
	const char *param = "/sys/module/pinfer/parameters/max_pinned_mb";
	int dev = dev_open(), r;

	ASSERT_LE(0, dev);
	EXPECT_EQ(-1, write_str(param, "17592186044416"));	/* 2^44 */
	EXPECT_EQ(-1, write_str(param, "18446744073709551615"));
	EXPECT_EQ(-1, write_str(param, "-1"));
	EXPECT_EQ(0, read_ull(param));
	r = create(dev, 2 * MiB, -1);
	EXPECT_LE(0, r);	/* the cap in force is still the default */
	close(r);
	EXPECT_EQ(0, write_str(param, "17592186044415"));	/* 2^44 - 1 fits */
	EXPECT_EQ(17592186044415ULL << 20, read_ull(SYSFS "max_pinned_bytes"));
	r = create(dev, 2 * MiB, -1);
	EXPECT_LE(0, r);
	close(r);
	EXPECT_EQ(0, write_str(param, "0"));
	close(dev);
}

/*
 * Pages that outlive their region (a pipe holds 4 KiB of one, through
 * vmsplice) stay counted in pinned_bytes and held_bytes and stay charged to
 * the user, and the limits hold against them, until the pipe lets go.
 * @unprivileged: as nobody, against a 2 MiB RLIMIT_MEMLOCK; else as root,
 * against the module's cap.
 */
static int held_pages(bool unprivileged)
{
	const char *param = "/sys/module/pinfer/parameters/max_pinned_mb";
	long pinned = sysfs_long("pinned_bytes");
	int dev = dev_open(), r, pipes[4][2], i, n;
	struct iovec iov = { .iov_len = 4096 };
	char cap[32], got[4096];
	uint8_t *p;

	if (dev < 0)
		return 1;
	snprintf(cap, sizeof(cap), "%ld", pinned / (long)MiB + 4);
	if (!unprivileged && write_str(param, cap))
		return 2;
	if (unprivileged && !become_nobody(2 * MiB))
		return 3;
	for (n = 0; n < 4; n++) {
		r = create(dev, 2 * MiB, -1);
		if (r < 0)
			break;
		p = map(r, 2 * MiB, 0);
		if (p == MAP_FAILED || pipe(pipes[n]))
			return 4;
		memset(p + 4096, 'a' + n, 4096);
		iov.iov_base = p + 4096;
		if (vmsplice(pipes[n][1], &iov, 1, 0) != 4096)
			return 5;
		munmap(p, 2 * MiB);
		close(r);
		/* gone as a region, still pinned */
		if (sysfs_long("pinned_bytes") != pinned + (n + 1) * (long)(2 * MiB))
			return 6;
		if (sysfs_long("held_bytes") < (n + 1) * (long)(2 * MiB))
			return 7;
	}
	if (n != (unprivileged ? 1 : 2) || r != -ENOMEM)
		return 8;		/* the limit counted the held pages */
	for (i = 0; i < n; i++) {
		/* the pipe still reads what was written */
		if (read(pipes[i][0], got, sizeof(got)) != 4096 || got[0] != 'a' + i ||
		    got[4095] != 'a' + i)
			return 9;
		close(pipes[i][0]);
		close(pipes[i][1]);
	}
	if (wait_pinned(pinned) != pinned || sysfs_long("held_bytes") != 0)
		return 10;
	r = create(dev, 2 * MiB, -1);	/* and charged no more */
	if (r < 0)
		return 11;
	close(r);
	if (!unprivileged && write_str(param, "0"))
		return 12;
	return 0;
}

TEST(pages_held_by_a_pipe_stay_charged_root)
{
	int rc = held_pages(false);

	write_str("/sys/module/pinfer/parameters/max_pinned_mb", "0");
	EXPECT_EQ(0, rc) TH_LOG("failing step %d", rc);
}

TEST(pages_held_by_a_pipe_stay_charged_unprivileged)
{
	pid_t pid = fork();
	int rc;

	if (pid == 0)
		_exit(held_pages(true));
	rc = child_status(pid);
	EXPECT_EQ(0, rc) TH_LOG("failing step %d", rc);
}

/* Pinning memory takes /dev/pinfer open for writing. */
TEST(create_needs_the_device_open_for_writing)
{
	struct pinfer_version v = { 0 };
	int dev = open("/dev/pinfer", O_RDONLY | O_CLOEXEC);

	ASSERT_LE(0, dev);
	EXPECT_EQ(0, ioctl(dev, PINFER_IOC_VERSION, &v));
	EXPECT_EQ(-EBADF, create(dev, 2 * MiB, -1));
	EXPECT_EQ(0, sysfs_long("held_bytes"));
	close(dev);
}

/* Model memory is never code: no PROT_EXEC, now or by mprotect. */
TEST(no_executable_mappings)
{
	int dev = dev_open(), r, status;
	void *p;
	pid_t pid;

	ASSERT_LE(0, dev);
	r = create(dev, 4 * MiB, -1);
	ASSERT_LE(0, r);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 2 * MiB, PROT_READ | PROT_EXEC, MAP_SHARED, r, 0));
	EXPECT_EQ(EPERM, errno);
	p = map(r, 2 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, mprotect(p, 2 * MiB, PROT_READ | PROT_EXEC));
	EXPECT_EQ(EACCES, errno);
	munmap(p, 2 * MiB);
	/* READ_IMPLIES_EXEC processes still map it, without exec */
	pid = fork();
	if (pid == 0) {
		char *q;

		if (personality(READ_IMPLIES_EXEC) == -1)
			_exit(1);
		q = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, r, 0);
		if (q == MAP_FAILED)
			_exit(2);
		q[0] = 1;
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
	close(r);
	close(dev);
}

TEST(memory_cgroup_charged)
{
	const char *cg = "/sys/fs/cgroup/pinfer-test";
	int status;
	pid_t pid;

	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK))
		SKIP(return, "no cgroup2 mounted");
	write_str("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
	mkdir(cg, 0755);
	ASSERT_EQ(0, write_str("/sys/fs/cgroup/pinfer-test/memory.max", "48M"));
	pid = fork();
	if (pid == 0) {
		char me[32], buf[32] = "";
		long before, after;
		int dev = dev_open(), r, fd;

		snprintf(me, sizeof(me), "%d", getpid());
		if (write_str("/sys/fs/cgroup/pinfer-test/cgroup.procs", me))
			_exit(10);
		fd = open("/sys/fs/cgroup/pinfer-test/memory.current", O_RDONLY);
		if (pread(fd, buf, sizeof(buf) - 1, 0) < 0)
			_exit(11);
		before = atol(buf);
		if (create(dev, 64 * MiB, -1) != -ENOMEM)
			_exit(12);		/* over memory.max */
		r = create(dev, 16 * MiB, -1);
		if (r < 0)
			_exit(13);
		memset(buf, 0, sizeof(buf));
		if (pread(fd, buf, sizeof(buf) - 1, 0) < 0)
			_exit(14);
		after = atol(buf);
		if (after - before < (long)(16 * MiB))
			_exit(15);		/* not charged to the cgroup */
		close(r);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child step %d", WEXITSTATUS(status));
	rmdir(cg);
}

TEST(rmmod_refused_while_mapped)
{
	int dev = dev_open(), r;
	void *p;

	ASSERT_LE(0, dev);
	r = create(dev, 2 * MiB, -1);
	ASSERT_LE(0, r);
	p = map(r, 2 * MiB, 0);
	ASSERT_NE(MAP_FAILED, p);
	close(r);
	close(dev);
	/* only the mapping is left, and it holds the module */
	EXPECT_EQ(-1, syscall(SYS_delete_module, "pinfer", O_NONBLOCK));
	EXPECT_EQ(EWOULDBLOCK, errno);
	EXPECT_EQ(0, access("/sys/module/pinfer", F_OK));
	((volatile char *)p)[0] = 1;	/* and the memory is still there */
	munmap(p, 2 * MiB);
}

/* ---- many cycles ------------------------------------------------------------- */

FIXTURE(slow) {
	int dev;
};

FIXTURE_SETUP(slow)
{
	self->dev = dev_open();
	ASSERT_LE(0, self->dev);
}

FIXTURE_TEARDOWN(slow)
{
	close(self->dev);
}

TEST_F_TIMEOUT(slow, cycles_1000, 900)
{
	long pinned = sysfs_long("pinned_bytes");
	long free_before = free_kb();
	int i, fd = open_in_dir("rand64m.bin", O_RDONLY);
	uint8_t first;

	ASSERT_LE(0, fd);
	ASSERT_EQ(1, pread(fd, &first, 1, 0));
	for (i = 0; i < 1000; i++) {
		int r = create(self->dev, 4 * MiB, i & 1);
		uint8_t *p;

		if (r == -EINVAL)	/* one node only */
			r = create(self->dev, 4 * MiB, 0);
		ASSERT_LE(0, r) TH_LOG("cycle %d: create %d", i, r);
		p = map(r, 4 * MiB, 0);
		ASSERT_NE(MAP_FAILED, p);
		ASSERT_EQ(0, bind_fd(r, fd));
		ASSERT_EQ((long)(4 * MiB), prefetch(r, 0, 0, 4 * MiB));
		ASSERT_EQ(first, p[0]);
		ASSERT_EQ(0, munmap(p, 4 * MiB));
		close(r);
	}
	close(fd);
	EXPECT_EQ(pinned, wait_pinned(pinned));
	EXPECT_GE(free_kb(), free_before - 16 * 1024);
}

/*
 * Random operations from four processes at once, valid and not: create,
 * map, unmap, mlock, bind, prefetch by ioctl and io_uring with random
 * ranges, close with commands in flight, fork, SIGKILL of a sibling, and
 * pages handed to pipes (vmsplice) that outlive their regions. The kernel
 * must neither crash nor warn (the VM checks its log), and all memory must
 * come back. @memlock: run as nobody with this RLIMIT_MEMLOCK (0: as root).
 */
static void random_ops(unsigned int seed, int n, uint64_t memlock)
{
	struct { int fd; uint8_t *map; uint64_t size, map_size; } reg[4] = { 0 };
	int dev = dev_open(), file = open_in_dir("rand64m.bin", O_RDONLY);
	int pipes[4][2];
	struct io_uring ring;
	int i, k;

	srandom(seed);
	if (dev < 0 || file < 0 || io_uring_queue_init(64, &ring, IORING_SETUP_SQE128))
		_exit(1);
	if (memlock && !become_nobody(memlock))
		_exit(2);
	for (i = 0; i < 4; i++)
		reg[i].fd = pipes[i][0] = pipes[i][1] = -1;
	for (i = 0; i < n; i++) {
		int op = random() % 10;
		uint64_t a = (uint64_t)random() << 12 & (16 * MiB - 1);
		uint64_t len = random() % 3 ? (random() % 8 + 1) * 4096 :
			       (uint64_t)random() << 20 >> (random() % 40);

		k = random() % 4;
		switch (op) {
		case 0:
			if (reg[k].fd < 0) {
				reg[k].size = (random() % 8 + 1) * 2 * MiB;
				reg[k].fd = create(dev, reg[k].size, random() % 3 - 1);
			}
			break;
		case 1:
			if (reg[k].fd >= 0 && !reg[k].map) {
				reg[k].map = map(reg[k].fd, reg[k].size, 0);
				reg[k].map_size = reg[k].size;
				if (reg[k].map == MAP_FAILED)
					reg[k].map = NULL;
				else if (random() % 4 == 0)
					mlock(reg[k].map, reg[k].map_size);
			}
			break;
		case 2:
			if (reg[k].map) {
				reg[k].map[a % reg[k].map_size] = (uint8_t)i;
				munmap(reg[k].map, reg[k].map_size);
				reg[k].map = NULL;
			}
			break;
		case 3:
			if (reg[k].fd >= 0)
				bind_fd(reg[k].fd, random() % 5 ? file : dev);
			break;
		case 4:
			if (reg[k].fd >= 0)
				prefetch(reg[k].fd, a, (uint64_t)random() << 9, len);
			break;
		case 5:
			if (reg[k].fd >= 0 && io_uring_sq_space_left(&ring)) {
				queue_prefetch(&ring, reg[k].fd, a, a, len, 0);
				io_uring_submit(&ring);
			}
			break;
		case 6: {
			struct io_uring_cqe *cqe;

			while (!io_uring_peek_cqe(&ring, &cqe))
				io_uring_cqe_seen(&ring, cqe);
			break;
		}
		case 7:
			if (reg[k].fd >= 0) {	/* possibly with commands in flight */
				close(reg[k].fd);
				reg[k].fd = -1;
			}
			break;
		case 8:
			if (random() % 16 == 0) {
				pid_t pid = fork();

				if (pid == 0) {
					if (reg[k].map)
						reg[k].map[0]++;
					_exit(0);
				}
				if (pid > 0 && random() % 2)
					kill(pid, SIGKILL);
				if (pid > 0)
					waitpid(pid, NULL, 0);
			}
			break;
		case 9:		/* a page into a pipe, or the pipe closed */
			if (pipes[k][0] >= 0 && random() % 2) {
				close(pipes[k][0]);
				close(pipes[k][1]);
				pipes[k][0] = pipes[k][1] = -1;
			} else if (reg[k].map && (pipes[k][0] >= 0 ||
						  !pipe2(pipes[k], O_NONBLOCK))) {
				struct iovec iov = {
					reg[k].map + (a % reg[k].map_size & ~4095ULL), 4096,
				};

				vmsplice(pipes[k][1], &iov, 1, SPLICE_F_NONBLOCK);
			}
			break;
		}
	}
	_exit(0);	/* everything left open goes with the process */
}

/* Four random_ops() processes, one of them killed midway. */
static int random_stress(uint64_t memlock, const char *cgroup)
{
	pid_t pids[4];
	int i, status, bad = 0;

	for (i = 0; i < 4; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			char me[32];

			snprintf(me, sizeof(me), "%d", getpid());
			if (cgroup && write_str(cgroup, me))
				_exit(3);
			random_ops(1234 + i, 3000, memlock);
		}
	}
	usleep(500 * 1000);
	kill(pids[3], SIGKILL);		/* one dies in the middle of it all */
	for (i = 0; i < 4; i++) {
		if (waitpid(pids[i], &status, 0) != pids[i])
			bad++;
		else if (i < 3 && !(WIFEXITED(status) && !WEXITSTATUS(status)))
			bad++;
	}
	return bad;
}

TEST_F_TIMEOUT(slow, random_operations_from_four_processes, 900)
{
	long pinned = sysfs_long("pinned_bytes");
	long regions = sysfs_long("regions");

	EXPECT_EQ(0, random_stress(0, NULL));
	EXPECT_EQ(pinned, wait_pinned(pinned));
	EXPECT_EQ(regions, sysfs_long("regions"));
	EXPECT_EQ(0, sysfs_long("held_bytes"));
}

/* memory.current of the cgroup at @dir, in bytes. */
static long cgroup_current(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/memory.current", dir);
	return (long)read_ull(path);
}

/*
 * The same as nobody, with a 32 MiB RLIMIT_MEMLOCK shared by the four (so
 * that many creates fail on the limit), in a memory cgroup of its own. At
 * the end the module's counters, the user's locked_vm (nobody can again
 * create a region of its whole limit) and the cgroup are back where they
 * started.
 */
TEST_F_TIMEOUT(slow, random_operations_unprivileged, 900)
{
	const char *cg = "/sys/fs/cgroup/pinfer-stress";
	long pinned = sysfs_long("pinned_bytes");
	long regions = sysfs_long("regions");
	long before;
	pid_t pid;

	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK))
		SKIP(return, "no cgroup2 mounted");
	write_str("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
	mkdir(cg, 0755);
	before = cgroup_current(cg);
	EXPECT_EQ(0, random_stress(32 * MiB, "/sys/fs/cgroup/pinfer-stress/cgroup.procs"));
	EXPECT_EQ(pinned, wait_pinned(pinned));
	EXPECT_EQ(regions, sysfs_long("regions"));
	EXPECT_EQ(0, sysfs_long("held_bytes"));
	/* the page cache the buffered prefetches filled is charged there too */
	write_str("/proc/sys/vm/drop_caches", "3");
	EXPECT_GT(before + (long)(2 * MiB), cgroup_current(cg))
		TH_LOG("memory.current %ld, %ld before", cgroup_current(cg), before);
	pid = fork();
	if (pid == 0) {
		int dev = dev_open(), r;

		if (dev < 0 || !become_nobody(32 * MiB))
			_exit(1);
		r = create(dev, 32 * MiB, -1);
		_exit(r < 0 ? 2 : 0);
	}
	EXPECT_EQ(0, child_status(pid));
	rmdir(cg);
}

TEST_HARNESS_MAIN
