/* SPDX-License-Identifier: MIT */
/*
 * Tensor element types of the GGUF format (ggml's numbering) and their block
 * geometry: how many elements one block holds and how many bytes it takes.
 * The numbers are part of the file format; the table is ours.
 */
#ifndef PINFER_GGML_TYPES_H
#define PINFER_GGML_TYPES_H

#include <stdbool.h>
#include <stdint.h>

enum ggml_type {
	GGML_TYPE_F32 = 0,
	GGML_TYPE_F16 = 1,
	GGML_TYPE_Q4_0 = 2,
	GGML_TYPE_Q4_1 = 3,
	/* 4 and 5 (Q4_2, Q4_3) were removed from the format */
	GGML_TYPE_Q5_0 = 6,
	GGML_TYPE_Q5_1 = 7,
	GGML_TYPE_Q8_0 = 8,
	GGML_TYPE_Q8_1 = 9,
	GGML_TYPE_Q2_K = 10,
	GGML_TYPE_Q3_K = 11,
	GGML_TYPE_Q4_K = 12,
	GGML_TYPE_Q5_K = 13,
	GGML_TYPE_Q6_K = 14,
	GGML_TYPE_Q8_K = 15,
	GGML_TYPE_IQ2_XXS = 16,
	GGML_TYPE_IQ2_XS = 17,
	GGML_TYPE_IQ3_XXS = 18,
	GGML_TYPE_IQ1_S = 19,
	GGML_TYPE_IQ4_NL = 20,
	GGML_TYPE_IQ3_S = 21,
	GGML_TYPE_IQ2_S = 22,
	GGML_TYPE_IQ4_XS = 23,
	GGML_TYPE_I8 = 24,
	GGML_TYPE_I16 = 25,
	GGML_TYPE_I32 = 26,
	GGML_TYPE_I64 = 27,
	GGML_TYPE_F64 = 28,
	GGML_TYPE_IQ1_M = 29,
	GGML_TYPE_BF16 = 30,
	/* 31..33 were Q4_0_4_4 and friends, removed from the format */
	GGML_TYPE_TQ1_0 = 34,
	GGML_TYPE_TQ2_0 = 35,
	GGML_TYPE_COUNT = 36,
};

struct ggml_type_info {
	const char *name;	/* NULL: not a valid type number */
	uint32_t block_elems;	/* elements per block */
	uint32_t block_bytes;	/* bytes per block */
};

/* NULL when @type is not a type this format version defines. */
const struct ggml_type_info *ggml_type_get(uint32_t type);

/* "Q4_1", or "?" for an unknown type number. */
const char *ggml_type_name(uint32_t type);

/*
 * Bytes taken by a row of @elems elements of @type. False when the type is
 * unknown, @elems is not a whole number of blocks, or the size overflows.
 */
bool ggml_row_bytes(uint32_t type, uint64_t elems, uint64_t *bytes);

#endif
