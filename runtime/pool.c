// SPDX-License-Identifier: MIT
/*
 * The thread pool: n - 1 workers created once and pinned to CPUs; the caller
 * of pinfer_pool_run() is thread 0.
 *
 * A task is published by storing it and incrementing `epoch`; workers wait
 * for the epoch to change. Every wait (workers for a task, the caller for
 * the workers to finish, everybody at a barrier) spins with `pause` for a
 * bounded time and then sleeps on a futex on the same word. A waiter
 * announces itself in a sleeper count before it sleeps, and whoever changes
 * the word wakes the futex only if that count is non-zero; both sides use
 * sequentially consistent operations, so either the waker sees the sleeper
 * or the sleeper's futex_wait sees the new value. Hot words live on cache
 * lines of their own.
 *
 * A lent task (pinfer_pool_lend) is published the same way, the caller not
 * taking part; it counts in `done` as a task does, and the next task waits
 * for that count after raising `recall`.
 */
#include <errno.h>
#include <limits.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/futex.h>

#include "internal.h"

#define SPIN_NS 200000		/* spin this long before sleeping */
#define CACHELINE 64

/* A thread's share for PINFER_STEAL: its next index << 32 | its end. */
struct share {
	alignas(CACHELINE) _Atomic uint64_t v;
};

/* A futex word with the count of threads sleeping on it. */
struct waitword {
	alignas(CACHELINE) atomic_uint value;
	atomic_uint sleepers;
};

struct pinfer_pool {
	int n;
	pthread_t *workers;
	int *cpus;
	int ncpus;

	struct waitword epoch;		/* task number; workers wait on it */
	struct waitword done;		/* workers finished with this task */
	struct waitword phase;		/* barrier generation */
	alignas(CACHELINE) atomic_uint arrived;	/* at the barrier */
	alignas(CACHELINE) atomic_size_t next;	/* dynamic for: next index */
	struct share *shares;			/* steal for: one a thread */

	alignas(CACHELINE) pinfer_task_fn fn;
	void *arg;
	bool stop;
	bool lent;		/* the workers run a lent task (pinfer_pool_lend) */
	unsigned int lent_done;	/* done's value once they have all returned */
	alignas(CACHELINE) atomic_bool recall;	/* the lent task is to return */

	pthread_t caller;	/* thread 0, pinned to cpus[0] while the pool lives */
	cpu_set_t caller_cpus;	/* its affinity before, restored by free */
	bool caller_pinned;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Wait until w->value != old; returns the new value. */
static unsigned int wait_change(struct waitword *w, unsigned int old)
{
	unsigned int v;
	long deadline = 0;
	int i;

	for (;;) {
		for (i = 0; i < 256; i++) {
			v = atomic_load_explicit(&w->value, memory_order_acquire);
			if (v != old)
				return v;
			cpu_relax();
		}
		if (!deadline)
			deadline = now_ns() + SPIN_NS;
		else if (now_ns() > deadline)
			break;
	}
	for (;;) {
		atomic_fetch_add(&w->sleepers, 1);
		syscall(SYS_futex, &w->value, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
		atomic_fetch_sub(&w->sleepers, 1);
		v = atomic_load_explicit(&w->value, memory_order_acquire);
		if (v != old)
			return v;
	}
}

/* Change w->value by @add and wake its sleepers; returns the old value. */
static unsigned int post(struct waitword *w, unsigned int add)
{
	unsigned int old = atomic_fetch_add(&w->value, add);

	if (atomic_load(&w->sleepers))
		syscall(SYS_futex, &w->value, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
	return old;
}

struct worker_start {
	struct pinfer_pool *p;
	int id;
};

static void *worker_main(void *arg)
{
	struct worker_start *ws = arg;
	struct pinfer_pool *p = ws->p;
	int id = ws->id;
	unsigned int seen = 0;

	free(ws);
	for (;;) {
		seen = wait_change(&p->epoch, seen);
		if (p->stop)
			return NULL;
		p->fn(p->arg, id, p->n);
		post(&p->done, 1);
	}
}

/* The CPUs threads may be pinned to: those we may use, of @node if >= 0. */
static int list_cpus(struct pinfer_pool *p, int node, struct pinfer_err *err)
{
	cpu_set_t set;
	int cpu, max = CPU_SETSIZE;

	p->cpus = calloc(max, sizeof(*p->cpus));
	if (!p->cpus)
		return pinfer_fail(err, ENOMEM, "pool: out of memory");
	if (node >= 0 && (numa_available() < 0 || node > numa_max_node()))
		return pinfer_fail(err, EINVAL, "pool: NUMA node %d does not exist", node);
	if (sched_getaffinity(0, sizeof(set), &set))
		return pinfer_fail(err, errno, "pool: sched_getaffinity: %s", strerror(errno));
	for (cpu = 0; cpu < max; cpu++)
		if (CPU_ISSET(cpu, &set) && (node < 0 || numa_node_of_cpu(cpu) == node))
			p->cpus[p->ncpus++] = cpu;
	if (!p->ncpus && node >= 0)
		return pinfer_fail(err, EINVAL, "pool: no CPUs on NUMA node %d that this process may use",
				   node);
	if (!p->ncpus)
		return pinfer_fail(err, EINVAL, "pool: no CPUs to run on");
	return 0;
}

int pinfer_node_default(void)
{
	cpu_set_t set;
	int cpu, node = -1, n;

	if (numa_available() < 0 || numa_max_node() < 1 || sched_getaffinity(0, sizeof(set), &set))
		return -1;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &set))
			continue;
		n = numa_node_of_cpu(cpu);
		if (n < 0 || (node >= 0 && n != node))
			return -1;	/* CPUs on several nodes: no one node */
		node = n;
	}
	return node;
}

int pinfer_pool_create(struct pinfer_pool **out, int n_threads, int node,
		       struct pinfer_err *err)
{
	struct pinfer_pool *p;
	pthread_attr_t attr;
	int i, ret;

	*out = NULL;
	if (n_threads < 0 || n_threads > 1024)
		return pinfer_fail(err, EINVAL, "pool: %d threads", n_threads);
	p = aligned_alloc(CACHELINE, (sizeof(*p) + CACHELINE - 1) / CACHELINE * CACHELINE);
	if (!p)
		return pinfer_fail(err, ENOMEM, "pool: out of memory");
	memset(p, 0, sizeof(*p));
	ret = list_cpus(p, node, err);
	if (ret)
		goto free_pool;
	p->n = n_threads ? n_threads : p->ncpus;
	p->workers = calloc(p->n, sizeof(*p->workers));
	p->shares = aligned_alloc(CACHELINE, p->n * sizeof(*p->shares));
	if (!p->workers || !p->shares) {
		ret = pinfer_fail(err, ENOMEM, "pool: out of memory");
		goto free_pool;
	}
	pthread_attr_init(&attr);
	for (i = 1; i < p->n; i++) {
		struct worker_start *ws = malloc(sizeof(*ws));
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(p->cpus[i % p->ncpus], &set);
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		if (ws) {
			*ws = (struct worker_start){ .p = p, .id = i };
			ret = pthread_create(&p->workers[i], &attr, worker_main, ws);
		}
		if (!ws || ret) {
			free(ws);
			p->n = i;	/* free what was started */
			pthread_attr_destroy(&attr);
			pinfer_pool_free(p);
			return pinfer_fail(err, ws ? ret : ENOMEM,
					   "pool: cannot start worker %d: %s", i,
					   strerror(ws ? ret : ENOMEM));
		}
	}
	pthread_attr_destroy(&attr);
	/*
	 * Thread 0 (the caller) gets the CPU no worker has: left free to move,
	 * it gets woken after blocking I/O onto a CPU whose worker spins, and
	 * the two then share one CPU for as long as the scheduler lets them.
	 * (Alone, it is kept on the pool's node all the same.)
	 */
	p->caller = pthread_self();
	if (!pthread_getaffinity_np(p->caller, sizeof(p->caller_cpus),
						&p->caller_cpus)) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(p->cpus[0], &set);
		p->caller_pinned = !pthread_setaffinity_np(p->caller, sizeof(set), &set);
	}
	*out = p;
	return 0;

free_pool:
	free(p->workers);
	free(p->shares);
	free(p->cpus);
	free(p);
	return ret;
}

void pinfer_pool_free(struct pinfer_pool *p)
{
	int i;

	if (!p)
		return;
	pinfer_pool_reclaim(p);
	p->stop = true;
	post(&p->epoch, 1);
	for (i = 1; i < p->n; i++)
		pthread_join(p->workers[i], NULL);
	if (p->caller_pinned && pthread_equal(p->caller, pthread_self()))
		pthread_setaffinity_np(p->caller, sizeof(p->caller_cpus), &p->caller_cpus);
	free(p->workers);
	free(p->shares);
	free(p->cpus);
	free(p);
}

int pinfer_pool_threads(const struct pinfer_pool *p)
{
	return p->n;
}

void pinfer_pool_reclaim(struct pinfer_pool *p)
{
	unsigned int v;

	if (!p->lent)
		return;
	atomic_store(&p->recall, true);
	v = atomic_load_explicit(&p->done.value, memory_order_acquire);
	while (v != p->lent_done)
		v = wait_change(&p->done, v);
	p->lent = false;
}

bool pinfer_pool_recalled(const struct pinfer_pool *p)
{
	return atomic_load_explicit(&p->recall, memory_order_relaxed);
}

void pinfer_pool_lend(struct pinfer_pool *p, pinfer_task_fn fn, void *arg)
{
	pinfer_pool_reclaim(p);
	if (p->n < 2)
		return;
	p->fn = fn;
	p->arg = arg;
	atomic_store(&p->recall, false);
	p->lent_done = atomic_load(&p->done.value) + (unsigned int)(p->n - 1);
	p->lent = true;
	post(&p->epoch, 1);			/* publishes fn and arg */
}

void pinfer_pool_run(struct pinfer_pool *p, pinfer_task_fn fn, void *arg)
{
	unsigned int want, v;

	pinfer_pool_reclaim(p);
	p->fn = fn;
	p->arg = arg;
	want = atomic_load(&p->done.value) + (unsigned int)(p->n - 1);
	post(&p->epoch, 1);			/* publishes fn and arg */
	fn(arg, 0, p->n);
	v = atomic_load_explicit(&p->done.value, memory_order_acquire);
	while (v != want)
		v = wait_change(&p->done, v);
}

void pinfer_pool_barrier(struct pinfer_pool *p)
{
	unsigned int phase = atomic_load(&p->phase.value);

	if (atomic_fetch_add(&p->arrived, 1) == (unsigned int)(p->n - 1)) {
		atomic_store(&p->arrived, 0);
		post(&p->phase, 1);
		return;
	}
	wait_change(&p->phase, phase);
}

struct for_task {
	size_t n, chunk;
	enum pinfer_schedule sched;
	pinfer_for_fn fn;
	void *arg;
	atomic_size_t *next;
	struct share *shares;
};

static uint64_t share_of(uint32_t next, uint32_t end)
{
	return (uint64_t)next << 32 | end;
}

/*
 * PINFER_STEAL, when @thread's own share is done: move the back half of
 * the largest share left (all of it when one index is left) to its own.
 * False when every share is empty. Each share changes only by
 * compare-and-swap, so an index is taken by one thread only. A share
 * being moved is empty for a moment; a thread that finds nothing then
 * returns a little early, and the moving thread does the work.
 */
static bool steal(const struct for_task *t, int thread, int n_threads)
{
	for (;;) {
		uint64_t best = 0;
		uint32_t most = 0, next, end, mid;
		int i, victim = -1;

		for (i = 0; i < n_threads; i++) {
			uint64_t v = atomic_load(&t->shares[i].v);

			next = (uint32_t)(v >> 32), end = (uint32_t)v;
			if (i != thread && next < end && end - next > most)
				most = end - next, victim = i, best = v;
		}
		if (victim < 0)
			return false;
		next = (uint32_t)(best >> 32), end = (uint32_t)best;
		mid = next + most / 2;
		if (atomic_compare_exchange_strong(&t->shares[victim].v, &best, share_of(next, mid))) {
			atomic_store(&t->shares[thread].v, share_of(mid, end));
			return true;
		}
	}
}

/* PINFER_STEAL: take from the front of the own share; steal when it is done. */
static void steal_body(const struct for_task *t, int thread, int n_threads)
{
	_Atomic uint64_t *own = &t->shares[thread].v;

	for (;;) {
		uint64_t v = atomic_load(own);
		uint32_t next = (uint32_t)(v >> 32), end = (uint32_t)v, take;

		if (next >= end) {
			if (!steal(t, thread, n_threads))
				return;
			continue;
		}
		take = (end - next + 3) / 4;
		if (take < t->chunk)
			take = end - next < t->chunk ? end - next : (uint32_t)t->chunk;
		if (atomic_compare_exchange_strong(own, &v, share_of(next + take, end)))
			t->fn(t->arg, next, next + take, thread);
	}
}

static void for_body(void *arg, int thread, int n_threads)
{
	struct for_task *t = arg;
	size_t b, e;

	if (t->sched == PINFER_STATIC) {
		b = t->n * thread / n_threads;
		e = t->n * (thread + 1) / n_threads;
		if (b < e)
			t->fn(t->arg, b, e, thread);
		return;
	}
	if (t->sched == PINFER_STEAL) {
		steal_body(t, thread, n_threads);
		return;
	}
	for (;;) {
		b = atomic_fetch_add_explicit(t->next, t->chunk, memory_order_relaxed);
		if (b >= t->n)
			return;
		e = b + t->chunk < t->n ? b + t->chunk : t->n;
		t->fn(t->arg, b, e, thread);
	}
}

void pinfer_parallel_for(struct pinfer_pool *p, size_t n, size_t chunk,
			 enum pinfer_schedule sched, pinfer_for_fn fn, void *arg)
{
	struct for_task t = {
		.n = n, .chunk = chunk ? chunk : 1, .sched = sched, .fn = fn,
		.arg = arg, .next = &p->next, .shares = p->shares,
	};
	int i;

	pinfer_pool_reclaim(p);	/* before the shares change under a lent task */
	if (sched == PINFER_STEAL && n > UINT32_MAX)	/* a share is two 32-bit indices */
		t.sched = sched = PINFER_DYNAMIC;
	atomic_store(&p->next, 0);
	if (sched == PINFER_STEAL)
		for (i = 0; i < p->n; i++)
			atomic_store(&p->shares[i].v, share_of((uint32_t)(n * i / p->n),
							       (uint32_t)(n * (i + 1) / p->n)));
	pinfer_pool_run(p, for_body, &t);
}
