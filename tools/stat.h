/* SPDX-License-Identifier: MIT */
/*
 * pinfer stat's readings (tools/stat_collect.c): what pinfer.ko holds, from
 * /sys/class/misc/pinfer and /sys/kernel/debug/pinfer/regions
 * (Documentation/pinfer.rst), and what a running pinfer serve reports on
 * /metrics, fetched over plain HTTP. Like doctor.h, nothing here needs the
 * CLI's JSON and HTTP libraries, so that the VM's static test links it.
 */
#ifndef PINFER_STAT_H
#define PINFER_STAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define STAT_SYSFS "/sys/class/misc/pinfer"
#define STAT_DEBUGFS "/sys/kernel/debug/pinfer/regions"
#define STAT_MAX_NODES 64

/* One open region, a line of the debugfs list. */
struct stat_region {
	uint64_t id;
	int pid;			/* its creator */
	char comm[64];
	int node;
	uint64_t size, loaded;		/* bytes; loaded: by prefetch commands */
	int inflight;			/* prefetch commands */
	char file[1024];		/* the bound file, "-" when none */
};

/* A reading of the module; a counter it lacks (an older module) is -1. */
struct stat_module {
	bool loaded;			/* /dev/pinfer exists */
	double t;			/* mono_now() when read */
	int64_t regions, pinned, max_pinned, held;
	int nr_nodes;			/* 0: no per-node figures */
	struct {
		int node;
		int64_t pinned;
	} nodes[STAT_MAX_NODES];
	int64_t inflight, commands, errors, bytes;	/* prefetch */
	int list_err;			/* 0: list read, else -errno */
	size_t nr_list;
	struct stat_region *list;	/* malloc'd */
};

/* What pinfer serve's /metrics says; a figure it lacks is -1. */
struct stat_serve {
	double tokens_per_s;
	int64_t slots_active, slots_total, queued;
	int64_t requests, gen_tokens, prompt_tokens;
	int64_t pinned_bytes, stream_bytes;
};

/* Read the module into @m: 0, or -ENODEV when it is not loaded. */
int stat_read_module(struct stat_module *m);
void stat_module_free(struct stat_module *m);

/* The region of @m with @id, or NULL. */
const struct stat_region *stat_find_region(const struct stat_module *m, uint64_t id);

/*
 * GET @url ("http://HOST:PORT[/PATH]", or "HOST:PORT"; PATH defaults to
 * /metrics): the body, malloc'd, in *body; 0, or -1 with the reason in @err.
 */
int stat_http_get(const char *url, char **body, char *err, size_t cap);

/* Prometheus text from pinfer serve into @s: 0, or -1 if none of its figures are there. */
int stat_parse_metrics(const char *text, struct stat_serve *s);

/* Per second between two readings of a counter; -1 when either lacks it. */
double stat_rate(int64_t before, int64_t after, double seconds);

/* Bytes per second loaded into region @r since @prev's reading of it; -1 if @prev had none. */
double stat_region_rate(const struct stat_module *prev, const struct stat_region *r, double seconds);

/*
 * The plain-text view of @cur (rates since @prev, which may be NULL) and,
 * when @url is not NULL, of @sv (NULL: the server could not be read, @why).
 */
void stat_print(FILE *f, const struct stat_module *prev, const struct stat_module *cur,
		const char *url, const struct stat_serve *sv, const char *why);

#endif
