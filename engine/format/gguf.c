// SPDX-License-Identifier: MIT
/*
 * GGUF reader. Layout (little endian): "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv, n_kv x {string key, u32 type, value}, n_tensors x {string name,
 * u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset}, padding to the
 * alignment, tensor data. A string is a u64 length and that many bytes.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml_types.h"

/* Headers larger than this are refused rather than read into memory. */
#define GGUF_MAX_HEADER (512ull << 20)
/* First read of a file; grown by doubling as far as the header needs. */
#define GGUF_FIRST_READ (1ull << 20)

/* Smallest encodings, to bound counts by the bytes left in the file. */
#define MIN_KV_BYTES (8 + 1 + 4 + 1)		/* key len, 1-byte key, type, u8 */
#define MIN_TENSOR_BYTES (8 + 1 + 4 + 8 + 4 + 8) /* name, n_dims, 1 dim, type, offset */

static const char *const err_names[GGUF_E_ERR_COUNT] = {
	[GGUF_OK] = "ok",
	[GGUF_E_IO] = "io",
	[GGUF_E_NOMEM] = "nomem",
	[GGUF_E_TOO_LARGE] = "too-large",
	[GGUF_E_TRUNCATED] = "truncated",
	[GGUF_E_MAGIC] = "magic",
	[GGUF_E_VERSION] = "version",
	[GGUF_E_COUNT] = "count",
	[GGUF_E_STRING] = "string",
	[GGUF_E_VALUE_TYPE] = "value-type",
	[GGUF_E_VALUE] = "value",
	[GGUF_E_NESTING] = "nesting",
	[GGUF_E_DUP_KEY] = "duplicate-key",
	[GGUF_E_ALIGNMENT] = "alignment",
	[GGUF_E_NDIMS] = "n-dims",
	[GGUF_E_DIMS] = "dims",
	[GGUF_E_TENSOR_TYPE] = "tensor-type",
	[GGUF_E_SHAPE] = "shape",
	[GGUF_E_DUP_TENSOR] = "duplicate-tensor",
	[GGUF_E_OFFSET] = "offset",
	[GGUF_E_DATA] = "data",
	[GGUF_E_OVERLAP] = "overlap",
};

const char *gguf_err_name(enum gguf_err code)
{
	if ((unsigned int)code >= GGUF_E_ERR_COUNT)
		return "?";
	return err_names[code];
}

static const char *const type_names[GGUF_TYPE_COUNT] = {
	"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr",
	"u64", "i64", "f64",
};

/* Encoded size of a scalar type; 0 for string and array. */
static const uint8_t scalar_size[GGUF_TYPE_COUNT] = {
	1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8,
};

const char *gguf_type_name(enum gguf_type type)
{
	if ((unsigned int)type >= GGUF_TYPE_COUNT)
		return "?";
	return type_names[type];
}

bool gguf_str_eq(struct gguf_str a, const char *s)
{
	size_t n = strlen(s);

	return a.len == n && memcmp(a.ptr, s, n) == 0;
}

/* ---- cursor over the header bytes ---------------------------------------- */

struct cursor {
	const uint8_t *buf;
	uint64_t len;		/* bytes available in buf */
	uint64_t file_size;	/* bytes in the file */
	uint64_t pos;
	struct gguf_error *err;
	uint64_t need;		/* set when the header runs past len < file_size */
};

static int fail(struct cursor *c, enum gguf_err code, uint64_t offset,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(struct cursor *c, enum gguf_err code, uint64_t offset,
		const char *fmt, ...)
{
	struct gguf_error *e = c->err;
	int n;
	va_list ap;

	e->code = code;
	e->offset = offset;
	n = snprintf(e->msg, sizeof(e->msg), "offset %" PRIu64 ": ", offset);
	va_start(ap, fmt);
	vsnprintf(e->msg + n, sizeof(e->msg) - n, fmt, ap);
	va_end(ap);
	return -1;
}

static uint64_t left(const struct cursor *c)
{
	return c->file_size - c->pos;
}

/* Consume @n bytes of field @what; NULL (error set) if the file ends first. */
static const uint8_t *take(struct cursor *c, uint64_t n, const char *what)
{
	const uint8_t *p;

	if (n > left(c)) {
		fail(c, GGUF_E_TRUNCATED, c->pos,
		     "%s: file ends after %" PRIu64 " of %" PRIu64 " bytes",
		     what, left(c), n);
		return NULL;
	}
	if (c->pos + n > c->len) {
		/* The bytes exist but were not read yet: ask for more. */
		uint64_t want = c->pos + n;

		c->need = want > 2 * c->len ? want : 2 * c->len;
		fail(c, GGUF_E_TRUNCATED, c->pos, "%s: header not fully read", what);
		return NULL;
	}
	p = c->buf + c->pos;
	c->pos += n;
	return p;
}

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

static int get_u32(struct cursor *c, uint32_t *v, const char *what)
{
	const uint8_t *p = take(c, 4, what);

	if (!p)
		return -1;
	*v = (uint32_t)le(p, 4);
	return 0;
}

static int get_u64(struct cursor *c, uint64_t *v, const char *what)
{
	const uint8_t *p = take(c, 8, what);

	if (!p)
		return -1;
	*v = le(p, 8);
	return 0;
}

/* A string whose length must lie in [min, max] (and within the file). */
static int get_str(struct cursor *c, struct gguf_str *s, uint64_t min,
		   uint64_t max, const char *what)
{
	uint64_t at = c->pos;
	uint64_t n;
	const uint8_t *p;

	if (get_u64(c, &n, what))
		return -1;
	if (n < min || n > max)
		return fail(c, GGUF_E_STRING, at,
			    "%s: length %" PRIu64 " outside [%" PRIu64 ", %" PRIu64 "]",
			    what, n, min, max);
	if (n > left(c))
		return fail(c, GGUF_E_STRING, at,
			    "%s: length %" PRIu64 " exceeds the %" PRIu64 " bytes left in the file",
			    what, n, left(c));
	p = take(c, n, what);
	if (!p)
		return -1;
	s->ptr = (const char *)p;
	s->len = n;
	return 0;
}

/* ---- metadata values ------------------------------------------------------ */

static int get_type(struct cursor *c, enum gguf_type *t, const char *what)
{
	uint64_t at = c->pos;
	uint32_t v;

	if (get_u32(c, &v, what))
		return -1;
	if (v >= GGUF_TYPE_COUNT)
		return fail(c, GGUF_E_VALUE_TYPE, at, "%s: unknown value type %" PRIu32,
			    what, v);
	*t = (enum gguf_type)v;
	return 0;
}

static void decode_scalar(enum gguf_type t, const uint8_t *p,
			  struct gguf_value *v)
{
	uint64_t raw = le(p, scalar_size[t]);
	union { uint32_t u; float f; } f32;
	union { uint64_t u; double f; } f64;

	v->type = t;
	switch (t) {
	case GGUF_TYPE_INT8:
		v->i64 = (int8_t)raw;
		break;
	case GGUF_TYPE_INT16:
		v->i64 = (int16_t)raw;
		break;
	case GGUF_TYPE_INT32:
		v->i64 = (int32_t)raw;
		break;
	case GGUF_TYPE_INT64:
		v->i64 = (int64_t)raw;
		break;
	case GGUF_TYPE_FLOAT32:
		f32.u = (uint32_t)raw;
		v->f64 = f32.f;
		break;
	case GGUF_TYPE_FLOAT64:
		f64.u = raw;
		v->f64 = f64.f;
		break;
	default:
		v->u64 = raw;
		break;
	}
}

static int get_value(struct cursor *c, enum gguf_type t, struct gguf_value *v,
		     unsigned int depth, const char *what);

static int get_array(struct cursor *c, struct gguf_value *v,
		     unsigned int depth, const char *what)
{
	uint64_t at = c->pos;
	uint64_t i, count, start, min_elem;
	enum gguf_type et = GGUF_TYPE_UINT8;
	struct gguf_value elem;

	if (depth >= GGUF_MAX_ARRAY_DEPTH)
		return fail(c, GGUF_E_NESTING, at,
			    "%s: arrays nested deeper than %d", what,
			    GGUF_MAX_ARRAY_DEPTH);
	if (get_type(c, &et, what) || get_u64(c, &count, what))
		return -1;
	/* Bound the count by the smallest encoding of one element. */
	min_elem = scalar_size[et] ? scalar_size[et] :
		   et == GGUF_TYPE_STRING ? 8 : 4 + 8;
	if (count > left(c) / min_elem)
		return fail(c, GGUF_E_COUNT, at + 4,
			    "%s: array of %" PRIu64 " %s cannot fit in the %" PRIu64
			    " bytes left in the file", what, count,
			    gguf_type_name(et), left(c));
	v->type = GGUF_TYPE_ARRAY;
	v->arr.elem_type = et;
	v->arr.count = count;
	start = c->pos;
	if (scalar_size[et] && et != GGUF_TYPE_BOOL) {
		if (!take(c, count * scalar_size[et], what))
			return -1;
	} else {
		for (i = 0; i < count; i++)
			if (get_value(c, et, &elem, depth + 1, what))
				return -1;
	}
	v->arr.data = c->buf + start;
	v->arr.bytes = c->pos - start;
	return 0;
}

static int get_value(struct cursor *c, enum gguf_type t, struct gguf_value *v,
		     unsigned int depth, const char *what)
{
	uint64_t at = c->pos;
	const uint8_t *p;

	if (t == GGUF_TYPE_ARRAY)
		return get_array(c, v, depth, what);
	if (t == GGUF_TYPE_STRING) {
		v->type = t;
		return get_str(c, &v->str, 0, UINT64_MAX, what);
	}
	p = take(c, scalar_size[t], what);
	if (!p)
		return -1;
	decode_scalar(t, p, v);
	if (t == GGUF_TYPE_BOOL && v->u64 > 1)
		return fail(c, GGUF_E_VALUE, at, "%s: bool value %" PRIu64 " is not 0 or 1",
			    what, v->u64);
	return 0;
}

bool gguf_array_next(const struct gguf_value *arr, uint64_t *pos,
		     struct gguf_value *elem)
{
	struct gguf_error err;
	struct cursor c = {
		.buf = arr->arr.data, .len = arr->arr.bytes,
		.file_size = arr->arr.bytes, .pos = *pos, .err = &err,
	};

	if (*pos >= arr->arr.bytes)
		return false;
	if (get_value(&c, arr->arr.elem_type, elem, 0, "element")) {
		/* Only reachable with an array that was never validated. */
		*pos = arr->arr.bytes;
		return false;
	}
	*pos = c.pos;
	return true;
}

/* ---- name indexes: detect duplicates, serve look-ups ------------------------ */

static bool kv_is(const void *items, uint32_t i, const void *key)
{
	const struct gguf_str *k = &((const struct gguf_kv *)items)[i].key, *s = key;

	return k->len == s->len && !memcmp(k->ptr, s->ptr, s->len);
}

static bool tensor_is(const void *items, uint32_t i, const void *key)
{
	const struct gguf_str *k = &((const struct gguf_tensor *)items)[i].name, *s = key;

	return k->len == s->len && !memcmp(k->ptr, s->ptr, s->len);
}

/*
 * Index @n names (@name_at gives name i): 0, -1 with *dup the second of two
 * equal names, or -2 when out of memory.
 */
static int index_build(struct hash_index *ix, uint64_t n, hash_eq_fn *eq,
		       struct gguf_str (*name_at)(const void *, uint64_t), const void *items,
		       uint64_t *dup)
{
	uint64_t i;

	if (hash_index_init(ix, n))
		return -2;
	for (i = 0; i < n; i++) {
		struct gguf_str s = name_at(items, i);

		if (hash_index_add(ix, hash_bytes(s.ptr, s.len), (uint32_t)i, eq, items, &s) >= 0) {
			*dup = i;
			return -1;
		}
	}
	return 0;
}

static int64_t index_find(const struct hash_index *ix, hash_eq_fn *eq, const void *items,
			  const char *name)
{
	struct gguf_str s = { .ptr = name, .len = strlen(name) };

	if (!ix->slot)
		return -1;
	return hash_index_find(ix, hash_bytes(s.ptr, s.len), eq, items, &s);
}

static struct gguf_str kv_name(const void *items, uint64_t i)
{
	return ((const struct gguf_kv *)items)[i].key;
}

static struct gguf_str tensor_name(const void *items, uint64_t i)
{
	return ((const struct gguf_tensor *)items)[i].name;
}

/* ---- the file as a whole ------------------------------------------------- */

/* Grow *arr (of *cap items of @size) to hold one more than @n. */
static int grow(void **arr, uint64_t *cap, uint64_t n, size_t size)
{
	uint64_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	p = realloc(*arr, ncap * size);
	if (!p)
		return -1;
	*arr = p;
	*cap = ncap;
	return 0;
}

static int nomem(struct cursor *c)
{
	return fail(c, GGUF_E_NOMEM, c->pos, "out of memory");
}

/* Quote a name from the file for a message: printable ASCII, cut short. */
static const char *quote(struct gguf_str s, char *out, size_t size)
{
	size_t i, n = 0;

	for (i = 0; i < s.len && n + 5 < size; i++) {
		unsigned char ch = (unsigned char)s.ptr[i];

		out[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (i < s.len) {
		out[n++] = '.';
		out[n++] = '.';
		out[n++] = '.';
	}
	out[n] = 0;
	return out;
}

static int parse_kvs(struct gguf *g, struct cursor *c, uint64_t n_kv)
{
	uint64_t cap = 0, i, dup;
	char what[96], q[72];
	int ret;

	for (i = 0; i < n_kv; i++) {
		struct gguf_kv kv = { .offset = c->pos };
		enum gguf_type t = GGUF_TYPE_UINT8;

		snprintf(what, sizeof(what), "kv[%" PRIu64 "] key", i);
		if (get_str(c, &kv.key, 1, GGUF_MAX_KEY, what))
			return -1;
		snprintf(what, sizeof(what), "kv[%" PRIu64 "] '%s'", i,
			 quote(kv.key, q, sizeof(q)));
		if (get_type(c, &t, what) || get_value(c, t, &kv.value, 0, what))
			return -1;
		if (grow((void **)&g->kv, &cap, g->n_kv, sizeof(*g->kv)))
			return nomem(c);
		g->kv[g->n_kv++] = kv;
	}
	ret = index_build(&g->kv_index, g->n_kv, kv_is, kv_name, g->kv, &dup);
	if (ret == -2)
		return nomem(c);
	if (ret)
		return fail(c, GGUF_E_DUP_KEY, g->kv[dup].offset,
			    "kv[%" PRIu64 "] key '%s' appears twice", dup,
			    quote(g->kv[dup].key, q, sizeof(q)));
	return 0;
}

static int parse_alignment(struct gguf *g, struct cursor *c)
{
	const struct gguf_kv *kv = gguf_find_kv(g, "general.alignment");

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (!kv)
		return 0;
	if (kv->value.type != GGUF_TYPE_UINT32)
		return fail(c, GGUF_E_ALIGNMENT, kv->offset,
			    "general.alignment: type %s, expected u32",
			    gguf_type_name(kv->value.type));
	if (kv->value.u64 == 0 || (kv->value.u64 & (kv->value.u64 - 1)))
		return fail(c, GGUF_E_ALIGNMENT, kv->offset,
			    "general.alignment: %" PRIu64 " is not a power of two",
			    kv->value.u64);
	g->alignment = (uint32_t)kv->value.u64;
	return 0;
}

static int parse_tensor(struct cursor *c, struct gguf_tensor *t, uint64_t i,
			uint32_t alignment)
{
	const struct ggml_type_info *ti;
	char what[112], q[72];
	uint64_t at, row_bytes;
	uint32_t d;

	t->info_offset = c->pos;
	snprintf(what, sizeof(what), "tensor[%" PRIu64 "] name", i);
	if (get_str(c, &t->name, 1, GGUF_MAX_NAME, what))
		return -1;
	snprintf(what, sizeof(what), "tensor[%" PRIu64 "] '%s'", i,
		 quote(t->name, q, sizeof(q)));

	at = c->pos;
	if (get_u32(c, &t->n_dims, what))
		return -1;
	if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
		return fail(c, GGUF_E_NDIMS, at, "%s n_dims: %" PRIu32 " not in 1..%d",
			    what, t->n_dims, GGUF_MAX_DIMS);
	t->n_elems = 1;
	for (d = 0; d < GGUF_MAX_DIMS; d++) {
		t->dims[d] = 1;
		if (d >= t->n_dims)
			continue;
		at = c->pos;
		if (get_u64(c, &t->dims[d], what))
			return -1;
		if (t->dims[d] == 0)
			return fail(c, GGUF_E_DIMS, at, "%s dims[%" PRIu32 "] is 0",
				    what, d);
		if (__builtin_mul_overflow(t->n_elems, t->dims[d], &t->n_elems) ||
		    t->n_elems > INT64_MAX)
			return fail(c, GGUF_E_DIMS, at,
				    "%s dims[%" PRIu32 "] = %" PRIu64
				    ": element count overflows", what, d, t->dims[d]);
	}

	at = c->pos;
	if (get_u32(c, &t->type, what))
		return -1;
	ti = ggml_type_get(t->type);
	if (!ti)
		return fail(c, GGUF_E_TENSOR_TYPE, at, "%s type: unknown type %" PRIu32,
			    what, t->type);
	if (t->dims[0] % ti->block_elems)
		return fail(c, GGUF_E_SHAPE, t->info_offset,
			    "%s: row of %" PRIu64 " elements is not a whole number of %s blocks of %" PRIu32,
			    what, t->dims[0], ti->name, ti->block_elems);
	if (!ggml_row_bytes(t->type, t->dims[0], &row_bytes) ||
	    __builtin_mul_overflow(row_bytes, t->n_elems / t->dims[0], &t->bytes))
		return fail(c, GGUF_E_DIMS, t->info_offset,
			    "%s: byte size overflows", what);

	at = c->pos;
	if (get_u64(c, &t->offset, what))
		return -1;
	if (t->offset % alignment)
		return fail(c, GGUF_E_OFFSET, at,
			    "%s offset: %" PRIu64 " is not a multiple of the alignment %" PRIu32,
			    what, t->offset, alignment);
	return 0;
}

static int cmp_offset(const void *a, const void *b, void *arg)
{
	const struct gguf_tensor *t = arg;
	uint64_t x = t[*(const uint64_t *)a].offset;
	uint64_t y = t[*(const uint64_t *)b].offset;

	return x < y ? -1 : x > y;
}

/* Every tensor's data inside the file, and no two overlapping. */
static int check_data(struct gguf *g, struct cursor *c)
{
	uint64_t i, *order;
	char q1[72], q2[72];

	for (i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor *t = &g->tensors[i];
		uint64_t rel = t->offset, end;

		if (__builtin_add_overflow(rel, g->data_offset, &t->offset) ||
		    __builtin_add_overflow(t->offset, t->bytes, &end) ||
		    end > g->file_size)
			return fail(c, GGUF_E_DATA, t->info_offset,
				    "tensor[%" PRIu64 "] '%s': data at data+%" PRIu64
				    ", %" PRIu64 " bytes, lies beyond the end of the file (%" PRIu64 " bytes)",
				    i, quote(t->name, q1, sizeof(q1)), rel, t->bytes,
				    g->file_size);
	}
	if (g->n_tensors < 2)
		return 0;
	order = malloc(g->n_tensors * sizeof(*order));
	if (!order)
		return nomem(c);
	for (i = 0; i < g->n_tensors; i++)
		order[i] = i;
	qsort_r(order, g->n_tensors, sizeof(*order), cmp_offset, g->tensors);
	for (i = 1; i < g->n_tensors; i++) {
		const struct gguf_tensor *a = &g->tensors[order[i - 1]];
		const struct gguf_tensor *b = &g->tensors[order[i]];

		if (a->offset + a->bytes > b->offset) {
			fail(c, GGUF_E_OVERLAP, b->info_offset,
			     "tensor '%s' data [%" PRIu64 ", +%" PRIu64 ") overlaps tensor '%s' [%" PRIu64 ", +%" PRIu64 ")",
			     quote(b->name, q1, sizeof(q1)), b->offset, b->bytes,
			     quote(a->name, q2, sizeof(q2)), a->offset, a->bytes);
			free(order);
			return -1;
		}
	}
	free(order);
	return 0;
}

static int parse_tensors(struct gguf *g, struct cursor *c, uint64_t n)
{
	uint64_t cap = 0, i, dup, pad;
	char q[72];
	int ret;

	for (i = 0; i < n; i++) {
		struct gguf_tensor t;

		if (parse_tensor(c, &t, i, g->alignment))
			return -1;
		if (grow((void **)&g->tensors, &cap, g->n_tensors, sizeof(t)))
			return nomem(c);
		g->tensors[g->n_tensors++] = t;
	}
	ret = index_build(&g->tensor_index, n, tensor_is, tensor_name, g->tensors, &dup);
	if (ret == -2)
		return nomem(c);
	if (ret)
		return fail(c, GGUF_E_DUP_TENSOR, g->tensors[dup].info_offset,
			    "tensor[%" PRIu64 "] name '%s' appears twice", dup,
			    quote(g->tensors[dup].name, q, sizeof(q)));

	/* The data section starts at the next multiple of the alignment. */
	pad = (g->alignment - c->pos % g->alignment) % g->alignment;
	g->data_offset = c->pos + pad;
	if (n && g->data_offset > g->file_size)
		return fail(c, GGUF_E_DATA, c->pos,
			    "data section: starts at %" PRIu64 ", beyond the end of the file (%" PRIu64 " bytes)",
			    g->data_offset, g->file_size);
	return check_data(g, c);
}

static int parse(struct gguf *g, struct cursor *c)
{
	const uint8_t *magic;
	uint64_t n_tensors, n_kv;

	magic = take(c, 4, "magic");
	if (!magic)
		return -1;
	if (memcmp(magic, "GGUF", 4))
		return fail(c, GGUF_E_MAGIC, 0,
			    "magic: %02x %02x %02x %02x is not \"GGUF\"",
			    magic[0], magic[1], magic[2], magic[3]);
	if (get_u32(c, &g->version, "version"))
		return -1;
	if (g->version != 2 && g->version != 3)
		return fail(c, GGUF_E_VERSION, 4,
			    "version: %" PRIu32 " is not supported (2 or 3)",
			    g->version);
	if (get_u64(c, &n_tensors, "tensor_count") || get_u64(c, &n_kv, "kv_count"))
		return -1;
	if (n_kv > GGUF_MAX_KV_COUNT)
		return fail(c, GGUF_E_COUNT, 16,
			    "kv_count: %" PRIu64 " is above the reader's limit of %u",
			    n_kv, GGUF_MAX_KV_COUNT);
	if (n_tensors > GGUF_MAX_TENSOR_COUNT)
		return fail(c, GGUF_E_COUNT, 8,
			    "tensor_count: %" PRIu64 " is above the reader's limit of %u",
			    n_tensors, GGUF_MAX_TENSOR_COUNT);
	if (n_kv > left(c) / MIN_KV_BYTES)
		return fail(c, GGUF_E_COUNT, 16,
			    "kv_count: %" PRIu64 " entries cannot fit in the %" PRIu64 " bytes left in the file",
			    n_kv, left(c));
	if (n_tensors > left(c) / MIN_TENSOR_BYTES)
		return fail(c, GGUF_E_COUNT, 8,
			    "tensor_count: %" PRIu64 " tensors cannot fit in the %" PRIu64 " bytes left in the file",
			    n_tensors, left(c));
	if (parse_kvs(g, c, n_kv) || parse_alignment(g, c))
		return -1;
	return parse_tensors(g, c, n_tensors);
}

int gguf_parse(struct gguf **out, const uint8_t *buf, uint64_t len,
	       uint64_t file_size, struct gguf_error *err, uint64_t *need)
{
	struct cursor c = {
		.buf = buf, .len = len, .file_size = file_size, .err = err,
	};
	struct gguf *g;

	memset(err, 0, sizeof(*err));
	*out = NULL;
	if (need)
		*need = 0;
	if (len > file_size)
		c.len = file_size;
	g = calloc(1, sizeof(*g));
	if (!g)
		return nomem(&c);
	g->file_size = file_size;
	if (parse(g, &c)) {
		if (need)
			*need = c.need;
		gguf_close(g);
		return -1;
	}
	*out = g;
	return 0;
}

static int io_fail(struct gguf_error *err, const char *what, uint64_t offset)
{
	err->code = GGUF_E_IO;
	err->sys_errno = errno;
	err->offset = offset;
	snprintf(err->msg, sizeof(err->msg), "%s: %s", what, strerror(errno));
	return -1;
}

/* Read [from, to) of @fd into @buf, retrying short reads. */
static int read_range(int fd, uint8_t *buf, uint64_t from, uint64_t to,
		      struct gguf_error *err)
{
	while (from < to) {
		ssize_t n = pread(fd, buf + from, to - from, (off_t)from);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return io_fail(err, "read", from);
		if (n == 0) {
			errno = EIO;	/* the file shrank under us */
			return io_fail(err, "read (file shrank)", from);
		}
		from += (uint64_t)n;
	}
	return 0;
}

int gguf_open(struct gguf **out, const char *path, struct gguf_error *err)
{
	uint64_t size, len = 0, want, need = 0;
	uint8_t *buf = NULL;
	struct stat st;
	int fd, ret = -1;

	memset(err, 0, sizeof(*err));
	*out = NULL;
	/* O_NONBLOCK: a FIFO must not block open() before the check below */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return io_fail(err, "open", 0);
	if (fstat(fd, &st))
		goto io_err;
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		err->code = GGUF_E_IO;
		err->sys_errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		snprintf(err->msg, sizeof(err->msg), "open: %s",
			 S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	size = (uint64_t)st.st_size;
	want = size < GGUF_FIRST_READ ? size : GGUF_FIRST_READ;
	for (;;) {
		uint8_t *nbuf = realloc(buf, want ? want : 1);

		if (!nbuf) {
			err->code = GGUF_E_NOMEM;
			snprintf(err->msg, sizeof(err->msg), "out of memory");
			goto out;
		}
		buf = nbuf;
		if (read_range(fd, buf, len, want, err))
			goto out;
		len = want;
		if (!gguf_parse(out, buf, len, size, err, &need)) {
			(*out)->buf = buf;
			buf = NULL;
			ret = 0;
			goto out;
		}
		if (!need)
			goto out;	/* a real error in the file */
		want = need < size ? need : size;
		if (want > GGUF_MAX_HEADER) {
			err->code = GGUF_E_TOO_LARGE;
			snprintf(err->msg, sizeof(err->msg),
				 "offset %" PRIu64 ": header is larger than the %llu MiB this reader accepts",
				 err->offset, GGUF_MAX_HEADER >> 20);
			goto out;
		}
	}
io_err:
	io_fail(err, "open", 0);
out:
	free(buf);
	close(fd);
	return ret;
}

void gguf_close(struct gguf *g)
{
	if (!g)
		return;
	hash_index_free(&g->kv_index);
	hash_index_free(&g->tensor_index);
	free(g->kv);
	free(g->tensors);
	free(g->buf);
	free(g);
}

const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key)
{
	int64_t i = index_find(&g->kv_index, kv_is, g->kv, key);

	return i < 0 ? NULL : &g->kv[i];
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g,
					   const char *name)
{
	int64_t i = index_find(&g->tensor_index, tensor_is, g->tensors, name);

	return i < 0 ? NULL : &g->tensors[i];
}
