// SPDX-License-Identifier: GPL-2.0
/*
 * Prefetch: read a range of the bound file into the region's pages, the way
 * the loop driver reads: a kiocb over a bio_vec iterator of the region's own
 * pages, direct I/O when the file system and the alignment allow, else
 * through the page cache.
 *
 * The io_uring path: ->uring_cmd() copies the command out of the SQE,
 * submits the read and returns -EIOCBQUEUED. The read's completion may run
 * in interrupt context, so it only defers to task context
 * (io_uring_cmd_complete_in_task), where the references are dropped and the
 * CQE is posted with the bytes read or -errno. Each command holds a region
 * reference and a file reference until then.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bvec.h>
#include <linux/file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uio.h>

#include "compat.h"
#include "internal.h"

struct pinfer_io {
	struct kiocb iocb;
	struct pinfer_region *region;
	struct io_uring_cmd *ioucmd;
	refcount_t ref;			/* submitter + completion */
	long res;
	unsigned int nr_bvec;
	struct bio_vec bvec[];
};

static int pinfer_check_prefetch(struct pinfer_region *r,
				 const struct pinfer_prefetch *p)
{
	u64 end;

	if (p->flags || p->reserved)
		return -EINVAL;
	if (!p->len || p->len > PINFER_PREFETCH_MAX)
		return -EINVAL;
	if (check_add_overflow(p->region_off, p->len, &end) || end > r->size)
		return -EINVAL;
	if (check_add_overflow(p->file_off, p->len, &end) || end > LLONG_MAX)
		return -EINVAL;
	return 0;
}

/* The bound file, with a reference; NULL if none is bound. */
static struct file *pinfer_get_backing(struct pinfer_region *r)
{
	struct file *f;

	mutex_lock(&r->lock);
	f = r->backing ? get_file(r->backing) : NULL;
	mutex_unlock(&r->lock);
	return f;
}

static bool pinfer_use_direct(struct file *f, const struct pinfer_prefetch *p)
{
	return (f->f_mode & FMODE_CAN_ODIRECT) &&
	       IS_ALIGNED(p->file_off | p->len | p->region_off, PINFER_DIO_ALIGN);
}

/* Fill @bv with the region's pages behind [off, off + len). */
static unsigned int pinfer_fill_bvec(struct pinfer_region *r, u64 off, u64 len,
				     struct bio_vec *bv)
{
	unsigned int n = 0;

	while (len) {
		u64 in = off & (PINFER_PAGE_BYTES - 1);
		u64 chunk = min_t(u64, len, PINFER_PAGE_BYTES - in);

		bvec_set_page(&bv[n++], r->pages[off >> PINFER_PAGE_SHIFT],
			      chunk, in);
		off += chunk;
		len -= chunk;
	}
	return n;
}

static unsigned int pinfer_nr_bvec(const struct pinfer_prefetch *p)
{
	u64 first = p->region_off >> PINFER_PAGE_SHIFT;
	u64 last = (p->region_off + p->len - 1) >> PINFER_PAGE_SHIFT;

	return last - first + 1;
}

static struct pinfer_io *pinfer_io_alloc(struct pinfer_region *r,
					 struct file *f,
					 const struct pinfer_prefetch *p)
{
	struct pinfer_io *io;
	unsigned int n = pinfer_nr_bvec(p);

	io = kzalloc(struct_size(io, bvec, n), GFP_KERNEL);
	if (!io)
		return NULL;
	io->nr_bvec = pinfer_fill_bvec(r, p->region_off, p->len, io->bvec);
	io->iocb.ki_filp = f;
	io->iocb.ki_pos = p->file_off;
	io->iocb.ki_flags = pinfer_use_direct(f, p) ? IOCB_DIRECT : 0;
	kref_get(&r->ref);
	io->region = r;
	return io;
}

static void pinfer_io_free(struct pinfer_io *io)
{
	struct pinfer_region *r = io->region;

	if (io->res > 0)
		atomic64_add(io->res, &r->bytes_loaded);
	fput(io->iocb.ki_filp);
	kfree(io);
	atomic_dec(&r->inflight);
	pinfer_region_put(r);
}

/* Read synchronously (a sync kiocb: the file system waits for the I/O). */
static long pinfer_io_read_sync(struct pinfer_io *io, u64 len)
{
	struct iov_iter iter;

	iov_iter_bvec(&iter, ITER_DEST, io->bvec, io->nr_bvec, len);
	io->iocb.ki_complete = NULL;
	return vfs_iocb_iter_read(io->iocb.ki_filp, &io->iocb, &iter);
}

/*
 * Everything a prefetch needs before its read: the range checked, the bound
 * file and the region referenced, a slot among the commands in flight, the
 * page vector. pinfer_io_free() undoes it.
 */
static struct pinfer_io *pinfer_io_start(struct pinfer_region *r,
					 const struct pinfer_prefetch *p)
{
	struct pinfer_io *io;
	struct file *f;
	int ret;

	ret = pinfer_check_prefetch(r, p);
	if (ret)
		return ERR_PTR(ret);
	f = pinfer_get_backing(r);
	if (!f)
		return ERR_PTR(-EBADF);
	if (atomic_inc_return(&r->inflight) > PINFER_MAX_INFLIGHT) {
		ret = -EBUSY;
		goto undo_inflight;
	}
	io = pinfer_io_alloc(r, f, p);
	if (!io) {
		ret = -ENOMEM;
		goto undo_inflight;
	}
	return io;

undo_inflight:
	atomic_dec(&r->inflight);
	fput(f);
	return ERR_PTR(ret);
}

long pinfer_prefetch_ioctl(struct pinfer_region *r,
			   struct pinfer_prefetch __user *uarg)
{
	struct pinfer_prefetch p;
	struct pinfer_io *io;
	long ret;

	if (copy_from_user(&p, uarg, sizeof(p)))
		return -EFAULT;
	io = pinfer_io_start(r, &p);
	if (IS_ERR(io))
		return PTR_ERR(io);
	io->res = pinfer_io_read_sync(io, p.len);
	ret = io->res;
	pinfer_io_free(io);
	return ret;
}

/* ---- io_uring ------------------------------------------------------------ */

static struct pinfer_io **pinfer_cmd_io(struct io_uring_cmd *ioucmd)
{
	BUILD_BUG_ON(sizeof(struct pinfer_io *) > sizeof(ioucmd->pdu));
	return (struct pinfer_io **)ioucmd->pdu;
}

/* Task context: drop the references, then post the CQE. */
static void pinfer_io_task_done(struct io_uring_cmd *ioucmd,
				unsigned int issue_flags)
{
	struct pinfer_io *io = *pinfer_cmd_io(ioucmd);
	long res = io->res;

	pinfer_io_free(io);
	io_uring_cmd_done(ioucmd, res, 0, issue_flags);
}

static void pinfer_io_put(struct pinfer_io *io)
{
	if (refcount_dec_and_test(&io->ref))
		io_uring_cmd_complete_in_task(io->ioucmd, pinfer_io_task_done);
}

/* Completion of the read; may run in interrupt context. */
static void pinfer_io_complete(struct kiocb *iocb, long ret)
{
	struct pinfer_io *io = container_of(iocb, struct pinfer_io, iocb);

	io->res = ret;
	pinfer_io_put(io);
}

static void pinfer_read_payload(struct io_uring_cmd *ioucmd,
				struct pinfer_prefetch *p)
{
	const struct pinfer_prefetch *sqe = pinfer_uring_cmd_payload(ioucmd);

	/* The SQE is shared with user space: read each field once. */
	p->region_off = READ_ONCE(sqe->region_off);
	p->file_off = READ_ONCE(sqe->file_off);
	p->len = READ_ONCE(sqe->len);
	p->flags = READ_ONCE(sqe->flags);
	p->reserved = READ_ONCE(sqe->reserved);
}

int pinfer_prefetch_uring_cmd(struct pinfer_region *r,
			      struct io_uring_cmd *ioucmd,
			      unsigned int issue_flags)
{
	struct pinfer_prefetch p;
	struct pinfer_io *io;
	struct iov_iter iter;
	ssize_t ret;

	if (ioucmd->cmd_op != PINFER_URING_CMD_PREFETCH)
		return -ENOTTY;
	if (!(issue_flags & IO_URING_F_SQE128))
		return -EINVAL;		/* the command needs 32 bytes */
	/*
	 * Submitting may block (file system locks, request allocation):
	 * let io_uring retry from its worker, where blocking is fine.
	 */
	if (issue_flags & IO_URING_F_NONBLOCK)
		return -EAGAIN;
	pinfer_read_payload(ioucmd, &p);
	io = pinfer_io_start(r, &p);
	if (IS_ERR(io))
		return PTR_ERR(io);
	io->ioucmd = ioucmd;
	*pinfer_cmd_io(ioucmd) = io;
	refcount_set(&io->ref, 2);
	io->iocb.ki_complete = pinfer_io_complete;
	iov_iter_bvec(&iter, ITER_DEST, io->bvec, io->nr_bvec, p.len);
	ret = vfs_iocb_iter_read(io->iocb.ki_filp, &io->iocb, &iter);
	if (ret != -EIOCBQUEUED)	/* done already (buffered, or an error) */
		pinfer_io_complete(&io->iocb, ret);
	pinfer_io_put(io);
	return -EIOCBQUEUED;
}

/* ---- binding the file ----------------------------------------------------- */

long pinfer_bind_file(struct pinfer_region *r,
		      struct pinfer_bind_file __user *uarg)
{
	struct pinfer_bind_file b;
	struct file *f, *old;

	if (copy_from_user(&b, uarg, sizeof(b)))
		return -EFAULT;
	if (b.flags || b.reserved)
		return -EINVAL;
	f = fget(b.fd);
	if (!f)
		return -EBADF;
	if (!(f->f_mode & FMODE_READ)) {
		fput(f);
		return -EBADF;
	}
	if (!S_ISREG(file_inode(f)->i_mode)) {
		fput(f);
		return -EINVAL;
	}
	mutex_lock(&r->lock);
	old = r->backing;
	r->backing = f;
	mutex_unlock(&r->lock);
	if (old)
		fput(old);
	return 0;
}
