// SPDX-License-Identifier: MIT
/*
 * libpinfer regions on every provider: where a provider is available, the
 * memory is mapped, writable, of the promised page size and lock state, and
 * on the node asked; where it is not, forcing it is an error that says why
 * and how to fix it, never a fallback. Also AUTO, PINFER_PROVIDER, an
 * unprivileged user with a small RLIMIT_MEMLOCK, what pinfer.ko says it
 * pins, and pinfer_fail()'s errno sign.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <numa.h>

#include "libpinfer.h"
#include "../tap.h"

#define MiB (1ul << 20)

/* A field of /proc/self/smaps, in kB, summed over the mappings in [p, p+len). */
static long smaps_kb(const void *p, size_t len, const char *field)
{
	uintptr_t lo = (uintptr_t)p, hi = lo + len, a, b;
	char line[512];
	bool in = false;
	long v = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = a >= lo && b <= hi;
		else if (in && !strncmp(line, field, strlen(field)))
			v += atol(line + strlen(field) + 1);
	}
	if (f)
		fclose(f);
	return v;
}

/* The smaps entries of [p, p + len), as TAP comments. */
static void dump_smaps(const void *p, size_t len)
{
	uintptr_t lo = (uintptr_t)p, hi = lo + len, a, b;
	char line[512];
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	printf("# region at %p, %zu bytes\n", p, len);
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = a < hi && b > lo;
		if (in)
			printf("#   %s", line);
	}
	if (f)
		fclose(f);
}

/* How many of the 4 KiB pages of [p, p + size) are not on @node (move_pages). */
static size_t pages_off_node(char *p, size_t size, int node)
{
	size_t n = size / 4096, off = 0, i;
	void **pages = calloc(n, sizeof(*pages));
	int *status = calloc(n, sizeof(*status));

	if (!pages || !status)
		off = n;
	for (i = 0; i < n && !off; i++)
		pages[i] = p + i * 4096;
	if (!off && syscall(SYS_move_pages, 0, n, pages, NULL, status, 0))
		off = n;
	for (i = 0; i < n && pages[n - 1]; i++)
		off += status[i] != node;
	free(pages);
	free(status);
	return off;
}

/* The fix a provider's error must name. */
static const char *const hint[PINFER_PROVIDER_COUNT] = {
	"pinfer", "nr_hugepages", "transparent_hugepage", "",
};

static void test_provider(enum pinfer_provider pv)
{
	const char *name = pinfer_provider_name(pv);
	struct pinfer_region_props info;
	struct pinfer_region *r;
	struct pinfer_err err = { 0 };
	size_t i, size = 6 * MiB + 12345;
	int node;
	uint64_t *q;
	bool good = true;

	if (pinfer_region_create(&r, size, -1, pv, &err)) {
		/* not here: a skip, if it says why and how to fix it */
		if (err.code < 0 && !strncmp(err.msg, name, strlen(name)) &&
		    strstr(err.msg, hint[pv]) && !r)
			tap_skip("%s: unavailable here, and says why and how to fix it: %s", name, err.msg);
		else
			ok(0, "%s: unavailable here, without saying why and how to fix it: %s", name,
			   err.msg);
		return;
	}
	pinfer_region_props(r, &info);
	ok(info.provider == pv && info.size >= size &&
	   info.size % info.page_size == 0 &&
	   info.page_size == (pv == PINFER_PROVIDER_PLAIN ? 4096 : 2 * MiB),
	   "%s: %zu bytes asked, %zu mapped in %zu-byte pages", name, size,
	   info.size, info.page_size);
	ok(info.locked || (pv == PINFER_PROVIDER_PLAIN && strstr(info.note, "RLIMIT_MEMLOCK")),
	   "%s: locked (%d), or says why not (%s)", name, info.locked, info.note);
	q = pinfer_region_ptr(r);
	for (i = 0; i < info.size / 8; i++)
		q[i] = i ^ 0x5555aaaa5555aaaaull;
	for (i = 0; i < info.size / 8; i++)
		good = good && q[i] == (i ^ 0x5555aaaa5555aaaaull);
	ok(good, "%s: every byte writable and read back", name);
	if (pv == PINFER_PROVIDER_KMOD &&
	    !ok(smaps_kb(q, info.size, "FilePmdMapped") == (long)(info.size >> 10),
		"kmod: mapped with 2 MiB entries (FilePmdMapped %ld kB)",
		smaps_kb(q, info.size, "FilePmdMapped")))
		dump_smaps(q, info.size);	/* a known intermittent failure on 6.12 */
	if (pv == PINFER_PROVIDER_HUGETLB)
		ok(smaps_kb(q, info.size, "KernelPageSize") >= 2048,
		   "hugetlb: KernelPageSize is 2048 kB");
	if (pv == PINFER_PROVIDER_THP)
		ok(smaps_kb(q, info.size, "AnonHugePages") >= (long)(info.size >> 10) / 2,
		   "thp: backed by transparent huge pages (AnonHugePages %ld of %zu kB)",
		   smaps_kb(q, info.size, "AnonHugePages"), info.size >> 10);
	if (pv == PINFER_PROVIDER_THP || (pv == PINFER_PROVIDER_PLAIN && info.locked))
#ifdef __SANITIZE_ADDRESS__
		tap_skip("%s: mlock state (ASan makes mlock() a no-op)", name);
#else
		ok(smaps_kb(q, info.size, "Locked") == (long)(info.size >> 10),
		   "%s: mlock'd: smaps Locked is the whole region (%ld kB)", name,
		   smaps_kb(q, info.size, "Locked"));
#endif
	pinfer_region_free(r);

	/* on the last node (node 1 of the test VM's two) */
	node = numa_available() < 0 ? 0 : numa_max_node();
	if (pinfer_region_create(&r, 4 * MiB, node, pv, &err)) {
		ok(0, "%s: a region on node %d: %s", name, node, err.msg);
		return;
	}
	q = pinfer_region_ptr(r);
	for (i = 0; i < 4 * MiB / 8; i += 512)
		q[i] = 1;	/* every 4 KiB page there (plain faults them in) */
	ok(!pages_off_node((char *)q, 4 * MiB, node),
	   "%s: a region asked on node %d: all its pages are there (move_pages)", name, node);
	pinfer_region_free(r);
}

static void test_auto_and_env(void)
{
	struct pinfer_region_props info;
	struct pinfer_region *r;
	struct pinfer_err err = { 0 };
	int p, best = -1;

	for (p = 0; p < PINFER_PROVIDER_COUNT && best < 0; p++)
		if (!pinfer_region_create(&r, 2 * MiB, -1, p, &err)) {
			best = p;
			pinfer_region_free(r);
		}
	unsetenv("PINFER_PROVIDER");
	if (ok(!pinfer_region_create(&r, 2 * MiB, -1, PINFER_PROVIDER_AUTO, &err),
	       "auto: a region")) {
		pinfer_region_props(r, &info);
		ok((int)info.provider == best &&
		   (best == PINFER_PROVIDER_KMOD || strstr(info.note, "kmod:")),
		   "auto: the best available provider (%s); the note says why not better: %s",
		   pinfer_provider_name(info.provider), info.note);
		pinfer_region_free(r);
	}
	setenv("PINFER_PROVIDER", "plain", 1);
	ok(!pinfer_region_create(&r, 2 * MiB, -1, PINFER_PROVIDER_AUTO, &err) &&
	   (pinfer_region_props(r, &info), info.provider == PINFER_PROVIDER_PLAIN),
	   "PINFER_PROVIDER=plain is used by auto");
	pinfer_region_free(r);
	setenv("PINFER_PROVIDER", "bogus", 1);
	ok(pinfer_region_create(&r, 2 * MiB, -1, PINFER_PROVIDER_AUTO, &err) == -EINVAL &&
	   strstr(err.msg, "PINFER_PROVIDER=bogus"), "PINFER_PROVIDER=bogus: %s", err.msg);
	if (best > PINFER_PROVIDER_KMOD) {
		setenv("PINFER_PROVIDER", "kmod", 1);
		ok(pinfer_region_create(&r, 2 * MiB, -1, PINFER_PROVIDER_AUTO, &err) < 0 &&
		   !r && !strncmp(err.msg, "kmod:", 5),
		   "PINFER_PROVIDER=kmod without the module: an error, no fallback: %s",
		   err.msg);
	}
	unsetenv("PINFER_PROVIDER");
	ok(pinfer_region_create(&r, 0, -1, PINFER_PROVIDER_PLAIN, &err) == -EINVAL,
	   "size 0: EINVAL");
	ok(pinfer_region_create(&r, 2 * MiB, 999, PINFER_PROVIDER_PLAIN, &err) < 0 &&
	   strstr(err.msg, "node 999"), "node 999: %s", err.msg);
}

/* An unprivileged process with RLIMIT_MEMLOCK of 1 MiB. */
static void test_memlock_limited(void)
{
	int status, fds[2];
	char msg[2][400] = { "", "" };
	pid_t pid;

#ifdef __SANITIZE_ADDRESS__
	tap_skip("AddressSanitizer makes mlock() a no-op: RLIMIT_MEMLOCK cannot bite");
	return;
#endif
	if (geteuid() != 0) {
		tap_skip("RLIMIT_MEMLOCK test needs root to drop to an unprivileged user");
		return;
	}
	if (pipe(fds))
		return;
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = { MiB, MiB };
		struct pinfer_region_props info;
		struct pinfer_region *r;
		struct pinfer_err err = { 0 };

		close(fds[0]);
		if (setrlimit(RLIMIT_MEMLOCK, &rl) || setgid(65534) || setuid(65534))
			_exit(10);
		if (pinfer_region_create(&r, 8 * MiB, -1, PINFER_PROVIDER_PLAIN, &err))
			_exit(11);
		pinfer_region_props(r, &info);
		if (info.locked)
			_exit(12);
		dprintf(fds[1], "%s\n", info.note);
		if (!pinfer_region_create(&r, 8 * MiB, -1, PINFER_PROVIDER_THP, &err))
			_exit(13);
		dprintf(fds[1], "%s\n", err.msg);
		_exit(0);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");

	if (!f || !fgets(msg[0], sizeof(msg[0]), f) || !fgets(msg[1], sizeof(msg[1]), f))
		msg[0][0] = 0;
	if (f)
		fclose(f);
	msg[0][strcspn(msg[0], "\n")] = 0;
	msg[1][strcspn(msg[1], "\n")] = 0;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		printf("# child: status %#x\n", status);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 && strstr(msg[0], "RLIMIT_MEMLOCK"),
	   "unprivileged, 1 MiB RLIMIT_MEMLOCK: plain maps 8 MiB unlocked and says so: %s",
	   msg[0]);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	   strstr(msg[1], "thp: cannot lock") && strstr(msg[1], "ulimit -l"),
	   "unprivileged, 1 MiB RLIMIT_MEMLOCK: thp refuses, saying how to fix it: %s",
	   msg[1]);
}

/*
 * pinfer_kmod_limits(): -ENODEV without the module; with it, what its
 * regions pin grows by a region's size while the region lives, within the
 * module's limit.
 */
static void test_kmod_limits(void)
{
	struct pinfer_err err = { 0 };
	struct pinfer_region *r;
	uint64_t max = 1, pinned = 1, max2, pinned2;
	int ret = pinfer_kmod_limits(&max, &pinned);

	if (access("/dev/pinfer", F_OK)) {
		ok(ret == -ENODEV && !max && !pinned,
		   "kmod limits: -ENODEV and zeros without /dev/pinfer (ret %d)", ret);
		return;
	}
	ok(ret == 0 && (!max || pinned <= max),
	   "kmod limits: read from sysfs (max %llu, pinned %llu)", (unsigned long long)max,
	   (unsigned long long)pinned);
	if (pinfer_region_create(&r, 8 * MiB, -1, PINFER_PROVIDER_KMOD, &err)) {
		tap_skip("kmod limits: no kmod region to count: %s", err.msg);
		return;
	}
	ret = pinfer_kmod_limits(&max2, &pinned2);
	ok(ret == 0 && max2 == max && pinned2 >= pinned + 8 * MiB,
	   "kmod limits: an 8 MiB region is counted as pinned (%llu -> %llu bytes)",
	   (unsigned long long)pinned, (unsigned long long)pinned2);
	pinfer_region_free(r);
}

/*
 * A process with THP disabled (PR_SET_THP_DISABLE): 6.1 still maps a kmod
 * region with 2 MiB entries, 6.12 with 4 KiB ones. Either way the memory
 * works, and the region's note says so exactly when its entries are small.
 */
static void test_kmod_thp_disabled(void)
{
	char msg[400] = "";
	long pmd = -1;
	int status, fds[2];
	FILE *f;
	pid_t pid;

	if (access("/dev/pinfer", F_OK)) {
		tap_skip("kmod with THP disabled: no /dev/pinfer");
		return;
	}
	if (pipe(fds))
		return;
	pid = fork();
	if (pid == 0) {
		struct pinfer_region_props info;
		struct pinfer_region *r;
		struct pinfer_err err = { 0 };
		size_t i;
		char *q;

		close(fds[0]);
		if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) ||
		    pinfer_region_create(&r, 4 * MiB, -1, PINFER_PROVIDER_KMOD, &err))
			_exit(10);
		q = pinfer_region_ptr(r);
		for (i = 0; i < 4 * MiB; i++)
			q[i] = (char)i;
		for (i = 0; i < 4 * MiB; i++)
			if (q[i] != (char)i)
				_exit(11);
		pinfer_region_props(r, &info);
		dprintf(fds[1], "%ld %s\n", smaps_kb(q, 4 * MiB, "FilePmdMapped"), info.note);
		_exit(0);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	if (!f || fscanf(f, "%ld ", &pmd) != 1 || !fgets(msg, sizeof(msg), f))
		msg[0] = 0;
	if (f)
		fclose(f);
	msg[strcspn(msg, "\n")] = 0;
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && !WEXITSTATUS(status),
	   "kmod with THP disabled: every byte writable and read back (status %#x)", status);
	if (pmd == 4096)
		ok(!strstr(msg, "4 KiB"), "kmod with THP disabled: 2 MiB entries, no note: %s",
		   msg);
	else
		ok(pmd == 0 && strstr(msg, "4 KiB page-table entries") &&
		   strstr(msg, "PR_SET_THP_DISABLE"),
		   "kmod with THP disabled: FilePmdMapped %ld kB, and the note says why: %s",
		   pmd, msg);
}

/* pinfer_fail() takes an errno of either sign and gives back the negative one. */
static void test_fail_sign(void)
{
	struct pinfer_err e = { 0 };
	int a = pinfer_fail(&e, EINVAL, "x %d", 1);
	int b;

	ok(a == -EINVAL && e.code == -EINVAL && !strcmp(e.msg, "x 1") && e.file_off == -1,
	   "pinfer_fail(EINVAL) returns and stores -EINVAL with the message");
	b = pinfer_fail(&e, -ENOMEM, "y");
	ok(b == -ENOMEM && e.code == -ENOMEM && !strcmp(e.msg, "y"),
	   "pinfer_fail(-ENOMEM), an errno passed on from a callee, is -ENOMEM too");
	ok(pinfer_fail(NULL, EIO, "z") == -EIO, "pinfer_fail with no err still returns -EIO");
}

int main(void)
{
	int p;

	test_fail_sign();
	test_kmod_limits();

	for (p = 0; p < PINFER_PROVIDER_COUNT; p++)
		test_provider(p);
	test_auto_and_env();
	test_memlock_limited();
	test_kmod_thp_disabled();
	return tap_end();
}
