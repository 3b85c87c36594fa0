/* SPDX-License-Identifier: MIT */
/*
 * GGUF reader: metadata and tensor table of a GGUF v2/v3 file, validated.
 *
 * The reader trusts nothing in the file. Every count and length is bounded by
 * the bytes that are really there before anything is allocated for it, every
 * size computation is overflow-checked, and a bad file is refused with one
 * error naming the field and its file offset. Values are not copied: strings
 * and arrays point into the header buffer the gguf object owns.
 *
 * Tensor data is not read; the table says where it is (gguf_tensor.offset is
 * absolute in the file) and the runtime loads it.
 */
#ifndef PINFER_GGUF_H
#define PINFER_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/hash.h"
#include "libpinfer.h"

enum gguf_type {
	GGUF_TYPE_UINT8 = 0,
	GGUF_TYPE_INT8 = 1,
	GGUF_TYPE_UINT16 = 2,
	GGUF_TYPE_INT16 = 3,
	GGUF_TYPE_UINT32 = 4,
	GGUF_TYPE_INT32 = 5,
	GGUF_TYPE_FLOAT32 = 6,
	GGUF_TYPE_BOOL = 7,
	GGUF_TYPE_STRING = 8,
	GGUF_TYPE_ARRAY = 9,
	GGUF_TYPE_UINT64 = 10,
	GGUF_TYPE_INT64 = 11,
	GGUF_TYPE_FLOAT64 = 12,
	GGUF_TYPE_COUNT = 13,
};

/* What was wrong with a file. Each has its own test in tests/unit. */
enum gguf_err {
	GGUF_OK = 0,
	GGUF_E_IO,		/* open/stat/read failed (errno in sys_errno) */
	GGUF_E_NOMEM,		/* out of memory for a size the file justified */
	GGUF_E_TOO_LARGE,	/* header larger than the reader accepts */
	GGUF_E_TRUNCATED,	/* the file ends inside a field */
	GGUF_E_MAGIC,		/* not "GGUF" */
	GGUF_E_VERSION,		/* not version 2 or 3 */
	GGUF_E_COUNT,		/* a count larger than the file can hold or the limit */
	GGUF_E_STRING,		/* string length absurd (empty key, too long) */
	GGUF_E_VALUE_TYPE,	/* unknown metadata value type */
	GGUF_E_VALUE,		/* a value out of its domain (bool not 0/1, ...) */
	GGUF_E_NESTING,		/* arrays nested too deep */
	GGUF_E_DUP_KEY,		/* the same key twice */
	GGUF_E_ALIGNMENT,	/* general.alignment wrong type, 0, not 2^n */
	GGUF_E_NDIMS,		/* tensor n_dims not 1..4 */
	GGUF_E_DIMS,		/* a dim of 0, or the element count overflows */
	GGUF_E_TENSOR_TYPE,	/* unknown tensor type */
	GGUF_E_SHAPE,		/* row length not a whole number of blocks */
	GGUF_E_DUP_TENSOR,	/* the same tensor name twice */
	GGUF_E_OFFSET,		/* tensor offset not aligned */
	GGUF_E_DATA,		/* tensor data lies (partly) beyond the file */
	GGUF_E_OVERLAP,		/* two tensors' data overlap */
	GGUF_E_ERR_COUNT,
};

struct gguf_error {
	enum gguf_err code;
	int sys_errno;		/* for GGUF_E_IO */
	uint64_t offset;	/* file offset of the offending field */
	char msg[320];		/* one line: field, offset, what is wrong */
};

/* A short stable name of an error code, e.g. "truncated". */
const char *gguf_err_name(enum gguf_err code);

/* Maximum nesting of arrays inside arrays that the reader accepts. */
#define GGUF_MAX_ARRAY_DEPTH 8
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 63	/* tensor name bytes (ggml's 64 with NUL) */
#define GGUF_MAX_KEY 65535
/* Far above real files (~50 keys, a few thousand tensors), far below harm. */
#define GGUF_MAX_KV_COUNT (1u << 16)
#define GGUF_MAX_TENSOR_COUNT (1u << 20)
#define GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the header: not NUL-terminated. */
struct gguf_str {
	const char *ptr;
	uint64_t len;
};

/*
 * A metadata value. Scalars are decoded; a string points into the header;
 * an array keeps its element type, count and the bytes of its elements,
 * which gguf_array_next() walks (arrays of strings and of arrays have
 * elements of varying size).
 */
struct gguf_value {
	enum gguf_type type;
	union {
		uint64_t u64;	/* UINT8..UINT64, BOOL */
		int64_t i64;	/* INT8..INT64 */
		double f64;	/* FLOAT32, FLOAT64 */
		struct gguf_str str;
		struct {
			enum gguf_type elem_type;
			uint64_t count;
			const uint8_t *data;	/* first element */
			uint64_t bytes;		/* of all elements */
		} arr;
	};
};

struct gguf_kv {
	struct gguf_str key;
	struct gguf_value value;
	uint64_t offset;	/* file offset of the key */
};

struct gguf_tensor {
	struct gguf_str name;
	uint32_t n_dims;
	uint64_t dims[GGUF_MAX_DIMS];	/* dims[0] is the contiguous row; unused = 1 */
	uint32_t type;			/* enum ggml_type */
	uint64_t n_elems;
	uint64_t offset;		/* absolute file offset of the data */
	uint64_t bytes;
	uint64_t info_offset;		/* file offset of this tensor's info */
};

struct gguf {
	uint32_t version;
	uint32_t alignment;
	uint64_t file_size;
	uint64_t data_offset;		/* start of the data section */
	uint64_t n_kv;
	struct gguf_kv *kv;
	uint64_t n_tensors;
	struct gguf_tensor *tensors;	/* in file order */
	/* private */
	uint8_t *buf;			/* header bytes owned by this object */
	struct hash_index kv_index, tensor_index;
};

/*
 * Parse a GGUF whose first @len bytes are @buf and whose total size is
 * @file_size (>= @len; tensor data beyond @len is only bounds-checked).
 * The object keeps pointers into @buf: @buf must outlive it.
 * Returns 0, or -1 with @err filled. If the header runs past @len while
 * @len < @file_size, err->code is GGUF_E_TRUNCATED and *need (if not NULL)
 * is set to a larger length to retry with.
 */
int gguf_parse(struct gguf **out, const uint8_t *buf, uint64_t len,
	       uint64_t file_size, struct gguf_error *err, uint64_t *need);

/* Open and parse the file at @path. Returns 0, or -1 with @err filled. */
int gguf_open(struct gguf **out, const char *path, struct gguf_error *err);

void gguf_close(struct gguf *g);

/* Look-ups by name: NULL when absent. */
const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g,
					   const char *name);

/*
 * Walk an array value: *pos starts at 0; fills @elem with the next element
 * and returns true, or returns false after the last one. The array was
 * validated when the file was parsed, so this cannot fail on a parsed file.
 */
bool gguf_array_next(const struct gguf_value *arr, uint64_t *pos,
		     struct gguf_value *elem);

const char *gguf_type_name(enum gguf_type type);

/* true when the string equals the NUL-terminated @s */
bool gguf_str_eq(struct gguf_str a, const char *s);

/* ---- writing ------------------------------------------------------------------ */

/*
 * A GGUF writer over a stdio stream: @pos counts the bytes put, @bad is set
 * by the first failed write (checked once at the end), @error its errno.
 */
struct gguf_writer {
	FILE *f;
	uint64_t pos;
	bool bad;
	int error;
	const char *path;	/* gguf_out_*(): the file made */
	char *tmp;		/* and the temporary file it is written as */
};

/*
 * The file @path, made safely: written as a new temporary file beside it
 * (@path.XXXXXX: never an existing file, never truncated) into w->f, which
 * gguf_out_commit() flushes to the disk and renames onto @path, and
 * gguf_out_abort() removes. @input, if not NULL, is the file the output is
 * made from: a @path that is that file (the same device and inode, by any
 * name) is refused, as is a @path too long for the temporary name.
 * One file at a time per process; gguf_out_remove_pending() removes it from
 * a signal handler (async-signal-safe).
 */
int gguf_out_open(struct gguf_writer *w, const char *path, const char *input,
		  struct pinfer_err *err);
int gguf_out_commit(struct gguf_writer *w, struct pinfer_err *err);
void gguf_out_abort(struct gguf_writer *w);
void gguf_out_remove_pending(void);

void gguf_put(struct gguf_writer *w, const void *p, size_t n);
void gguf_put_u32(struct gguf_writer *w, uint32_t v);
void gguf_put_u64(struct gguf_writer *w, uint64_t v);
void gguf_put_str(struct gguf_writer *w, const char *s);	/* u64 length + bytes */
void gguf_pad(struct gguf_writer *w, uint32_t align);		/* zeros up to @align */
/* Key-value pairs of the metadata section. */
void gguf_put_kv_u32(struct gguf_writer *w, const char *key, uint32_t v);
void gguf_put_kv_f32(struct gguf_writer *w, const char *key, float v);
void gguf_put_kv_str(struct gguf_writer *w, const char *key, const char *v);
void gguf_put_kv_strs(struct gguf_writer *w, const char *key, const char *const *v,
		      size_t n);
void gguf_put_kv_i32s(struct gguf_writer *w, const char *key, const int32_t *v,
		      size_t n);
void gguf_put_kv_f32s(struct gguf_writer *w, const char *key, const float *v,
		      size_t n);
/* One entry of the tensor table: name, dims, type, offset in the data. */
void gguf_put_tensor_info(struct gguf_writer *w, const char *name, uint32_t n_dims,
			  const uint64_t *dims, uint32_t type, uint64_t offset);

#endif
