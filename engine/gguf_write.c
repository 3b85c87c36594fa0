// SPDX-License-Identifier: MIT
/*
 * Writing GGUF (version 3, little-endian): the pieces pinfer quantize and
 * pinfer synth put together. Errors are sticky in the writer's @bad.
 */
#include <string.h>

#include "gguf.h"

void gguf_put(struct gguf_writer *w, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, w->f) != n)
		w->bad = true;
	w->pos += n;
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
