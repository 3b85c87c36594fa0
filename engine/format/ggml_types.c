// SPDX-License-Identifier: MIT
#include "ggml_types.h"

#include <stddef.h>

#define T(id, elems, bytes) [GGML_TYPE_##id] = { #id, elems, bytes }

/* Block geometry from the block layouts of each type (see the GGUF notes). */
static const struct ggml_type_info type_table[GGML_TYPE_COUNT] = {
	T(F32, 1, 4),
	T(F16, 1, 2),
	T(Q4_0, 32, 18),
	T(Q4_1, 32, 20),
	T(Q5_0, 32, 22),
	T(Q5_1, 32, 24),
	T(Q8_0, 32, 34),
	T(Q8_1, 32, 36),
	T(Q2_K, 256, 84),
	T(Q3_K, 256, 110),
	T(Q4_K, 256, 144),
	T(Q5_K, 256, 176),
	T(Q6_K, 256, 210),
	T(Q8_K, 256, 292),
	T(IQ2_XXS, 256, 66),
	T(IQ2_XS, 256, 74),
	T(IQ3_XXS, 256, 98),
	T(IQ1_S, 256, 50),
	T(IQ4_NL, 32, 18),
	T(IQ3_S, 256, 110),
	T(IQ2_S, 256, 82),
	T(IQ4_XS, 256, 136),
	T(I8, 1, 1),
	T(I16, 1, 2),
	T(I32, 1, 4),
	T(I64, 1, 8),
	T(F64, 1, 8),
	T(IQ1_M, 256, 56),
	T(BF16, 1, 2),
	T(TQ1_0, 256, 54),
	T(TQ2_0, 256, 66),
};

#undef T

const struct ggml_type_info *ggml_type_get(uint32_t type)
{
	if (type >= GGML_TYPE_COUNT || !type_table[type].name)
		return NULL;
	return &type_table[type];
}

const char *ggml_type_name(uint32_t type)
{
	const struct ggml_type_info *ti = ggml_type_get(type);

	return ti ? ti->name : "?";
}

bool ggml_row_bytes(uint32_t type, uint64_t elems, uint64_t *bytes)
{
	const struct ggml_type_info *ti = ggml_type_get(type);

	if (!ti || elems % ti->block_elems)
		return false;
	return !__builtin_mul_overflow(elems / ti->block_elems,
				       (uint64_t)ti->block_bytes, bytes);
}
