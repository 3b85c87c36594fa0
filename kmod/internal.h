/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pinfer.ko internals.
 *
 * Lifetime: a region is reference counted. Its file holds one reference
 * (a mapping holds the file, so mappings keep the region), and each prefetch
 * command in flight holds one. The last put frees every page that nobody
 * else references. A page that something else still holds (a pipe that
 * vmsplice() filled, direct I/O in flight elsewhere) stays charged: the
 * region goes on the held list, and a work item frees and uncharges each
 * such page once its last outside reference is gone (region.c). Only then
 * are the user and the pseudo file system pin released.
 */
#ifndef PINFER_INTERNAL_H
#define PINFER_INTERNAL_H

#include <linux/atomic.h>
#include <linux/bits.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/numa.h>
#include <linux/sched.h>
#include <linux/sched/user.h>
#include <linux/types.h>

#include <pinfer.h>

#define PINFER_ORDER		9		/* 2 MiB pages on x86-64 */
#define PINFER_PAGE_SHIFT	(PAGE_SHIFT + PINFER_ORDER)
#define PINFER_PAGE_BYTES	BIT(PINFER_PAGE_SHIFT)
#define PINFER_MAX_INFLIGHT	4096		/* commands per region */
#define PINFER_DIO_ALIGN	4096		/* offsets/lengths for direct I/O */

struct pinfer_region {
	struct kref ref;
	u64 size;			/* bytes, a multiple of 2 MiB */
	int nid;			/* node of every page */
	unsigned long nr_pages;		/* 2 MiB pages */
	struct page **pages;		/* heads of the order-9 compound pages */
	unsigned long nr_charged;	/* pages allocated and not yet freed */
	struct user_struct *user;	/* charged with locked_vm, or NULL */
	struct mm_struct *pin_mm;	/* the creator's, showing it as VmPin */
	struct list_head held;		/* on the held list once released */

	struct mutex lock;		/* protects @backing */
	struct file *backing;		/* bound file (writes denied), or NULL */

	atomic64_t bytes_loaded;
	atomic_t inflight;

	/* For debugfs' list of regions (region.c) */
	struct list_head live;		/* on the live list while open */
	u64 id;				/* 1, 2, ... in order of creation */
	pid_t tgid;			/* the creator */
	char comm[TASK_COMM_LEN];
};

/* Global accounting and statistics, shown in sysfs (main.c). */
extern atomic64_t pinfer_pinned_bytes;
extern atomic64_t pinfer_node_pinned_bytes[MAX_NUMNODES];
extern atomic64_t pinfer_held_bytes;
extern atomic_t pinfer_nr_regions;
extern atomic_t pinfer_prefetch_inflight;
extern atomic64_t pinfer_prefetch_commands;	/* finished, since loading */
extern atomic64_t pinfer_prefetch_errors;	/* of them, failed */
extern atomic64_t pinfer_prefetch_bytes;	/* read by them */
u64 pinfer_max_pinned_bytes(void);

/* region.c */
long pinfer_region_create(struct pinfer_region_create __user *uarg);
void pinfer_region_put(struct pinfer_region *r);
void pinfer_region_exit(void);
void pinfer_debugfs_init(void);
void pinfer_debugfs_exit(void);

/* prefetch.c */
long pinfer_prefetch_ioctl(struct pinfer_region *r,
			   struct pinfer_prefetch __user *uarg);
int pinfer_prefetch_uring_cmd(struct pinfer_region *r,
			      struct io_uring_cmd *ioucmd,
			      unsigned int issue_flags);
long pinfer_bind_file(struct pinfer_region *r,
		      struct pinfer_bind_file __user *uarg);
void pinfer_unbind_file(struct file *f);

#endif /* PINFER_INTERNAL_H */
