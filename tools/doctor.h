/* SPDX-License-Identifier: MIT */
/*
 * pinfer doctor's checks of this machine (tools/doctor_checks.c): each
 * gives a line of what it found and, where something is off, the command
 * that fixes it. They read /proc, /sys and the model file only, need no
 * privilege (what cannot be read is said so), and link without the CLI's
 * JSON and HTTP libraries, so that the VM's static test program runs them.
 */
#ifndef PINFER_DOCTOR_H
#define PINFER_DOCTOR_H

#include <stdint.h>

enum doctor_status { DOCTOR_OK, DOCTOR_INFO, DOCTOR_WARN, DOCTOR_FAIL };

struct doctor_item {
	const char *check;		/* "thp", "swappiness", ... */
	enum doctor_status status;
	char found[768];
	char fix[512];			/* "" when there is nothing to do */
};

struct doctor_opts {
	const char *model;		/* NULL: no model file to check */
	uint64_t model_bytes;		/* what must be held resident; 0: unknown */
};

typedef void (*doctor_fn)(const struct doctor_item *it, void *arg);

/* Every check, in order, to @fn. Returns the worst status. */
enum doctor_status doctor_run(const struct doctor_opts *o, doctor_fn fn, void *arg);

const char *doctor_status_name(enum doctor_status s);

#endif
