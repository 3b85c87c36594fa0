// SPDX-License-Identifier: MIT
/*
 * pinfer doctor's checks (tools/doctor_checks.c) as the runtime sees this
 * machine: on the host (no pinfer.ko) and, static, inside the test VM
 * with the module loaded (PINFER_TEST_VM=1: tests/kmod/test_vm.sh). Every
 * check reports once, with a fix for each WARN and FAIL; the module's item
 * agrees with /dev/pinfer (absent: a WARN with modprobe; present: OK, this
 * pinfer's ABI); the hugepage item reads back the pool of each node as
 * /sys has it; io_uring sets up; the CPU item names the kernels in use.
 * tests/e2e/test_doctor.py drives the CLI against states it sets up.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "doctor.h"
#include "../tap.h"

#define MAX_ITEMS 32

static struct doctor_item items[MAX_ITEMS];
static int n_items;

static void collect(const struct doctor_item *it, void *arg)
{
	(void)arg;
	if (n_items < MAX_ITEMS)
		items[n_items++] = *it;
	printf("# %-4s %-11s %s%s%s\n", doctor_status_name(it->status), it->check, it->found,
	       it->fix[0] ? " | fix: " : "", it->fix);
}

static const struct doctor_item *find(const char *check)
{
	int i;

	for (i = 0; i < n_items; i++)
		if (!strcmp(items[i].check, check))
			return &items[i];
	return NULL;
}

int main(void)
{
	static const char *const checks[] = { "thp", "swappiness", "hugepages", "memlock",
		"pinfer.ko", "io_uring", "governor", "smt", "cpu", "numa", "cgroup" };
	struct doctor_opts o = { 0 };
	const struct doctor_item *it;
	bool vm = getenv("PINFER_TEST_VM") != NULL, fixes = true, all = true;
	enum doctor_status worst = doctor_run(&o, collect, NULL), max = DOCTOR_OK;
	char want[128];
	size_t i;
	FILE *f;
	int nr = -1, fr = -1;

	for (i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
		all = all && find(checks[i]);
	for (i = 0; i < (size_t)n_items; i++) {
		fixes = fixes && (items[i].status < DOCTOR_WARN || items[i].fix[0]);
		max = items[i].status > max ? items[i].status : max;
	}
	ok(all && n_items == (int)(sizeof(checks) / sizeof(checks[0])),
	   "each of the %zu checks reports once (%d items)", sizeof(checks) / sizeof(checks[0]), n_items);
	ok(fixes && worst == max, "a fix for every WARN and FAIL; the worst status returned");

	it = find("pinfer.ko");
	if (access("/dev/pinfer", F_OK))
		ok(it && it->status == DOCTOR_WARN && strstr(it->fix, "modprobe pinfer"),
		   "no /dev/pinfer: WARN, fix modprobe pinfer");
	else
		ok(it && it->status == DOCTOR_OK && strstr(it->found, "ABI 1 (this pinfer's)") &&
		   strstr(it->found, "max_pinned_mb"),
		   "/dev/pinfer: OK, the module speaks this pinfer's ABI, its cap is read%s",
		   vm ? " (in the VM)" : "");
	if (vm)
		ok(!access("/dev/pinfer", F_OK), "in the VM the module is loaded");

	it = find("hugepages");
	f = fopen("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages", "r");
	if (f && fscanf(f, "%d", &nr) != 1)
		nr = -1;
	if (f)
		fclose(f);
	f = fopen("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages", "r");
	if (f && fscanf(f, "%d", &fr) != 1)
		fr = -1;
	if (f)
		fclose(f);
	snprintf(want, sizeof(want), "node0: 2 MiB %d free of %d", fr, nr);
	ok(it && nr >= 0 && strstr(it->found, want), "hugepages: node0's pool as /sys has it (%s)", want);
	if (vm)
		ok(it && strstr(it->found, "node1:"), "in the VM: both NUMA nodes' pools");

	it = find("io_uring");
	ok(it && it->status == DOCTOR_OK, "io_uring: a ring sets up");
	it = find("cpu");
	ok(it && strstr(it->found, "kernels: Q4_0 "), "cpu: the ISA and the kernels in use");
	it = find("numa");
	ok(it && (vm ? strstr(it->found, "2 nodes") != NULL : it->status != DOCTOR_FAIL),
	   "numa: %s", vm ? "the VM's two nodes" : "free memory per node");
	return tap_end();
}
