// SPDX-License-Identifier: MIT
/*
 * Loading file ranges into a region through one io_uring.
 *
 * Each range is cut into requests of at most LOADER_CHUNK bytes that never
 * cross a 1 GiB boundary of the region (the limit of one registered
 * buffer). With the kmod provider every request is a pinfer.ko prefetch
 * command. Otherwise the part of a range whose file offset and memory
 * address are 4 KiB aligned goes by O_DIRECT (READ_FIXED when the region is
 * registered), and an unaligned head or tail, or a file that refuses
 * O_DIRECT, by buffered reads. At most LOADER_DEPTH requests are in flight.
 *
 * Tickets: each submit is a ticket; its requests wait in one FIFO queue. A
 * ticket records the first error of its requests (naming the file offset)
 * and then drops its requests not yet submitted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>
#include <pinfer.h>

#include "internal.h"

#define LOADER_CHUNK (4ull << 20)
#define LOADER_DEPTH 32
#define LOADER_ALIGN 4096ull
#define LOADER_GIB (1ull << 30)
#define LOADER_TICKETS 256		/* tickets open at once */

enum how { READ_KMOD, READ_DIRECT, READ_BUFFERED };

struct request {
	uint64_t file_off, region_off, len;
	int ticket;
	enum how how;
};

struct ticket {
	int id;			/* 0: slot free */
	uint64_t total, done;
	size_t pending;		/* requests not completed (or dropped) */
	int error;		/* first error, negative errno */
	uint64_t error_off;	/* and the file offset of its request */
	char msg[240];
};

struct pinfer_loader {
	struct pinfer_region *region;
	char *mem;
	size_t size;
	int fd, fd_direct, kmod_fd;	/* fd_direct -1: no O_DIRECT */
	struct io_uring ring;
	bool uring;			/* false: no ring, pread() in pump() */
	char note[200];
	bool fixed;
	unsigned int inflight;
	struct request slots[LOADER_DEPTH];	/* in flight, by user_data */
	bool slot_used[LOADER_DEPTH];
	struct request *queue;		/* waiting, FIFO from q_head */
	size_t q_head, q_len, q_cap;
	struct ticket tickets[LOADER_TICKETS];
	int next_id;
	pinfer_progress_fn progress;
	void *progress_arg;
};

static struct ticket *ticket_of(struct pinfer_loader *l, int id)
{
	struct ticket *t;

	if (id <= 0)
		return NULL;
	t = &l->tickets[id % LOADER_TICKETS];
	return t->id == id ? t : NULL;
}

/* Register the region as fixed buffers, 1 GiB each at most. */
static bool register_region(struct pinfer_loader *l)
{
	size_t n = (l->size + LOADER_GIB - 1) / LOADER_GIB, i;
	struct iovec *iov = calloc(n, sizeof(*iov));
	bool ok;

	if (!iov)
		return false;
	for (i = 0; i < n; i++) {
		iov[i].iov_base = l->mem + i * LOADER_GIB;
		iov[i].iov_len = l->size - i * LOADER_GIB < LOADER_GIB ?
				 l->size - i * LOADER_GIB : LOADER_GIB;
	}
	ok = io_uring_register_buffers(&l->ring, iov, n) == 0;
	free(iov);
	return ok;
}

int pinfer_loader_create(struct pinfer_loader **out, struct pinfer_region *r,
			 const char *path, struct pinfer_err *err)
{
	struct pinfer_loader *l;
	struct pinfer_region_props info;
	bool off;
	int ret;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return pinfer_fail(err, ENOMEM, "loader: out of memory");
	pinfer_region_props(r, &info);
	l->region = r;
	l->mem = pinfer_region_ptr(r);
	l->size = info.size;
	l->kmod_fd = pinfer_region_kmod_fd(r);
	l->fd_direct = -1;
	l->next_id = 1;
	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0) {
		ret = pinfer_fail(err, errno, "%s: %s", path, strerror(errno));
		goto free_loader;
	}
	off = getenv("PINFER_URING") && !strcmp(getenv("PINFER_URING"), "0");
	ret = off ? -ECANCELED : io_uring_queue_init(2 * LOADER_DEPTH, &l->ring,
						   l->kmod_fd >= 0 ? IORING_SETUP_SQE128 : 0);
	l->uring = !ret;
	if (ret == -ECANCELED || ret == -ENOMEM || ret == -EPERM || ret == -ENOSYS) {
		/* turned off; the ring's memory is charged to RLIMIT_MEMLOCK
		 * (some kernels); kernel.io_uring_disabled; no io_uring at all */
		struct rlimit rl = { 0 };

		getrlimit(RLIMIT_MEMLOCK, &rl);
		if (off)
			snprintf(l->note, sizeof(l->note),
				 "io_uring turned off (PINFER_URING=0): reading with pread()");
		else if (ret == -ENOMEM)
			snprintf(l->note, sizeof(l->note),
				 "io_uring could not start (RLIMIT_MEMLOCK is %llu KiB: raise it with ulimit -l): reading with pread()",
				 (unsigned long long)rl.rlim_cur >> 10);
		else
			snprintf(l->note, sizeof(l->note),
				 "io_uring is not available (%s; see the sysctl kernel.io_uring_disabled): reading with pread()",
				 strerror(-ret));
		l->kmod_fd = -1;	/* the region is mapped: read into it */
		ret = 0;
	} else if (ret) {
		pinfer_fail(err, ret, "loader: io_uring_queue_init: %s", strerror(-ret));
		goto close_fd;
	}
	if (l->kmod_fd >= 0) {
		struct pinfer_bind_file b = { .fd = l->fd };

		if (ioctl(l->kmod_fd, PINFER_IOC_BIND_FILE, &b)) {
			int e = errno;

			ret = pinfer_fail(err, e, "loader: binding %s to the pinfer.ko region: %s%s",
					  path, strerror(e), e == ETXTBSY ?
					  " (the file is open for writing; pinfer.ko reads only files nobody writes)" : "");
			goto exit_ring;
		}
	} else {
		/* tmpfs (before 6.6) and some others refuse O_DIRECT */
		l->fd_direct = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		l->fixed = l->uring && l->fd_direct >= 0 && register_region(l);
	}
	*out = l;
	return 0;

exit_ring:
	if (l->uring)
		io_uring_queue_exit(&l->ring);
close_fd:
	close(l->fd);
free_loader:
	free(l);
	return ret;
}

void pinfer_loader_free(struct pinfer_loader *l)
{
	struct io_uring_cqe *cqe;

	if (!l)
		return;
	/* Requests in flight write into the region: let them finish first. */
	while (l->inflight && !io_uring_wait_cqe(&l->ring, &cqe)) {
		io_uring_cqe_seen(&l->ring, cqe);
		l->inflight--;
	}
	if (l->uring)
		io_uring_queue_exit(&l->ring);
	if (l->fd_direct >= 0)
		close(l->fd_direct);
	close(l->fd);
	free(l->queue);
	free(l);
}

void pinfer_loader_info(const struct pinfer_loader *l,
			struct pinfer_loader_info *info)
{
	info->direct = l->kmod_fd >= 0 || l->fd_direct >= 0;
	info->fixed_buffers = l->fixed;
	info->kmod = l->kmod_fd >= 0;
	info->depth = l->uring ? LOADER_DEPTH : 1;
	info->chunk = LOADER_CHUNK;
	info->uring = l->uring;
	snprintf(info->note, sizeof(info->note), "%s", l->note);
}

void pinfer_loader_set_progress(struct pinfer_loader *l, pinfer_progress_fn fn,
				void *arg)
{
	l->progress = fn;
	l->progress_arg = arg;
}

/* ---- cutting ranges into requests ---------------------------------------------- */

static int enqueue(struct pinfer_loader *l, struct ticket *t, uint64_t foff,
		   uint64_t roff, uint64_t len, enum how how)
{
	while (len) {
		uint64_t n = len < LOADER_CHUNK ? len : LOADER_CHUNK;
		uint64_t to_gib = LOADER_GIB - roff % LOADER_GIB;

		if (n > to_gib)
			n = to_gib;
		if (l->q_head + l->q_len == l->q_cap) {
			size_t cap = l->q_cap ? 2 * l->q_cap : 256;
			struct request *q;

			if (l->q_head) {	/* compact before growing */
				memmove(l->queue, l->queue + l->q_head,
					l->q_len * sizeof(*q));
				l->q_head = 0;
			}
			if (l->q_len == l->q_cap) {
				q = realloc(l->queue, cap * sizeof(*q));
				if (!q)
					return -ENOMEM;
				l->queue = q;
				l->q_cap = cap;
			}
		}
		l->queue[l->q_head + l->q_len++] = (struct request){
			.file_off = foff, .region_off = roff, .len = n,
			.ticket = t->id, .how = how,
		};
		t->pending++;
		foff += n;
		roff += n;
		len -= n;
	}
	return 0;
}

/* Direct for the aligned middle, buffered for what is around it. */
static int enqueue_range(struct pinfer_loader *l, struct ticket *t,
			 const struct pinfer_range *rg)
{
	uint64_t addr = (uintptr_t)l->mem + rg->region_off;
	uint64_t head, body;
	int ret;

	if (l->kmod_fd >= 0 || l->fd_direct < 0 ||
	    (rg->file_off - addr) % LOADER_ALIGN)
		return enqueue(l, t, rg->file_off, rg->region_off, rg->len,
			       l->kmod_fd >= 0 ? READ_KMOD : READ_BUFFERED);
	head = (LOADER_ALIGN - rg->file_off % LOADER_ALIGN) % LOADER_ALIGN;
	if (head > rg->len)
		head = rg->len;
	body = (rg->len - head) / LOADER_ALIGN * LOADER_ALIGN;
	ret = enqueue(l, t, rg->file_off, rg->region_off, head, READ_BUFFERED);
	if (!ret)
		ret = enqueue(l, t, rg->file_off + head, rg->region_off + head,
			      body, READ_DIRECT);
	if (!ret)
		ret = enqueue(l, t, rg->file_off + head + body,
			      rg->region_off + head + body,
			      rg->len - head - body, READ_BUFFERED);
	return ret;
}

/* ---- submission and completion ---------------------------------------------- */

static void prep(struct pinfer_loader *l, struct io_uring_sqe *sqe,
		 const struct request *rq)
{
	void *dst = l->mem + rq->region_off;
	struct pinfer_prefetch p;

	switch (rq->how) {
	case READ_KMOD:
		p = (struct pinfer_prefetch){
			.region_off = rq->region_off, .file_off = rq->file_off,
			.len = rq->len,
		};
		io_uring_prep_rw(IORING_OP_URING_CMD, sqe, l->kmod_fd, NULL, 0, 0);
		sqe->cmd_op = PINFER_URING_CMD_PREFETCH;
		memcpy(sqe->cmd, &p, sizeof(p));
		break;
	case READ_DIRECT:
		if (l->fixed)
			io_uring_prep_read_fixed(sqe, l->fd_direct, dst, rq->len,
						 rq->file_off, rq->region_off / LOADER_GIB);
		else
			io_uring_prep_read(sqe, l->fd_direct, dst, rq->len, rq->file_off);
		break;
	case READ_BUFFERED:
		io_uring_prep_read(sqe, l->fd, dst, rq->len, rq->file_off);
		break;
	}
}

/* A request is over: account it to its ticket. */
static void finish(struct pinfer_loader *l, const struct request *rq, int res)
{
	struct ticket *t = ticket_of(l, rq->ticket);

	if (!t)
		return;
	t->pending--;
	if (res == (int)rq->len) {
		t->done += rq->len;
		if (l->progress)
			l->progress(t->done, t->total, l->progress_arg);
		return;
	}
	if (t->error)
		return;
	t->error_off = rq->file_off;
	if (res < 0) {
		t->error = res;
		snprintf(t->msg, sizeof(t->msg), "read of %" PRIu64 " bytes at file offset %" PRIu64 ": %s",
			 rq->len, rq->file_off, strerror(-res));
	} else {
		t->error = -EIO;
		snprintf(t->msg, sizeof(t->msg), "short read at file offset %" PRIu64 ": %d of %" PRIu64 " bytes (the file ends early or changed)",
			 rq->file_off, res, rq->len);
	}
}

/* Without a ring: one request, read whole by pread(); its result. */
static int read_now(struct pinfer_loader *l, const struct request *rq)
{
	int fd = rq->how == READ_DIRECT ? l->fd_direct : l->fd;
	uint64_t done = 0;
	ssize_t n;

	while (done < rq->len) {
		n = pread(fd, l->mem + rq->region_off + done, rq->len - done,
			  (off_t)(rq->file_off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			break;
		done += (uint64_t)n;
	}
	return (int)done;
}

/* Move waiting requests into the ring, up to the depth (or read them). */
static void pump(struct pinfer_loader *l)
{
	bool any = false;

	while (!l->uring && l->q_len) {
		struct request *rq = &l->queue[l->q_head];
		struct ticket *t = ticket_of(l, rq->ticket);

		l->q_head++;
		l->q_len--;
		if (t && t->error)
			t->pending--;
		else
			finish(l, rq, read_now(l, rq));
	}

	while (l->q_len && l->inflight < LOADER_DEPTH) {
		struct request *rq = &l->queue[l->q_head];
		struct ticket *t = ticket_of(l, rq->ticket);
		struct io_uring_sqe *sqe;
		unsigned int s;

		if (t && t->error) {		/* its ticket failed: drop it */
			t->pending--;
			l->q_head++;
			l->q_len--;
			continue;
		}
		sqe = io_uring_get_sqe(&l->ring);
		if (!sqe)
			break;
		for (s = 0; l->slot_used[s]; s++)
			;
		l->slots[s] = *rq;
		l->slot_used[s] = true;
		prep(l, sqe, rq);
		io_uring_sqe_set_data64(sqe, s);
		l->q_head++;
		l->q_len--;
		l->inflight++;
		any = true;
	}
	if (!l->q_len)
		l->q_head = 0;
	if (any)
		io_uring_submit(&l->ring);
}

static void complete(struct pinfer_loader *l, struct io_uring_cqe *cqe)
{
	unsigned int s = (unsigned int)io_uring_cqe_get_data64(cqe);

	finish(l, &l->slots[s], cqe->res);
	l->slot_used[s] = false;
	l->inflight--;
	io_uring_cqe_seen(&l->ring, cqe);
}

/* ---- tickets ------------------------------------------------------------------ */

static int check_range(const struct pinfer_loader *l, const struct pinfer_range *rg,
		       uint64_t file_size, struct pinfer_err *err)
{
	uint64_t end;

	if (__builtin_add_overflow(rg->region_off, rg->len, &end) || end > l->size)
		return pinfer_fail(err, EINVAL, "load: region range [%" PRIu64 ", +%" PRIu64 ") is outside the region of %zu bytes",
				   rg->region_off, rg->len, l->size);
	if (__builtin_add_overflow(rg->file_off, rg->len, &end) || end > file_size) {
		pinfer_fail(err, EINVAL, "load: file range [%" PRIu64 ", +%" PRIu64 ") goes past the end of the file (%" PRIu64 " bytes)",
			    rg->file_off, rg->len, file_size);
		if (err)	/* the first byte that cannot be read */
			err->file_off = (int64_t)(file_size > rg->file_off ? file_size : rg->file_off);
		return -EINVAL;
	}
	return 0;
}

int pinfer_load_submit(struct pinfer_loader *l, const struct pinfer_range *ranges,
		       size_t n, struct pinfer_err *err)
{
	struct ticket *t;
	struct stat st;
	size_t i;
	int id, ret;

	if (fstat(l->fd, &st))
		return pinfer_fail(err, errno, "load: fstat: %s", strerror(errno));
	for (i = 0; i < n; i++) {
		ret = check_range(l, &ranges[i], (uint64_t)st.st_size, err);
		if (ret)
			return ret;
	}
	id = l->next_id;
	t = &l->tickets[id % LOADER_TICKETS];
	if (t->id)
		return pinfer_fail(err, EBUSY, "load: %d tickets are open: wait for some first",
				   LOADER_TICKETS);
	l->next_id = id == INT32_MAX ? 1 : id + 1;
	*t = (struct ticket){ .id = id };
	for (i = 0; i < n; i++) {
		t->total += ranges[i].len;
		if (enqueue_range(l, t, &ranges[i])) {
			/* what was queued is dropped by pump(), as for an error */
			t->error = -ENOMEM;
			snprintf(t->msg, sizeof(t->msg), "load: out of memory");
			break;
		}
	}
	pump(l);
	return id;
}

/* The ticket's result, and its slot freed, once it is done. */
static int reap_ticket(struct ticket *t, struct pinfer_err *err)
{
	int ret = t->error;

	if (ret) {
		pinfer_fail(err, ret, "%s", t->msg);
		if (err)
			err->file_off = (int64_t)t->error_off;
	}
	t->id = 0;
	return ret;
}

int pinfer_load_wait(struct pinfer_loader *l, int ticket, struct pinfer_err *err)
{
	struct ticket *t = ticket_of(l, ticket);
	struct io_uring_cqe *cqe;
	int ret;

	if (!t)
		return pinfer_fail(err, EINVAL, "load: no open ticket %d", ticket);
	for (;;) {
		pump(l);
		if (!t->pending || !l->uring)
			return reap_ticket(t, err);
		ret = io_uring_wait_cqe(&l->ring, &cqe);
		if (ret == -EINTR)
			continue;
		if (ret)
			return pinfer_fail(err, ret, "load: waiting for the ring: %s",
					   strerror(-ret));
		do {
			complete(l, cqe);
		} while (!io_uring_peek_cqe(&l->ring, &cqe));
	}
}

void pinfer_load_pump(struct pinfer_loader *l)
{
	struct io_uring_cqe *cqe;

	while (l->uring && !io_uring_peek_cqe(&l->ring, &cqe))
		complete(l, cqe);
	pump(l);
}

int pinfer_load_poll(struct pinfer_loader *l, int ticket, struct pinfer_err *err)
{
	struct ticket *t = ticket_of(l, ticket);
	int ret;

	if (!t)
		return pinfer_fail(err, EINVAL, "load: no open ticket %d", ticket);
	pinfer_load_pump(l);
	if (t->pending)
		return 0;
	ret = reap_ticket(t, err);
	return ret ? ret : 1;
}

int pinfer_load(struct pinfer_loader *l, const struct pinfer_range *ranges,
		size_t n, struct pinfer_err *err)
{
	int ticket = pinfer_load_submit(l, ranges, n, err);

	if (ticket < 0)
		return ticket;
	return pinfer_load_wait(l, ticket, err);
}
