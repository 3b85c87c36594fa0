/* SPDX-License-Identifier: MIT */
/*
 * Tensor types: block layouts, fp16/bf16 conversion, and the plain-C
 * reference kernels — dequantize a row, quantize activations to 8 bits, and
 * the dot product of a weight row with quantized activations. The layouts
 * are the GGUF format's; every fast kernel is tested against these.
 */
#ifndef PINFER_QUANT_H
#define PINFER_QUANT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "ggml_types.h"

#define QK 32		/* elements in a Q4_0/Q4_1/Q8_0/Q8_1 block */
#define QK_K 256	/* elements in a K-quant super-block */

typedef uint16_t fp16_t;	/* IEEE half, as stored */

struct block_q4_0 {
	fp16_t d;
	uint8_t qs[QK / 2];	/* low nibble: element j, high: element j + 16 */
};

struct block_q4_1 {
	fp16_t d, m;
	uint8_t qs[QK / 2];
};

struct block_q8_0 {
	fp16_t d;
	int8_t qs[QK];
};

struct block_q8_1 {
	fp16_t d, s;		/* s = d * sum(qs) */
	int8_t qs[QK];
};

struct block_q4_K {
	fp16_t d, dmin;
	uint8_t scales[12];	/* 8 6-bit scales and 8 6-bit mins */
	uint8_t qs[QK_K / 2];
};

struct block_q5_K {
	fp16_t d, dmin;
	uint8_t scales[12];
	uint8_t qh[QK_K / 8];	/* the fifth bits */
	uint8_t qs[QK_K / 2];
};

struct block_q6_K {
	uint8_t ql[QK_K / 2];	/* low 4 bits */
	uint8_t qh[QK_K / 4];	/* high 2 bits */
	int8_t scales[QK_K / 16];
	fp16_t d;
};

struct block_q8_K {
	float d;
	int8_t qs[QK_K];
	int16_t bsums[QK_K / 16];	/* sums of groups of 16 */
};

static_assert(sizeof(struct block_q4_0) == 18, "Q4_0 block");
static_assert(sizeof(struct block_q4_1) == 20, "Q4_1 block");
static_assert(sizeof(struct block_q8_0) == 34, "Q8_0 block");
static_assert(sizeof(struct block_q8_1) == 36, "Q8_1 block");
static_assert(sizeof(struct block_q4_K) == 144, "Q4_K block");
static_assert(sizeof(struct block_q5_K) == 176, "Q5_K block");
static_assert(sizeof(struct block_q6_K) == 210, "Q6_K block");
static_assert(sizeof(struct block_q8_K) == 292, "Q8_K block");

float fp16_to_f32(fp16_t h);
/* All 65536 fp16 values as floats (256 KiB, made on first use): fast lookups. */
const float *fp16_table(void);
fp16_t f32_to_fp16(float f);		/* round to nearest even */
float bf16_to_f32(uint16_t h);

/*
 * The 8-bit type the activations are quantized to for a dot product with
 * weights of @type: Q8_0 (for Q4_0, Q8_0), Q8_1 (Q4_1), Q8_K (K-quants), or
 * F32 for the float types. -1 for types without a kernel.
 */
int quant_vec_dot_type(uint32_t type);

/* True for the types this engine has kernels for. */
int quant_supported(uint32_t type);

/* y[0..n) = row of @type; n a multiple of the type's block. */
void dequantize_row_ref(uint32_t type, const void *row, float *y, size_t n);

/*
 * Weights x[0..n) -> a row of @type: F32, F16, Q8_0, Q4_0, Q4_1, Q4_K or
 * Q6_K (the types `pinfer quantize` writes). Returns 0, or -1 for another.
 */
int quantize_row_weight_ref(uint32_t type, const float *x, void *out, size_t n);

/* x[0..n) -> blocks of @type (Q8_0, Q8_1 or Q8_K; F32 copies). */
void quantize_row_act_ref(uint32_t type, const float *x, void *out, size_t n);

/* Σ row·act over n elements; @act is quantized to quant_vec_dot_type(type). */
float vec_dot_ref(uint32_t type, size_t n, const void *row, const void *act);

typedef float (*vec_dot_fn)(size_t n, const void *row, const void *act);

/*
 * The fastest dot product of @type this CPU runs (AVX-512 VNNI, AVX2, or
 * the reference), as pinfer_cpu() allows; PINFER_CPU caps it. @isa_name
 * (if not NULL) says which was chosen.
 */
vec_dot_fn quant_vec_dot(uint32_t type, const char **isa_name);

/* Attention helpers over fp16 keys/values: Σ q·k, and o += p·v. */
typedef float (*dot_f16_fn)(const float *q, const fp16_t *k, size_t n);
typedef void (*axpy_f16_fn)(float *o, float p, const fp16_t *v, size_t n);
void attn_kernels(dot_f16_fn *dot, axpy_f16_fn *axpy);
float attn_dot_f16_avx2(const float *q, const fp16_t *k, size_t n);
void attn_axpy_f16_avx2(float *o, float p, const fp16_t *v, size_t n);

/*
 * Four activation rows at once (@act, @act + stride, ...): out[k] equals
 * what the single-row kernel gives for row k, bit for bit; the weights are
 * unpacked once for all four. NULL where there is no such kernel.
 */
typedef void (*vec_dot4_fn)(size_t n, const void *row, const void *act,
			    size_t stride, float out[4]);
vec_dot4_fn quant_vec_dot4(uint32_t type);
vec_dot4_fn quant_vec_dot4_avx512(uint32_t type);

/* The per-ISA kernels, for tests: NULL where the ISA has none for @type. */
vec_dot_fn quant_vec_dot_avx2(uint32_t type);
vec_dot_fn quant_vec_dot_avx512(uint32_t type);

#endif
