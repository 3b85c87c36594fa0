// SPDX-License-Identifier: MIT
/*
 * Writing GGUF (version 3, little-endian): the pieces pinfer quantize and
 * pinfer synth put together. Errors are sticky in the writer's @bad.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"

void gguf_put(struct gguf_writer *w, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, w->f) != n && !w->bad) {
		w->bad = true;
		w->error = errno ? errno : EIO;
	}
	w->pos += n;
}

/* ---- output files --------------------------------------------------------------- */

static char pending[PATH_MAX];		/* the temporary file being written */
static volatile sig_atomic_t have_pending;

void gguf_out_remove_pending(void)
{
	if (have_pending)
		unlink(pending);
	have_pending = 0;
}

int gguf_out_open(struct gguf_writer *w, const char *path, const char *input,
		  struct pinfer_err *err)
{
	struct stat in, out;
	size_t n = strlen(path);
	mode_t mask;
	int fd;

	memset(w, 0, sizeof(*w));
	if (input && !stat(input, &in) && !stat(path, &out) && in.st_dev == out.st_dev &&
	    in.st_ino == out.st_ino)
		return pinfer_fail(err, EEXIST, "the output is the input file: write it to another file (%s)",
				   path);
	if (!n || n + 8 > sizeof(pending))
		return pinfer_fail(err, ENAMETOOLONG, "the output path (%zu bytes) is too long for a temporary file beside it (PATH_MAX %d)",
				   n, PATH_MAX);
	w->tmp = malloc(n + 8);
	if (!w->tmp)
		return pinfer_fail(err, ENOMEM, "out of memory");
	memcpy(w->tmp, path, n);
	memcpy(w->tmp + n, ".XXXXXX", 8);
	fd = mkostemp(w->tmp, O_CLOEXEC);
	if (fd < 0) {
		pinfer_fail(err, errno, "%s.XXXXXX: %s", path, strerror(errno));
		goto fail;
	}
	memcpy(pending, w->tmp, n + 8);
	have_pending = 1;
	mask = umask(0);	/* mkostemp() made it 0600: as a new file would be */
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	w->f = fdopen(fd, "wb");
	if (!w->f) {
		pinfer_fail(err, errno, "%s: %s", w->tmp, strerror(errno));
		close(fd);
		gguf_out_remove_pending();
		goto fail;
	}
	w->path = path;
	return 0;
fail:
	free(w->tmp);
	w->tmp = NULL;
	return err ? err->code : -EIO;
}

int gguf_out_commit(struct gguf_writer *w, struct pinfer_err *err)
{
	int e = 0;

	if (w->bad)
		e = w->error;
	else if (fflush(w->f) || fsync(fileno(w->f)))
		e = errno;
	if (fclose(w->f) && !e)
		e = errno;
	w->f = NULL;
	if (e) {
		pinfer_fail(err, e, "writing %s: %s", w->tmp, strerror(e));
		gguf_out_abort(w);
		return -e;
	}
	if (rename(w->tmp, w->path)) {
		e = errno;
		pinfer_fail(err, e, "%s: %s", w->path, strerror(e));
		gguf_out_abort(w);
		return -e;
	}
	have_pending = 0;
	free(w->tmp);
	w->tmp = NULL;
	return 0;
}

void gguf_out_abort(struct gguf_writer *w)
{
	if (w->f)
		fclose(w->f);
	w->f = NULL;
	if (w->tmp)
		gguf_out_remove_pending();
	free(w->tmp);
	w->tmp = NULL;
}

void gguf_put_u32(struct gguf_writer *w, uint32_t v)
{
	gguf_put(w, &v, 4);
}

void gguf_put_u64(struct gguf_writer *w, uint64_t v)
{
	gguf_put(w, &v, 8);
}

void gguf_put_str(struct gguf_writer *w, const char *s)
{
	gguf_put_u64(w, strlen(s));
	gguf_put(w, s, strlen(s));
}

void gguf_pad(struct gguf_writer *w, uint32_t align)
{
	static const char zeros[64];

	while (w->pos % align) {
		uint64_t n = align - w->pos % align;

		gguf_put(w, zeros, n < sizeof(zeros) ? n : sizeof(zeros));
	}
}

static void key(struct gguf_writer *w, const char *k, uint32_t type)
{
	gguf_put_str(w, k);
	gguf_put_u32(w, type);
}

void gguf_put_kv_u32(struct gguf_writer *w, const char *k, uint32_t v)
{
	key(w, k, GGUF_TYPE_UINT32);
	gguf_put_u32(w, v);
}

void gguf_put_kv_f32(struct gguf_writer *w, const char *k, float v)
{
	key(w, k, GGUF_TYPE_FLOAT32);
	gguf_put(w, &v, 4);
}

void gguf_put_kv_str(struct gguf_writer *w, const char *k, const char *v)
{
	key(w, k, GGUF_TYPE_STRING);
	gguf_put_str(w, v);
}

static void array(struct gguf_writer *w, const char *k, uint32_t type, size_t n)
{
	key(w, k, GGUF_TYPE_ARRAY);
	gguf_put_u32(w, type);
	gguf_put_u64(w, n);
}

void gguf_put_kv_strs(struct gguf_writer *w, const char *k, const char *const *v,
		      size_t n)
{
	size_t i;

	array(w, k, GGUF_TYPE_STRING, n);
	for (i = 0; i < n; i++)
		gguf_put_str(w, v[i]);
}

void gguf_put_kv_i32s(struct gguf_writer *w, const char *k, const int32_t *v,
		      size_t n)
{
	array(w, k, GGUF_TYPE_INT32, n);
	gguf_put(w, v, n * 4);
}

void gguf_put_kv_f32s(struct gguf_writer *w, const char *k, const float *v,
		      size_t n)
{
	array(w, k, GGUF_TYPE_FLOAT32, n);
	gguf_put(w, v, n * 4);
}

void gguf_put_tensor_info(struct gguf_writer *w, const char *name, uint32_t n_dims,
			  const uint64_t *dims, uint32_t type, uint64_t offset)
{
	uint32_t d;

	gguf_put_str(w, name);
	gguf_put_u32(w, n_dims);
	for (d = 0; d < n_dims; d++)
		gguf_put_u64(w, dims[d]);
	gguf_put_u32(w, type);
	gguf_put_u64(w, offset);
}
