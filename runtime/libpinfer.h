/* SPDX-License-Identifier: MIT */
/*
 * libpinfer: the runtime under pinfer's engine.
 *
 *   regions  pinned memory from the best provider the machine allows
 *   loading  file ranges -> region ranges at the drive's speed, sync or async
 *   pool     one pool of pinned spin-wait threads for parallel work
 *
 * Errors: functions return 0 (or a non-negative value) on success and a
 * negative errno on failure, with a one-line message naming the cause (and,
 * where there is one, the fix) in the caller's struct pinfer_err. Nothing
 * aborts; every object has a create/free pair that releases all it holds.
 */
#ifndef LIBPINFER_H
#define LIBPINFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pinfer_err {
	int code;		/* negative errno */
	int64_t file_off;	/* a failed load's file offset, else -1 */
	char msg[320];
};

/*
 * Fill @err (if not NULL) with the negative errno of @code and a message;
 * returns that negative errno. @code may be given either way, EINVAL or a
 * -EINVAL passed on from a callee: the sign is not the caller's worry.
 */
int pinfer_fail(struct pinfer_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- regions ---------------------------------------------------------------- */

enum pinfer_provider {
	PINFER_PROVIDER_AUTO = -1,	/* the first of the below that works */
	PINFER_PROVIDER_KMOD = 0,	/* /dev/pinfer (pinfer.ko) */
	PINFER_PROVIDER_HUGETLB,	/* memfd(MFD_HUGETLB) from the 2 MiB pool */
	PINFER_PROVIDER_THP,		/* anonymous, MADV_HUGEPAGE, mlock */
	PINFER_PROVIDER_PLAIN,		/* anonymous, mlock if allowed */
	PINFER_PROVIDER_COUNT,
};

struct pinfer_region;

struct pinfer_region_props {
	enum pinfer_provider provider;
	size_t size;		/* bytes mapped (the request rounded up) */
	size_t page_size;	/* 2 MiB, or 4096 for plain */
	int node;		/* NUMA node asked for, -1 = none */
	bool locked;		/* cannot be swapped out */
	char note[400];		/* why not a better provider; lock state */
};

/*
 * Map @size bytes on NUMA node @node (-1: no binding) from @provider, or with
 * PINFER_PROVIDER_AUTO from the first provider that works (kmod, hugetlb,
 * thp, plain). The environment variable PINFER_PROVIDER=kmod|hugetlb|thp|
 * plain overrides AUTO; a provider that is asked for by name and cannot be
 * had is an error saying why and how to fix it, never a fallback.
 */
int pinfer_region_create(struct pinfer_region **out, size_t size, int node,
			 enum pinfer_provider provider, struct pinfer_err *err);
void pinfer_region_free(struct pinfer_region *r);
void *pinfer_region_ptr(const struct pinfer_region *r);
void pinfer_region_props(const struct pinfer_region *r,
			 struct pinfer_region_props *props);
/*
 * What pinfer.ko lets this machine pin, from /sys/class/misc/pinfer: the
 * module's limit (max_pinned_mb) in *@max, 0 for none, and what all its
 * regions pin now in *@pinned. -ENODEV when /dev/pinfer is not there.
 */
int pinfer_kmod_limits(uint64_t *max, uint64_t *pinned);
const char *pinfer_provider_name(enum pinfer_provider p);
/* "kmod" etc. -> the provider; PINFER_PROVIDER_COUNT if not a name */
enum pinfer_provider pinfer_provider_parse(const char *name);

/* ---- loading ----------------------------------------------------------------- */

struct pinfer_range {
	uint64_t file_off;
	uint64_t region_off;
	uint64_t len;
};

struct pinfer_loader;

/* Called as loads progress: bytes done and total of the current ticket. */
typedef void (*pinfer_progress_fn)(uint64_t done, uint64_t total, void *arg);

struct pinfer_loader_info {
	bool direct;		/* the file takes O_DIRECT */
	bool fixed_buffers;	/* the region is registered with io_uring */
	bool kmod;		/* reads are pinfer.ko prefetch commands */
	unsigned int depth;	/* requests in flight at most */
	uint64_t chunk;		/* bytes per request at most */
	bool uring;		/* false: io_uring could not start, plain pread()s */
	char note[200];		/* why not io_uring, and the fix; else empty */
};

/*
 * A loader reads the file at @path into region @r through one io_uring:
 * with the kmod provider by pinfer.ko prefetch commands, otherwise by
 * O_DIRECT reads (into registered buffers where the kernel allows) of up to
 * 4 MiB, 32 in flight, and buffered reads where O_DIRECT cannot be used
 * (where io_uring cannot start, as for an unprivileged process with a small
 * RLIMIT_MEMLOCK on some kernels or with io_uring disabled, or with the
 * environment variable PINFER_URING=0, by pread() as submitted, the reason
 * in pinfer_loader_info()'s note)
 * (tmpfs, unaligned heads and tails).
 */
int pinfer_loader_create(struct pinfer_loader **out, struct pinfer_region *r,
			 const char *path, struct pinfer_err *err);
void pinfer_loader_free(struct pinfer_loader *l);
void pinfer_loader_info(const struct pinfer_loader *l,
			struct pinfer_loader_info *info);
void pinfer_loader_set_progress(struct pinfer_loader *l, pinfer_progress_fn fn,
				void *arg);

/*
 * Start loading @n ranges; returns a ticket (> 0) or a negative errno. A
 * range outside the region or the file is refused here, naming it.
 */
int pinfer_load_submit(struct pinfer_loader *l, const struct pinfer_range *ranges,
		       size_t n, struct pinfer_err *err);
/* Wait for @ticket: 0, or the first error of its reads (naming the offset). */
int pinfer_load_wait(struct pinfer_loader *l, int ticket, struct pinfer_err *err);
/* Without blocking: 1 done, 0 not yet, or the ticket's error. */
int pinfer_load_poll(struct pinfer_loader *l, int ticket, struct pinfer_err *err);
/*
 * Reap finished requests and move waiting ones into the ring, without
 * blocking: what keeps reads flowing while the caller computes.
 */
void pinfer_load_pump(struct pinfer_loader *l);
/* submit + wait */
int pinfer_load(struct pinfer_loader *l, const struct pinfer_range *ranges,
		size_t n, struct pinfer_err *err);

/* ---- thread pool -------------------------------------------------------------- */

struct pinfer_pool;

/* Body of pinfer_pool_run: runs once on each of the pool's threads. */
typedef void (*pinfer_task_fn)(void *arg, int thread, int n_threads);
/* Body of pinfer_parallel_for: indices [begin, end). */
typedef void (*pinfer_for_fn)(void *arg, size_t begin, size_t end, int thread);

enum pinfer_schedule {
	PINFER_STATIC,		/* equal contiguous shares, one per thread */
	PINFER_DYNAMIC,		/* chunks taken from a shared counter */
	/*
	 * equal contiguous shares, each taken from its front a quarter of
	 * what is left at a time (at least the chunk); a thread done with
	 * its own takes the back half of the largest share left
	 */
	PINFER_STEAL,
};

/*
 * The NUMA node of all the CPUs this process may use, or -1 when they are
 * on several nodes (or the machine has one): where memory and threads
 * belong when nobody says.
 */
int pinfer_node_default(void);

/*
 * @n_threads threads in all: the caller of pinfer_pool_run() is thread 0,
 * and n_threads - 1 workers are created once, pinned one per CPU of NUMA
 * node @node that this process may use (-1: any node). n_threads 0 means one
 * per such CPU. The calling thread is pinned to the first of those CPUs
 * (the one no worker has) until pinfer_pool_free(), called from the same
 * thread, gives it back its affinity: thread 0 must be the thread that
 * creates the pool.
 */
int pinfer_pool_create(struct pinfer_pool **out, int n_threads, int node,
		       struct pinfer_err *err);
void pinfer_pool_free(struct pinfer_pool *p);
int pinfer_pool_threads(const struct pinfer_pool *p);

/* Run @fn on every thread of the pool; returns when all have finished. */
void pinfer_pool_run(struct pinfer_pool *p, pinfer_task_fn fn, void *arg);

/* Inside a task: wait until every thread of the pool has arrived. */
void pinfer_pool_barrier(struct pinfer_pool *p);

/*
 * Lend the workers (threads 1 .. n - 1) @fn while the caller goes on with
 * its own work: the next pinfer_pool_run() or pinfer_parallel_for() (or
 * pinfer_pool_reclaim(), or pinfer_pool_free()) first recalls them and
 * waits until each has returned, so @arg must live until then. @fn polls
 * pinfer_pool_recalled() and returns soon after it turns true; it must not
 * call pinfer_pool_barrier(). With one thread, nothing runs.
 */
void pinfer_pool_lend(struct pinfer_pool *p, pinfer_task_fn fn, void *arg);
bool pinfer_pool_recalled(const struct pinfer_pool *p);
void pinfer_pool_reclaim(struct pinfer_pool *p);

/*
 * Split [0, n) over the pool; DYNAMIC hands out @chunk indices at a time,
 * STEAL at least @chunk (DYNAMIC's way for n of 2^32 or more).
 */
void pinfer_parallel_for(struct pinfer_pool *p, size_t n, size_t chunk,
			 enum pinfer_schedule sched, pinfer_for_fn fn, void *arg);

#endif
