// SPDX-License-Identifier: MIT
/*
 * pinfer stat: a live view of what pinfer.ko holds (regions, pinned bytes
 * per NUMA node against the cap, prefetch commands in flight and their
 * GB/s) and, with --serve, of a running pinfer serve (tokens/s, slots),
 * refreshing every --interval, or once, as text or JSON. The readings are
 * tools/stat_collect.c's.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "stat.h"

static const char stat_help[] =
	"usage: pinfer stat [--once | -n COUNT] [-i SECONDS] [--json] [--serve URL]\n\n"
	"Shows what pinfer.ko holds: its regions, the bytes pinned on each NUMA node\n"
	"against the module's cap (max_pinned_mb), the prefetch commands in flight and\n"
	"the GB/s they read; as root also each region (its process, node, size, bytes\n"
	"loaded, file: from debugfs). With --serve, also a running pinfer serve's\n"
	"tokens/s, slots and requests (from its /metrics). Refreshes every interval\n"
	"until interrupted; rates are over the last interval, so the first view comes\n"
	"after one.\n\n"
	"  -i, --interval S   seconds between views (default 1, at least 0.05)\n"
	"  -n, --count N      stop after N views\n"
	"      --once         one view (-n 1)\n"
	"      --json         each view as one JSON object on a line of its own\n"
	"  -s, --serve URL    also pinfer serve at URL (http://HOST:PORT, or HOST:PORT)\n\n"
	"Exit status: 0; 1 when there is nothing to show (the module is not loaded\n"
	"and no --serve) or the server cannot be read; 2 for a wrong command line.\n";

static cJSON *num_or_null(int64_t v)
{
	return v < 0 ? cJSON_CreateNull() : cJSON_CreateNumber((double)v);
}

static cJSON *rate_or_null(double r)
{
	return r < 0 ? cJSON_CreateNull() : cJSON_CreateNumber(r);
}

static cJSON *module_json(const struct stat_module *prev, const struct stat_module *cur)
{
	cJSON *j = cJSON_CreateObject(), *nodes, *pf, *list;
	double dt = cur->t - prev->t;
	size_t i;
	int n;

	cJSON_AddBoolToObject(j, "loaded", cur->loaded);
	if (!cur->loaded)
		return j;
	cJSON_AddItemToObject(j, "regions", num_or_null(cur->regions));
	cJSON_AddItemToObject(j, "pinned_bytes", num_or_null(cur->pinned));
	cJSON_AddItemToObject(j, "max_pinned_bytes", num_or_null(cur->max_pinned));
	cJSON_AddItemToObject(j, "held_bytes", num_or_null(cur->held));
	nodes = cJSON_AddArrayToObject(j, "nodes");
	for (n = 0; n < cur->nr_nodes; n++) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddNumberToObject(o, "node", cur->nodes[n].node);
		cJSON_AddNumberToObject(o, "pinned_bytes", (double)cur->nodes[n].pinned);
		cJSON_AddItemToArray(nodes, o);
	}
	pf = cJSON_AddObjectToObject(j, "prefetch");
	cJSON_AddItemToObject(pf, "inflight", num_or_null(cur->inflight));
	cJSON_AddItemToObject(pf, "commands_total", num_or_null(cur->commands));
	cJSON_AddItemToObject(pf, "errors_total", num_or_null(cur->errors));
	cJSON_AddItemToObject(pf, "bytes_total", num_or_null(cur->bytes));
	cJSON_AddItemToObject(pf, "bytes_per_second",
			      rate_or_null(stat_rate(prev->bytes, cur->bytes, dt)));
	if (cur->list_err) {
		cJSON_AddNullToObject(j, "region_list");
		cJSON_AddStringToObject(j, "region_list_error", strerror(-cur->list_err));
		return j;
	}
	list = cJSON_AddArrayToObject(j, "region_list");
	for (i = 0; i < cur->nr_list; i++) {
		const struct stat_region *r = &cur->list[i];
		cJSON *o = cJSON_CreateObject();

		cJSON_AddNumberToObject(o, "id", (double)r->id);
		cJSON_AddNumberToObject(o, "pid", r->pid);
		cJSON_AddStringToObject(o, "comm", r->comm);
		cJSON_AddNumberToObject(o, "node", r->node);
		cJSON_AddNumberToObject(o, "size", (double)r->size);
		cJSON_AddNumberToObject(o, "loaded", (double)r->loaded);
		cJSON_AddNumberToObject(o, "inflight", r->inflight);
		cJSON_AddItemToObject(o, "loaded_per_second",
				      rate_or_null(stat_region_rate(prev, r, dt)));
		if (strcmp(r->file, "-"))
			cJSON_AddStringToObject(o, "file", r->file);
		else
			cJSON_AddNullToObject(o, "file");
		cJSON_AddItemToArray(list, o);
	}
	return j;
}

static cJSON *serve_json(const char *url, const struct stat_serve *sv, const char *why)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "url", url);
	if (!sv) {
		cJSON_AddStringToObject(j, "error", why);
		return j;
	}
	cJSON_AddItemToObject(j, "tokens_per_second", rate_or_null(sv->tokens_per_s));
	cJSON_AddItemToObject(j, "slots_active", num_or_null(sv->slots_active));
	cJSON_AddItemToObject(j, "slots_total", num_or_null(sv->slots_total));
	cJSON_AddItemToObject(j, "queued", num_or_null(sv->queued));
	cJSON_AddItemToObject(j, "requests_total", num_or_null(sv->requests));
	cJSON_AddItemToObject(j, "prompt_tokens_total", num_or_null(sv->prompt_tokens));
	cJSON_AddItemToObject(j, "generated_tokens_total", num_or_null(sv->gen_tokens));
	cJSON_AddItemToObject(j, "pinned_bytes", num_or_null(sv->pinned_bytes));
	cJSON_AddItemToObject(j, "stream_bytes_total", num_or_null(sv->stream_bytes));
	return j;
}

/* Read the server at @url into @sv: 0, or -1 with the reason in @why. */
static int read_serve(const char *url, struct stat_serve *sv, char *why, size_t cap)
{
	char *body;
	int rc;

	if (stat_http_get(url, &body, why, cap))
		return -1;
	rc = stat_parse_metrics(body, sv);
	if (rc)
		snprintf(why, cap, "%s: no pinfer figures in the response (not pinfer serve?)", url);
	free(body);
	return rc;
}

static void sleep_s(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int cmd_stat(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "serve", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct stat_module prev, cur;
	const char *url = NULL;
	double interval = 1;
	long long count = -1, shown;
	bool json = false, clear = false;
	int c, rc = EXIT_OK;

	while ((c = getopt_long(argc, argv, "i:n:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (cli_real("-i", optarg, 0.05, 86400, &interval))
				return EXIT_USAGE;
			break;
		case 'n':
			if (cli_int("-n", optarg, 1, 1LL << 40, &count))
				return EXIT_USAGE;
			break;
		case 'o':
			count = 1;
			break;
		case 'j':
			json = true;
			break;
		case 's':
			url = optarg;
			break;
		case 'h':
			fputs(stat_help, stdout);
			return EXIT_OK;
		default:
			fputs(stat_help, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_error("unexpected argument '%s' (see --help)", argv[optind]);
		return EXIT_USAGE;
	}
	if (stat_read_module(&prev) && !url) {
		cli_error("stat: pinfer.ko is not loaded (no /dev/pinfer): modprobe pinfer; "
			  "or --serve URL for a running pinfer serve");
		return EXIT_FAIL;
	}
	clear = !json && isatty(STDOUT_FILENO) && count != 1;
	for (shown = 0; count < 0 || shown < count; shown++) {
		struct stat_serve sv;
		char why[512] = "";
		bool served;

		sleep_s(interval);
		stat_read_module(&cur);
		served = url && !read_serve(url, &sv, why, sizeof(why));
		if (url && !served)
			rc = EXIT_FAIL;
		if (json) {
			cJSON *j = cJSON_CreateObject();
			char *s;

			cJSON_AddNumberToObject(j, "interval_s", cur.t - prev.t);
			cJSON_AddItemToObject(j, "module", module_json(&prev, &cur));
			if (url)
				cJSON_AddItemToObject(j, "serve", serve_json(url, served ? &sv : NULL, why));
			s = cJSON_PrintUnformatted(j);
			if (s)
				puts(s);
			free(s);
			cJSON_Delete(j);
		} else {
			if (clear)
				fputs("\033[H\033[J", stdout);
			else if (shown)
				putchar('\n');
			stat_print(stdout, &prev, &cur, url, served ? &sv : NULL, why);
		}
		fflush(stdout);
		if (url && !served)
			cli_error("stat: %s", why);
		stat_module_free(&prev);
		prev = cur;
	}
	stat_module_free(&prev);
	return rc;
}
