// SPDX-License-Identifier: GPL-2.0
/*
 * Regions: pinned 2 MiB compound pages on one NUMA node, each region a file
 * with its own inode (i_size = region size) on a small pseudo file system,
 * mapped to user space with PMD entries.
 *
 * Why a plain .fault and not .huge_fault: 6.1 never calls ->huge_fault for a
 * VMA that is neither anonymous nor DAX. Returning the subpage of an order-9
 * compound page from .fault lets finish_fault() install a PMD (do_set_pmd)
 * when the VMA is 2 MiB aligned, on 6.1 and 6.12 alike; 6.12 also requires
 * the mapping's inode to have i_size covering the fault, hence the inode,
 * and refuses the PMD where THP is disabled (MADV_NOHUGEPAGE,
 * PR_SET_THP_DISABLE): such mappings get 4 KiB entries there.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/fs_context.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/module.h>
#include <linux/pseudo_fs.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include "compat.h"
#include "internal.h"

#define PINFER_FS_MAGIC 0x70696e66	/* "pinf" */

static struct vfsmount *pinfer_mnt;
static int pinfer_mnt_count;

/* noexec: model memory is never code, so mmap refuses PROT_EXEC. */
static int pinfer_fs_init_fs_context(struct fs_context *fc)
{
	if (!init_pseudo(fc, PINFER_FS_MAGIC))
		return -ENOMEM;
	fc->s_iflags |= SB_I_NOEXEC;
	return 0;
}

/*
 * .owner: the superblock pins the module, and each region pins the file
 * system (simple_pin_fs) until it is freed, so the module cannot go while a
 * region inode exists.
 */
static struct file_system_type pinfer_fs_type = {
	.owner = THIS_MODULE,
	.name = "pinferfs",
	.init_fs_context = pinfer_fs_init_fs_context,
	.kill_sb = kill_anon_super,
};

/* ---- memory ------------------------------------------------------------ */

static void pinfer_free_pages(struct pinfer_region *r, unsigned long n)
{
	while (n--)
		put_page(r->pages[n]);	/* mappings hold their own references */
}

static int pinfer_alloc_pages(struct pinfer_region *r)
{
	const gfp_t gfp = GFP_KERNEL | __GFP_ACCOUNT | __GFP_COMP |
			  __GFP_THISNODE | __GFP_NOWARN | __GFP_RETRY_MAYFAIL |
			  __GFP_ZERO;
	unsigned long i;

	for (i = 0; i < r->nr_pages; i++) {
		struct page *page;

		if (fatal_signal_pending(current))
			goto undo_eintr;
		page = alloc_pages_node(r->nid, gfp, PINFER_ORDER);
		if (!page)
			goto undo_enomem;
		r->pages[i] = page;
		cond_resched();
	}
	return 0;

undo_eintr:
	pinfer_free_pages(r, i);
	return -EINTR;
undo_enomem:
	pinfer_free_pages(r, i);
	return -ENOMEM;
}

/* ---- accounting ---------------------------------------------------------- */

/*
 * Charge @pages to @user's locked_vm within the caller's RLIMIT_MEMLOCK, as
 * io_uring charges registered buffers: the user, not the process, so that
 * regions that outlive their creator (passed on, inherited across fork or
 * exec) still count against the same limit.
 */
static int pinfer_charge_user(struct user_struct *user, unsigned long pages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	unsigned long cur = atomic_long_read(&user->locked_vm), new;

	do {
		new = cur + pages;
		if (new > limit)
			return -ENOMEM;
	} while (!atomic_long_try_cmpxchg(&user->locked_vm, &cur, new));
	return 0;
}

/* Charge the module's cap and, without CAP_IPC_LOCK, the user. */
static int pinfer_account(struct pinfer_region *r)
{
	int ret = -ENOMEM;

	if (atomic64_add_return(r->size, &pinfer_pinned_bytes) >
	    pinfer_max_pinned_bytes())
		goto undo_global;
	atomic64_add(r->size, &pinfer_node_pinned_bytes[r->nid]);
	if (!capable(CAP_IPC_LOCK)) {
		r->user = get_uid(current_user());
		ret = pinfer_charge_user(r->user, r->size >> PAGE_SHIFT);
		if (ret)
			goto undo_user;
	}
	r->nr_charged = r->nr_pages;
	return 0;

undo_user:
	free_uid(r->user);
	r->user = NULL;
	atomic64_sub(r->size, &pinfer_node_pinned_bytes[r->nid]);
undo_global:
	atomic64_sub(r->size, &pinfer_pinned_bytes);
	return ret;
}

/* Uncharge one freed 2 MiB page. */
static void pinfer_uncharge_page(struct pinfer_region *r)
{
	if (r->user)
		atomic_long_sub(PINFER_PAGE_BYTES >> PAGE_SHIFT,
				&r->user->locked_vm);
	atomic64_sub(PINFER_PAGE_BYTES, &pinfer_pinned_bytes);
	atomic64_sub(PINFER_PAGE_BYTES, &pinfer_node_pinned_bytes[r->nid]);
	r->nr_charged--;
}

/* The creator's VmPin shows a region while the region is open. */
static void pinfer_unshow_pinned(struct pinfer_region *r)
{
	atomic64_sub(r->size >> PAGE_SHIFT, &r->pin_mm->pinned_vm);
	mmdrop(r->pin_mm);
}

/* ---- the open regions, listed in debugfs ---------------------------------- */

static LIST_HEAD(pinfer_live_list);
static DEFINE_MUTEX(pinfer_live_lock);	/* nests outside a region's lock */
static u64 pinfer_last_id;
static struct dentry *pinfer_debugfs_dir;

static void pinfer_live_add(struct pinfer_region *r)
{
	r->tgid = task_tgid_nr(current);
	get_task_comm(r->comm, current);
	mutex_lock(&pinfer_live_lock);
	r->id = ++pinfer_last_id;
	list_add_tail(&r->live, &pinfer_live_list);
	mutex_unlock(&pinfer_live_lock);
	atomic_inc(&pinfer_nr_regions);
}

static void pinfer_live_del(struct pinfer_region *r)
{
	atomic_dec(&pinfer_nr_regions);
	mutex_lock(&pinfer_live_lock);
	list_del(&r->live);
	mutex_unlock(&pinfer_live_lock);
}

/*
 * /sys/kernel/debug/pinfer/regions: a line per open region, "ID PID COMM
 * NODE SIZE LOADED INFLIGHT FILE" (FILE "-" when none is bound); spaces,
 * tabs, newlines and backslashes in COMM and FILE written as octal escapes,
 * as /proc/mounts writes them.
 */
static int pinfer_regions_show(struct seq_file *m, void *unused)
{
	static const char esc[] = " \t\n\\";
	struct pinfer_region *r;

	mutex_lock(&pinfer_live_lock);
	list_for_each_entry(r, &pinfer_live_list, live) {
		seq_printf(m, "%llu %d ", r->id, r->tgid);
		seq_escape(m, r->comm, esc);
		seq_printf(m, " %d %llu %lld %d ", r->nid, r->size,
			   (long long)atomic64_read(&r->bytes_loaded),
			   atomic_read(&r->inflight));
		mutex_lock(&r->lock);
		if (r->backing)
			seq_file_path(m, r->backing, esc);
		else
			seq_puts(m, "-");
		mutex_unlock(&r->lock);
		seq_putc(m, '\n');
	}
	mutex_unlock(&pinfer_live_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pinfer_regions);

/* Nothing depends on debugfs: without it (or on failure) there is no list. */
void pinfer_debugfs_init(void)
{
	pinfer_debugfs_dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	debugfs_create_file("regions", 0400, pinfer_debugfs_dir, NULL,
			    &pinfer_regions_fops);
}

void pinfer_debugfs_exit(void)
{
	debugfs_remove_recursive(pinfer_debugfs_dir);
}

/* ---- freeing, now or once the pages are no longer held --------------------- */

/*
 * Released regions with pages that something outside the module still
 * references (a pipe filled by vmsplice(), direct I/O of another file
 * in flight). Such a page stays charged to the module's total and to the
 * user until its last reference is gone; the work below looks every
 * PINFER_HELD_POLL for pages only the region still holds, frees them and
 * uncharges them.
 */
#define PINFER_HELD_POLL	(HZ / 10)

static LIST_HEAD(pinfer_held_list);
static DEFINE_MUTEX(pinfer_held_lock);
static void pinfer_held_work_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(pinfer_held_work, pinfer_held_work_fn);

/*
 * Free the pages that nobody but the region references. With no mapping
 * left, nothing can take a new reference to a page: the count only falls.
 * True when every page is freed.
 */
static bool pinfer_free_idle_pages(struct pinfer_region *r)
{
	unsigned long i;

	for (i = 0; i < r->nr_pages; i++) {
		struct page *page = r->pages[i];

		if (!page || page_ref_count(page) != 1)
			continue;
		r->pages[i] = NULL;
		put_page(page);
		pinfer_uncharge_page(r);
	}
	return !r->nr_charged;
}

/* The last of a region, once all its pages are freed. */
static void pinfer_region_free(struct pinfer_region *r)
{
	kvfree(r->pages);
	free_uid(r->user);
	kfree(r);
	simple_release_fs(&pinfer_mnt, &pinfer_mnt_count);
}

/* Free what has become free; true while regions are still held. */
static bool pinfer_reap_held(void)
{
	struct pinfer_region *r, *next;
	LIST_HEAD(done);
	bool more;

	mutex_lock(&pinfer_held_lock);
	list_for_each_entry_safe(r, next, &pinfer_held_list, held) {
		unsigned long before = r->nr_charged;

		if (pinfer_free_idle_pages(r))
			list_move(&r->held, &done);
		atomic64_sub((before - r->nr_charged) * PINFER_PAGE_BYTES,
			     &pinfer_held_bytes);
	}
	more = !list_empty(&pinfer_held_list);
	mutex_unlock(&pinfer_held_lock);
	list_for_each_entry_safe(r, next, &done, held)
		pinfer_region_free(r);
	return more;
}

/*
 * A held region pins the pseudo file system and so the module; the put in
 * pinfer_region_free() may be the module's last, and pinfer_region_exit()
 * waits for this function to return before the module goes.
 */
static void pinfer_held_work_fn(struct work_struct *work)
{
	if (pinfer_reap_held())
		schedule_delayed_work(&pinfer_held_work, PINFER_HELD_POLL);
}

void pinfer_region_exit(void)
{
	cancel_delayed_work_sync(&pinfer_held_work);
}

static void pinfer_region_release(struct kref *ref)
{
	struct pinfer_region *r = container_of(ref, struct pinfer_region, ref);

	pinfer_live_del(r);
	if (r->backing)
		pinfer_unbind_file(r->backing);
	pinfer_unshow_pinned(r);
	if (pinfer_free_idle_pages(r)) {
		pinfer_region_free(r);
		return;
	}
	atomic64_add(r->nr_charged * PINFER_PAGE_BYTES, &pinfer_held_bytes);
	mutex_lock(&pinfer_held_lock);
	list_add_tail(&r->held, &pinfer_held_list);
	mutex_unlock(&pinfer_held_lock);
	schedule_delayed_work(&pinfer_held_work, PINFER_HELD_POLL);
}

void pinfer_region_put(struct pinfer_region *r)
{
	kref_put(&r->ref, pinfer_region_release);
}

/* ---- mapping ------------------------------------------------------------ */

static vm_fault_t pinfer_vm_fault(struct vm_fault *vmf)
{
	struct pinfer_region *r = vmf->vma->vm_file->private_data;
	pgoff_t pgoff = vmf->pgoff;
	struct page *page;

	if (pgoff >= r->size >> PAGE_SHIFT)
		return VM_FAULT_SIGBUS;
	page = r->pages[pgoff >> PINFER_ORDER] +
	       (pgoff & ((1UL << PINFER_ORDER) - 1));
	get_page(page);		/* handed to the page table by finish_fault() */
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct pinfer_vm_ops = {
	.fault = pinfer_vm_fault,
};

static int pinfer_region_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct pinfer_region *r = file->private_data;
	unsigned long npages = r->size >> PAGE_SHIFT;

	/* A private mapping would copy on write: pages of ours into anon. */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (vma->vm_pgoff > npages || vma_pages(vma) > npages - vma->vm_pgoff)
		return -EINVAL;
	pinfer_vm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &pinfer_vm_ops;
	return 0;
}

/*
 * Place the mapping so that file offset and address agree modulo 2 MiB:
 * ask for 2 MiB more than needed and round up within it.
 */
static unsigned long pinfer_get_unmapped_area(struct file *file,
					      unsigned long addr,
					      unsigned long len,
					      unsigned long pgoff,
					      unsigned long flags)
{
	unsigned long off = pgoff << PAGE_SHIFT, padded = len + PINFER_PAGE_BYTES;
	unsigned long ret;

	if ((flags & MAP_FIXED) || len < PINFER_PAGE_BYTES || padded < len)
		return pinfer_mm_get_unmapped_area(file, addr, len, pgoff, flags);
	ret = pinfer_mm_get_unmapped_area(file, addr, padded, pgoff, flags);
	if (IS_ERR_VALUE(ret))
		return ret;
	if (ret == addr)	/* the caller's hint was free: honour it */
		return ret;
	return ret + ((off - ret) & (PINFER_PAGE_BYTES - 1));
}

/* ---- the region fd ------------------------------------------------------ */

static long pinfer_region_info(struct pinfer_region *r,
			       struct pinfer_region_info __user *uarg)
{
	struct pinfer_region_info info = {
		.size = r->size,
		.numa_node = r->nid,
		.page_size = PINFER_PAGE_2M,
		.bytes_loaded = atomic64_read(&r->bytes_loaded),
		.inflight = atomic_read(&r->inflight),
	};

	return copy_to_user(uarg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long pinfer_region_ioctl(struct file *file, unsigned int cmd,
				unsigned long arg)
{
	struct pinfer_region *r = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case PINFER_IOC_REGION_INFO:
		return pinfer_region_info(r, uarg);
	case PINFER_IOC_BIND_FILE:
		return pinfer_bind_file(r, uarg);
	case PINFER_IOC_PREFETCH:
		return pinfer_prefetch_ioctl(r, uarg);
	default:
		return -ENOTTY;
	}
}

static int pinfer_region_uring_cmd(struct io_uring_cmd *ioucmd,
				   unsigned int issue_flags)
{
	return pinfer_prefetch_uring_cmd(ioucmd->file->private_data, ioucmd,
					 issue_flags);
}

static int pinfer_region_file_release(struct inode *inode, struct file *file)
{
	pinfer_region_put(file->private_data);
	return 0;
}

static const struct file_operations pinfer_region_fops = {
	.owner = THIS_MODULE,
	.mmap = pinfer_region_mmap,
	.get_unmapped_area = pinfer_get_unmapped_area,
	.unlocked_ioctl = pinfer_region_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.uring_cmd = pinfer_region_uring_cmd,
	.release = pinfer_region_file_release,
	.llseek = noop_llseek,
};

/* ---- creation ----------------------------------------------------------- */

static int pinfer_check_create(struct pinfer_region_create *arg)
{
	if (arg->flags || arg->reserved[0] || arg->reserved[1])
		return -EINVAL;
	if (arg->page_size == PINFER_PAGE_1G)
		return -EOPNOTSUPP;
	if (arg->page_size != PINFER_PAGE_2M)
		return -EINVAL;
	if (!arg->size || arg->size % PINFER_PAGE_BYTES)
		return -EINVAL;
	if (arg->size >> PAGE_SHIFT > totalram_pages())
		return -ENOMEM;
	if (arg->numa_node == NUMA_NO_NODE)
		arg->numa_node = numa_node_id();
	if (arg->numa_node < 0 || arg->numa_node >= MAX_NUMNODES ||
	    !node_state(arg->numa_node, N_MEMORY))
		return -EINVAL;
	return 0;
}

static struct file *pinfer_region_file(struct pinfer_region *r)
{
	struct inode *inode;
	struct file *file;

	inode = alloc_anon_inode(pinfer_mnt->mnt_sb);
	if (IS_ERR(inode))
		return ERR_CAST(inode);
	i_size_write(inode, r->size);
	if (!try_module_get(THIS_MODULE)) {	/* put by __fput: fops->owner */
		file = ERR_PTR(-ENOENT);
		goto put_inode;
	}
	file = alloc_file_pseudo(inode, pinfer_mnt, "pinfer-region", O_RDWR,
				 &pinfer_region_fops);
	if (IS_ERR(file))
		goto put_module;
	file->private_data = r;
	return file;

put_module:
	module_put(THIS_MODULE);
put_inode:
	iput(inode);
	return file;
}

long pinfer_region_create(struct pinfer_region_create __user *uarg)
{
	struct pinfer_region_create arg;
	struct pinfer_region *r;
	struct file *file;
	int ret, fd;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	ret = pinfer_check_create(&arg);
	if (ret)
		return ret;
	if (!current->mm)
		return -EINVAL;
	pinfer_reap_held();	/* pages freed since the last poll */

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	kref_init(&r->ref);
	mutex_init(&r->lock);
	INIT_LIST_HEAD(&r->held);
	r->size = arg.size;
	r->nid = arg.numa_node;
	r->nr_pages = arg.size >> PINFER_PAGE_SHIFT;
	ret = pinfer_account(r);
	if (ret)
		goto free_region;
	ret = -ENOMEM;
	r->pages = kvcalloc(r->nr_pages, sizeof(*r->pages), GFP_KERNEL);
	if (!r->pages)
		goto unaccount;
	ret = pinfer_alloc_pages(r);
	if (ret)
		goto free_array;
	ret = simple_pin_fs(&pinfer_fs_type, &pinfer_mnt, &pinfer_mnt_count);
	if (ret)
		goto free_pages;
	r->pin_mm = current->mm;	/* shown in its VmPin, as io_uring does */
	mmgrab(r->pin_mm);
	atomic64_add(r->size >> PAGE_SHIFT, &r->pin_mm->pinned_vm);
	pinfer_live_add(r);

	/* From here on the region is complete: the file's release frees it. */
	file = pinfer_region_file(r);
	if (IS_ERR(file)) {
		pinfer_region_put(r);
		return PTR_ERR(file);
	}
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		fput(file);
		return fd;
	}
	if (put_user(fd, &uarg->fd)) {
		put_unused_fd(fd);
		fput(file);
		return -EFAULT;
	}
	fd_install(fd, file);
	return fd;

free_pages:
	pinfer_free_pages(r, r->nr_pages);
free_array:
	kvfree(r->pages);
unaccount:
	while (r->nr_charged)
		pinfer_uncharge_page(r);
	free_uid(r->user);
free_region:
	kfree(r);
	return ret;
}
