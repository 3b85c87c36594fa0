// SPDX-License-Identifier: MIT
/*
 * Barrier round trip with 2 threads (or argv[1]): pinfer's pool barrier vs
 * pthread_barrier_wait vs an OpenMP barrier (libgomp), in ns per barrier.
 * Each figure is the best of 5 runs of 200,000 barriers.
 */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "libpinfer.h"
#include "bench.h"

#define ROUNDS 200000
#define REPEAT 5


struct pool_arg {
	struct pinfer_pool *p;
};

static void pool_body(void *arg, int thread, int n)
{
	struct pool_arg *a = arg;
	int i;

	(void)thread;
	(void)n;
	for (i = 0; i < ROUNDS; i++)
		pinfer_pool_barrier(a->p);
}

static double bench_pool(int n)
{
	struct pinfer_pool *p;
	struct pinfer_err err;
	struct pool_arg a;
	double best = 1e9, t;
	int r;

	if (pinfer_pool_create(&p, n, -1, &err)) {
		fprintf(stderr, "barrier: %s\n", err.msg);
		exit(1);
	}
	a.p = p;
	for (r = 0; r < REPEAT; r++) {
		t = mono_now();
		pinfer_pool_run(p, pool_body, &a);
		t = (mono_now() - t) / ROUNDS;
		best = t < best ? t : best;
	}
	pinfer_pool_free(p);
	return best;
}

static pthread_barrier_t pb;

static void *pthread_body(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < ROUNDS; i++)
		pthread_barrier_wait(&pb);
	return NULL;
}

static double bench_pthread(int n)
{
	pthread_t th[64];
	double best = 1e9, t;
	int r, i;

	for (r = 0; r < REPEAT; r++) {
		pthread_barrier_init(&pb, NULL, n);
		t = mono_now();
		for (i = 1; i < n; i++)
			pthread_create(&th[i], NULL, pthread_body, NULL);
		pthread_body(NULL);
		for (i = 1; i < n; i++)
			pthread_join(th[i], NULL);
		t = (mono_now() - t) / ROUNDS;
		best = t < best ? t : best;
		pthread_barrier_destroy(&pb);
	}
	return best;
}

static double bench_omp(int n)
{
	double best = 1e9, t;
	int r;

	for (r = 0; r < REPEAT; r++) {
		t = mono_now();
#pragma omp parallel num_threads(n)
		{
			int i;

			for (i = 0; i < ROUNDS; i++) {
#pragma omp barrier
			}
		}
		t = (mono_now() - t) / ROUNDS;
		best = t < best ? t : best;
	}
	return best;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2;
	double pool = bench_pool(n), pth = bench_pthread(n), omp = bench_omp(n);

	printf("barrier round trip, %d threads (best of %d x %d)\n", n, REPEAT, ROUNDS);
	printf("%-24s %10s %12s\n", "", "ns/barrier", "pinfer is");
	printf("%-24s %10.1f %12s\n", "pinfer pool", pool * 1e9, "");
	printf("%-24s %10.1f %11.1fx faster\n", "pthread_barrier_wait", pth * 1e9, pth / pool);
	printf("%-24s %10.1f %11.2fx faster\n", "OpenMP (libgomp)", omp * 1e9, omp / pool);
	return 0;
}
