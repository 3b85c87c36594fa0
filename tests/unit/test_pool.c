// SPDX-License-Identifier: MIT
/*
 * libpinfer thread pool: parallel sums for 1..8 threads with static,
 * dynamic and stealing schedules equal the closed form; dynamic chunks and
 * stealing cover every index exactly once, and a held-up thread's share is
 * stolen; each thread runs each task once; the barrier orders phases;
 * workers stay on the CPUs they were pinned to, those of the NUMA node
 * asked for (the last one: node 1 in the test VM); an idle pool's workers
 * go to sleep (not a timing: their state in /proc); a task lent to the
 * workers runs while the caller goes on and is recalled by what comes
 * next; bad arguments are refused.
 */
#include <errno.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "libpinfer.h"
#include "../tap.h"

#define MAXT 8

struct padded {
	_Alignas(64) uint64_t v;
};

struct sum_task {
	struct padded partial[MAXT];
};

static void sum_body(void *arg, size_t b, size_t e, int thread)
{
	struct sum_task *t = arg;
	size_t i;

	for (i = b; i < e; i++)
		t->partial[thread].v += i;
}

static uint64_t parallel_sum(struct pinfer_pool *p, size_t n,
			     enum pinfer_schedule s, size_t chunk)
{
	struct sum_task t;
	uint64_t sum = 0;
	int i;

	memset(&t, 0, sizeof(t));
	pinfer_parallel_for(p, n, chunk, s, sum_body, &t);
	for (i = 0; i < MAXT; i++)
		sum += t.partial[i].v;
	return sum;
}

struct cover_task {
	atomic_int *hits;
	atomic_int threads_used[MAXT];
};

static void cover_body(void *arg, size_t b, size_t e, int thread)
{
	struct cover_task *t = arg;
	size_t i;

	atomic_fetch_add(&t->threads_used[thread], 1);
	for (i = b; i < e; i++)
		atomic_fetch_add(&t->hits[i], 1);
}

/* Which thread ran each index; thread 0's first call sleeps, so others steal from it. */
struct steal_task {
	atomic_int *by;		/* thread + 1, or 0 */
	atomic_int twice;	/* indices run more than once */
	atomic_int slept;
};

static void steal_body(void *arg, size_t b, size_t e, int thread)
{
	struct steal_task *t = arg;
	size_t i;

	if (thread == 0 && !atomic_exchange(&t->slept, 1))
		usleep(100 * 1000);
	for (i = b; i < e; i++)
		if (atomic_exchange(&t->by[i], thread + 1))
			atomic_fetch_add(&t->twice, 1);
}

struct run_task {
	atomic_int seen[MAXT];
	atomic_int bad_n;
	int n;
};

static void run_body(void *arg, int thread, int n)
{
	struct run_task *t = arg;

	atomic_fetch_add(&t->seen[thread], 1);
	if (n != t->n)
		atomic_fetch_add(&t->bad_n, 1);
}

struct barrier_task {
	struct pinfer_pool *p;
	struct padded slot[MAXT];
	atomic_int errors;
	int rounds;
};

/* Each round: everyone writes its slot, barrier, everyone checks all slots. */
static void barrier_body(void *arg, int thread, int n)
{
	struct barrier_task *t = arg;
	int r, i;

	for (r = 1; r <= t->rounds; r++) {
		t->slot[thread].v = r;
		pinfer_pool_barrier(t->p);
		for (i = 0; i < n; i++)
			if (t->slot[i].v != (uint64_t)r)
				atomic_fetch_add(&t->errors, 1);
		pinfer_pool_barrier(t->p);
	}
}

struct cpu_task {
	int node;
	atomic_int bad;		/* threads not pinned to one CPU of @node */
	atomic_int cpu_of[256];	/* [thread]: its CPU */
	atomic_int tid_of[256];	/* [thread]: its thread id */
};

/*
 * Each thread, the caller (thread 0) included: its affinity is exactly one
 * CPU, that CPU is on the task's node, and it runs there.
 */
static void cpu_body(void *arg, int thread, int n)
{
	struct cpu_task *t = arg;
	cpu_set_t set;
	int cpu;

	(void)n;
	if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) || CPU_COUNT(&set) != 1) {
		atomic_fetch_add(&t->bad, 1);
		return;
	}
	for (cpu = 0; !CPU_ISSET(cpu, &set); cpu++)
		;
	if (numa_node_of_cpu(cpu) != t->node || sched_getcpu() != cpu)
		atomic_fetch_add(&t->bad, 1);
	if (thread < 256) {
		atomic_store(&t->cpu_of[thread], cpu);
		atomic_store(&t->tid_of[thread], (int)gettid());
	}
}

/*
 * PINFER_STEAL with thread 0 held up in its first chunk: every index runs
 * exactly once, and (with other threads) some of thread 0's share, which
 * it would have run alone, runs on the others.
 */
static void steal_check(struct pinfer_pool *p, int n, size_t N)
{
	struct steal_task st = { .by = calloc(N, sizeof(*st.by)) };
	size_t i, missed = 0, stolen = 0;

	pinfer_parallel_for(p, N, 1, PINFER_STEAL, steal_body, &st);
	for (i = 0; i < N; i++) {
		missed += !atomic_load(&st.by[i]);
		stolen += i < N / n && atomic_load(&st.by[i]) > 1;
	}
	ok(!missed && !atomic_load(&st.twice) && (n == 1 ? !stolen : stolen > 0),
	   "%d threads: stealing covers every index exactly once; of the held-up thread 0's "
	   "share, %zu of %zu ran on the others", n, stolen, N / n);
	free(st.by);
}

/*
 * PINFER_STEAL over 2^32 indices or more (a share holds two 32-bit
 * indices, so it goes DYNAMIC's way): chunks of 2^28, each range noted;
 * followed from 0, they must tile [0, n) exactly, nothing cut at 2^32.
 */
struct range_task {
	atomic_int count;
	size_t b[64], e[64];
};

static void range_body(void *arg, size_t b, size_t e, int thread)
{
	struct range_task *t = arg;
	int k = atomic_fetch_add(&t->count, 1);

	(void)thread;
	if (k < 64)
		t->b[k] = b, t->e[k] = e;
}

static void steal_huge_check(struct pinfer_pool *p, int n)
{
	const size_t N = ((size_t)1 << 32) + 3;
	struct range_task t = { 0 };
	size_t next = 0;
	int k, j, count;
	bool tiled = true;

	pinfer_parallel_for(p, N, (size_t)1 << 28, PINFER_STEAL, range_body, &t);
	count = atomic_load(&t.count);
	for (k = 0; k < count && k < 64 && tiled; k++) {	/* the range that starts at next */
		for (j = 0; j < count && t.b[j] != next; j++)
			;
		tiled = j < count && t.e[j] > t.b[j];
		next = tiled ? t.e[j] : next;
	}
	ok(count <= 64 && tiled && next == N,
	   "%d threads: stealing over 2^32 + 3 indices: %d ranges, tiling them exactly", n, count);
}

/*
 * A lent task: each thread that runs it notes itself, then works until
 * recalled (at most 10 s: a recall that never comes is a failure, not a
 * hang) and notes that it returned.
 */
struct lend_task {
	struct pinfer_pool *p;
	atomic_int ran[MAXT];
	atomic_int started, returned, unrecalled, bad_n;
	int n;
};

static void lend_body(void *arg, int thread, int n)
{
	struct lend_task *t = arg;
	int i;

	atomic_fetch_add(&t->ran[thread], 1);
	atomic_fetch_add(&t->started, 1);
	if (n != t->n)
		atomic_fetch_add(&t->bad_n, 1);
	for (i = 0; !pinfer_pool_recalled(t->p); i++) {
		if (i == 100000) {
			atomic_fetch_add(&t->unrecalled, 1);
			break;
		}
		usleep(100);
	}
	atomic_fetch_add(&t->returned, 1);
}

/* Wait (at most 10 s) until @n workers have started @t. */
static bool all_started(struct lend_task *t, int n)
{
	int i;

	for (i = 0; i < 10000 && atomic_load(&t->started) < n; i++)
		usleep(1000);
	return atomic_load(&t->started) == n;
}

/*
 * pinfer_pool_lend(): the workers, not the caller, run the task while
 * the caller goes on (all have started, none returned); whatever comes
 * next takes them back first: a parallel for (whose sum is right), a
 * reclaim, a second lend, freeing the pool. With one thread, nothing runs.
 */
static char hung_msg[128];

/* A lent task that nothing recalls would hang its step: a failure, not a time-out. */
static void lend_hung(int sig)
{
	(void)sig;
	if (write(1, hung_msg, strlen(hung_msg)) < 0)
		_exit(2);
	_exit(1);
}

static void lend_check(int n)
{
	const size_t N = 100003;
	const uint64_t want = (uint64_t)N * (N - 1) / 2;
	struct lend_task t = { .n = n };
	struct pinfer_pool *p;
	struct pinfer_err err;
	bool going, sum_ok, after;
	int k, ran_ok = 1;

	snprintf(hung_msg, sizeof(hung_msg),
		 "not ok - %d threads: a lend step hung for 60 s: the pool never took a lent task back\n", n);
	signal(SIGALRM, lend_hung);
	alarm(60);
	if (pinfer_pool_create(&p, n, -1, &err)) {
		alarm(0);
		return;
	}
	t.p = p;
	pinfer_pool_lend(p, lend_body, &t);
	going = all_started(&t, n - 1) && !atomic_load(&t.returned);
	sum_ok = parallel_sum(p, N, PINFER_STEAL, 1) == want;
	after = atomic_load(&t.returned) == n - 1;
	ok(going && sum_ok && after,
	   "%d threads: a lent task runs on the workers while the caller goes on; the next parallel for recalls them and sums right",
	   n);

	pinfer_pool_lend(p, lend_body, &t);
	going = all_started(&t, 2 * (n - 1));
	pinfer_pool_lend(p, lend_body, &t);	/* recalls the first */
	going = going && all_started(&t, 3 * (n - 1)) && atomic_load(&t.returned) == 2 * (n - 1);
	pinfer_pool_reclaim(p);
	pinfer_pool_reclaim(p);			/* nothing lent: returns */
	after = atomic_load(&t.returned) == 3 * (n - 1);
	ok(going && after, "%d threads: a second lend recalls the first, and reclaim waits for the second", n);

	pinfer_pool_lend(p, lend_body, &t);
	all_started(&t, 4 * (n - 1));
	pinfer_pool_free(p);			/* recalls it too */
	for (k = 1; k < n; k++)
		ran_ok = ran_ok && atomic_load(&t.ran[k]) == 4;
	ok(!atomic_load(&t.ran[0]) && ran_ok && atomic_load(&t.returned) == 4 * (n - 1) &&
	   !atomic_load(&t.unrecalled) && !atomic_load(&t.bad_n),
	   "%d threads: freeing the pool recalls a lent task; each worker ran each of 4 once, thread 0 none", n);
	alarm(0);
}

static void test_threads(int n)
{
	const size_t N = 1000003;
	const uint64_t want = (uint64_t)N * (N - 1) / 2;
	struct cover_task cover = { 0 };
	struct run_task run = { .n = n };
	/* oversubscribed spin-waits burn their budget: fewer rounds then */
	int rounds = n <= sysconf(_SC_NPROCESSORS_ONLN) ? 2000 : 100;
	struct barrier_task bar = { .rounds = rounds };
	struct pinfer_pool *p;
	struct pinfer_err err;
	size_t i, wrong = 0;
	int k, used = 0, runs_ok = 1;

	if (!ok(!pinfer_pool_create(&p, n, -1, &err) && pinfer_pool_threads(p) == n,
		"%d threads: pool created", n))
		return;
	ok(parallel_sum(p, N, PINFER_STATIC, 0) == want, "%d threads: static sum", n);
	ok(parallel_sum(p, N, PINFER_DYNAMIC, 1000) == want, "%d threads: dynamic sum", n);
	ok(parallel_sum(p, 3, PINFER_STATIC, 0) == 3 && parallel_sum(p, 0, PINFER_DYNAMIC, 7) == 0,
	   "%d threads: fewer indices than threads, and none", n);

	ok(parallel_sum(p, N, PINFER_STEAL, 1) == want && parallel_sum(p, N, PINFER_STEAL, 1000) == want,
	   "%d threads: stealing sums, chunks of 1 and 1000", n);
	ok(parallel_sum(p, 3, PINFER_STEAL, 1) == 3 && parallel_sum(p, 1, PINFER_STEAL, 5) == 0 &&
	   parallel_sum(p, 0, PINFER_STEAL, 1) == 0,
	   "%d threads: stealing over fewer indices than threads, one, and none", n);
	steal_check(p, n, N);
	steal_huge_check(p, n);

	cover.hits = calloc(N, sizeof(*cover.hits));
	pinfer_parallel_for(p, N, 7, PINFER_DYNAMIC, cover_body, &cover);
	for (i = 0; i < N; i++)
		wrong += atomic_load(&cover.hits[i]) != 1;
	for (k = 0; k < n; k++)
		used += atomic_load(&cover.threads_used[k]) > 0;
	ok(wrong == 0, "%d threads: dynamic chunks of 7 cover every index exactly once (%d threads took chunks)",
	   n, used);
	free(cover.hits);

	for (i = 0; i < (size_t)rounds; i++)
		pinfer_pool_run(p, run_body, &run);
	for (k = 0; k < n; k++)
		runs_ok = runs_ok && atomic_load(&run.seen[k]) == rounds;
	ok(runs_ok && !atomic_load(&run.bad_n),
	   "%d threads: %d tasks, each run exactly once by each thread", n, rounds);

	bar.p = p;
	pinfer_pool_run(p, barrier_body, &bar);
	ok(!atomic_load(&bar.errors), "%d threads: %d barrier rounds keep phases apart",
	   n, bar.rounds);
	pinfer_pool_free(p);
}

/* The scheduler state of thread @tid of this process: 'R', 'S', ... */
static char thread_state(int tid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	return p && p[1] == ' ' ? p[2] : '?';
}

static void test_pinning_and_idle(void)
{
	struct cpu_task ct = { .bad = 0 };
	struct pinfer_pool *p;
	struct pinfer_err err;
	int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t before_set, after_set;
	int i, j, shared = 0, awake = 0, tries;

	ct.node = numa_available() < 0 ? 0 : numa_max_node();
	pthread_getaffinity_np(pthread_self(), sizeof(before_set), &before_set);
	if (!ok(!pinfer_pool_create(&p, 0, ct.node, &err), "a pool on the CPUs of node %d (%s)",
		ct.node, err.msg))
		return;
	pinfer_pool_run(p, cpu_body, &ct);
	for (i = 0; i < pinfer_pool_threads(p) && i < 256; i++)
		for (j = 0; j < i; j++)
			shared += atomic_load(&ct.cpu_of[i]) == atomic_load(&ct.cpu_of[j]);
	ok(pinfer_pool_threads(p) >= 1 && pinfer_pool_threads(p) <= n &&
	   !atomic_load(&ct.bad) && !shared,
	   "%d threads by default; each, the caller too, pinned to its own CPU of node %d, and running there (sched_getcpu)",
	   pinfer_pool_threads(p), ct.node);

	/* idle: after a bounded spin every worker sleeps on its futex */
	for (tries = 0; tries < 100; tries++) {
		usleep(50 * 1000);
		for (awake = 0, i = 1; i < pinfer_pool_threads(p) && i < 256; i++)
			awake += thread_state(atomic_load(&ct.tid_of[i])) != 'S';
		if (!awake)
			break;
	}
	ok(!awake, "idle pool: its %d workers are asleep (state S) after %d ms",
	   pinfer_pool_threads(p) - 1, 50 * (tries + 1));
	pinfer_pool_free(p);
	pthread_getaffinity_np(pthread_self(), sizeof(after_set), &after_set);
	ok(CPU_EQUAL(&before_set, &after_set),
	   "freeing the pool gives the caller back its CPUs (%d)", CPU_COUNT(&after_set));
}

int main(void)
{
	struct pinfer_pool *p;
	struct pinfer_err err;
	int n;

	for (n = 1; n <= MAXT; n++) {
		test_threads(n);
		lend_check(n);
	}
	test_pinning_and_idle();
	ok(pinfer_pool_create(&p, -1, -1, &err) == -EINVAL, "-1 threads: %s", err.msg);
	ok(pinfer_pool_create(&p, 2, 999, &err) == -EINVAL && strstr(err.msg, "999"),
	   "node 999: %s", err.msg);
	return tap_end();
}
