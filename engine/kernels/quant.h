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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/ggml_types.h"

#define QK 32		/* elements in a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q8_1 block */
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

struct block_q5_0 {
	fp16_t d;
	uint8_t qh[4];		/* bit j: the fifth bit of element j (little-endian) */
	uint8_t qs[QK / 2];	/* as Q4_0's */
};

struct block_q5_1 {
	fp16_t d, m;
	uint8_t qh[4];
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
static_assert(sizeof(struct block_q5_0) == 22, "Q5_0 block");
static_assert(sizeof(struct block_q5_1) == 24, "Q5_1 block");
static_assert(sizeof(struct block_q8_0) == 34, "Q8_0 block");
static_assert(sizeof(struct block_q8_1) == 36, "Q8_1 block");
static_assert(sizeof(struct block_q4_K) == 144, "Q4_K block");
static_assert(sizeof(struct block_q5_K) == 176, "Q5_K block");
static_assert(sizeof(struct block_q6_K) == 210, "Q6_K block");
static_assert(sizeof(struct block_q8_K) == 292, "Q8_K block");

/* The fifth bits of a Q5_0/Q5_1 block: bit j for element j. */
static inline uint32_t q5_high_bits(const uint8_t qh[4])
{
	return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* Element j (0..31) of a Q5_0/Q5_1 block, 0..31. */
static inline int q5_quant(const uint8_t *qs, uint32_t high, int j)
{
	int nib = j < QK / 2 ? qs[j] & 0xf : qs[j - QK / 2] >> 4;

	return nib | (int)((high >> j) & 1) << 4;
}

float fp16_to_f32(fp16_t h);
/* All 65536 fp16 values as floats (256 KiB, made on first use): fast lookups. */
const float *fp16_table(void);
fp16_t f32_to_fp16(float f);		/* round to nearest even */
float bf16_to_f32(uint16_t h);

/*
 * The 8-bit type the activations are quantized to for a dot product with
 * weights of @type: Q8_0 (for Q4_0, Q5_0, Q8_0), Q8_1 (Q4_1, Q5_1), Q8_K
 * (K-quants), or
 * F32 for the float types. -1 for types without a kernel.
 */
int quant_vec_dot_type(uint32_t type);

/* True for the types this engine has kernels for. */
int quant_supported(uint32_t type);

/* y[0..n) = row of @type; n a multiple of the type's block. */
void dequantize_row_ref(uint32_t type, const void *row, float *y, size_t n);

/*
 * Weights x[0..n) -> a row of @type: F32, F16, Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q4_K, Q5_K or Q6_K (the types `pinfer quantize` writes). Returns 0,
 * or -1 for another.
 */
int quantize_row_weight_ref(uint32_t type, const float *x, void *out, size_t n);

/* x[0..n) -> blocks of @type (Q8_0, Q8_1 or Q8_K; F32 copies). */
void quantize_row_act_ref(uint32_t type, const float *x, void *out, size_t n);

/* quantize_row_act_ref() for one activation type, maybe SIMD: the same bits. */
typedef void (*quant_act_fn)(const float *x, void *out, size_t n);

/* The fastest for @type (Q8_0, Q8_1, Q8_K, F32) on this CPU. */
quant_act_fn quant_act(uint32_t type);
quant_act_fn quant_act_avx512(uint32_t type);	/* Q8_0, Q8_1, Q8_K; else NULL */
quant_act_fn quant_act_avx2(uint32_t type);	/* Q8_0, Q8_1, Q8_K; else NULL */

/* Σ row·act over n elements; @act is quantized to quant_vec_dot_type(type). */
float vec_dot_ref(uint32_t type, size_t n, const void *row, const void *act);

typedef float (*vec_dot_fn)(size_t n, const void *row, const void *act);

/*
 * The fastest dot product of @type this CPU runs (AVX-512 VNNI, AVX2, or
 * the reference), as pinfer_cpu() allows; PINFER_CPU caps it. @isa_name
 * (if not NULL) says which was chosen.
 */
vec_dot_fn quant_vec_dot(uint32_t type, const char **isa_name);

/*
 * Attention helpers: over fp16 keys/values Σ q·k and o += p·v; softmax of
 * x[0..n) times @scale in place; rows to and from fp16 (rounded to nearest
 * even, as f32_to_fp16).
 */
struct attn_kernels {
	float (*dot)(const float *q, const fp16_t *k, size_t n);
	void (*axpy)(float *o, float p, const fp16_t *v, size_t n);
	void (*softmax)(float *x, size_t n, float scale);
	void (*to_f16)(const float *x, fp16_t *y, size_t n);
	void (*to_f32)(const fp16_t *x, float *y, size_t n);
};

/* The fastest this CPU runs (AVX2 + F16C + FMA, or plain C). */
const struct attn_kernels *attn_kernels(void);
float attn_dot_f16_avx2(const float *q, const fp16_t *k, size_t n);
void attn_axpy_f16_avx2(float *o, float p, const fp16_t *v, size_t n);
void softmax_avx2(float *x, size_t n, float scale);
void f32_to_f16_row_avx2(const float *x, fp16_t *y, size_t n);
void f16_to_f32_row_avx2(const fp16_t *x, float *y, size_t n);
/* The plain-C softmax (libm's expf), for tests. */
void softmax_ref(float *x, size_t n, float scale);

/*
 * The element-wise steps between a layer's products, a row at a time:
 * SwiGLU (g = silu(g) * u) and RMSNorm (o = x / sqrt(mean(x^2) + eps) * w,
 * the squares summed in double). The AVX2 SwiGLU takes e^-g in double,
 * rounded: libm's bits nearly always; RMSNorm's sums are in another order,
 * in double, so its floats are the plain loop's but for a rounding in a
 * billion. Each element's bits depend only on its inputs and the path,
 * never on the batch.
 */
struct row_kernels {
	void (*swiglu)(float *g, const float *u, size_t n);
	void (*rmsnorm)(float *o, const float *x, const float *w, size_t n, float eps);
};

const struct row_kernels *row_kernels(void);
void swiglu_avx2(float *g, const float *u, size_t n);
void rmsnorm_avx2(float *o, const float *x, const float *w, size_t n, float eps);
/* The plain-C ones (libm's expf), for tests. */
void swiglu_ref(float *g, const float *u, size_t n);
void rmsnorm_ref(float *o, const float *x, const float *w, size_t n, float eps);

/*
 * Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 dot products all compute, per block b
 * in order,
 *   sum = sum + (dw_b * da_b) * (float)isum_b      (isum_b: Σ q_w q_a, exact)
 *   sum = sum + m_b * s_b                            (Q4_1, Q5_1 only)
 * in float, starting from 0: the reference, every SIMD kernel and the
 * GEMM below give the same bits, whatever the batch or the layout.
 */

/*
 * The integer GEMM's layout: rows of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
 * Q5_K or Q6_K interleaved 16 at a time, in place (the same bytes as the
 * 16 rows). A group of 16 rows is a run of block columns (the 16 rows' block b); in a
 * column, each field of the block (scales, minimums, quants) is the 16
 * rows' copies of it side by side, at 16 times the field's offset in the
 * block, in units: unit j of row r at 16 u j + u r, where u is 2 bytes for
 * fp16 scales, 1 for K-quant sub-block scales and 4 for quants (the dword
 * a dpbusd lane multiplies). So a 64-byte load of quants is dword j of all
 * 16 rows, and a 16-byte load of scales is scale byte i of all 16 rows.
 * Q8_0's quants are flipped to unsigned (^ 0x80).
 *   Q4_0, Q4_1: dword j < 4 holds elements 4j.. (low nibbles) and 16 + 4j..
 *   Q5_0, Q5_1: qs as Q4_0's; qh is one dword (bit j: element j's fifth)
 *   Q8_0: dword j < 8 holds elements 4j..4j+3
 *   Q4_K: dword 8c + j (c < 4, j < 8) holds 64c + 4j.. (low) and 64c + 32 + 4j..
 *   Q5_K: qs as Q4_K's; qh dword j (j < 8): the fifth bits of elements
 *         4j..4j+3 of each sub-block s, in bit s of their bytes
 *   Q6_K: ql and qh as the plain block says, a dword of each at a time
 */
#define PACK_ROWS 16	/* rows per interleaved group */

/* True for the types that have the interleaved layout. */
bool quant_repackable(uint32_t type);

/* 16 rows of @n elements of @type at @rows -> the interleaved layout, in place; @scratch: room for the 16 rows. */
void quant_repack16(uint32_t type, void *rows, size_t n, void *scratch);

/* y[0..n) = row @r (< 16) of an interleaved group of rows of n elements. */
void dequantize_row_repacked(uint32_t type, const void *group, unsigned r, float *y, size_t n);

/*
 * What the GEMM needs of each activation block besides its quants, as 2
 * floats: d, and e = Q4_1, Q5_1: s; Q4_0: 8 Σ q; Q5_0: 16 Σ q; Q8_0: 128 Σ q (the unsigned
 * weights' offsets times the activations' sum). @act: n / 32 blocks of
 * quant_vec_dot_type(@type). Nothing for the K-quants: Q8_K has its sums.
 */
void quant_act_side(uint32_t type, const void *act, size_t n, float *side);

/*
 * out[t * out_stride + r] = row r of the interleaved @group · activation t,
 * for r < 16 and t < @nt; activation t at act + t * act_stride (n / 32
 * blocks), its side floats at side + t * side_stride. Bit for bit what
 * vec_dot_ref gives for each row and activation.
 */
typedef void (*gemm16_fn)(size_t n, const void *group, const void *act, size_t act_stride,
			  const float *side, size_t side_stride, size_t nt,
			  float *out, size_t out_stride);

/* The GEMM for @type on this CPU (AVX-512 VNNI or AVX2), or NULL. */
gemm16_fn quant_gemm16(uint32_t type);
gemm16_fn quant_gemm16_avx512(uint32_t type);
gemm16_fn quant_gemm16_avx2(uint32_t type);

/* The per-ISA kernels, for tests: NULL where the ISA has none for @type. */
vec_dot_fn quant_vec_dot_avx2(uint32_t type);
vec_dot_fn quant_vec_dot_avx512(uint32_t type);

#endif
