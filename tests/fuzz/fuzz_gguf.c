// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the GGUF reader: parse any bytes; on success walk
 * every metadata value (arrays of arrays included) and look every name up.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t walk(const struct gguf_value *v)
{
	struct gguf_value e;
	uint64_t pos = 0, n = 0;

	if (v->type != GGUF_TYPE_ARRAY)
		return 1;
	while (gguf_array_next(v, &pos, &e))
		n += walk(&e);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf_error err;
	struct gguf *g;
	char name[GGUF_MAX_NAME + 1];
	uint64_t i;

	if (gguf_parse(&g, data, size, size, &err, NULL))
		return 0;
	for (i = 0; i < g->n_kv; i++)
		walk(&g->kv[i].value);
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];

		memcpy(name, t->name.ptr, t->name.len);
		name[t->name.len] = 0;
		/* A name with a NUL inside finds an earlier tensor or none. */
		if (strlen(name) == t->name.len &&
		    gguf_find_tensor(g, name) != t)
			__builtin_trap();
		if (t->offset + t->bytes > g->file_size)
			__builtin_trap();
	}
	gguf_close(g);
	return 0;
}
