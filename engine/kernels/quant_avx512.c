// SPDX-License-Identifier: MIT
/*
 * AVX-512 VNNI kernels (built with the AVX-512 flags; called only when
 * pinfer_cpu() finds AVX-512 and VNNI). dpbusd multiplies unsigned bytes by
 * signed bytes and adds each four into an int32 lane.
 *
 * Dot products of a row in the file's layout: one instruction covers two
 * blocks of 32 (an odd last block uses the 256-bit form), the block sums
 * are reduced to integers, then the float steps run in quant.h's order.
 *   Q4_1: nibbles are unsigned already.
 *   Q4_0: Σ (n - 8) y = Σ n y - 8 Σ y, both by dpbusd (Σ y with ones).
 *   Q8_0: Σ x y = Σ |x| (y negated where x < 0).
 *
 * The GEMM on the interleaved layout: a block column of 16 rows is 4 (Q4)
 * or 8 (Q8_0) registers of unsigned quants, dword j of each row in lane
 * r; broadcasting the activation's dword j into dpbusd adds row r's part
 * of the block into lane r, so 8 instructions give 16 rows' block sums
 * with no reduction, for each of up to 8 activations per pass.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "quant.h"
#include "quant_simd.h"

static inline float h2f(fp16_t h)
{
	return _cvtsh_ss(h);
}

static inline __m256i nibbles(const uint8_t *q)
{
	__m128i a = _mm_loadu_si128((const __m128i *)q);

	return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(a, 4), a), _mm256_set1_epi8(0x0f));
}

static inline __m512i join(__m256i lo, __m256i hi)
{
	return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static inline __m256i load32(const int8_t *q)
{
	return _mm256_loadu_si256((const __m256i *)q);
}

/* ---- the integer part of one block pair / one block ---------------------------- */

static inline __m512i q4_1_pair(const struct block_q4_1 *w, const struct block_q8_1 *a)
{
	return _mm512_dpbusd_epi32(_mm512_setzero_si512(),
				   join(nibbles(w[0].qs), nibbles(w[1].qs)),
				   join(load32(a[0].qs), load32(a[1].qs)));
}

static inline __m512i q4_0_pair(const struct block_q4_0 *w, const struct block_q8_0 *a)
{
	__m512i y = join(load32(a[0].qs), load32(a[1].qs));
	__m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
					join(nibbles(w[0].qs), nibbles(w[1].qs)), y);
	__m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), y);

	return _mm512_sub_epi32(p, _mm512_slli_epi32(s, 3));
}

static inline __m512i q8_0_pair(const struct block_q8_0 *w, const struct block_q8_0 *a)
{
	__m512i x = join(load32(w[0].qs), load32(w[1].qs));
	__m512i y = join(load32(a[0].qs), load32(a[1].qs));
	__mmask64 neg = _mm512_movepi8_mask(x);

	y = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
	return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), y);
}

static inline __m256i q4_1_one(const struct block_q4_1 *w, const struct block_q8_1 *a)
{
	return _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(w->qs), load32(a->qs));
}

static inline __m256i q4_0_one(const struct block_q4_0 *w, const struct block_q8_0 *a)
{
	__m256i y = load32(a->qs);
	__m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(w->qs), y);
	__m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), y);

	return _mm256_sub_epi32(p, _mm256_slli_epi32(s, 3));
}

static inline __m256i q8_0_one(const struct block_q8_0 *w, const struct block_q8_0 *a)
{
	__m256i x = load32(w->qs), y = load32(a->qs);
	__mmask32 neg = _mm256_movepi8_mask(x);

	y = _mm256_mask_sub_epi8(y, neg, _mm256_setzero_si256(), y);
	return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(x), y);
}

/* ---- dot products of a row ------------------------------------------------------ */

/* The integer sums of lanes 0..7 and of lanes 8..15: two blocks' sums. */
static inline void block_sums(__m512i v, int32_t s[2])
{
	__m256i t = _mm256_hadd_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
	__m128i u;

	t = _mm256_hadd_epi32(t, t);	/* lo 0-3, hi 0-3, .. | lo 4-7, hi 4-7, .. */
	u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
	s[0] = _mm_cvtsi128_si32(u);
	s[1] = _mm_extract_epi32(u, 1);
}

static inline int32_t block_sum1(__m256i v)
{
	__m128i u = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	u = _mm_hadd_epi32(u, u);
	u = _mm_hadd_epi32(u, u);
	return _mm_cvtsi128_si32(u);
}

/* sum += (dw da) isum [+ m s], block by block (quant.h) */
#define STEP(sum_, w_, a_, isum_, extra_)					\
	do {									\
		(sum_) += h2f((w_).d) * h2f((a_).d) * (float)(isum_);		\
		extra_((sum_), (w_), (a_));					\
	} while (0)
#define MIN_S(sum_, w_, a_) ((sum_) += h2f((w_).m) * h2f((a_).s))
#define NO_MIN(sum_, w_, a_) ((void)0)

#define DOT(name, wtype, atype, pair, one, extra)				\
static float name(size_t n, const void *row, const void *act)			\
{										\
	const struct wtype *w = row;						\
	const struct atype *a = act;						\
	size_t nb = n / QK, i;							\
	float sum = 0;								\
	int32_t s[2];								\
										\
	for (i = 0; i + 2 <= nb; i += 2) {					\
		block_sums(pair(w + i, a + i), s);				\
		STEP(sum, w[i], a[i], s[0], extra);				\
		STEP(sum, w[i + 1], a[i + 1], s[1], extra);			\
	}									\
	if (i < nb)								\
		STEP(sum, w[i], a[i], block_sum1(one(w + i, a + i)), extra);	\
	return sum;								\
}

DOT(dot_q4_1, block_q4_1, block_q8_1, q4_1_pair, q4_1_one, MIN_S)
DOT(dot_q4_0, block_q4_0, block_q8_0, q4_0_pair, q4_0_one, NO_MIN)
DOT(dot_q8_0, block_q8_0, block_q8_0, q8_0_pair, q8_0_one, NO_MIN)

/* ---- float weights --------------------------------------------------------------- */

#define DOT_FLOAT(name, wtype, load16, scalar)					\
static float name(size_t n, const void *row, const void *act)			\
{										\
	const wtype *w = row;							\
	const float *x = act;							\
	__m512 acc = _mm512_setzero_ps();					\
	float tail = 0;								\
	size_t i;								\
										\
	for (i = 0; i + 16 <= n; i += 16)					\
		acc = _mm512_fmadd_ps(load16(w + i), _mm512_loadu_ps(x + i), acc);	\
	for (; i < n; i++)							\
		tail += scalar(w[i]) * x[i];					\
	return _mm512_reduce_add_ps(acc) + tail;				\
}

static inline __m512 load_f32(const float *p)
{
	return _mm512_loadu_ps(p);
}

static inline __m512 load_f16(const fp16_t *p)
{
	return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* bf16 is a float's top half */
static inline __m512 load_bf16(const uint16_t *p)
{
	__m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));

	return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}

static inline float as_float(float f)
{
	return f;
}

DOT_FLOAT(dot_f32, float, load_f32, as_float)
DOT_FLOAT(dot_f16, fp16_t, load_f16, h2f)
DOT_FLOAT(dot_bf16, uint16_t, load_bf16, bf16_to_f32)

/* ---- K-quants against Q8_K (bsums: sums of 16) -------------------------------------- */

/* unsigned bytes x signed bytes, each four summed into a lane */
static inline __m512i udot(__m512i x, __m512i y)
{
	return _mm512_dpbusd_epi32(_mm512_setzero_si512(), x, y);
}

/* lanes 0..7 times @a, 8..15 times @b */
static inline __m512i scale2(__m512i v, int a, int b)
{
	return _mm512_mullo_epi32(v, _mm512_inserti64x4(_mm512_set1_epi32(a),
							 _mm256_set1_epi32(b), 1));
}

/*
 * Q4_K and Q5_K: d Σ_j sc_j (q·y)_j - dmin Σ_j m_j (y sums)_j per
 * super-block. Sub-blocks 2j and 2j+1 are the low and high nibbles of the
 * same 32 bytes, and their 64 activations are contiguous: one dpbusd.
 */
static float dot_k45(size_t nb, const uint8_t *w, size_t stride, const struct block_q8_K *a,
		     bool five)
{
	const __m256i low = _mm256_set1_epi8(0x0f), sixteen = _mm256_set1_epi8(16);
	float sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++, w += stride) {
		const struct block_q4_K *b4 = (const void *)w;
		const struct block_q5_K *b5 = (const void *)w;
		const uint8_t *qs = five ? b5->qs : b4->qs;
		__m512i acc = _mm512_setzero_si512();
		__m256i qh = _mm256_setzero_si256();
		uint8_t sc[8], mn[8];
		int summ;

		k4_scales(five ? b5->scales : b4->scales, sc, mn);
		summ = k4_min_sum(mn, &a[i]);
		if (five)
			qh = _mm256_loadu_si256((const __m256i *)b5->qh);
		for (j = 0; j < 4; j++) {
			__m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
			__m256i lo = _mm256_and_si256(q, low);
			__m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
			__m512i y = _mm512_loadu_si512(a[i].qs + 64 * j);

			if (five) {	/* bits 2j and 2j+1 of qh[l]: the fifth bits */
				lo = _mm256_or_si256(lo, _mm256_maskz_mov_epi8(
					_mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * j)))),
					sixteen));
				hi = _mm256_or_si256(hi, _mm256_maskz_mov_epi8(
					_mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * j + 1)))),
					sixteen));
			}
			acc = _mm512_add_epi32(acc, scale2(udot(join(lo, hi), y), sc[2 * j],
							   sc[2 * j + 1]));
		}
		sum += a[i].d * (h2f(five ? b5->d : b4->d) * (float)_mm512_reduce_add_epi32(acc) -
				 h2f(five ? b5->dmin : b4->dmin) * summ);
	}
	return sum;
}

static float dot_q4_K(size_t n, const void *row, const void *act)
{
	return dot_k45(n / QK_K, row, sizeof(struct block_q4_K), act, false);
}

static float dot_q5_K(size_t n, const void *row, const void *act)
{
	return dot_k45(n / QK_K, row, sizeof(struct block_q5_K), act, true);
}

/*
 * Q6_K: elements q - 32 with q in 0..63 (four bits in ql, two in qh) and a
 * signed scale per 16 elements: d Σ_g sc_g s_g, with s_g = (q·y)_g - 32 (y
 * sums)_g. Every AVX-512 Q6_K kernel sums a block the same way, so that
 * they give the same bits: s_g exact in int32 (|s_g| <= 2^16), each
 * product sc_g s_g exact in float (< 2^23), and those added to 0 in the
 * order of g (the GEMMs' fused multiply-adds round as the adds here do),
 * then times (y's d times the block's d). A float multiply-add a group
 * costs the GEMMs less than an int32 multiply (vpmulld, two operations)
 * and an add.
 */
/*
 * -32 (y sums)_g of activation block @a, g = 0..15, at @off: the offset
 * each group's sum starts at (broadcast from memory, no arithmetic)
 */
static inline void q6_offsets(const struct block_q8_K *a, int32_t off[16])
{
	_mm512_storeu_si512(off, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(
		_mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)a->bsums)), 5)));
}

/* lane r: row r's scale of group @grp, as a float */
static inline __m512 q6_scale(const uint8_t *scb, int grp)
{
	return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(scb + 16 * grp))));
}

/*
 * The row kernel: 64 elements (four groups) per dpbusd, lanes 4g..4g+3
 * holding group g's parts; a 4x4 transpose of 128-bit quarters adds them
 * into one lane per group.
 */
static float dot_q6_K(size_t n, const void *row, const void *act)
{
	const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
	const struct block_q6_K *w = row;
	const struct block_q8_K *a = act;
	float sum = 0, p[16];
	size_t i;
	int h, g;

	for (i = 0; i < n / QK_K; i++) {
		int32_t off[16] __attribute__((aligned(64)));
		__m512i v[4], x, y;
		float f = 0;

		for (h = 0; h < 2; h++) {	/* 128 elements each: groups 8h.. */
			const int8_t *ys = a[i].qs + 128 * h;
			__m256i q[4];

			q6k_unpack(&w[i], h, q);
			v[2 * h] = udot(join(q[0], q[1]), _mm512_loadu_si512(ys));
			v[2 * h + 1] = udot(join(q[2], q[3]), _mm512_loadu_si512(ys + 64));
		}
		/* quarter c of x lane k: v[k]'s quarter c summed = group 4k + c */
		x = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
		y = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
		x = _mm512_add_epi32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
		q6_offsets(&a[i], off);
		x = _mm512_add_epi32(_mm512_permutexvar_epi32(order, x), _mm512_load_si512(off));
		_mm512_storeu_ps(p, _mm512_mul_ps(_mm512_cvtepi32_ps(x), _mm512_cvtepi32_ps(
			_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)w[i].scales)))));
		for (g = 0; g < 16; g++)
			f += p[g];
		sum += a[i].d * h2f(w[i].d) * f;
	}
	return sum;
}

vec_dot_fn quant_vec_dot_avx512(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0:
		return dot_q4_0;
	case GGML_TYPE_Q4_1:
		return dot_q4_1;
	case GGML_TYPE_Q8_0:
		return dot_q8_0;
	case GGML_TYPE_F32:
		return dot_f32;
	case GGML_TYPE_F16:
		return dot_f16;
	case GGML_TYPE_BF16:
		return dot_bf16;
	case GGML_TYPE_Q4_K:
		return dot_q4_K;
	case GGML_TYPE_Q5_K:
		return dot_q5_K;
	case GGML_TYPE_Q6_K:
		return dot_q6_K;
	default:
		return NULL;
	}
}

/* ---- activations to 8 bits ---------------------------------------------------------- */

/* roundf's rounding (halves away from zero), exactly: trunc, then the fraction. */
static inline __m512 round_away(__m512 v)
{
	__m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	__mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)),
					  _mm512_set1_ps(0.5f), _CMP_GE_OQ);
	__m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f),
				  _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));	/* ±1 */

	return _mm512_mask_add_ps(t, up, t, one);
}

/* One block of 32: what the reference's quant_block8 does, the same bits. */
static inline int quant_block(const float *x, fp16_t *dh, int8_t *qs, float *d_out)
{
	__m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
	float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
	float d = amax / 127, id = d ? 1 / d : 0;
	__m512i q0 = _mm512_cvtps_epi32(round_away(_mm512_mul_ps(x0, _mm512_set1_ps(id))));
	__m512i q1 = _mm512_cvtps_epi32(round_away(_mm512_mul_ps(x1, _mm512_set1_ps(id))));

	*dh = f32_to_fp16(d);
	*d_out = d;
	_mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(q0));
	_mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(q1));
	return _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}

static void quant_q8_0(const float *x, void *out, size_t n)
{
	struct block_q8_0 *b = out;
	size_t i;
	float d;

	for (i = 0; i < n / QK; i++, x += QK)
		quant_block(x, &b[i].d, b[i].qs, &d);
}

static void quant_q8_1(const float *x, void *out, size_t n)
{
	struct block_q8_1 *b = out;
	size_t i;
	float d;

	for (i = 0; i < n / QK; i++, x += QK) {
		int sum = quant_block(x, &b[i].d, b[i].qs, &d);

		b[i].s = f32_to_fp16(d * sum);
	}
}

/* Super-blocks of 256 to Q8_K, as the reference: d = amax / 127, q = round(x 127 / amax). */
static void quant_q8_K(const float *x, void *out, size_t n)
{
	struct block_q8_K *b = out;
	size_t i;
	int j;

	for (i = 0; i < n / QK_K; i++, x += QK_K) {
		__m512 mx = _mm512_setzero_ps();
		float amax;
		__m512 id;

		for (j = 0; j < 16; j++)
			mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + 16 * j)));
		amax = _mm512_reduce_max_ps(mx);
		memset(&b[i], 0, sizeof(b[i]));
		if (!amax)
			continue;
		id = _mm512_set1_ps(127 / amax);
		b[i].d = amax / 127;
		for (j = 0; j < 16; j++) {	/* a group of 16: one sum */
			__m512i q = _mm512_cvtps_epi32(round_away(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), id)));

			_mm_storeu_si128((__m128i *)(b[i].qs + 16 * j), _mm512_cvtsepi32_epi8(q));
			b[i].bsums[j] = (int16_t)_mm512_reduce_add_epi32(q);
		}
	}
}

quant_act_fn quant_act_avx512(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q8_0:
		return quant_q8_0;
	case GGML_TYPE_Q8_1:
		return quant_q8_1;
	case GGML_TYPE_Q8_K:
		return quant_q8_K;
	default:
		return NULL;
	}
}

/* ---- the GEMM on 16 interleaved rows ----------------------------------------------- */

static inline int32_t load_dword(const int8_t *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return v;
}

/* Loops over registers: unrolled, so that the arrays stay in registers. */
#define UNROLL _Pragma("GCC unroll 8")

/*
 * @T (1..8, a constant once inlined) activations times the group's 16 rows:
 * acc[t] lane r = row r · activation t, block by block in quant.h's order.
 */
static inline __attribute__((always_inline)) void
gemm_tile(const enum kind kind, const int T, size_t nb, const uint8_t *g, const uint8_t *act,
	  size_t as, const float *side, size_t ss, float *out, size_t os)
{
	const bool mins = kind_mins(kind), five = kind_five(kind);
	const size_t col = kind_col(kind), quants = kind_qs(kind), high = kind_qh(kind);
	const size_t ablk = kind_ablk(kind), aqs = kind_aqs(kind);
	const __m512i low = _mm512_set1_epi8(0x0f), sixteen = _mm512_set1_epi8(16);
	__m512 acc[8];
	size_t b;
	int t, j;

	UNROLL
	for (t = 0; t < T; t++)
		acc[t] = _mm512_setzero_ps();
	for (b = 0; b < nb; b++, g += col) {
		const uint8_t *q = g + quants;
		__m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
		__m512 mw = _mm512_setzero_ps();
		__m512i w[8];

		if (T <= 4)	/* generation, small batches: quant_simd.h */
			prefetch_share(g, col, 0, 1);
		if (mins)
			mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32)));
		if (kind == K_Q8_0) {
			UNROLL
			for (j = 0; j < 8; j++)
				w[j] = _mm512_loadu_si512(q + 64 * j);
		} else {
			UNROLL
			for (j = 0; j < 4; j++) {
				__m512i x = _mm512_loadu_si512(q + 64 * j);

				w[j] = _mm512_and_si512(x, low);
				w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(x, 4), low);
			}
		}
		if (five) {	/* the fifth bits: quant_simd.h */
			const __m512i h = _mm512_loadu_si512(g + high);

			UNROLL
			for (j = 0; j < 8; j++)
				w[j] = _mm512_or_si512(w[j], _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(
					_mm512_shuffle_epi8(h, _mm512_broadcast_i32x4(q5_spread(j))),
					_mm512_set1_epi32(q5_bit(j))), sixteen));
		}
		UNROLL
		for (t = 0; t < T; t++) {
			const int8_t *a = (const int8_t *)(act + t * as + b * ablk + aqs);
			const float *sd = side + t * ss + 2 * b;
			__m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
			__m512 isum;

			/* two chains: short dependencies when T is small */
			UNROLL
			for (j = 0; j < 8; j += 2) {
				s0 = _mm512_dpbusd_epi32(s0, w[j], _mm512_set1_epi32(load_dword(a + 4 * j)));
				s1 = _mm512_dpbusd_epi32(s1, w[j + 1],
							 _mm512_set1_epi32(load_dword(a + 4 * j + 4)));
			}
			isum = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
			if (!mins)	/* the unsigned quants' offset: exact */
				isum = _mm512_sub_ps(isum, _mm512_set1_ps(sd[1]));
			acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_mul_ps(dw, _mm512_set1_ps(sd[0])),
								     isum));
			if (mins)
				acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(mw, _mm512_set1_ps(sd[1])));
		}
	}
	UNROLL
	for (t = 0; t < T; t++)
		_mm512_storeu_ps(out + t * os, acc[t]);
}

#define GEMM(name, kind)							\
static void name(size_t n, const void *group, const void *act, size_t as,	\
		 const float *side, size_t ss, size_t nt, float *out, size_t os) \
{										\
	const uint8_t *a = act;							\
	size_t t;								\
										\
	for (t = 0; t + 8 <= nt; t += 8)					\
		gemm_tile(kind, 8, n / QK, group, a + t * as, as, side + t * ss, ss, \
			  out + t * os, os);					\
	a += t * as, side += t * ss, out += t * os;				\
	switch (nt - t) {							\
	case 7: gemm_tile(kind, 7, n / QK, group, a, as, side, ss, out, os); break; \
	case 6: gemm_tile(kind, 6, n / QK, group, a, as, side, ss, out, os); break; \
	case 5: gemm_tile(kind, 5, n / QK, group, a, as, side, ss, out, os); break; \
	case 4: gemm_tile(kind, 4, n / QK, group, a, as, side, ss, out, os); break; \
	case 3: gemm_tile(kind, 3, n / QK, group, a, as, side, ss, out, os); break; \
	case 2: gemm_tile(kind, 2, n / QK, group, a, as, side, ss, out, os); break; \
	case 1: gemm_tile(kind, 1, n / QK, group, a, as, side, ss, out, os); break; \
	default: break;								\
	}									\
}

GEMM(gemm_q4_0, K_Q4_0)
GEMM(gemm_q4_1, K_Q4_1)
GEMM(gemm_q5_0, K_Q5_0)
GEMM(gemm_q5_1, K_Q5_1)
GEMM(gemm_q8_0, K_Q8_0)

/* ---- the K-quants' GEMM on 16 interleaved rows ------------------------------------ */

/* @x's 16 bytes (lane r: row r) and @y's as int16 pairs, one dword a row */
static inline __m512i pairs16(__m128i x, __m128i y, bool sgn)
{
	return join(pair16(x, y, 0, sgn), pair16(x, y, 1, sgn));
}

static inline __m512i bcast(const int8_t *p)
{
	return _mm512_set1_epi32(load_dword(p));
}

/*
 * The packed Q4_K (Q5_K: @five) column at @g: 16 rows' quants of dword @j
 * of sub-blocks 2c (*lo) and 2c + 1 (*hi), with Q5_K's fifth bits from its
 * qh dword j (bit s for sub-block s), lane r row r's four.
 */
static inline void k45_weights(bool five, const uint8_t *g, int c, int j, __m512i *lo, __m512i *hi)
{
	const __m512i low = _mm512_set1_epi8(0x0f), sixteen = _mm512_set1_epi8(16);
	const __m512i x = _mm512_loadu_si512(g + k45_qs(five) + 64 * (8 * c + j));

	*lo = _mm512_and_si512(x, low);
	*hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), low);
	if (five) {
		const __m512i h = _mm512_loadu_si512(g + k45_qh() + 64 * j);

		*lo = _mm512_or_si512(*lo, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(
			h, _mm512_set1_epi8((char)(1 << (2 * c)))), sixteen));
		*hi = _mm512_or_si512(*hi, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(
			h, _mm512_set1_epi8((char)(1 << (2 * c + 1)))), sixteen));
	}
}

/*
 * Q4_K and (@five) Q5_K, @T (1..4) activations: per super-block, lane r of
 * isum is row r's Σ_j sc_j (q·y)_j and of msum its Σ_j m_j (y sums)_j,
 * exact; then the float steps of the row kernel (dot_k45), so the same
 * bits. Q5_K's fifth bits come from its qh dword j, bit s for sub-block s.
 */
static inline __attribute__((always_inline)) void
gemm_k45_tile(const bool five, const int T, size_t nb, const uint8_t *g, const uint8_t *act,
	      size_t as, float *out, size_t os)
{
	const size_t col = k45_col(five);
	__m512 acc[4];
	size_t b;
	int t, c, j;

	UNROLL
	for (t = 0; t < T; t++)
		acc[t] = _mm512_setzero_ps();
	for (b = 0; b < nb; b++, g += col) {
		const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
		const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32)));
		__m128i sc[8], mn[8];
		__m512i isum[4];

		k4_scales16(g + 64, sc, mn);
		UNROLL
		for (t = 0; t < T; t++)
			isum[t] = _mm512_setzero_si512();
		for (c = 0; c < 4; c++) {	/* sub-blocks 2c (low nibbles), 2c + 1 */
			__m512i lo[8], hi[8];
			UNROLL
			for (j = 0; j < 8; j++) {
				/* every other step: 32 steps of 2 lines were 15% slower */
				if (!(j & 1))
					prefetch_share(g, col, 4 * c + j / 2, 16);	/* quant_simd.h */
				k45_weights(five, g, c, j, &lo[j], &hi[j]);
			}
			UNROLL
			for (t = 0; t < T; t++) {
				const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
				const int8_t *y = a->qs + 64 * c;
				__m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
				__m512i s2 = _mm512_setzero_si512(), s3 = _mm512_setzero_si512();

				UNROLL
				for (j = 0; j < 8; j += 2) {
					s0 = _mm512_dpbusd_epi32(s0, lo[j], bcast(y + 4 * j));
					s1 = _mm512_dpbusd_epi32(s1, hi[j], bcast(y + 32 + 4 * j));
					s2 = _mm512_dpbusd_epi32(s2, lo[j + 1], bcast(y + 4 * j + 4));
					s3 = _mm512_dpbusd_epi32(s3, hi[j + 1], bcast(y + 36 + 4 * j));
				}
				isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(
					_mm512_mullo_epi32(_mm512_add_epi32(s0, s2),
							   _mm512_cvtepu8_epi32(sc[2 * c])),
					_mm512_mullo_epi32(_mm512_add_epi32(s1, s3),
							   _mm512_cvtepu8_epi32(sc[2 * c + 1]))));
			}
		}
		UNROLL
		for (t = 0; t < T; t++) {
			const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
			__m512i msum = _mm512_setzero_si512();

			UNROLL
			for (j = 0; j < 8; j += 2)	/* sub-blocks j and j + 1 */
				msum = _mm512_add_epi32(msum, _mm512_madd_epi16(
					pairs16(mn[j], mn[j + 1], false),
					_mm512_set1_epi32(i16_pair(k4_bsum(a, j), k4_bsum(a, j + 1)))));
			acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_set1_ps(a->d), _mm512_sub_ps(
				_mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[t])),
				_mm512_mul_ps(dmin, _mm512_cvtepi32_ps(msum)))));
		}
	}
	UNROLL
	for (t = 0; t < T; t++)
		_mm512_storeu_ps(out + t * os, acc[t]);
}

/*
 * Q6_K, one activation (generation): the same sums as gemm_q6_K_tile's,
 * but the block column's quants are read once each, in address order: a
 * dword of ql holds the low bits of quarters e and e + 2, one of qh the
 * high bits of all four, so each step loads two ql lines and one qh line
 * and feeds four groups' sums (eight kept at a time), each started at its
 * offset; then the groups in order into the float sum (dot_q6_K).
 */
static inline void gemv_q6_K(size_t nb, const uint8_t *g, const uint8_t *act, float *out)
{
	const size_t col = PACK_ROWS * sizeof(struct block_q6_K);
	const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
	const struct block_q8_K *a = (const struct block_q8_K *)act;
	__m512 acc = _mm512_setzero_ps();
	size_t b;
	int h, e, kq, k;

	for (b = 0; b < nb; b++, g += col, a++) {
		const uint8_t *ql = g, *qh = g + 16 * 128, *scb = g + 16 * 192;
		const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 16 * 208)));
		__m512 f = _mm512_setzero_ps();

		for (h = 0; h < 2; h++) {	/* 128 elements each */
			__m512i s[4][2];

			UNROLL
			for (e = 0; e < 4; e++)
				UNROLL
				for (kq = 0; kq < 2; kq++)
					s[e][kq] = _mm512_set1_epi32(-32 * a->bsums[8 * h + 2 * e + kq]);
			UNROLL
			for (kq = 0; kq < 2; kq++)
				UNROLL
				for (k = 0; k < 4; k++) {
					const int dw = 4 * kq + k;
					prefetch_share(g, col, 8 * h + dw, 16);
					const __m512i A = _mm512_loadu_si512(ql + 64 * (16 * h + dw));
					const __m512i B = _mm512_loadu_si512(ql + 64 * (16 * h + 8 + dw));
					const __m512i H = _mm512_loadu_si512(qh + 64 * (8 * h + dw));
					const int8_t *y = a->qs + 128 * h + 16 * kq + 4 * k;
					__m512i w[4];

					w[0] = _mm512_or_si512(_mm512_and_si512(A, m4),
							       _mm512_and_si512(_mm512_slli_epi16(H, 4), m2));
					w[1] = _mm512_or_si512(_mm512_and_si512(B, m4),
							       _mm512_and_si512(_mm512_slli_epi16(H, 2), m2));
					w[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(A, 4), m4),
							       _mm512_and_si512(H, m2));
					w[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(B, 4), m4),
							       _mm512_and_si512(_mm512_srli_epi16(H, 2), m2));
					UNROLL
					for (e = 0; e < 4; e++)
						s[e][kq] = _mm512_dpbusd_epi32(s[e][kq], w[e], bcast(y + 32 * e));
				}
			UNROLL
			for (e = 0; e < 4; e++)		/* groups 8h + 2e + kq, in order */
				UNROLL
				for (kq = 0; kq < 2; kq++)
					f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[e][kq]),
							    q6_scale(scb, 8 * h + 2 * e + kq), f);
		}
		acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(a->d), d), f));
	}
	_mm512_storeu_ps(out, acc);
}

/*
 * The packed Q6_K column at @g (16 rows' blocks): 16 rows' weights q (0..63)
 * of dword @dw (0..7) of quarter @e (elements 32e..32e + 31) of half @h
 * (elements 128h..) of the block, lane r row r's four.
 */
static inline __m512i q6_weights(const uint8_t *g, int h, int e, int dw)
{
	const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
	__m512i L = _mm512_loadu_si512(g + 64 * (16 * h + 8 * (e & 1) + dw));
	__m512i H = _mm512_loadu_si512(g + 16 * 128 + 64 * (8 * h + dw));

	if (e >= 2)
		L = _mm512_srli_epi16(L, 4);
	H = e == 0 ? _mm512_slli_epi16(H, 4) : e == 1 ? _mm512_slli_epi16(H, 2) :
	    e == 2 ? H : _mm512_srli_epi16(H, 2);
	return _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(H, m2));
}

/*
 * Q6_K, @T (1..8) activations: weights q - 32 with q in 0..63; lane r of
 * s is row r's s_g = (q·y)_g - 32 (y sums)_g, exact (each group's sum
 * starts at its offset, broadcast from q6_offsets()), and f[t] adds sc_g
 * s_g group after group as the row kernel (dot_q6_K) does, so the same
 * bits. One group of 16 rows' 16 weights at a time, 4 registers, unpacked
 * once for all T activations: the 16 accumulators stay in registers.
 */
static inline __attribute__((always_inline)) void
gemm_q6_K_tile(const int T, size_t nb, const uint8_t *g, const uint8_t *act, size_t as,
	       float *out, size_t os)
{
	const size_t col = PACK_ROWS * sizeof(struct block_q6_K);
	__m512 acc[8];
	size_t b;
	int t, h, kq, k, e;

	if (T == 1) {
		gemv_q6_K(nb, g, act, out);
		return;
	}
	UNROLL
	for (t = 0; t < T; t++)
		acc[t] = _mm512_setzero_ps();
	for (b = 0; b < nb; b++, g += col) {
		const uint8_t *scb = g + 16 * 192;
		const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 16 * 208)));
		int32_t off[8][16] __attribute__((aligned(64)));
		__m512 f[8];

		UNROLL
		for (t = 0; t < T; t++) {
			q6_offsets((const struct block_q8_K *)(act + t * as) + b, off[t]);
			f[t] = _mm512_setzero_ps();
		}
		for (h = 0; h < 2; h++)		/* 128 elements each */
			UNROLL
			for (e = 0; e < 4; e++)	/* quarter e: elements 32e.. of the 128 */
				for (kq = 0; kq < 2; kq++) {	/* its dwords 4kq..4kq+3 */
					const int grp = 8 * h + 2 * e + kq;
					const __m512 sc = q6_scale(scb, grp);
					__m512i w[4];

					prefetch_share(g, col, grp, 16);	/* quant_simd.h */
					UNROLL
					for (k = 0; k < 4; k++)
						w[k] = q6_weights(g, h, e, 4 * kq + k);
					UNROLL
					for (t = 0; t < T; t++) {
						const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
						const int8_t *y = a->qs + 128 * h + 32 * e + 16 * kq;
						__m512i s = _mm512_set1_epi32(off[t][grp]);

						UNROLL
						for (k = 0; k < 4; k++)
							s = _mm512_dpbusd_epi32(s, w[k], bcast(y + 4 * k));
						f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, f[t]);
					}
				}
		UNROLL
		for (t = 0; t < T; t++) {
			const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;

			acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(a->d), d), f[t]));
		}
	}
	UNROLL
	for (t = 0; t < T; t++)
		_mm512_storeu_ps(out + t * os, acc[t]);
}

/*
 * Q6_K for a prompt (GEMM_STRETCHED, below). The tile above unpacks
 * each group of weights for every T activations (12 operations against
 * T x 6 for the products: a sixth of the work). Here each stretch of
 * STRETCH_BLOCKS blocks is unpacked once for all activations into 20 KiB
 * of vectors (which stay in L1 with a tile's activations), with each
 * group's scales as floats. A group and activation then cost 4 vpdpbusd,
 * a conversion and a multiply-add, its offset a broadcast from memory;
 * the same steps as the tile's, so the same bits; the float sums wait in
 * @out between stretches. In L2 (`make bench-kernels`' program, -t 128
 * -k 2048 -s 16) 170 G multiply-adds a second on one core (151 with the
 * int32 multiply by the scale and the offsets by vpdpwssd).
 */

#define Q6_WORDS 80	/* vectors an unpacked block: 64 of weights, 16 of float scales */

/*
 * Blocks [0, @nbk) of the column at @g, Q6_WORDS vectors each: w[4 group + k]
 * the group's dword k, then the groups' scales as floats (q6_scale())
 */
static void q6_unpack(const uint8_t *g, size_t nbk, __m512i *w)
{
	const size_t col = PACK_ROWS * sizeof(struct block_q6_K);
	size_t b;
	int h, e, dw, grp;

	for (b = 0; b < nbk; b++, g += col, w += Q6_WORDS) {
		for (h = 0; h < 2; h++)
			UNROLL
			for (e = 0; e < 4; e++)
				UNROLL
				for (dw = 0; dw < 8; dw++)	/* group 8h + 2e + dw / 4 */
					w[4 * (8 * h + 2 * e) + dw] = q6_weights(g, h, e, dw);
		for (grp = 0; grp < 16; grp++)
			w[64 + grp] = _mm512_castps_si512(q6_scale(g + 16 * 192, grp));
	}
}

/*
 * @T (1..8) activations times the @nbk blocks unpacked in @w, whose d is
 * in the column at @g; activation t's blocks at act + t * as, its float
 * sums at out + t * os (@fresh: they start at 0).
 */
static inline __attribute__((always_inline)) void
q6_stretch(const int T, size_t nbk, const __m512i *w, const uint8_t *g, const uint8_t *act,
	   size_t as, float *out, size_t os, bool fresh)
{
	const size_t col = PACK_ROWS * sizeof(struct block_q6_K);
	int32_t off[8][16] __attribute__((aligned(64)));
	size_t b;
	int t, grp, k;

	for (b = 0; b < nbk; b++, g += col, w += Q6_WORDS) {
		const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 16 * 208)));
		__m512 f[8];

		UNROLL
		for (t = 0; t < T; t++) {
			q6_offsets((const struct block_q8_K *)(act + t * as) + b, off[t]);
			f[t] = _mm512_setzero_ps();
		}
		for (grp = 0; grp < 16; grp++) {
			const __m512 sc = _mm512_castsi512_ps(w[64 + grp]);
			const int y0 = 16 * grp;	/* group grp: elements 16 grp.. */
			__m512i s[8];

			/* activations interleaved: each sum's 4 steps not back to back */
			UNROLL
			for (t = 0; t < T; t++)
				s[t] = _mm512_set1_epi32(off[t][grp]);
			UNROLL
			for (k = 0; k < 4; k++)
				UNROLL
				for (t = 0; t < T; t++)
					s[t] = _mm512_dpbusd_epi32(s[t], w[4 * grp + k],
						bcast(((const struct block_q8_K *)(act + t * as) + b)->qs + y0 + 4 * k));
			UNROLL
			for (t = 0; t < T; t++)
				f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), sc, f[t]);
		}
		UNROLL
		for (t = 0; t < T; t++) {
			const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
			const __m512 acc = fresh && !b ? _mm512_setzero_ps() : _mm512_loadu_ps(out + t * os);

			_mm512_storeu_ps(out + t * os, _mm512_add_ps(acc, _mm512_mul_ps(
				_mm512_mul_ps(_mm512_set1_ps(a->d), d), f[t])));
		}
	}
}

/*
 * Q4_K and Q5_K for a prompt (GEMM_STRETCHED): as Q6_K's above, the quants
 * of STRETCH_BLOCKS blocks unpacked once for all activations, with each block's scales (as dwords) and min pairs,
 * then 8 activations at a time, one sub-block at a time, the activations
 * interleaved: the tile's sums and float steps, so the same bits.
 */
#define K45_WORDS 76	/* vectors an unpacked block: 64 quants, 8 scales, 4 min pairs */

/* Blocks [0, @nbk) of the column at @g, K45_WORDS vectors each: w[8 i + j] sub-block i's dword j */
static void k45_unpack(bool five, const uint8_t *g, size_t nbk, __m512i *w)
{
	size_t b;
	int c, j;

	for (b = 0; b < nbk; b++, g += k45_col(five), w += K45_WORDS) {
		__m128i sc[8], mn[8];

		k4_scales16(g + 64, sc, mn);
		for (c = 0; c < 4; c++)
			UNROLL
			for (j = 0; j < 8; j++)
				k45_weights(five, g, c, j, &w[16 * c + j], &w[16 * c + 8 + j]);
		UNROLL
		for (j = 0; j < 8; j++)
			w[64 + j] = _mm512_cvtepu8_epi32(sc[j]);
		UNROLL
		for (j = 0; j < 8; j += 2)
			w[72 + j / 2] = pairs16(mn[j], mn[j + 1], false);
	}
}

/*
 * @T (1..8) activations times the @nbk blocks unpacked in @w, whose d and
 * dmin are in the column at @g; activation t's blocks at act + t * as, its
 * float sums at out + t * os (@fresh: they start at 0).
 */
static inline __attribute__((always_inline)) void
k45_stretch(const bool five, const int T, size_t nbk, const __m512i *w, const uint8_t *g,
	    const uint8_t *act, size_t as, float *out, size_t os, bool fresh)
{
	size_t b;
	int t, i, j;

	for (b = 0; b < nbk; b++, g += k45_col(five), w += K45_WORDS) {
		const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
		const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32)));
		__m512i isum[8];

		UNROLL
		for (t = 0; t < T; t++)
			isum[t] = _mm512_setzero_si512();
		for (i = 0; i < 8; i++) {	/* sub-block i: elements 32 i.. */
			__m512i s[8];

			UNROLL
			for (t = 0; t < T; t++)
				s[t] = _mm512_setzero_si512();
			UNROLL
			for (j = 0; j < 8; j++)
				UNROLL
				for (t = 0; t < T; t++)
					s[t] = _mm512_dpbusd_epi32(s[t], w[8 * i + j], bcast(
						((const struct block_q8_K *)(act + t * as) + b)->qs + 32 * i + 4 * j));
			UNROLL
			for (t = 0; t < T; t++)
				isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t], w[64 + i]));
		}
		UNROLL
		for (t = 0; t < T; t++) {
			const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
			const __m512 acc = fresh && !b ? _mm512_setzero_ps() : _mm512_loadu_ps(out + t * os);
			__m512i msum = _mm512_setzero_si512();

			UNROLL
			for (j = 0; j < 8; j += 2)	/* sub-blocks j and j + 1 */
				msum = _mm512_add_epi32(msum, _mm512_madd_epi16(w[72 + j / 2],
					_mm512_set1_epi32(i16_pair(k4_bsum(a, j), k4_bsum(a, j + 1)))));
			_mm512_storeu_ps(out + t * os, _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(a->d),
				_mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[t])),
					      _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(msum))))));
		}
	}
}

/* The K-quant GEMMs: tiles of @T activations, then the rest (fewer than @T) by one smaller tile. */
#define GEMM_K(name, tile, T)							\
static void name(size_t n, const void *group, const void *act, size_t as,	\
		 const float *side, size_t ss, size_t nt, float *out, size_t os) \
{										\
	const uint8_t *a = act;							\
	size_t t;								\
										\
	(void)side, (void)ss;							\
	for (t = 0; t + T <= nt; t += T)					\
		tile(T, n / QK_K, group, a + t * as, as, out + t * os, os);	\
	a += t * as, out += t * os;						\
	switch (nt - t) {							\
	case 7: if (T > 7) tile(7, n / QK_K, group, a, as, out, os); break; \
	case 6: if (T > 6) tile(6, n / QK_K, group, a, as, out, os); break; \
	case 5: if (T > 5) tile(5, n / QK_K, group, a, as, out, os); break; \
	case 4: if (T > 4) tile(4, n / QK_K, group, a, as, out, os); break; \
	case 3: tile(3, n / QK_K, group, a, as, out, os); break;		\
	case 2: tile(2, n / QK_K, group, a, as, out, os); break;		\
	case 1: tile(1, n / QK_K, group, a, as, out, os); break;		\
	default: break;								\
	}									\
}

#define TILE_Q4_K(T, ...) gemm_k45_tile(false, T, __VA_ARGS__)
#define TILE_Q5_K(T, ...) gemm_k45_tile(true, T, __VA_ARGS__)

GEMM_K(gemm_q4_K_tiles, TILE_Q4_K, 4)
GEMM_K(gemm_q5_K_tiles, TILE_Q5_K, 4)
GEMM_K(gemm_q6_K_tiles, gemm_q6_K_tile, 8)

/*
 * @name: the K-quant GEMM whose passes (over fewer than STRETCH_MIN activations) are
 * @tiles (a GEMM of its own), and whose prompts (STRETCH_MIN activations
 * or more) go by stretches of STRETCH_BLOCKS blocks: @unpack(g, nbk, w)
 * lays a stretch of the column out in w (@words vectors a block),
 * @stretch(T, nbk, w, g, act, as, out, os, fresh) multiplies T of the
 * activations with it; @col: the bytes of a block column.
 */
#define GEMM_STRETCHED(name, tiles, col, words, unpack, stretch)		\
static void name(size_t n, const void *group, const void *act, size_t as,	\
		 const float *side, size_t ss, size_t nt, float *out, size_t os) \
{										\
	const size_t nb = n / QK_K;						\
	const uint8_t *g = group;						\
	__m512i w[STRETCH_BLOCKS * (words)];					\
	size_t b0, t;								\
										\
	if (nt < STRETCH_MIN) {							\
		tiles(n, group, act, as, side, ss, nt, out, os);		\
		return;								\
	}									\
	for (b0 = 0; b0 < nb; b0 += STRETCH_BLOCKS, g += STRETCH_BLOCKS * (col)) { \
		const size_t nbk = nb - b0 < STRETCH_BLOCKS ? nb - b0 : STRETCH_BLOCKS; \
		const uint8_t *a = (const uint8_t *)act + b0 * sizeof(struct block_q8_K); \
										\
		unpack(g, nbk, w);						\
		for (t = 0; t + 8 <= nt; t += 8)				\
			stretch(8, nbk, w, g, a + t * as, as, out + t * os, os, !b0); \
		switch (nt - t) {						\
		case 7: stretch(7, nbk, w, g, a + t * as, as, out + t * os, os, !b0); break; \
		case 6: stretch(6, nbk, w, g, a + t * as, as, out + t * os, os, !b0); break; \
		case 5: stretch(5, nbk, w, g, a + t * as, as, out + t * os, os, !b0); break; \
		case 4: stretch(4, nbk, w, g, a + t * as, as, out + t * os, os, !b0); break; \
		case 3: stretch(3, nbk, w, g, a + t * as, as, out + t * os, os, !b0); break; \
		case 2: stretch(2, nbk, w, g, a + t * as, as, out + t * os, os, !b0); break; \
		case 1: stretch(1, nbk, w, g, a + t * as, as, out + t * os, os, !b0); break; \
		default: break;							\
		}								\
	}									\
}

#define Q4_UNPACK(g, nbk, w) k45_unpack(false, g, nbk, w)
#define Q5_UNPACK(g, nbk, w) k45_unpack(true, g, nbk, w)
#define Q4_STRETCH(T, ...) k45_stretch(false, T, __VA_ARGS__)
#define Q5_STRETCH(T, ...) k45_stretch(true, T, __VA_ARGS__)

GEMM_STRETCHED(gemm_q4_K, gemm_q4_K_tiles, k45_col(false), K45_WORDS, Q4_UNPACK, Q4_STRETCH)
GEMM_STRETCHED(gemm_q5_K, gemm_q5_K_tiles, k45_col(true), K45_WORDS, Q5_UNPACK, Q5_STRETCH)
GEMM_STRETCHED(gemm_q6_K, gemm_q6_K_tiles, PACK_ROWS * sizeof(struct block_q6_K), Q6_WORDS, q6_unpack,
	       q6_stretch)

gemm16_fn quant_gemm16_avx512(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0:
		return gemm_q4_0;
	case GGML_TYPE_Q4_1:
		return gemm_q4_1;
	case GGML_TYPE_Q5_0:
		return gemm_q5_0;
	case GGML_TYPE_Q5_1:
		return gemm_q5_1;
	case GGML_TYPE_Q8_0:
		return gemm_q8_0;
	case GGML_TYPE_Q4_K:
		return gemm_q4_K;
	case GGML_TYPE_Q5_K:
		return gemm_q5_K;
	case GGML_TYPE_Q6_K:
		return gemm_q6_K;
	default:
		return NULL;
	}
}
