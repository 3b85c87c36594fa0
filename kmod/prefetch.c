// SPDX-License-Identifier: GPL-2.0
/*
 * Prefetch: read a range of the bound file into the region's pages, the way
 * the loop driver reads: a kiocb over a bio_vec iterator of the region's own
 * pages, direct I/O when the file system and the alignment allow, else
 * through the page cache.
 *
 * A prefetch writes exactly the bytes it reports. Direct I/O would not: a
 * read that reaches the end of the file fills the whole request (zeros past
 * the end) and reports only what the file held. So nothing past the end of
 * the file is asked for, and of what is, direct I/O reads the whole 4 KiB
 * blocks and the page cache the rest (the tail, read first). The end of the
 * file cannot move meanwhile: a bound file, and the file of each command in
 * flight, have their writes denied (deny_write_access(), as an executable
 * being run), so it can be neither truncated nor written.
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
	u64 len;			/* of the main read, from iocb.ki_pos */
	u64 region_off;			/* where the main read goes */
	u64 tail;			/* bytes after it, read through the cache */
	long tail_res;			/* what reading the tail returned */
	long res;			/* of the main read, then of the prefetch */
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

/*
 * The bound file, with a reference and a write denial of its own (which
 * cannot fail: the binding holds one); NULL if none is bound.
 */
static struct file *pinfer_get_backing(struct pinfer_region *r)
{
	struct file *f = NULL;

	mutex_lock(&r->lock);
	if (r->backing && !deny_write_access(r->backing))
		f = get_file(r->backing);
	mutex_unlock(&r->lock);
	return f;
}

void pinfer_unbind_file(struct file *f)
{
	allow_write_access(f);
	fput(f);
}

/*
 * Split @p into the main read (@io->len bytes, direct when the file system
 * and the alignment allow) and the tail after it, neither past the end of
 * the file.
 */
static void pinfer_plan(struct pinfer_io *io, struct file *f,
			const struct pinfer_prefetch *p)
{
	loff_t size = i_size_read(file_inode(f));
	u64 len = 0;

	if (p->file_off < size)
		len = min_t(u64, p->len, size - p->file_off);
	io->len = len;
	if ((f->f_mode & FMODE_CAN_ODIRECT) &&
	    IS_ALIGNED(p->file_off | p->region_off, PINFER_DIO_ALIGN)) {
		io->len = round_down(len, PINFER_DIO_ALIGN);
		io->iocb.ki_flags = IOCB_DIRECT;
	}
	io->tail = len - io->len;
	io->region_off = p->region_off;
	io->iocb.ki_filp = f;
	io->iocb.ki_pos = p->file_off;
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

/* Pages a range of the region spans (its bio_vecs), 0 for none. */
static unsigned int pinfer_nr_bvec(u64 off, u64 len)
{
	if (!len)
		return 0;
	return ((off + len - 1) >> PINFER_PAGE_SHIFT) -
	       (off >> PINFER_PAGE_SHIFT) + 1;
}

static struct pinfer_io *pinfer_io_alloc(struct pinfer_region *r,
					 struct file *f,
					 const struct pinfer_prefetch *p)
{
	struct pinfer_io *io;
	unsigned int n = pinfer_nr_bvec(p->region_off, p->len);

	io = kzalloc(struct_size(io, bvec, n), GFP_KERNEL);
	if (!io)
		return NULL;
	pinfer_plan(io, f, p);
	io->nr_bvec = pinfer_fill_bvec(r, io->region_off, io->len, io->bvec);
	kref_get(&r->ref);
	io->region = r;
	return io;
}

static void pinfer_io_free(struct pinfer_io *io)
{
	struct pinfer_region *r = io->region;

	if (io->res > 0) {
		atomic64_add(io->res, &r->bytes_loaded);
		atomic64_add(io->res, &pinfer_prefetch_bytes);
	} else if (io->res < 0) {
		atomic64_inc(&pinfer_prefetch_errors);
	}
	atomic64_inc(&pinfer_prefetch_commands);
	pinfer_unbind_file(io->iocb.ki_filp);
	kfree(io);
	atomic_dec(&pinfer_prefetch_inflight);
	atomic_dec(&r->inflight);
	pinfer_region_put(r);
}

/*
 * Read the tail through the page cache, synchronously: it copies no more
 * than the file holds. It comes first, so that whatever the main read
 * returns, the bytes written are the bytes reported: a direct read of
 * whole blocks within the file returns all of them or an error.
 */
static long pinfer_io_read_tail(struct pinfer_io *io)
{
	struct kiocb kiocb = {
		.ki_filp = io->iocb.ki_filp,
		.ki_pos = io->iocb.ki_pos + io->len,
	};
	struct bio_vec bv[2];
	struct iov_iter iter;
	unsigned int n;

	if (!io->tail)
		return 0;
	n = pinfer_fill_bvec(io->region, io->region_off + io->len, io->tail, bv);
	iov_iter_bvec(&iter, ITER_DEST, bv, n, io->tail);
	return vfs_iocb_iter_read(kiocb.ki_filp, &kiocb, &iter);
}

/* The prefetch's result from the tail's and the main read's (@main). */
static long pinfer_io_result(const struct pinfer_io *io, long main)
{
	if (io->tail_res < 0)
		return io->tail_res;
	if (main < 0 || main < io->len)	/* short: an error after some bytes */
		return main;
	return main + io->tail_res;
}

/*
 * Read the tail, then start the main read: synchronous without
 * @io->iocb.ki_complete (the file system waits for the I/O), else possibly
 * -EIOCBQUEUED. Returns the main read's result, 0 if there is none.
 */
static long pinfer_io_submit(struct pinfer_io *io)
{
	struct iov_iter iter;

	io->tail_res = pinfer_io_read_tail(io);
	if (io->tail_res < 0 || !io->len)
		return 0;
	iov_iter_bvec(&iter, ITER_DEST, io->bvec, io->nr_bvec, io->len);
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
	atomic_inc(&pinfer_prefetch_inflight);
	return io;

undo_inflight:
	atomic_dec(&r->inflight);
	pinfer_unbind_file(f);
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
	io->res = pinfer_io_result(io, pinfer_io_submit(io));
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
	long res = pinfer_io_result(io, io->res);

	io->res = res;
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
	ret = pinfer_io_submit(io);
	if (ret != -EIOCBQUEUED)	/* done already (buffered, or an error) */
		pinfer_io_complete(&io->iocb, ret);
	pinfer_io_put(io);
	return -EIOCBQUEUED;
}

/* ---- binding the file ----------------------------------------------------- */

/*
 * The file's writes are denied while it is bound (ETXTBSY to whoever opens
 * it for writing or truncates it), and binding a file open for writing
 * anywhere fails with ETXTBSY: its end must not move under a prefetch.
 */
long pinfer_bind_file(struct pinfer_region *r,
		      struct pinfer_bind_file __user *uarg)
{
	struct pinfer_bind_file b;
	struct file *f, *old;
	int ret;

	if (copy_from_user(&b, uarg, sizeof(b)))
		return -EFAULT;
	if (b.flags || b.reserved)
		return -EINVAL;
	f = fget(b.fd);
	if (!f)
		return -EBADF;
	ret = -EBADF;
	if (!(f->f_mode & FMODE_READ))
		goto put;
	ret = -EINVAL;
	if (!S_ISREG(file_inode(f)->i_mode))
		goto put;
	ret = deny_write_access(f);
	if (ret)
		goto put;
	mutex_lock(&r->lock);
	old = r->backing;
	r->backing = f;
	mutex_unlock(&r->lock);
	if (old)
		pinfer_unbind_file(old);
	return 0;

put:
	fput(f);
	return ret;
}
