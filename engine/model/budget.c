// SPDX-License-Identifier: MIT
/*
 * The default memory budget: what this machine, this process's memory
 * cgroup, pinfer.ko and the hugetlb pool leave for a model
 * (llm_budget_default() in placement.h says how much of each).
 */
#include "placement.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static uint64_t meminfo(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	uint64_t kb = 0;
	size_t n = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':') {
			kb = strtoull(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb << 10;
}

/* A cgroup file's number; "max" (v2) or absent: UINT64_MAX. */
static uint64_t cgroup_u64(const char *dir, const char *file)
{
	char path[6200 + 64], buf[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "re");
	if (!f)
		return UINT64_MAX;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return buf[0] >= '0' && buf[0] <= '9' ? strtoull(buf, NULL, 10) : UINT64_MAX;
}

/* The value of @key in the cgroup's memory.stat, or 0. */
static uint64_t cgroup_stat(const char *dir, const char *key)
{
	char path[6200 + 64], line[256];
	unsigned long long v = 0;
	size_t n = strlen(key);
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ' ') {
			v = strtoull(line + n + 1, NULL, 10);
			break;
		}
	if (f)
		fclose(f);
	return v;
}

/*
 * The memory this process's memory cgroup, and each of its ancestors, has
 * left: the smallest of limit less usage (v2: memory.max and memory.high
 * less memory.current; v1: memory.limit_in_bytes less memory.usage_in_bytes),
 * the page cache (memory.stat's file, v1 total_cache) not counted as used:
 * the kernel reclaims it when the group needs room. UINT64_MAX where there
 * is no limit. The cgroup file system is found in
 * /proc/self/mountinfo, the process's group in /proc/self/cgroup.
 */
static uint64_t cgroup_left(void)
{
	char line[4096], mnt[2][1024] = { "", "" }, root[2][1024] = { "", "" };
	char grp[2][2048] = { "", "" }, dir[6200];
	uint64_t left = UINT64_MAX;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int v;

	while (f && fgets(line, sizeof(line), f)) {	/* v = 0: v1 memory, 1: v2 */
		char r[1024], m[1024], *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %1023s %1023s", r, m) != 2)
			continue;
		if (!strncmp(dash, " - cgroup2 ", 11))
			v = 1;
		else if (!strncmp(dash, " - cgroup ", 10) && strstr(dash, "memory"))
			v = 0;
		else
			continue;
		if (!mnt[v][0]) {
			snprintf(mnt[v], sizeof(mnt[v]), "%s", m);
			snprintf(root[v], sizeof(root[v]), "%s", r);
		}
	}
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof(line), f)) {
		char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;

		if (!path)
			continue;
		path[strcspn(path, "\n")] = 0;
		if (!strncmp(line, "0::", 3))
			snprintf(grp[1], sizeof(grp[1]), "%s", path + 1);
		else if (strstr(ctl, "memory") && strstr(ctl, "memory") < path)
			snprintf(grp[0], sizeof(grp[0]), "%s", path + 1);
	}
	if (f)
		fclose(f);
	for (v = 0; v < 2; v++) {
		const char *rel = grp[v];
		size_t rl = strlen(root[v]), n;

		if (!mnt[v][0] || !grp[v][0])
			continue;
		if (strcmp(root[v], "/") && !strncmp(rel, root[v], rl))
			rel += rl;	/* a namespace's view: the mount is the group */
		snprintf(dir, sizeof(dir), "%s%s", mnt[v], rel);
		for (;;) {	/* the group, then its ancestors up to the mount */
			uint64_t use = cgroup_u64(dir, v ? "memory.current" : "memory.usage_in_bytes");
			uint64_t cache = cgroup_stat(dir, v ? "file" : "total_cache");
			uint64_t lim = cgroup_u64(dir, v ? "memory.max" : "memory.limit_in_bytes");
			uint64_t high = v ? cgroup_u64(dir, "memory.high") : UINT64_MAX;

			lim = high < lim ? high : lim;
			if (use != UINT64_MAX)
				use = use > cache ? use - cache : 0;
			if (lim != UINT64_MAX && lim < (1ull << 62)) {	/* v1: "no limit" is huge */
				lim = lim > use || use == UINT64_MAX ? lim - (use == UINT64_MAX ? 0 : use) : 0;
				left = lim < left ? lim : left;
			}
			n = strlen(dir);
			if (n <= strlen(mnt[v]))
				break;
			while (n > strlen(mnt[v]) && dir[n - 1] != '/')
				n--;
			dir[n > strlen(mnt[v]) ? n - 1 : n] = 0;
		}
	}
	return left;
}

uint64_t llm_budget_default(enum pinfer_provider prov, uint64_t *lock, char *why, size_t n)
{
	uint64_t avail = meminfo("MemAvailable"), margin = avail / 8, b, cg = cgroup_left();
	uint64_t max, used;
	struct rlimit rl;

	margin = margin < (256ull << 20) ? 256ull << 20 : margin;
	b = avail > margin ? avail - margin : 0;
	snprintf(why, n, "available memory %" PRIu64 " MiB less %" PRIu64 " MiB",
		 avail >> 20, margin >> 20);
	if (cg != UINT64_MAX && cg - cg / 8 < b) {
		b = cg - cg / 8;
		snprintf(why, n, "what the memory cgroup has left, %" PRIu64 " MiB, less an eighth",
			 cg >> 20);
	}
	*lock = UINT64_MAX;
	if (geteuid() && !getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur != RLIM_INFINITY)
		*lock = rl.rlim_cur;
	if ((prov == PINFER_PROVIDER_AUTO || prov == PINFER_PROVIDER_KMOD) &&
	    !pinfer_kmod_limits(&max, &used)) {
		if (max && max - (used < max ? used : max) < b) {
			b = max - (used < max ? used : max);
			snprintf(why, n, "pinfer.ko's max_pinned_mb less what is pinned: %" PRIu64 " MiB",
				 b >> 20);
		}
	}
	if (prov == PINFER_PROVIDER_HUGETLB) {
		b = meminfo("HugePages_Free") >> 10;	/* a count, not kB */
		b *= meminfo("Hugepagesize");
		snprintf(why, n, "the free 2 MiB pages of the hugetlb pool: %" PRIu64 " MiB", b >> 20);
		*lock = UINT64_MAX;	/* hugetlb pages are not charged to it */
	}
	return b;
}
