// SPDX-License-Identifier: MIT
/*
 * AVX2 dot products (built with -mavx2 -mfma -mf16c; called only when
 * pinfer_cpu() finds them). Integer products per block of 32 are exact
 * (maddubs + madd into int32); blocks are scaled and summed in float.
 */
#include <immintrin.h>
#include <math.h>

#include "quant.h"
#include "quant_simd.h"

static inline float hsum(__m256 v)
{
	__m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	x = _mm_add_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

static inline float h2f(fp16_t h)
{
	return _cvtsh_ss(h);
}

/* 32 nibbles -> 32 bytes: elements 0..15 low nibbles, 16..31 high. */
static inline __m256i unpack_nibbles(const uint8_t *qs)
{
	__m128i t = _mm_loadu_si128((const __m128i *)qs);
	__m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);

	return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* Σ x*y over 32 signed bytes each, as 8 int32 lanes -> float. */
static inline __m256 dot_i8(__m256i x, __m256i y)
{
	__m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));

	return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

static float dot_q4_0(size_t n, const void *row, const void *act)
{
	const struct block_q4_0 *w = row;
	const struct block_q8_0 *a = act;
	__m256 acc = _mm256_setzero_ps();
	size_t i;

	for (i = 0; i < n / QK; i++) {
		__m256i x = _mm256_sub_epi8(unpack_nibbles(w[i].qs), _mm256_set1_epi8(8));
		__m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);

		acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), dot_i8(x, y), acc);
	}
	return hsum(acc);
}

static float dot_q4_1(size_t n, const void *row, const void *act)
{
	const struct block_q4_1 *w = row;
	const struct block_q8_1 *a = act;
	__m256 acc = _mm256_setzero_ps();
	float mins = 0;
	size_t i;

	for (i = 0; i < n / QK; i++) {
		__m256i x = unpack_nibbles(w[i].qs);	/* unsigned 0..15 */
		__m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);
		__m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));

		acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)),
				      _mm256_cvtepi32_ps(p), acc);
		mins += h2f(w[i].m) * h2f(a[i].s);
	}
	return hsum(acc) + mins;
}

static float dot_q8_0(size_t n, const void *row, const void *act)
{
	const struct block_q8_0 *w = row;
	const struct block_q8_0 *a = act;
	__m256 acc = _mm256_setzero_ps();
	size_t i;

	for (i = 0; i < n / QK; i++) {
		__m256i x = _mm256_loadu_si256((const __m256i *)w[i].qs);
		__m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);

		acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), dot_i8(x, y), acc);
	}
	return hsum(acc);
}

/* Float weights, eight at a time; @load8 turns eight of them into floats. */
#define DOT_FLOAT(name, wtype, load8, scalar)					\
static float name(size_t n, const void *row, const void *act)			\
{										\
	const wtype *w = row;							\
	const float *x = act;							\
	__m256 acc = _mm256_setzero_ps();					\
	float tail = 0;								\
	size_t i;								\
										\
	for (i = 0; i + 8 <= n; i += 8)						\
		acc = _mm256_fmadd_ps(load8(w + i), _mm256_loadu_ps(x + i), acc);	\
	for (; i < n; i++)							\
		tail += scalar(w[i]) * x[i];					\
	return hsum(acc) + tail;						\
}

static inline __m256 load_f32(const float *p)
{
	return _mm256_loadu_ps(p);
}

static inline __m256 load_f16(const fp16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* bf16 is a float's top half: shifted up 16 bits it is that float */
static inline __m256 load_bf16(const uint16_t *p)
{
	__m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));

	return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

static inline float as_float(float f)
{
	return f;
}

DOT_FLOAT(dot_f32, float, load_f32, as_float)
DOT_FLOAT(dot_f16, fp16_t, load_f16, h2f)
DOT_FLOAT(dot_bf16, uint16_t, load_bf16, bf16_to_f32)

float attn_dot_f16_avx2(const float *q, const fp16_t *k, size_t n)
{
	__m256 acc = _mm256_setzero_ps();
	float tail = 0;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
				      _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), acc);
	for (; i < n; i++)
		tail += q[i] * _cvtsh_ss(k[i]);
	return hsum(acc) + tail;
}

void attn_axpy_f16_avx2(float *o, float p, const fp16_t *v, size_t n)
{
	__m256 pv = _mm256_set1_ps(p);
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(o + i, _mm256_fmadd_ps(pv,
			_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))),
			_mm256_loadu_ps(o + i)));
	for (; i < n; i++)
		o[i] += p * _cvtsh_ss(v[i]);
}

/*
 * e^x for x <= 0 (softmax's inputs less their maximum): x = n ln2 + r with
 * |r| <= ln2 / 2, e^r by its Taylor series to r^7 (the next term is below
 * 6e-9 relative: under float's rounding), times 2^n through the exponent
 * bits; below -87 the result is 0.
 */
static inline __m256 exp_neg(__m256 x)
{
	const __m256 ln2_hi = _mm256_set1_ps(0.693359375f), ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
	__m256 n, r, p;
	__m256i e;

	x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
	n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
			    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm256_fnmadd_ps(n, ln2_hi, x);	/* ln2 in two parts: r exact enough */
	r = _mm256_fnmadd_ps(n, ln2_lo, r);
	p = _mm256_set1_ps(1.0f / 5040);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline float hmax(__m256 v)
{
	__m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	x = _mm_max_ps(x, _mm_movehl_ps(x, x));
	x = _mm_max_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

void softmax_avx2(float *x, size_t n, float scale)
{
	__m256 sv = _mm256_set1_ps(scale), mv = _mm256_set1_ps(-INFINITY), sum = _mm256_setzero_ps();
	float max = -INFINITY, tail = 0, inv;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		__m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), sv);

		_mm256_storeu_ps(x + i, v);
		mv = _mm256_max_ps(mv, v);
	}
	for (; i < n; i++) {
		x[i] *= scale;
		max = x[i] > max ? x[i] : max;
	}
	max = hmax(mv) > max ? hmax(mv) : max;
	mv = _mm256_set1_ps(max);
	for (i = 0; i + 8 <= n; i += 8) {
		__m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));

		_mm256_storeu_ps(x + i, e);
		sum = _mm256_add_ps(sum, e);
	}
	for (; i < n; i++) {
		x[i] = expf(x[i] - max);
		tail += x[i];
	}
	inv = 1 / (hsum(sum) + tail);
	sv = _mm256_set1_ps(inv);
	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), sv));
	for (; i < n; i++)
		x[i] *= inv;
}

/* y[0..n) = fp16 x[0..n), rounded to nearest even (as f32_to_fp16). */
void f32_to_f16_row_avx2(const float *x, fp16_t *y, size_t n)
{
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(y + i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++)
		y[i] = f32_to_fp16(x[i]);
}

/* y[0..n) = the fp16 x[0..n) as floats. */
void f16_to_f32_row_avx2(const fp16_t *x, float *y, size_t n)
{
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
	for (; i < n; i++)
		y[i] = _cvtsh_ss(x[i]);
}

/* ---- K-quants, with Q8_K activations (their bsums hold sums of 16) -------- */

static inline int hsum_i32(__m256i v)
{
	__m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4e));
	x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
	return _mm_cvtsi128_si32(x);
}

/*
 * Q4_K and Q5_K: Σ_j d sc_j (q·y)_j - dmin Σ_j m_j (y sums)_j per
 * super-block, the q·y exact in int32; @qh NULL for Q4_K.
 */
static float dot_k45(size_t nb, const uint8_t *w, size_t stride, const struct block_q8_K *a,
		     bool five)
{
	const __m256i lowmask = _mm256_set1_epi8(0x0f), sixteen = _mm256_set1_epi8(16);
	float sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++, w += stride) {
		const struct block_q4_K *b4 = (const void *)w;
		const struct block_q5_K *b5 = (const void *)w;
		const uint8_t *qs = five ? b5->qs : b4->qs;
		__m256i acc = _mm256_setzero_si256(), qh = _mm256_setzero_si256();
		uint8_t sc[8], mn[8];
		int summ;

		k4_scales(five ? b5->scales : b4->scales, sc, mn);
		summ = k4_min_sum(mn, &a[i]);
		if (five)
			qh = _mm256_loadu_si256((const __m256i *)b5->qh);
		for (j = 0; j < 4; j++) {
			__m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
			__m256i lo = _mm256_and_si256(q, lowmask);
			__m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), lowmask);
			__m256i y0 = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * j));
			__m256i y1 = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * j + 32));

			if (five) {	/* bits 2j and 2j+1 of qh[l]: the fifth bits */
				__m256i u1 = _mm256_set1_epi8((char)(1 << (2 * j)));
				__m256i u2 = _mm256_set1_epi8((char)(1 << (2 * j + 1)));

				lo = _mm256_or_si256(lo, _mm256_and_si256(
					_mm256_cmpeq_epi8(_mm256_and_si256(qh, u1), u1), sixteen));
				hi = _mm256_or_si256(hi, _mm256_and_si256(
					_mm256_cmpeq_epi8(_mm256_and_si256(qh, u2), u2), sixteen));
			}
			acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0),
								      _mm256_set1_epi16(sc[2 * j])));
			acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1),
								      _mm256_set1_epi16(sc[2 * j + 1])));
		}
		sum += a[i].d * (h2f(five ? b5->d : b4->d) * hsum_i32(acc) -
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
 * Q6_K: elements q - 32 with q in 0..63 (four bits in ql, two in qh) and
 * a signed scale per 16: d Σ_g sc_g ((q·y)_g - 32 (y sum)_g).
 */
static float dot_q6_K(size_t n, const void *row, const void *act)
{
	const struct block_q6_K *w = row;
	const struct block_q8_K *a = act;
	float sum = 0;
	size_t i;
	int h;

	for (i = 0; i < n / QK_K; i++) {
		__m256i acc = _mm256_setzero_si256();
		int bias = q6k_bias(&w[i], &a[i]);

		for (h = 0; h < 2; h++) {	/* 128 elements each */
			const int8_t *sc = w[i].scales + 8 * h, *y = a[i].qs + 128 * h;
			__m256i q[4];
			int k;

			q6k_unpack(&w[i], h, q);
			for (k = 0; k < 4; k++) {	/* elements 32k..32k+31: groups 2k, 2k+1 */
				__m256i yy = _mm256_loadu_si256((const __m256i *)(y + 32 * k));
				__m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]),
							     _mm_set1_epi16(sc[2 * k]));

				acc = _mm256_add_epi32(acc, _mm256_madd_epi16(
					_mm256_maddubs_epi16(q[k], yy), s));
			}
		}
		sum += a[i].d * h2f(w[i].d) * (float)(hsum_i32(acc) - 32 * bias);
	}
	return sum;
}

vec_dot_fn quant_vec_dot_avx2(uint32_t type)
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
