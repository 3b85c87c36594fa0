// SPDX-License-Identifier: MIT
/*
 * Regions: mapped memory from one of four providers, best first.
 *
 *   kmod     pinfer.ko: pinned 2 MiB pages on the node, PMD-mapped
 *   hugetlb  memfd(MFD_HUGETLB) from the 2 MiB pool, bound to the node
 *            (hugetlb pages are never swapped)
 *   thp      anonymous memory, MADV_HUGEPAGE, bound to the node, mlock'd
 *   plain    anonymous memory, mlock'd when RLIMIT_MEMLOCK allows
 *
 * Each try_*() either maps the region or says why not and how to fix it.
 */
#include <errno.h>
#include <fcntl.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <pinfer.h>

#include "internal.h"

#define MFD_HUGE_2MB_FLAG (21u << 26)	/* MFD_HUGE_2MB: log2(2 MiB) << MFD_HUGE_SHIFT */

struct pinfer_region {
	enum pinfer_provider provider;
	void *ptr;
	size_t size;
	size_t page_size;
	int node;
	bool locked;
	int fd;			/* kmod region fd, or hugetlb memfd; else -1 */
	char note[400];
};

static const char *const provider_names[PINFER_PROVIDER_COUNT] = {
	"kmod", "hugetlb", "thp", "plain",
};

const char *pinfer_provider_name(enum pinfer_provider p)
{
	if (p < 0 || p >= PINFER_PROVIDER_COUNT)
		return "auto";
	return provider_names[p];
}

enum pinfer_provider pinfer_provider_parse(const char *name)
{
	int p;

	for (p = 0; p < PINFER_PROVIDER_COUNT; p++)
		if (!strcmp(name, provider_names[p]))
			return p;
	return PINFER_PROVIDER_COUNT;
}

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

static long read_long(const char *path)
{
	char buf[64] = "";
	long v = -1;
	FILE *f = fopen(path, "re");

	if (f && fgets(buf, sizeof(buf), f))
		v = atol(buf);
	if (f)
		fclose(f);
	return v;
}

/* A sysfs file's unsigned number, or 0. */
static uint64_t read_u64(const char *path)
{
	char buf[64] = "";
	FILE *f = fopen(path, "re");
	uint64_t v = 0;

	if (f && fgets(buf, sizeof(buf), f) && buf[0] >= '0' && buf[0] <= '9')
		v = strtoull(buf, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

int pinfer_kmod_limits(uint64_t *max, uint64_t *pinned)
{
	*max = *pinned = 0;
	if (access("/dev/pinfer", F_OK))
		return -ENODEV;
	*max = read_u64("/sys/class/misc/pinfer/max_pinned_bytes");
	*pinned = read_u64("/sys/class/misc/pinfer/pinned_bytes");
	return 0;
}

/* Bind [p, p + size) to @node (no-op for -1). */
static int bind_node(void *p, size_t size, int node, const char *who,
		     struct pinfer_err *err)
{
	unsigned long mask[16] = { 0 };

	if (node < 0)
		return 0;
	if (node >= (int)(sizeof(mask) * 8))
		return pinfer_fail(err, EINVAL, "%s: NUMA node %d is out of range", who, node);
	mask[node / 64] |= 1ul << (node % 64);
	if (mbind(p, size, MPOL_BIND, mask, sizeof(mask) * 8, 0))
		return pinfer_fail(err, errno, "%s: cannot bind memory to NUMA node %d: %s",
				   who, node, strerror(errno));
	return 0;
}

/* A field of /proc/self/smaps for the mapping that starts at @p, in kB. */
static long smaps_kb(const void *p, const char *field)
{
	char line[256], start[32];
	size_t n = strlen(field);
	bool in = false;
	long v = -1;
	FILE *f = fopen("/proc/self/smaps", "re");

	snprintf(start, sizeof(start), "%lx-", (unsigned long)p);
	while (f && fgets(line, sizeof(line), f)) {
		char *dash = strchr(line, '-'), *space = strchr(line, ' ');

		if (dash && space && dash < space)
			in = !strncmp(line, start, strlen(start));
		else if (in && !strncmp(line, field, n) && line[n] == ':')
			v = atol(line + n + 1);
	}
	if (f)
		fclose(f);
	return v;
}

/*
 * Newer kernels (Debian 12's 6.12, not its 6.1) map nothing with 2 MiB entries for a process whose
 * THP is disabled (PR_SET_THP_DISABLE, inherited from a parent) or a range
 * with MADV_NOHUGEPAGE, pinfer.ko's regions included: the memory is still
 * pinned, but each 2 MiB page takes 512 TLB entries. Fault the first page
 * in and say so if that happened.
 */
static void kmod_check_entries(struct pinfer_region *r)
{
	long pmd;

	((volatile char *)r->ptr)[0] = 0;	/* zeroed memory stays zero */
	pmd = smaps_kb(r->ptr, "FilePmdMapped");
	if (pmd != 0)
		return;
	snprintf(r->note, sizeof(r->note),
		 "kmod: mapped with 4 KiB page-table entries, not 2 MiB: this kernel refuses huge entries where THP is disabled (%s); the memory is pinned all the same",
		 prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 ?
		 "this process has PR_SET_THP_DISABLE, perhaps from its parent" :
		 "MADV_NOHUGEPAGE");
}

static int try_kmod(struct pinfer_region *r, size_t size, int node,
		    struct pinfer_err *err)
{
	struct pinfer_region_create c = {
		.size = size, .numa_node = node, .page_size = PINFER_PAGE_2M,
	};
	int dev, fd, e;

	dev = open("/dev/pinfer", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		e = errno;
		if (e == ENOENT)
			return pinfer_fail(err, ENODEV, "kmod: /dev/pinfer does not exist: load the module (modprobe pinfer)");
		if (e == EACCES)
			return pinfer_fail(err, EACCES, "kmod: no permission to open /dev/pinfer: add the user to the group pinfer");
		return pinfer_fail(err, e, "kmod: /dev/pinfer: %s", strerror(e));
	}
	fd = ioctl(dev, PINFER_IOC_REGION_CREATE, &c);
	e = errno;
	close(dev);
	if (fd < 0 && e == ENOMEM)
		return pinfer_fail(err, ENOMEM, "kmod: cannot pin %zu MiB on node %d: over RLIMIT_MEMLOCK (ulimit -l), the memory cgroup or pinfer.ko's max_pinned_mb, or too few free 2 MiB pages on the node",
				   size >> 20, node);
	if (fd < 0)
		return pinfer_fail(err, e, "kmod: cannot create a region of %zu MiB on node %d: %s",
				   size >> 20, node, strerror(e));
	r->ptr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r->ptr == MAP_FAILED) {
		e = errno;
		close(fd);
		return pinfer_fail(err, e, "kmod: mmap of the region: %s", strerror(e));
	}
	r->fd = fd;
	r->page_size = PINFER_HUGE;
	r->locked = true;
	kmod_check_entries(r);
	return 0;
}

static long hugetlb_free_pages(int node)
{
	char path[128];

	if (node < 0)
		return read_long("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
	snprintf(path, sizeof(path),
		 "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/free_hugepages",
		 node);
	return read_long(path);
}

/* Fault every page in now, so a short pool shows here and not as SIGBUS. */
static int populate(void *p, size_t size, size_t page)
{
	size_t off;

	if (!madvise(p, size, MADV_POPULATE_WRITE))
		return 0;
	if (errno != EINVAL)
		return -errno;
	for (off = 0; off < size; off += page)	/* kernels before 5.14 */
		((volatile char *)p)[off] = 0;
	return 0;
}

static int try_hugetlb(struct pinfer_region *r, size_t size, int node,
		       struct pinfer_err *err)
{
	long free_pages = hugetlb_free_pages(node);
	size_t need = size / PINFER_HUGE;
	char where[32] = "";
	int fd, e;

	if (node >= 0)
		snprintf(where, sizeof(where), " on node %d", node);
	if (free_pages < (long)need)
		return pinfer_fail(err, ENOMEM, "hugetlb: the pool has %ld free 2 MiB pages%s, %zu needed: sysctl vm.nr_hugepages=N (per node: /sys/devices/system/node/nodeN/hugepages), or load pinfer.ko",
				   free_pages < 0 ? 0 : free_pages, where, need);
	fd = memfd_create("pinfer-hugetlb", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB_FLAG);
	if (fd < 0)
		return pinfer_fail(err, errno, "hugetlb: memfd_create(MFD_HUGETLB): %s",
				   strerror(errno));
	if (ftruncate(fd, (off_t)size)) {
		e = errno;
		goto close_fd;
	}
	r->ptr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r->ptr == MAP_FAILED) {
		e = errno;
		goto close_fd;
	}
	if (bind_node(r->ptr, size, node, "hugetlb", err))
		goto unmap;
	e = -populate(r->ptr, size, PINFER_HUGE);
	if (e) {
		pinfer_fail(err, e, "hugetlb: could not fault in %zu MiB from the pool: %s",
			    size >> 20, strerror(e));
		goto unmap;
	}
	r->fd = fd;
	r->page_size = PINFER_HUGE;
	r->locked = true;	/* hugetlb pages are never swapped */
	return 0;

unmap:
	munmap(r->ptr, size);
	close(fd);
	return err->code;
close_fd:
	close(fd);
	return pinfer_fail(err, e, "hugetlb: cannot map %zu MiB: %s", size >> 20,
			   strerror(e));
}

/* Anonymous memory aligned to 2 MiB (so THP can back all of it). */
static void *map_anon_aligned(size_t size)
{
	size_t len = size + PINFER_HUGE, head;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return p;
	head = round_up((uintptr_t)p, PINFER_HUGE) - (uintptr_t)p;
	if (head)
		munmap(p, head);
	munmap(p + head + size, len - head - size);
	return p + head;
}

static int memlock_fail(struct pinfer_err *err, const char *who, size_t size)
{
	struct rlimit rl = { 0 };

	getrlimit(RLIMIT_MEMLOCK, &rl);
	return pinfer_fail(err, ENOMEM, "%s: cannot lock %zu MiB: RLIMIT_MEMLOCK is %llu KiB (raise it with ulimit -l or limits.conf, or grant CAP_IPC_LOCK)",
			   who, size >> 20, (unsigned long long)rl.rlim_cur >> 10);
}

static int try_thp(struct pinfer_region *r, size_t size, int node,
		   struct pinfer_err *err)
{
	char mode[64] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	if (f) {
		if (!fgets(mode, sizeof(mode), f))
			mode[0] = 0;
		fclose(f);
	}
	if (!f || strstr(mode, "[never]"))
		return pinfer_fail(err, ENOTSUP, "thp: transparent hugepages are disabled: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
	r->ptr = map_anon_aligned(size);
	if (r->ptr == MAP_FAILED)
		return pinfer_fail(err, errno, "thp: cannot map %zu MiB: %s", size >> 20,
				   strerror(errno));
	if (madvise(r->ptr, size, MADV_HUGEPAGE)) {
		pinfer_fail(err, errno, "thp: madvise(MADV_HUGEPAGE): %s", strerror(errno));
		goto unmap;
	}
	if (bind_node(r->ptr, size, node, "thp", err))
		goto unmap;
	if (mlock(r->ptr, size)) {		/* faults it all in, as huge pages */
		memlock_fail(err, "thp", size);
		goto unmap;
	}
	r->page_size = PINFER_HUGE;
	r->locked = true;
	return 0;

unmap:
	munmap(r->ptr, size);
	return err->code;
}

static int try_plain(struct pinfer_region *r, size_t size, int node,
		     struct pinfer_err *err)
{
	struct pinfer_err why;

	r->ptr = mmap(NULL, size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->ptr == MAP_FAILED)
		return pinfer_fail(err, errno, "plain: cannot map %zu MiB: %s",
				   size >> 20, strerror(errno));
	if (bind_node(r->ptr, size, node, "plain", err)) {
		munmap(r->ptr, size);
		return err->code;
	}
	r->page_size = 4096;
	r->locked = !mlock(r->ptr, size);
	if (!r->locked) {
		memlock_fail(&why, "not locked", size);
		snprintf(r->note, sizeof(r->note), "%s", why.msg);
	}
	return 0;
}

typedef int (*try_fn)(struct pinfer_region *, size_t, int, struct pinfer_err *);

static const try_fn providers[PINFER_PROVIDER_COUNT] = {
	try_kmod, try_hugetlb, try_thp, try_plain,
};

static int provider_from_env(enum pinfer_provider *p, struct pinfer_err *err)
{
	const char *env = getenv("PINFER_PROVIDER");

	if (!env || !*env || !strcmp(env, "auto"))
		return 0;
	*p = pinfer_provider_parse(env);
	if (*p == PINFER_PROVIDER_COUNT)
		return pinfer_fail(err, EINVAL, "PINFER_PROVIDER=%s: not one of kmod, hugetlb, thp, plain, auto",
				   env);
	return 0;
}

int pinfer_region_create(struct pinfer_region **out, size_t size, int node,
			 enum pinfer_provider provider, struct pinfer_err *err)
{
	struct pinfer_region *r;
	struct pinfer_err why, scratch;
	size_t notes = 0;
	int p, ret;

	*out = NULL;
	if (!err)		/* the helpers below report through it */
		err = &scratch;
	if (!size)
		return pinfer_fail(err, EINVAL, "region: size 0");
	if (provider == PINFER_PROVIDER_AUTO && provider_from_env(&provider, err))
		return err->code;
	if (provider >= PINFER_PROVIDER_COUNT)
		return pinfer_fail(err, EINVAL, "region: no provider %d", provider);
	r = calloc(1, sizeof(*r));
	if (!r)
		return pinfer_fail(err, ENOMEM, "region: out of memory");
	r->fd = -1;
	r->node = node;
	if (provider != PINFER_PROVIDER_AUTO) {
		r->provider = provider;
		r->size = round_up(size, provider == PINFER_PROVIDER_PLAIN ? 4096 : PINFER_HUGE);
		ret = providers[provider](r, r->size, node, err);
		goto out;
	}
	/* The first that works; the others' reasons go in the note. */
	for (p = 0; p < PINFER_PROVIDER_COUNT; p++) {
		r->provider = p;
		r->size = round_up(size, p == PINFER_PROVIDER_PLAIN ? 4096 : PINFER_HUGE);
		ret = providers[p](r, r->size, node, &why);
		if (!ret)
			break;
		if (notes < sizeof(r->note))
			notes += snprintf(r->note + notes, sizeof(r->note) - notes,
					  "%s%s", notes ? "; " : "", why.msg);
	}
	if (ret)
		pinfer_fail(err, ret, "region: no provider could map %zu MiB: %s",
			    size >> 20, r->note);
out:
	if (ret) {
		free(r);
		return ret;
	}
	*out = r;
	return 0;
}

void pinfer_region_free(struct pinfer_region *r)
{
	if (!r)
		return;
	munmap(r->ptr, r->size);
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}

void *pinfer_region_ptr(const struct pinfer_region *r)
{
	return r->ptr;
}

void pinfer_region_props(const struct pinfer_region *r,
			 struct pinfer_region_props *info)
{
	info->provider = r->provider;
	info->size = r->size;
	info->page_size = r->page_size;
	info->node = r->node;
	info->locked = r->locked;
	snprintf(info->note, sizeof(info->note), "%s", r->note);
}

int pinfer_region_kmod_fd(const struct pinfer_region *r)
{
	return r->provider == PINFER_PROVIDER_KMOD ? r->fd : -1;
}
