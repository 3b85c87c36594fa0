// SPDX-License-Identifier: MIT
/*
 * pinfer doctor's checks (doctor.h). Each reads what it needs from /proc,
 * /sys, the runtime and the model file, and reports one item: OK, INFO
 * (worth knowing, nothing to fix), WARN (pinfer runs, slower or less
 * safely; the fix says how to mend it) or FAIL (pinfer cannot run as it
 * should). Nothing here changes the machine.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <numa.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cpu.h"
#include "doctor.h"
#include "kernels/quant.h"
#include "libpinfer.h"
#include "pinfer.h"
#include "sysfile.h"

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)

const char *doctor_status_name(enum doctor_status s)
{
	static const char *const names[] = { "OK", "INFO", "WARN", "FAIL" };

	return names[s];
}

/* The [selected] word of a sysfs choice ("always [madvise] never"), in @out. */
static void selected(const char *line, char *out, size_t cap)
{
	const char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;

	if (a && b)
		snprintf(out, cap, "%.*s", (int)(b - a - 1), a + 1);
	else
		snprintf(out, cap, "%s", line);
}

struct ctx {
	const struct doctor_opts *o;
	doctor_fn fn;
	void *arg;
	enum doctor_status worst;
};

static void __attribute__((format(printf, 5, 6)))
report(struct ctx *c, const char *check, enum doctor_status st, const char *fix, const char *fmt,
       ...)
{
	struct doctor_item it = { .check = check, .status = st };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(it.found, sizeof(it.found), fmt, ap);
	va_end(ap);
	snprintf(it.fix, sizeof(it.fix), "%s", fix ? fix : "");
	if (st > c->worst)
		c->worst = st;
	c->fn(&it, c->arg);
}

static const char *user_name(void)
{
	struct passwd *pw = getpwuid(geteuid());

	return pw ? pw->pw_name : "USER";
}

static void check_thp(struct ctx *c)
{
	const char *base = "/sys/kernel/mm/transparent_hugepage/";
	char path[128], line[128], en[32], df[32];
	int e;

	snprintf(path, sizeof(path), "%senabled", base);
	if ((e = sysfile_line(path, line, sizeof(line)))) {
		report(c, "thp", DOCTOR_INFO, NULL, "%s: %s (no transparent hugepages: the thp provider is unavailable)",
		       path, strerror(-e));
		return;
	}
	selected(line, en, sizeof(en));
	snprintf(path, sizeof(path), "%sdefrag", base);
	if (sysfile_line(path, line, sizeof(line)))
		snprintf(line, sizeof(line), "?");
	selected(line, df, sizeof(df));
	if (!strcmp(en, "never"))
		report(c, "thp", DOCTOR_WARN,
		       "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
		       "enabled %s, defrag %s: without pinfer.ko or a hugetlb pool, weights sit on 4 KiB pages (TLB misses)",
		       en, df);
	else if (!strcmp(df, "never") || !strcmp(df, "defer"))
		report(c, "thp", DOCTOR_WARN,
		       "echo madvise > /sys/kernel/mm/transparent_hugepage/defrag",
		       "enabled %s, defrag %s: a madvise'd region is not compacted into huge pages when it faults",
		       en, df);
	else
		report(c, "thp", DOCTOR_OK, NULL, "enabled %s, defrag %s", en, df);
}

static void check_swappiness(struct ctx *c)
{
	uint64_t v;
	int e = sysfile_u64("/proc/sys/vm/swappiness", &v);

	if (e)
		report(c, "swappiness", DOCTOR_INFO, NULL, "/proc/sys/vm/swappiness: %s", strerror(-e));
	else if (v > 10)
		report(c, "swappiness", DOCTOR_WARN,
		       "sysctl -w vm.swappiness=10 && echo vm.swappiness=10 > /etc/sysctl.d/90-pinfer.conf",
		       "%" PRIu64 ": the kernel swaps out what is not pinned (the KV cache of a run without pinfer.ko, other programs) early",
		       v);
	else
		report(c, "swappiness", DOCTOR_OK, NULL, "%" PRIu64, v);
}

/* Pages of @kb on node @n: total and free; -errno when there is no such pool. */
static int pool(int n, unsigned kb, uint64_t *nr, uint64_t *fr)
{
	char path[160];
	int e;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/hugepages/hugepages-%ukB/nr_hugepages",
		 n, kb);
	if ((e = sysfile_u64(path, nr)))
		return e;
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/hugepages/hugepages-%ukB/free_hugepages",
		 n, kb);
	return sysfile_u64(path, fr);
}

static int node_count(void)
{
	char path[64];
	int n = 0;

	for (;;) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", n);
		if (access(path, F_OK))
			return n;
		n++;
	}
}

static void check_hugepages(struct ctx *c)
{
	int nodes = node_count(), n;
	uint64_t nr2, fr2, nr1, fr1, free_bytes = 0, nr2_all = 0;
	char found[768] = "", fix[512] = "";
	size_t len = 0;

	if (!nodes) {
		report(c, "hugepages", DOCTOR_INFO, NULL, "/sys/devices/system/node: no nodes listed");
		return;
	}
	for (n = 0; n < nodes; n++) {
		if (pool(n, 2048, &nr2, &fr2))
			nr2 = fr2 = 0;
		if (pool(n, 1048576, &nr1, &fr1))
			nr1 = fr1 = 0;
		free_bytes += fr2 * (2u << 20) + fr1 * (1ull << 30);
		nr2_all += nr2;
		len += snprintf(found + len, len < sizeof(found) ? sizeof(found) - len : 0,
				"%snode%d: 2 MiB %" PRIu64 " free of %" PRIu64 ", 1 GiB %" PRIu64 " free of %" PRIu64,
				n ? "; " : "", n, fr2, nr2, fr1, nr1);
	}
	if (c->o->model_bytes) {
		uint64_t need = (c->o->model_bytes + (2u << 20) - 1) >> 21;
		uint64_t have = free_bytes >> 21;

		if (have >= need) {
			report(c, "hugepages", DOCTOR_OK, NULL, "%s: room for the model's %.0f MiB", found,
			       c->o->model_bytes / MIB);
			return;
		}
		snprintf(fix, sizeof(fix), "sysctl -w vm.nr_hugepages=%" PRIu64
			 " (and vm.nr_hugepages=%" PRIu64 " in /etc/sysctl.d/90-pinfer.conf); not needed with pinfer.ko",
			 nr2_all + need - have, nr2_all + need - have);
		report(c, "hugepages", DOCTOR_WARN, fix,
		       "%s: the model's %.0f MiB need %" PRIu64 " free 2 MiB pages for the hugetlb provider",
		       found, c->o->model_bytes / MIB, need);
		return;
	}
	report(c, "hugepages", nr2_all ? DOCTOR_OK : DOCTOR_INFO, NULL, "%s%s", found,
	       nr2_all ? "" : " (no pool: the hugetlb provider is unavailable; pinfer.ko or THP serve)");
}

static void check_memlock(struct ctx *c)
{
	struct rlimit rl;
	char fix[512];
	uint64_t want = c->o->model_bytes ? c->o->model_bytes : 1ull << 30;

	if (getrlimit(RLIMIT_MEMLOCK, &rl)) {
		report(c, "memlock", DOCTOR_INFO, NULL, "getrlimit: %s", strerror(errno));
		return;
	}
	if (geteuid() == 0) {
		report(c, "memlock", DOCTOR_OK, NULL, "root: CAP_IPC_LOCK, no limit applies");
		return;
	}
	if (rl.rlim_cur == RLIM_INFINITY) {
		report(c, "memlock", DOCTOR_OK, NULL, "unlimited");
		return;
	}
	snprintf(fix, sizeof(fix), "ulimit -l unlimited (this shell; the hard limit allows %s), or in /etc/security/limits.d/pinfer.conf: %s - memlock unlimited (then log in again)",
		 rl.rlim_max == RLIM_INFINITY ? "it" : "no more than its own", user_name());
	if (rl.rlim_cur < want)
		report(c, "memlock", DOCTOR_WARN, fix,
		       "RLIMIT_MEMLOCK %.0f MiB: less than %s (%.0f MiB); pinned memory is charged to it",
		       rl.rlim_cur / MIB, c->o->model_bytes ? "the model" : "1 GiB", want / MIB);
	else
		report(c, "memlock", DOCTOR_OK, NULL, "RLIMIT_MEMLOCK %.0f MiB", rl.rlim_cur / MIB);
}

static void check_module(struct ctx *c)
{
	struct pinfer_version v = { 0 };
	struct stat st;
	uint64_t cap = 0, pinned = 0;	/* bytes */
	char fix[512], cap_s[96] = "?";
	int fd;

	if (!pinfer_kmod_limits(&cap, &pinned)) {
		if (cap)
			snprintf(cap_s, sizeof(cap_s), "%.0f MiB", cap / MIB);
		else
			snprintf(cap_s, sizeof(cap_s), "none");
		snprintf(cap_s + strlen(cap_s), sizeof(cap_s) - strlen(cap_s), ", %.0f MiB pinned now",
			 pinned / MIB);
	}
	if (stat("/dev/pinfer", &st)) {
		report(c, "pinfer.ko", DOCTOR_WARN,
		       "modprobe pinfer (installed with make dkms-install; see Documentation/pinfer.rst)",
		       "/dev/pinfer: %s: the module is not loaded; the runtime uses hugetlb or THP memory and says so",
		       strerror(errno));
		return;
	}
	fd = open("/dev/pinfer", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(fix, sizeof(fix), "usermod -aG $(stat -c %%G /dev/pinfer) %s (then log in again)",
			 user_name());
		report(c, "pinfer.ko", DOCTOR_WARN, fix,
		       "/dev/pinfer (mode %03o, uid %u gid %u): %s for %s",
		       st.st_mode & 0777, st.st_uid, st.st_gid, strerror(errno), user_name());
		return;
	}
	if (ioctl(fd, PINFER_IOC_VERSION, &v)) {
		report(c, "pinfer.ko", DOCTOR_FAIL,
		       "modprobe -r pinfer && modprobe pinfer (a module of this version: make dkms-install)",
		       "/dev/pinfer: PINFER_IOC_VERSION: %s", strerror(errno));
	} else if (v.abi_version != PINFER_ABI_VERSION) {
		report(c, "pinfer.ko", DOCTOR_FAIL,
		       "make dkms-install && modprobe -r pinfer && modprobe pinfer",
		       "/dev/pinfer speaks ABI %u, this pinfer %u", v.abi_version, PINFER_ABI_VERSION);
	} else if (c->o->model_bytes && cap && cap < c->o->model_bytes) {
		snprintf(fix, sizeof(fix), "echo %.0f > /sys/module/pinfer/parameters/max_pinned_mb",
			 c->o->model_bytes / MIB + 1);
		report(c, "pinfer.ko", DOCTOR_WARN, fix,
		       "/dev/pinfer: ABI %u, features 0x%" PRIx64 ", max_pinned_mb %s: below the model's %.0f MiB",
		       v.abi_version, (uint64_t)v.features, cap_s, c->o->model_bytes / MIB);
	} else {
		report(c, "pinfer.ko", DOCTOR_OK, NULL,
		       "/dev/pinfer: ABI %u (this pinfer's), features 0x%" PRIx64 ", mode %03o, max_pinned_mb %s",
		       v.abi_version, (uint64_t)v.features, st.st_mode & 0777, cap_s);
	}
	close(fd);
}

static void check_io_uring(struct ctx *c)
{
	struct io_uring ring;
	uint64_t dis = 0;
	bool sysctl = !sysfile_u64("/proc/sys/kernel/io_uring_disabled", &dis);
	int e = io_uring_queue_init(4, &ring, 0);

	if (!e) {
		io_uring_queue_exit(&ring);
		if (sysctl)
			report(c, "io_uring", DOCTOR_OK, NULL, "a ring sets up (kernel.io_uring_disabled = %" PRIu64 ")", dis);
		else
			report(c, "io_uring", DOCTOR_OK, NULL, "a ring sets up");
		return;
	}
	report(c, "io_uring", DOCTOR_FAIL, "sysctl -w kernel.io_uring_disabled=0",
	       "io_uring_queue_init: %s%s: loading and streaming cannot run", strerror(-e),
	       sysctl && dis ? " (kernel.io_uring_disabled is set)" : "");
}

static void check_governor(struct ctx *c)
{
	char path[96], gov[64], first[64] = "";
	int cpu, n = 0, perf = 0;

	for (cpu = 0;; cpu++) {
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d", cpu);
		if (access(path, F_OK))
			break;
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor", cpu);
		if (sysfile_line(path, gov, sizeof(gov)))
			continue;
		n++;
		perf += !strcmp(gov, "performance");
		if (strcmp(gov, "performance") && !first[0])
			snprintf(first, sizeof(first), "%s", gov);
	}
	if (!n)
		report(c, "governor", DOCTOR_INFO, NULL, "no cpufreq: the firmware or the hypervisor sets the clock");
	else if (perf < n)
		report(c, "governor", DOCTOR_WARN,
		       "cpupower frequency-set -g performance (package linux-cpupower)",
		       "%s on %d of %d CPUs: the spin-wait pool's short steps run at lower clocks", first,
		       n - perf, n);
	else
		report(c, "governor", DOCTOR_OK, NULL, "performance on all %d CPUs", n);
}

static void check_smt(struct ctx *c)
{
	uint64_t on;

	if (sysfile_u64("/sys/devices/system/cpu/smt/active", &on))
		report(c, "smt", DOCTOR_INFO, NULL, "/sys/devices/system/cpu/smt/active: not readable");
	else if (on)
		report(c, "smt", DOCTOR_INFO, NULL,
		       "on: %ld CPUs share fewer cores; pinfer's default is a thread per CPU, and -t at the number of cores may be faster (pinfer bench -t N)",
		       sysconf(_SC_NPROCESSORS_ONLN));
	else
		report(c, "smt", DOCTOR_OK, NULL, "off (or no SMT): %ld CPUs", sysconf(_SC_NPROCESSORS_ONLN));
}

static void check_cpu(struct ctx *c)
{
	const struct pinfer_cpu *cpu = pinfer_cpu();
	const char *q4, *q6;

	quant_vec_dot(GGML_TYPE_Q4_0, &q4);
	quant_vec_dot(GGML_TYPE_Q6_K, &q6);
	report(c, "cpu", cpu->isa >= PINFER_ISA_AVX2 ? DOCTOR_OK : DOCTOR_WARN,
	       cpu->isa >= PINFER_ISA_AVX2 ? NULL : "none: a CPU with AVX2 (or PINFER_CPU unset)",
	       "%s (detected %s%s%s%s); kernels: Q4_0 %s, Q6_K %s%s",
	       pinfer_isa_name(cpu->isa), pinfer_isa_name(cpu->detected),
	       cpu->avx512_vnni ? ", AVX-512 VNNI" : "", cpu->avx_vnni ? ", AVX-VNNI" : "",
	       cpu->f16c ? ", F16C" : "", q4, q6,
	       cpu->isa < cpu->detected ? "; capped by PINFER_CPU" : "");
}

static void check_numa(struct ctx *c)
{
	char found[768];
	size_t len = 0;
	long long fr, best = 0;
	int n, nodes;

	if (numa_available() < 0) {
		report(c, "numa", DOCTOR_INFO, NULL, "no NUMA support: one node");
		return;
	}
	nodes = numa_max_node() + 1;
	len = snprintf(found, sizeof(found), "%d node%s:", nodes, nodes > 1 ? "s" : "");
	for (n = 0; n < nodes; n++) {
		long long total = numa_node_size64(n, &fr);

		if (total < 0)
			continue;
		best = fr > best ? fr : best;
		len += snprintf(found + len, len < sizeof(found) ? sizeof(found) - len : 0,
				" node%d %.1f of %.1f GiB free%s", n, fr / GIB, total / GIB,
				n + 1 < nodes ? "," : "");
	}
	if (c->o->model_bytes && (uint64_t)best < c->o->model_bytes)
		report(c, "numa", DOCTOR_WARN, "--mem below the free memory of the node (pinfer streams the rest)",
		       "%s: no node has the model's %.0f MiB free", found, c->o->model_bytes / MIB);
	else
		report(c, "numa", nodes > 1 ? DOCTOR_INFO : DOCTOR_OK, NULL, "%s%s", found,
		       nodes > 1 ? " (memory and threads go to one node: --node N)" : "");
}

static const char *fs_name(long type)
{
	static const struct { long magic; const char *name; } fs[] = {
		{ 0xEF53, "ext4" }, { 0x58465342, "xfs" }, { 0x9123683E, "btrfs" },
		{ 0x01021994, "tmpfs" }, { 0x794c7630, "overlayfs" }, { 0x6969, "nfs" },
		{ 0x2fc12fc1, "zfs" }, { (long)0xF2F52010, "f2fs" }, { 0x65735546, "fuse" },
		{ 0x01021997, "9p" }, { 0x858458f6, "ramfs" }, { 0x4d44, "vfat" },
	};
	size_t i;

	for (i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
		if (fs[i].magic == type)
			return fs[i].name;
	return "unknown";
}

/* The block device (not a partition) whose dev is @maj:@min, in @disk: 0 or -1. */
static int disk_of(unsigned maj, unsigned min, char *disk, size_t cap)
{
	char want[32], path[512], buf[32];
	struct dirent *d, *p;
	DIR *top = opendir("/sys/block"), *sub;

	snprintf(want, sizeof(want), "%u:%u", maj, min);
	if (!top)
		return -1;
	while ((d = readdir(top))) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/dev", d->d_name);
		if (!sysfile_line(path, buf, sizeof(buf)) && !strcmp(buf, want))
			goto found;
		snprintf(path, sizeof(path), "/sys/block/%s", d->d_name);
		sub = opendir(path);
		while (sub && (p = readdir(sub))) {
			if (strncmp(p->d_name, d->d_name, strlen(d->d_name)))
				continue;
			snprintf(path, sizeof(path), "/sys/block/%s/%.200s/dev", d->d_name, p->d_name);
			if (!sysfile_line(path, buf, sizeof(buf)) && !strcmp(buf, want)) {
				closedir(sub);
				goto found;
			}
		}
		if (sub)
			closedir(sub);
	}
	closedir(top);
	return -1;
found:
	snprintf(disk, cap, "%s", d->d_name);
	closedir(top);
	return 0;
}

static void check_model_file(struct ctx *c)
{
	const char *path = c->o->model;
	struct statfs sf;
	struct stat st;
	char disk[64], p[160], ra[32] = "?", sched[96] = "?", sched_sel[32] = "?", rot[8] = "?";
	void *buf = NULL;
	int fd;
	ssize_t r = -1;

	if (!path)
		return;
	if (stat(path, &st) || statfs(path, &sf)) {
		report(c, "model file", DOCTOR_FAIL, NULL, "%s: %s", path, strerror(errno));
		return;
	}
	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd >= 0 && !posix_memalign(&buf, 4096, 4096)) {
		r = pread(fd, buf, 4096, 0);
		if (r < 0)
			r = -errno;
	} else {
		r = -errno;
	}
	free(buf);
	if (fd >= 0)
		close(fd);
	if (r < 0)
		report(c, "model file", DOCTOR_WARN,
		       "copy the model to a filesystem with O_DIRECT (ext4, xfs, btrfs)",
		       "%s on %s: O_DIRECT reads fail (%s): loading goes through the page cache",
		       path, fs_name(sf.f_type), strerror((int)-r));
	else
		report(c, "model file", DOCTOR_OK, NULL, "%s: %.1f MiB on %s, O_DIRECT reads work", path,
		       st.st_size / MIB, fs_name(sf.f_type));
	if (disk_of(major(st.st_dev), minor(st.st_dev), disk, sizeof(disk))) {
		report(c, "drive", DOCTOR_INFO, NULL, "device %u:%u is not a block device in /sys/block (%s)",
		       major(st.st_dev), minor(st.st_dev), fs_name(sf.f_type));
		return;
	}
	snprintf(p, sizeof(p), "/sys/block/%s/queue/read_ahead_kb", disk);
	sysfile_line(p, ra, sizeof(ra));
	snprintf(p, sizeof(p), "/sys/block/%s/queue/scheduler", disk);
	if (!sysfile_line(p, sched, sizeof(sched)))
		selected(sched, sched_sel, sizeof(sched_sel));
	snprintf(p, sizeof(p), "/sys/block/%s/queue/rotational", disk);
	sysfile_line(p, rot, sizeof(rot));
	report(c, "drive", !strcmp(rot, "1") ? DOCTOR_WARN : DOCTOR_INFO,
	       !strcmp(rot, "1") ? "an SSD (NVMe) for models that stream" : NULL,
	       "%s: %s, scheduler %s, read-ahead %s KiB (pinfer reads with O_DIRECT; read-ahead matters to mmap readers)",
	       disk, !strcmp(rot, "1") ? "rotational" : "solid state", sched_sel, ra);
}

/* This process's memory cgroup limit (bytes; 0: none) and where it is set, in @where. */
static uint64_t cgroup_limit(char *where, size_t cap)
{
	FILE *f = fopen("/proc/self/cgroup", "r");
	char line[1024], path[1200], *rel;
	uint64_t best = 0, v;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "0::", 3)) {		/* v2: the limit of it and every parent */
			rel = line + 3;
			for (;;) {
				snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max",
					 strcmp(rel, "/") ? rel : "");
				if (!sysfile_u64(path, &v) && (!best || v < best)) {
					best = v;
					snprintf(where, cap, "%s", path);
				}
				if (!strcmp(rel, "/") || !strrchr(rel, '/'))
					break;
				*strrchr(rel, '/') = 0;
				if (!*rel)
					rel = "/";
			}
		} else if ((rel = strstr(line, ":memory:"))) {	/* v1 */
			rel += 8;
			snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes",
				 strcmp(rel, "/") ? rel : "");
			if (!sysfile_u64(path, &v) && v < (1ull << 62) && (!best || v < best)) {
				best = v;
				snprintf(where, cap, "%s", path);
			}
		}
	}
	fclose(f);
	return best;
}

static void check_cgroup(struct ctx *c)
{
	char where[1300] = "";
	uint64_t lim = cgroup_limit(where, sizeof(where));

	if (!lim)
		report(c, "cgroup", DOCTOR_OK, NULL, "no memory limit on this process's cgroup");
	else if (c->o->model_bytes && lim < c->o->model_bytes)
		report(c, "cgroup", DOCTOR_WARN, "--mem below the limit: pinfer streams what does not fit",
		       "memory limited to %.0f MiB (%s): less than the model's %.0f MiB", lim / MIB, where,
		       c->o->model_bytes / MIB);
	else
		report(c, "cgroup", DOCTOR_INFO, NULL, "memory limited to %.0f MiB (%s)", lim / MIB, where);
}

enum doctor_status doctor_run(const struct doctor_opts *o, doctor_fn fn, void *arg)
{
	struct ctx c = { .o = o, .fn = fn, .arg = arg, .worst = DOCTOR_OK };

	check_thp(&c);
	check_swappiness(&c);
	check_hugepages(&c);
	check_memlock(&c);
	check_module(&c);
	check_io_uring(&c);
	check_governor(&c);
	check_smt(&c);
	check_cpu(&c);
	check_numa(&c);
	check_cgroup(&c);
	check_model_file(&c);
	return c.worst;
}
