// SPDX-License-Identifier: MIT
/*
 * GGUF reader: a valid file built byte by byte is read exactly; each kind of
 * malformed or hostile file is refused with its own error code naming the
 * offending field's file offset; a file cut at every byte is refused without
 * a crash; headers larger than the first read and larger than the reader's
 * cap; I/O errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/ggml_types.h"
#include "format/gguf.h"
#include "../tap.h"

/* ---- a byte builder with named marks --------------------------------------- */

struct bb {
	uint8_t *p;
	size_t len, cap;
	struct { const char *name; size_t off; } mark[64];
	int n_marks;
};

static void put(struct bb *b, const void *src, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void put_u8(struct bb *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(struct bb *b, uint32_t v) { put(b, &v, 4); }	/* x86: LE */
static void put_u64(struct bb *b, uint64_t v) { put(b, &v, 8); }

static void put_str(struct bb *b, const char *s)
{
	put_u64(b, strlen(s));
	put(b, s, strlen(s));
}

static void pad_to(struct bb *b, size_t align)
{
	while (b->len % align)
		put_u8(b, 0);
}

static void mark(struct bb *b, const char *name)
{
	b->mark[b->n_marks].name = name;
	b->mark[b->n_marks++].off = b->len;
}

static size_t at(const struct bb *b, const char *name)
{
	int i;

	for (i = 0; i < b->n_marks; i++)
		if (!strcmp(b->mark[i].name, name))
			return b->mark[i].off;
	fprintf(stderr, "no mark %s\n", name);
	abort();
}

/*
 * The base file: 6 KVs of several types, tensor "a" (Q4_0, 32 x 2, 36 bytes
 * at data+0) and tensor "b" (F32, 8, 32 bytes at data+64), alignment 32.
 */
static void build_base(struct bb *b, uint32_t version)
{
	float half = 0.5f;
	int i;

	memset(b, 0, sizeof(*b));
	mark(b, "magic");
	put(b, "GGUF", 4);
	mark(b, "version");
	put_u32(b, version);
	mark(b, "n_tensors");
	put_u64(b, 2);
	mark(b, "n_kv");
	put_u64(b, 6);

	mark(b, "kv0");
	put_str(b, "general.architecture");
	put_u32(b, GGUF_TYPE_STRING);
	mark(b, "kv0.value");
	put_str(b, "llama");

	mark(b, "kv1");
	put_str(b, "general.alignment");
	mark(b, "kv1.type");
	put_u32(b, GGUF_TYPE_UINT32);
	mark(b, "kv1.value");
	put_u32(b, 32);

	mark(b, "kv2");
	put_str(b, "test.flag");
	mark(b, "kv2.type");
	put_u32(b, GGUF_TYPE_BOOL);
	mark(b, "kv2.value");
	put_u8(b, 1);

	mark(b, "kv3");
	put_str(b, "test.arr");
	put_u32(b, GGUF_TYPE_ARRAY);
	mark(b, "kv3.elem_type");
	put_u32(b, GGUF_TYPE_UINT32);
	mark(b, "kv3.count");
	put_u64(b, 3);
	for (i = 1; i <= 3; i++)
		put_u32(b, i);

	mark(b, "kv4");
	put_str(b, "test.x");
	put_u32(b, GGUF_TYPE_INT32);
	put_u32(b, (uint32_t)-7);

	mark(b, "kv5");
	put_str(b, "test.y");	/* the 'y' is at kv5 + 8 + 5 */
	put_u32(b, GGUF_TYPE_FLOAT32);
	put(b, &half, 4);

	mark(b, "t0");
	put_str(b, "a");
	mark(b, "t0.n_dims");
	put_u32(b, 2);
	mark(b, "t0.dim0");
	put_u64(b, 32);
	mark(b, "t0.dim1");
	put_u64(b, 2);
	mark(b, "t0.type");
	put_u32(b, GGML_TYPE_Q4_0);
	mark(b, "t0.offset");
	put_u64(b, 0);

	mark(b, "t1");
	put_str(b, "b");	/* the 'b' is at t1 + 8 */
	put_u32(b, 1);
	put_u64(b, 8);
	mark(b, "t1.type");
	put_u32(b, GGML_TYPE_F32);
	mark(b, "t1.offset");
	put_u64(b, 64);

	mark(b, "header_end");
	pad_to(b, 32);
	mark(b, "data");
	for (i = 0; i < 96; i++)
		put_u8(b, (uint8_t)i);
}

static int parse(const struct bb *b, size_t len, struct gguf **g,
		 struct gguf_error *err)
{
	return gguf_parse(g, b->p, len, len, err, NULL);
}

/* ---- the valid file ----------------------------------------------------------- */

static void test_valid(uint32_t version)
{
	struct gguf_error err;
	struct gguf_value e;
	const struct gguf_kv *kv;
	const struct gguf_tensor *t;
	struct gguf *g;
	struct bb b;
	uint64_t pos = 0, sum = 0, n = 0;

	build_base(&b, version);
	if (!ok(parse(&b, b.len, &g, &err) == 0, "v%u base file parses (%s)",
		version, err.msg)) {
		free(b.p);
		return;
	}
	ok(g->version == version && g->n_kv == 6 && g->n_tensors == 2,
	   "v%u: version, kv and tensor counts", version);
	ok(g->alignment == 32 && g->data_offset == at(&b, "data"),
	   "v%u: alignment 32, data section at %zu", version, at(&b, "data"));
	kv = gguf_find_kv(g, "general.architecture");
	ok(kv && kv->value.type == GGUF_TYPE_STRING &&
	   gguf_str_eq(kv->value.str, "llama") && kv->offset == at(&b, "kv0"),
	   "v%u: string value and its offset", version);
	kv = gguf_find_kv(g, "test.x");
	ok(kv && kv->value.type == GGUF_TYPE_INT32 && kv->value.i64 == -7,
	   "v%u: negative i32 decoded", version);
	kv = gguf_find_kv(g, "test.y");
	ok(kv && kv->value.type == GGUF_TYPE_FLOAT32 && kv->value.f64 == 0.5,
	   "v%u: f32 decoded", version);
	kv = gguf_find_kv(g, "test.flag");
	ok(kv && kv->value.type == GGUF_TYPE_BOOL && kv->value.u64 == 1,
	   "v%u: bool decoded", version);
	kv = gguf_find_kv(g, "test.arr");
	while (kv && gguf_array_next(&kv->value, &pos, &e)) {
		sum += e.u64;
		n++;
	}
	ok(kv && kv->value.arr.count == 3 && n == 3 && sum == 6,
	   "v%u: u32 array walked: %" PRIu64 " elements, sum %" PRIu64, version,
	   n, sum);
	ok(!gguf_find_kv(g, "test") && !gguf_find_kv(g, "test.arr.x"),
	   "v%u: absent keys are not found", version);
	t = gguf_find_tensor(g, "a");
	ok(t && t->type == GGML_TYPE_Q4_0 && t->n_dims == 2 && t->dims[0] == 32 &&
	   t->dims[1] == 2 && t->dims[2] == 1 && t->n_elems == 64 &&
	   t->bytes == 36 && t->offset == at(&b, "data") &&
	   t->info_offset == at(&b, "t0"),
	   "v%u: tensor a: Q4_0 32x2, 36 bytes at the data section", version);
	t = gguf_find_tensor(g, "b");
	ok(t && t->type == GGML_TYPE_F32 && t->bytes == 32 &&
	   t->offset == at(&b, "data") + 64 && !gguf_find_tensor(g, "c"),
	   "v%u: tensor b: F32 8 at data+64; no tensor c", version);
	gguf_close(g);
	free(b.p);
}

/* ---- one malformed file per error ---------------------------------------------- */

enum patch_kind { P32, P64, PBYTE };

struct bad_case {
	const char *what;
	const char *field;	/* mark to patch */
	enum patch_kind kind;
	uint64_t value;
	size_t delta;		/* patch at mark + delta */
	enum gguf_err code;
	const char *err_at;	/* mark the error must name */
	size_t err_delta;
};

static const struct bad_case bad_cases[] = {
	{ "bad magic", "magic", P32, 0x46554746 /* "FGUF" */, 0, GGUF_E_MAGIC, "magic", 0 },
	{ "version 1", "version", P32, 1, 0, GGUF_E_VERSION, "version", 0 },
	{ "version 4", "version", P32, 4, 0, GGUF_E_VERSION, "version", 0 },
	{ "absurd tensor count", "n_tensors", P64, 1ull << 60, 0, GGUF_E_COUNT, "n_tensors", 0 },
	{ "absurd kv count", "n_kv", P64, UINT64_MAX, 0, GGUF_E_COUNT, "n_kv", 0 },
	{ "kv count 65537, above the limit", "n_kv", P64, 65537, 0, GGUF_E_COUNT, "n_kv", 0 },
	{ "tensor count 2^20+1, above the limit", "n_tensors", P64, (1u << 20) + 1, 0, GGUF_E_COUNT, "n_tensors", 0 },
	{ "tensor count 12, more than the file holds", "n_tensors", P64, 12, 0, GGUF_E_COUNT, "n_tensors", 0 },
	{ "empty key", "kv0", P64, 0, 0, GGUF_E_STRING, "kv0", 0 },
	{ "key length 2^40", "kv0", P64, 1ull << 40, 0, GGUF_E_STRING, "kv0", 0 },
	{ "string value longer than the file", "kv0.value", P64, 1ull << 50, 0, GGUF_E_STRING, "kv0.value", 0 },
	{ "unknown value type", "kv2.type", P32, 13, 0, GGUF_E_VALUE_TYPE, "kv2.type", 0 },
	{ "bool value 2", "kv2.value", PBYTE, 2, 0, GGUF_E_VALUE, "kv2.value", 0 },
	{ "unknown array element type", "kv3.elem_type", P32, 0x7fffffff, 0, GGUF_E_VALUE_TYPE, "kv3.elem_type", 0 },
	{ "array count larger than the file", "kv3.count", P64, 1ull << 61, 0, GGUF_E_COUNT, "kv3.count", 0 },
	{ "duplicate key", "kv5", PBYTE, 'x', 8 + 5, GGUF_E_DUP_KEY, "kv5", 0 },
	{ "alignment of type i32", "kv1.type", P32, GGUF_TYPE_INT32, 0, GGUF_E_ALIGNMENT, "kv1", 0 },
	{ "alignment of type f32", "kv1.type", P32, GGUF_TYPE_FLOAT32, 0, GGUF_E_ALIGNMENT, "kv1", 0 },
	{ "alignment 0", "kv1.value", P32, 0, 0, GGUF_E_ALIGNMENT, "kv1", 0 },
	{ "alignment 48", "kv1.value", P32, 48, 0, GGUF_E_ALIGNMENT, "kv1", 0 },
	{ "tensor name of 64 bytes", "t0", P64, 64, 0, GGUF_E_STRING, "t0", 0 },
	{ "n_dims 0", "t0.n_dims", P32, 0, 0, GGUF_E_NDIMS, "t0.n_dims", 0 },
	{ "n_dims 5", "t0.n_dims", P32, 5, 0, GGUF_E_NDIMS, "t0.n_dims", 0 },
	{ "a dim of 0", "t0.dim1", P64, 0, 0, GGUF_E_DIMS, "t0.dim1", 0 },
	{ "dims whose product wraps 2^64", "t0.dim1", P64, (1ull << 59) + 1, 0, GGUF_E_DIMS, "t0.dim1", 0 },
	{ "dim 2^42+1 (llama.cpp advisory)", "t0.dim1", P64, (1ull << 42) + 1, 0, GGUF_E_DATA, "t0", 0 },
	{ "element count above INT64_MAX", "t0.dim1", P64, 1ull << 58, 0, GGUF_E_DIMS, "t0.dim1", 0 },
	{ "removed tensor type 4 (Q4_2)", "t0.type", P32, 4, 0, GGUF_E_TENSOR_TYPE, "t0.type", 0 },
	{ "unknown tensor type 2^31", "t1.type", P32, 1u << 31, 0, GGUF_E_TENSOR_TYPE, "t1.type", 0 },
	{ "row not a whole number of blocks", "t0.dim0", P64, 33, 0, GGUF_E_SHAPE, "t0", 0 },
	{ "duplicate tensor name", "t1", PBYTE, 'a', 8, GGUF_E_DUP_TENSOR, "t1", 0 },
	{ "offset not aligned", "t1.offset", P64, 65, 0, GGUF_E_OFFSET, "t1.offset", 0 },
	{ "data beyond the end of the file", "t1.offset", P64, 96, 0, GGUF_E_DATA, "t1", 0 },
	{ "offset that wraps 2^64", "t1.offset", P64, UINT64_MAX - 31, 0, GGUF_E_DATA, "t1", 0 },
	{ "overlapping tensors", "t1.offset", P64, 32, 0, GGUF_E_OVERLAP, "t1", 0 },
};

static void test_bad_case(const struct bad_case *c)
{
	struct gguf_error err;
	struct gguf *g = NULL;
	size_t off, want;
	struct bb b;
	int ret;

	build_base(&b, 3);
	off = at(&b, c->field) + c->delta;
	if (c->kind == P32)
		memcpy(b.p + off, &(uint32_t){ (uint32_t)c->value }, 4);
	else if (c->kind == P64)
		memcpy(b.p + off, &c->value, 8);
	else
		b.p[off] = (uint8_t)c->value;
	want = at(&b, c->err_at) + c->err_delta;
	ret = parse(&b, b.len, &g, &err);
	ok(ret == -1 && !g && err.code == c->code && err.offset == want,
	   "%s: error %s at offset %zu (got %s at %" PRIu64 ": %s)", c->what,
	   gguf_err_name(c->code), want, gguf_err_name(err.code), err.offset,
	   err.msg);
	gguf_close(g);
	free(b.p);
}

/* Too little data: the last byte of tensor b's data is missing. */
static void test_short_data(void)
{
	struct gguf_error err;
	struct gguf *g;
	struct bb b;

	build_base(&b, 3);
	ok(parse(&b, b.len - 1, &g, &err) == -1 && err.code == GGUF_E_DATA &&
	   err.offset == at(&b, "t1") && strstr(err.msg, "'b'"),
	   "file one byte short of the data: data error naming tensor 'b' (%s)",
	   err.msg);
	free(b.p);
}

/* A file cut at every length: the right error, never a crash or a leak. */
static void test_every_truncation(void)
{
	size_t cut, hdr, bad = 0;
	struct gguf_error err;
	struct gguf *g;
	struct bb b;

	build_base(&b, 3);
	hdr = at(&b, "header_end");
	for (cut = 0; cut < b.len; cut++) {
		/* Parse from a copy of exactly @cut bytes so ASan sees overreads. */
		uint8_t *copy = malloc(cut ? cut : 1);
		bool right;

		memcpy(copy, b.p, cut);
		g = NULL;
		if (gguf_parse(&g, copy, cut, cut, &err, NULL) != -1)
			right = false;
		else if (cut < hdr)	/* a field runs out, or a count cannot fit */
			right = err.code == GGUF_E_TRUNCATED ||
				err.code == GGUF_E_COUNT || err.code == GGUF_E_STRING;
		else
			right = err.code == GGUF_E_DATA;
		if (!right) {
			if (!bad++)
				printf("# cut at %zu: %s (%s)\n", cut,
				       gguf_err_name(err.code), err.msg);
			gguf_close(g);
		}
		free(copy);
	}
	ok(bad == 0, "file cut at each of %zu lengths: a header error before the data, a data error after",
	   b.len);
	free(b.p);
}

/* Arrays of arrays of strings, nested to the limit and one past it. */
static void build_nested(struct bb *b, unsigned int depth)
{
	unsigned int d;

	memset(b, 0, sizeof(*b));
	put(b, "GGUF", 4);
	put_u32(b, 3);
	put_u64(b, 0);
	put_u64(b, 1);
	put_str(b, "test.nested");
	put_u32(b, GGUF_TYPE_ARRAY);
	for (d = 1; d < depth; d++) {	/* each level: one array element */
		put_u32(b, GGUF_TYPE_ARRAY);
		put_u64(b, 1);
	}
	mark(b, "innermost");
	put_u32(b, GGUF_TYPE_STRING);
	put_u64(b, 2);
	put_str(b, "x");
	put_str(b, "yz");
}

static void test_nesting(void)
{
	struct gguf_value v, e;
	struct gguf_error err;
	struct gguf *g;
	struct bb b;
	uint64_t pos;
	unsigned int d;
	int ret;

	build_nested(&b, GGUF_MAX_ARRAY_DEPTH);
	ret = parse(&b, b.len, &g, &err);
	ok(ret == 0, "arrays nested %d deep are read (%s)", GGUF_MAX_ARRAY_DEPTH,
	   err.msg);
	if (!ret) {
		v = g->kv[0].value;
		for (d = 1; d < GGUF_MAX_ARRAY_DEPTH; d++) {
			pos = 0;
			if (!gguf_array_next(&v, &pos, &e) || e.type != GGUF_TYPE_ARRAY)
				break;
			v = e;
		}
		pos = 0;
		ok(d == GGUF_MAX_ARRAY_DEPTH && v.arr.elem_type == GGUF_TYPE_STRING &&
		   gguf_array_next(&v, &pos, &e) && gguf_str_eq(e.str, "x") &&
		   gguf_array_next(&v, &pos, &e) && gguf_str_eq(e.str, "yz") &&
		   !gguf_array_next(&v, &pos, &e),
		   "nested array walked down to its strings \"x\", \"yz\"");
		gguf_close(g);
	}
	free(b.p);

	build_nested(&b, GGUF_MAX_ARRAY_DEPTH + 1);
	ok(parse(&b, b.len, &g, &err) == -1 && err.code == GGUF_E_NESTING,
	   "arrays nested %d deep are refused: %s", GGUF_MAX_ARRAY_DEPTH + 1,
	   err.msg);
	free(b.p);
}

/* ---- through files: the grow-as-needed read, the header cap, I/O errors ------ */

static char tmpdir[] = "/tmp/pinfer-test-gguf-XXXXXX";

static int write_file(const char *path, const struct bb *b, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int ret = 0;

	if (fd < 0)
		return -1;
	if (write(fd, b->p, b->len) != (ssize_t)b->len ||
	    (size > b->len && ftruncate(fd, (off_t)size)))
		ret = -1;
	close(fd);
	return ret;
}

/* A vocabulary of 300,000 tokens: a header of ~4 MB, past the first read. */
static void test_big_header(void)
{
	const uint64_t n = 300000;
	struct gguf_error err;
	const struct gguf_kv *kv;
	struct gguf_value e;
	struct gguf *g;
	char path[64], tok[16];
	uint64_t i, pos = 0, seen = 0;
	bool match = true;
	struct bb b;

	memset(&b, 0, sizeof(b));
	put(&b, "GGUF", 4);
	put_u32(&b, 3);
	put_u64(&b, 0);
	put_u64(&b, 1);
	put_str(&b, "tokenizer.ggml.tokens");
	put_u32(&b, GGUF_TYPE_ARRAY);
	put_u32(&b, GGUF_TYPE_STRING);
	put_u64(&b, n);
	for (i = 0; i < n; i++) {
		snprintf(tok, sizeof(tok), "tok%" PRIu64, i);
		put_str(&b, tok);
	}
	snprintf(path, sizeof(path), "%s/big.gguf", tmpdir);
	if (!ok(write_file(path, &b, 0) == 0, "write a %zu-byte header", b.len))
		goto out;
	if (!ok(gguf_open(&g, path, &err) == 0,
		"a %zu-byte header (larger than the first read) is read: %s",
		b.len, err.msg))
		goto out;
	kv = gguf_find_kv(g, "tokenizer.ggml.tokens");
	while (kv && gguf_array_next(&kv->value, &pos, &e)) {
		snprintf(tok, sizeof(tok), "tok%" PRIu64, seen++);
		match = match && gguf_str_eq(e.str, tok);
	}
	ok(kv && seen == n && match, "all %" PRIu64 " strings read back in order",
	   n);
	gguf_close(g);
out:
	free(b.p);
}

/* A 600 MiB string in a sparse file: refused by the cap, nothing read. */
static void test_header_cap(void)
{
	struct gguf_error err;
	struct gguf *g;
	char path[64];
	struct bb b;

	memset(&b, 0, sizeof(b));
	put(&b, "GGUF", 4);
	put_u32(&b, 3);
	put_u64(&b, 0);
	put_u64(&b, 1);
	put_str(&b, "general.name");
	put_u32(&b, GGUF_TYPE_STRING);
	put_u64(&b, 600ull << 20);
	snprintf(path, sizeof(path), "%s/cap.gguf", tmpdir);
	if (ok(write_file(path, &b, 601ull << 20) == 0, "write a sparse 601 MiB file"))
		ok(gguf_open(&g, path, &err) == -1 && err.code == GGUF_E_TOO_LARGE,
		   "a 600 MiB string in the header is refused: %s", err.msg);
	unlink(path);
	free(b.p);
}

static void test_io_errors(void)
{
	struct gguf_error err;
	struct gguf *g;
	char path[64];
	struct bb b;

	ok(gguf_open(&g, "/nonexistent/x.gguf", &err) == -1 &&
	   err.code == GGUF_E_IO && err.sys_errno == ENOENT,
	   "missing file: I/O error ENOENT (%s)", err.msg);
	ok(gguf_open(&g, tmpdir, &err) == -1 && err.code == GGUF_E_IO &&
	   err.sys_errno == EISDIR, "a directory: I/O error EISDIR (%s)", err.msg);
	memset(&b, 0, sizeof(b));
	snprintf(path, sizeof(path), "%s/empty.gguf", tmpdir);
	if (ok(write_file(path, &b, 0) == 0, "write an empty file"))
		ok(gguf_open(&g, path, &err) == -1 && err.code == GGUF_E_TRUNCATED &&
		   err.offset == 0, "an empty file is truncated at offset 0 (%s)",
		   err.msg);
	build_base(&b, 3);
	snprintf(path, sizeof(path), "%s/base.gguf", tmpdir);
	if (ok(write_file(path, &b, 0) == 0, "write the base file")) {
		ok(gguf_open(&g, path, &err) == 0 && g->n_tensors == 2,
		   "the base file opens from disk (%s)", err.msg);
		gguf_close(g);
	}
	free(b.p);
}

static void test_type_table(void)
{
	uint64_t bytes = 0;

	ok(ggml_row_bytes(GGML_TYPE_Q4_1, 576, &bytes) && bytes == 18 * 20,
	   "Q4_1 row of 576: 18 blocks of 20 bytes");
	ok(!ggml_row_bytes(GGML_TYPE_Q4_K, 576, &bytes),
	   "Q4_K row of 576 is not a whole number of 256-blocks");
	ok(!ggml_row_bytes(GGML_TYPE_F32, UINT64_MAX / 2, &bytes),
	   "F32 row of 2^63 elements overflows");
	ok(!ggml_type_get(4) && !ggml_type_get(31) && !ggml_type_get(GGML_TYPE_COUNT) &&
	   !strcmp(ggml_type_name(GGML_TYPE_BF16), "BF16"),
	   "removed and out-of-range type numbers are unknown");
}

int main(void)
{
	size_t i;
	char cmd[80];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_valid(3);
	test_valid(2);
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
		test_bad_case(&bad_cases[i]);
	test_short_data();
	test_every_truncation();
	test_nesting();
	test_big_header();
	test_header_cap();
	test_io_errors();
	test_type_table();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return tap_end();
}
