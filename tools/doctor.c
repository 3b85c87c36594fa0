// SPDX-License-Identifier: MIT
/*
 * pinfer doctor: is this machine set up for running models? The checks are
 * tools/doctor_checks.c's; this adds, with -m, where the model would go
 * (llm_model_plan(): resident, or what streams and the drive's floor), and
 * prints the items as lines or (--json) as one JSON object.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "doctor.h"
#include "model/model.h"

static const char doctor_help[] =
	"usage: pinfer doctor [-m MODEL] [--mem SIZE] [--json]\n\n"
	"Checks this machine for running models: transparent hugepages, swappiness,\n"
	"the hugepage pools per NUMA node, RLIMIT_MEMLOCK, /dev/pinfer (the module's\n"
	"ABI against this pinfer's, access, max_pinned_mb), io_uring, the CPU\n"
	"governor and SMT, the CPU's features and the kernels pinfer picks, free\n"
	"memory per node and the memory cgroup's limit. Each line is OK, INFO, WARN\n"
	"or FAIL with what was found, and for WARN and FAIL the command that fixes\n"
	"it. Needs no privilege: what cannot be read is said so.\n\n"
	"  -m, --model FILE   also the model: its file system (O_DIRECT works?) and\n"
	"                     drive, the checks measured against its size, and\n"
	"                     where it goes: resident, or what streams per token\n"
	"                     and the drive's floor\n"
	"      --mem SIZE     the memory budget to plan with (as for pinfer run)\n"
	"      --json         one JSON object: {\"items\": [{check, status, found,\n"
	"                     fix}], \"worst\"}\n\n"
	"Exit status: 0 when nothing FAILs, 1 when something does, 2 for a wrong\n"
	"command line.\n";

struct out {
	bool json;
	cJSON *items;
};

static void print_item(const struct doctor_item *it, void *arg)
{
	struct out *o = arg;

	if (o->json) {
		cJSON *j = cJSON_CreateObject();

		cJSON_AddStringToObject(j, "check", it->check);
		cJSON_AddStringToObject(j, "status", doctor_status_name(it->status));
		cJSON_AddStringToObject(j, "found", it->found);
		cJSON_AddStringToObject(j, "fix", it->fix);
		cJSON_AddItemToArray(o->items, j);
		return;
	}
	printf("%-4s  %-11s %s\n", doctor_status_name(it->status), it->check, it->found);
	if (it->fix[0])
		printf("      %-11s fix: %s\n", "", it->fix);
}

#define MIB 1048576.0

/* Where the model goes under @mem: one item. Its size for the checks in *bytes. */
static enum doctor_status plan_item(const char *model, uint64_t mem, struct out *o,
				    uint64_t *bytes)
{
	struct llm_load_opts lo = { .provider = PINFER_PROVIDER_AUTO, .node = -1, .mem = mem };
	struct doctor_item it = { .check = "plan" };
	struct pinfer_err err = { 0 };
	struct llm_plan p;

	if (llm_model_plan(&p, model, &lo, &err)) {
		struct stat st;

		if (!stat(model, &st))	/* the checks still measure against its size */
			*bytes = (uint64_t)st.st_size;
		it.status = DOCTOR_FAIL;
		snprintf(it.found, sizeof(it.found), "%s", err.msg);
		if (strstr(err.msg, "budget"))
			snprintf(it.fix, sizeof(it.fix), "a larger --mem, or free memory");
	} else {
		*bytes = p.weights;
		if (!p.ring && !p.expert_slots) {
			it.status = DOCTOR_OK;
			snprintf(it.found, sizeof(it.found),
				 "resident: all %" PRIu32 " layers, %.0f MiB of weights and %.0f MiB for the session (context %" PRIu32 ") within the budget of %.0f MiB (%s)",
				 p.n_layer, p.weights / MIB, p.session / MIB, p.n_ctx, p.budget / MIB,
				 p.budget_why[0] ? p.budget_why : "--mem");
		} else {
			it.status = DOCTOR_INFO;
			snprintf(it.found, sizeof(it.found),
				 "streams: %" PRIu32 " of %" PRIu32 " layers resident%s in a budget of %.0f MiB; %.0f MiB read per token: a floor of %.1f ms a token at 3 GB/s, %.1f at 7 GB/s (pinfer run --plan)",
				 p.n_resident, p.n_layer,
				 p.expert_slots ? ", experts through a cache" : "", p.budget / MIB,
				 p.streamed / MIB, p.streamed / 3e6, p.streamed / 7e6);
			snprintf(it.fix, sizeof(it.fix), "to hold it resident: %.0f MiB of memory (--mem)",
				 (p.weights + p.session) / MIB + 1);
		}
	}
	print_item(&it, o);
	return it.status;
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "mem", required_argument, NULL, 'M' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct doctor_opts d = { 0 };
	struct out o = { 0 };
	enum doctor_status worst = DOCTOR_OK, w;
	uint64_t mem = 0;
	int c;

	while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': d.model = optarg; break;
		case 'M':
			if (cli_parse_mem(optarg, &mem))
				return EXIT_USAGE;
			break;
		case 'j': o.json = true; break;
		case 'h':
			fputs(doctor_help, stdout);
			return EXIT_OK;
		default:
			fputs(doctor_help, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_error("unexpected argument '%s' (see --help)", argv[optind]);
		return EXIT_USAGE;
	}
	if (o.json && !(o.items = cJSON_CreateArray())) {
		cli_error("doctor: out of memory");
		return EXIT_FAIL;
	}
	if (d.model)
		worst = plan_item(d.model, mem, &o, &d.model_bytes);
	w = doctor_run(&d, print_item, &o);
	worst = w > worst ? w : worst;
	if (o.json) {
		cJSON *root = cJSON_CreateObject();
		char *s;

		cJSON_AddItemToObject(root, "items", o.items);
		cJSON_AddStringToObject(root, "worst", doctor_status_name(worst));
		s = cJSON_Print(root);
		if (s)
			puts(s);
		free(s);
		cJSON_Delete(root);
	}
	return worst == DOCTOR_FAIL ? EXIT_FAIL : EXIT_OK;
}
