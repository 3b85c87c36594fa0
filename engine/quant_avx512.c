// SPDX-License-Identifier: MIT
/*
 * AVX-512 VNNI dot products (built with the AVX-512 flags; called only when
 * pinfer_cpu() finds AVX-512 and VNNI). dpbusd multiplies unsigned bytes by
 * signed bytes and adds each four into an int32 lane, so one instruction
 * covers two blocks of 32; an odd last block uses the 256-bit form.
 *   Q4_1: nibbles are unsigned already.
 *   Q4_0: Σ (n - 8) y = Σ n y - 8 Σ y, both by dpbusd (Σ y with ones).
 *   Q8_0: Σ x y = Σ |x| (y negated where x < 0).
 */
#include <immintrin.h>

#include "quant.h"

static inline float h2f(fp16_t h)
{
	return _cvtsh_ss(h);
}

static inline float hsum256(__m256 v)
{
	__m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	x = _mm_add_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
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

/* d0 for lanes 0..7 (the first block), d1 for lanes 8..15 */
static inline __m512 scales2(float d0, float d1)
{
	return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d0)),
				  _mm256_set1_ps(d1), 1);
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

/* ---- the dot products ------------------------------------------------------------- */

#define DOT(name, wtype, atype, pair, one, extra)				\
static float name(size_t n, const void *row, const void *act)			\
{										\
	const struct wtype *w = row;						\
	const struct atype *a = act;						\
	size_t nb = n / QK, i;							\
	__m512 acc = _mm512_setzero_ps();					\
	float sum = 0;								\
										\
	for (i = 0; i + 2 <= nb; i += 2) {					\
		__m512 d = scales2(h2f(w[i].d) * h2f(a[i].d),			\
				   h2f(w[i + 1].d) * h2f(a[i + 1].d));		\
										\
		acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(pair(w + i, a + i)), acc); \
		extra(w + i, a + i, 2);						\
	}									\
	if (i < nb) {								\
		sum += hsum256(_mm256_cvtepi32_ps(one(w + i, a + i))) *		\
		       h2f(w[i].d) * h2f(a[i].d);				\
		extra(w + i, a + i, 1);						\
	}									\
	return _mm512_reduce_add_ps(acc) + sum;					\
}

/* Q4_1's block minimums times the activations' sums */
#define MINS(w_, a_, k_)							\
	do {									\
		int j_;								\
		for (j_ = 0; j_ < (k_); j_++)					\
			sum += h2f((w_)[j_].m) * h2f((a_)[j_].s);		\
	} while (0)
#define NONE(w_, a_, k_) do { } while (0)

DOT(dot_q4_1, block_q4_1, block_q8_1, q4_1_pair, q4_1_one, MINS)
DOT(dot_q4_0, block_q4_0, block_q8_0, q4_0_pair, q4_0_one, NONE)
DOT(dot_q8_0, block_q8_0, block_q8_0, q8_0_pair, q8_0_one, NONE)

/*
 * Four activation rows: the same operations in the same order per row as
 * DOT above, with the weight blocks unpacked once.
 */
#define DOT4(name, wtype, atype, unpack_pair, unpack_one, yfix, yfix1, extra)	\
static void name(size_t n, const void *row, const void *act, size_t stride,	\
		 float out[4])							\
{										\
	const struct wtype *w = row;						\
	const struct atype *a[4];						\
	size_t nb = n / QK, i;							\
	__m512 acc[4];								\
	float sum[4] = { 0, 0, 0, 0 };						\
	int k;									\
										\
	for (k = 0; k < 4; k++) {						\
		a[k] = (const struct atype *)((const uint8_t *)act + k * stride); \
		acc[k] = _mm512_setzero_ps();					\
	}									\
	for (i = 0; i + 2 <= nb; i += 2) {					\
		__m512i x = unpack_pair(w + i);					\
		float dw0 = h2f(w[i].d), dw1 = h2f(w[i + 1].d);			\
										\
		for (k = 0; k < 4; k++) {					\
			__m512i y = join(load32(a[k][i].qs), load32(a[k][i + 1].qs)); \
			__m512 d = scales2(dw0 * h2f(a[k][i].d), dw1 * h2f(a[k][i + 1].d)); \
										\
			acc[k] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(yfix(x, y)), acc[k]); \
			extra(sum[k], w + i, a[k] + i, 2);			\
		}								\
	}									\
	if (i < nb) {								\
		__m256i x = unpack_one(w + i);					\
										\
		for (k = 0; k < 4; k++) {					\
			sum[k] += hsum256(_mm256_cvtepi32_ps(yfix1(x, load32(a[k][i].qs)))) * \
				  h2f(w[i].d) * h2f(a[k][i].d);			\
			extra(sum[k], w + i, a[k] + i, 1);			\
		}								\
	}									\
	for (k = 0; k < 4; k++)							\
		out[k] = _mm512_reduce_add_ps(acc[k]) + sum[k];			\
}

static inline __m512i nib_pair_q4_1(const struct block_q4_1 *w)
{
	return join(nibbles(w[0].qs), nibbles(w[1].qs));
}

static inline __m512i nib_pair_q4_0(const struct block_q4_0 *w)
{
	return join(nibbles(w[0].qs), nibbles(w[1].qs));
}

static inline __m256i nib_one_q4_1(const struct block_q4_1 *w)
{
	return nibbles(w->qs);
}

static inline __m256i nib_one_q4_0(const struct block_q4_0 *w)
{
	return nibbles(w->qs);
}

/* unsigned nibbles x signed activations */
static inline __m512i udot(__m512i x, __m512i y)
{
	return _mm512_dpbusd_epi32(_mm512_setzero_si512(), x, y);
}

static inline __m256i udot1(__m256i x, __m256i y)
{
	return _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y);
}

/* Q4_0: Σ n y - 8 Σ y */
static inline __m512i udot_off8(__m512i x, __m512i y)
{
	__m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), y);

	return _mm512_sub_epi32(udot(x, y), _mm512_slli_epi32(s, 3));
}

static inline __m256i udot1_off8(__m256i x, __m256i y)
{
	__m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), y);

	return _mm256_sub_epi32(udot1(x, y), _mm256_slli_epi32(s, 3));
}

#define MINS4(sum_, w_, a_, k_)							\
	do {									\
		int j_;								\
		for (j_ = 0; j_ < (k_); j_++)					\
			(sum_) += h2f((w_)[j_].m) * h2f((a_)[j_].s);		\
	} while (0)
#define NONE4(sum_, w_, a_, k_) do { } while (0)

DOT4(dot4_q4_1, block_q4_1, block_q8_1, nib_pair_q4_1, nib_one_q4_1, udot, udot1, MINS4)
DOT4(dot4_q4_0, block_q4_0, block_q8_0, nib_pair_q4_0, nib_one_q4_0, udot_off8, udot1_off8, NONE4)

vec_dot4_fn quant_vec_dot4_avx512(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_1:
		return dot4_q4_1;
	case GGML_TYPE_Q4_0:
		return dot4_q4_0;
	default:
		return NULL;
	}
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
	default:
		return NULL;
	}
}
