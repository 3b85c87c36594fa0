// SPDX-License-Identifier: MIT
/*
 * AVX2 kernels (built with -mavx2 -mfma -mf16c; called only when
 * pinfer_cpu() finds them): dot products of a row, activation quantizers,
 * attention helpers and the GEMM on packed rows. Integer products per
 * block are exact (maddubs + madd into int32); Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 then
 * take quant.h's float steps, so they give the reference's bits; the
 * K-quants' row kernels and GEMM give the AVX-512 ones' bits.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

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

static inline int hsum_i32(__m256i v)
{
	__m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4e));
	x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
	return _mm_cvtsi128_si32(x);
}

/* Σ x*y over 32 signed bytes each, exactly (|x| as unsigned: -128 too). */
static inline int dot_i8(__m256i x, __m256i y)
{
	__m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));

	return hsum_i32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: the block sums exact, the float steps in quant.h's order. */
static float dot_q4_0(size_t n, const void *row, const void *act)
{
	const struct block_q4_0 *w = row;
	const struct block_q8_0 *a = act;
	float sum = 0;
	size_t i;

	for (i = 0; i < n / QK; i++) {
		__m256i x = _mm256_sub_epi8(unpack_nibbles(w[i].qs), _mm256_set1_epi8(8));
		__m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);

		sum += h2f(w[i].d) * h2f(a[i].d) * (float)dot_i8(x, y);
	}
	return sum;
}

static float dot_q4_1(size_t n, const void *row, const void *act)
{
	const struct block_q4_1 *w = row;
	const struct block_q8_1 *a = act;
	float sum = 0;
	size_t i;

	for (i = 0; i < n / QK; i++) {
		__m256i x = unpack_nibbles(w[i].qs);	/* unsigned 0..15 */
		__m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);
		__m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));

		sum += h2f(w[i].d) * h2f(a[i].d) * (float)hsum_i32(p);
		sum += h2f(w[i].m) * h2f(a[i].s);
	}
	return sum;
}

/* Q5_0/Q5_1's fifth bits as bytes: 0x10 in byte j where bit j of @qh is set. */
static inline __m256i q5_high(const uint8_t *qh)
{
	const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
						2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i bit = _mm256_set1_epi64x(0x8040201008040201);
	uint32_t h;
	__m256i v;

	memcpy(&h, qh, 4);
	v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), spread);
	v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
	return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/*
 * The sums of 8 vectors of int32, lane i the sum of @v[i]'s lanes: one
 * reduction for 8 blocks instead of 8.
 */
static inline __m256i hsum8_i32(const __m256i v[8])
{
	__m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
	__m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));

	return _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20),
				_mm256_permute2x128_si256(a, c, 0x31));
}

/* Q5_0 block @w's quants times @y's, lane sums (Σ of the lanes: the block's exact sum). */
static inline __m256i q5_0_lanes(const struct block_q5_0 *w, const int8_t *y)
{
	__m256i x = _mm256_or_si256(unpack_nibbles(w->qs), q5_high(w->qh));
	__m256i ya = _mm256_loadu_si256((const __m256i *)y);
	__m256i p;

	x = _mm256_sub_epi8(x, _mm256_set1_epi8(16));	/* -16..15 */
	p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(ya, x));
	return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Q5_1's, its quants 0..31 unsigned. */
static inline __m256i q5_1_lanes(const struct block_q5_1 *w, const int8_t *y)
{
	__m256i x = _mm256_or_si256(unpack_nibbles(w->qs), q5_high(w->qh));
	__m256i ya = _mm256_loadu_si256((const __m256i *)y);

	return _mm256_madd_epi16(_mm256_maddubs_epi16(x, ya), _mm256_set1_epi16(1));
}

/*
 * Q5_0 and Q5_1 (@min): the exact block sums 8 blocks at a time (one
 * reduction), then quant.h's float steps block by block, in order: the
 * reference's bits. Inlined with @min constant, one loop serves both.
 */
static inline __attribute__((always_inline)) float dot_q5(size_t n, const void *row, const void *act,
						       bool min)
{
	const struct block_q5_0 *w0 = row;
	const struct block_q5_1 *w1 = row;
	const struct block_q8_0 *a0 = act;
	const struct block_q8_1 *a1 = act;
	size_t i, nb = n / QK;
	float sum = 0;

	for (i = 0; i < nb; i += 8) {
		size_t k, m = nb - i < 8 ? nb - i : 8;
		__m256i v[8];
		int32_t s[8];

		for (k = 0; k < 8; k++)
			v[k] = k >= m ? _mm256_setzero_si256() :
			       min ? q5_1_lanes(&w1[i + k], a1[i + k].qs) :
				     q5_0_lanes(&w0[i + k], a0[i + k].qs);
		_mm256_storeu_si256((__m256i *)s, hsum8_i32(v));
		for (k = 0; k < m; k++) {
			if (!min) {
				sum += h2f(w0[i + k].d) * h2f(a0[i + k].d) * (float)s[k];
				continue;
			}
			sum += h2f(w1[i + k].d) * h2f(a1[i + k].d) * (float)s[k];
			sum += h2f(w1[i + k].m) * h2f(a1[i + k].s);
		}
	}
	return sum;
}

static float dot_q5_0(size_t n, const void *row, const void *act)
{
	return dot_q5(n, row, act, false);
}

static float dot_q5_1(size_t n, const void *row, const void *act)
{
	return dot_q5(n, row, act, true);
}

static float dot_q8_0(size_t n, const void *row, const void *act)
{
	const struct block_q8_0 *w = row;
	const struct block_q8_0 *a = act;
	float sum = 0;
	size_t i;

	for (i = 0; i < n / QK; i++) {
		__m256i x = _mm256_loadu_si256((const __m256i *)w[i].qs);
		__m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);

		sum += h2f(w[i].d) * h2f(a[i].d) * (float)dot_i8(x, y);
	}
	return sum;
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
 * bits; below -87 it is e^-87 (1.6e-38, nothing next to softmax's 1).
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

/*
 * e^x in double for 4 floats' worth, x clamped to [-110, 100] (beyond, the
 * float result is 0 or inf either way): x = n ln2 + r, |r| <= ln2 / 2,
 * e^r by its Taylor series to r^11 (the next term is below 1e-14
 * relative), times 2^n through the exponent bits. Rounded to float it is
 * the correctly rounded e^x but where e^x lies within about 1e-6 of a
 * float's half-way point: libm's expf's bits, nearly always.
 */
static inline __m256d exp_pd(__m256d x)
{
	static const double inv_fact[12] = {	/* 1 / k! */
		1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
		1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800,
	};
	const __m256d ln2_hi = _mm256_set1_pd(6.93147180369123816490e-01);
	const __m256d ln2_lo = _mm256_set1_pd(1.90821492927058770002e-10);
	__m256d n, r, p;
	__m256i e;
	int k;

	x = _mm256_min_pd(_mm256_max_pd(x, _mm256_set1_pd(-110.0)), _mm256_set1_pd(100.0));
	n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)),
			    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm256_fnmadd_pd(n, ln2_hi, x);
	r = _mm256_fnmadd_pd(n, ln2_lo, r);
	p = _mm256_set1_pd(inv_fact[11]);
	for (k = 10; k >= 0; k--)
		p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(inv_fact[k]));
	e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n)),
					       _mm256_set1_epi64x(1023)), 52);
	return _mm256_mul_pd(p, _mm256_castsi256_pd(e));
}

/*
 * silu(g) * u = g / (1 + e^-g) * u in float, as swiglu_ref, with e^-g
 * from exp_pd rounded to float: libm's bits nearly always (SwiGLU feeds
 * the next product's 8-bit activations, whose rounding carries a
 * last-bit difference on; a float polynomial within 2 ulps moved the
 * 8-bit path's perplexity on 189 tokens of SmolLM2 by 1.2%, this by
 * less than 0.01%). The last n % 8 go through a padded vector, so an
 * element's bits do not depend on where in the row it sits (the experts'
 * rows run end to end).
 */
static inline __m256 swiglu8(__m256 g, __m256 u)
{
	__m256 m = _mm256_xor_ps(g, _mm256_set1_ps(-0.0f));
	__m128 lo = _mm256_cvtpd_ps(exp_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(m))));
	__m128 hi = _mm256_cvtpd_ps(exp_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(m, 1))));
	__m256 e = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);

	return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

void swiglu_avx2(float *g, const float *u, size_t n)
{
	float gt[8] = { 0 }, ut[8] = { 0 };
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(g + i, swiglu8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
	if (i < n) {
		memcpy(gt, g + i, (n - i) * sizeof(float));
		memcpy(ut, u + i, (n - i) * sizeof(float));
		_mm256_storeu_ps(gt, swiglu8(_mm256_loadu_ps(gt), _mm256_loadu_ps(ut)));
		memcpy(g + i, gt, (n - i) * sizeof(float));
	}
}

/*
 * RMSNorm as rmsnorm_ref: the squares (exact in double) summed in double,
 * here in 8 interleaved sums added together at the end; then each
 * (x * scale) * w, the same bits as the plain loop.
 */
void rmsnorm_avx2(float *o, const float *x, const float *w, size_t n, float eps)
{
	__m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
	__m256 sv;
	double ss = 0, l[4], h[4];
	float scale;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		__m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
		__m256d b = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));

		lo = _mm256_fmadd_pd(a, a, lo);
		hi = _mm256_fmadd_pd(b, b, hi);
	}
	_mm256_storeu_pd(l, lo);
	_mm256_storeu_pd(h, hi);
	ss = ((l[0] + h[0]) + (l[1] + h[1])) + ((l[2] + h[2]) + (l[3] + h[3]));
	for (; i < n; i++)
		ss += (double)x[i] * x[i];
	scale = 1.0f / sqrtf((float)(ss / n) + eps);
	sv = _mm256_set1_ps(scale);
	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv),
						      _mm256_loadu_ps(w + i)));
	for (; i < n; i++)
		o[i] = x[i] * scale * w[i];
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

/* ---- activations to 8 bits: the reference's bits ---------------------------- */

/* roundf's rounding (halves away from zero), exactly: trunc, then the fraction. */
static inline __m256 round_away(__m256 v)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	__m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f),
				  _CMP_GE_OQ);
	__m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign));	/* ±1 */

	return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

static inline float amax32(const float *x, int n)
{
	__m256 m = _mm256_setzero_ps();
	int j;

	for (j = 0; j < n; j += 8)
		m = _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + j)));
	return hmax(m);
}

/* 32 floats times @id, rounded, to 32 bytes at @qs; @q: them as int32s. */
static inline void quant32_q(const float *x, __m256 id, int8_t *qs, __m256i q[4])
{
	__m256i p;
	int j;

	for (j = 0; j < 4; j++)
		q[j] = _mm256_cvtps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), id)));
	p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
	p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	_mm256_storeu_si256((__m256i *)qs, p);
}

/* As quant32_q; returns their sum. */
static inline int quant32(const float *x, __m256 id, int8_t *qs)
{
	__m256i q[4];

	quant32_q(x, id, qs, q);
	return hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

static void quant_q8_0(const float *x, void *out, size_t n)
{
	struct block_q8_0 *b = out;
	size_t i;

	for (i = 0; i < n / QK; i++, x += QK) {
		float d = amax32(x, QK) / 127, id = d ? 1 / d : 0;

		b[i].d = f32_to_fp16(d);
		quant32(x, _mm256_set1_ps(id), b[i].qs);
	}
}

static void quant_q8_1(const float *x, void *out, size_t n)
{
	struct block_q8_1 *b = out;
	size_t i;

	for (i = 0; i < n / QK; i++, x += QK) {
		float d = amax32(x, QK) / 127, id = d ? 1 / d : 0;

		b[i].d = f32_to_fp16(d);
		b[i].s = f32_to_fp16(d * quant32(x, _mm256_set1_ps(id), b[i].qs));
	}
}

static void quant_q8_K(const float *x, void *out, size_t n)
{
	struct block_q8_K *b = out;
	size_t i;
	int j;

	for (i = 0; i < n / QK_K; i++, x += QK_K) {
		float amax = amax32(x, QK_K);
		__m256 id;

		memset(&b[i], 0, sizeof(b[i]));
		if (!amax)
			continue;
		id = _mm256_set1_ps(127 / amax);
		b[i].d = amax / 127;
		for (j = 0; j < QK_K / 32; j++) {	/* two groups of 16: a sum each */
			__m256i q[4], h;
			__m128i s;

			quant32_q(x + 32 * j, id, b[i].qs + 32 * j, q);
			/* each half's 16 as 8 lanes, then pairs, halves of 128 and pairs again */
			h = _mm256_hadd_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
			s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
			s = _mm_hadd_epi32(s, s);
			b[i].bsums[2 * j] = (int16_t)_mm_cvtsi128_si32(s);
			b[i].bsums[2 * j + 1] = (int16_t)_mm_extract_epi32(s, 1);
		}
	}
}

quant_act_fn quant_act_avx2(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q8_0: return quant_q8_0;
	case GGML_TYPE_Q8_1: return quant_q8_1;
	case GGML_TYPE_Q8_K: return quant_q8_K;
	default: return NULL;
	}
}

/*
 * ---- the GEMM on 16 interleaved rows ----------------------------------------
 * A 64-byte unit of the layout is 16 rows' dwords: two halves of 8 rows, a
 * register each. maddubs multiplies unsigned by signed bytes into int16
 * pairs; Q4 nibbles (0..15) times activations (|y| <= 127) leave room to
 * add 8 of them in int16 (|sum| <= 30480), Q6_K's 6-bit quants 2, Q8_0
 * (signed, |x| <= 128 through sign()) 1. madd_epi16 then sums the pairs
 * into int32, by ones or by a row's scale repeated in both halves. The
 * float steps are the AVX-512 GEMM's, so each row gets the same bits as
 * the row kernels.
 */

static inline __m256i bcast(const int8_t *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return _mm256_set1_epi32(v);
}

static inline __m256 load8h(const uint8_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

#define UNROLL _Pragma("GCC unroll 8")

/*
 * @v is in a register here: an empty asm that GCC must assume reads and
 * changes it, so a chain of integer adds stays a chain. Without it GCC
 * reassociates a stretch's int16 sums into trees of all of a sub-block's
 * products, which spill to the stack.
 */
#define IN_REG(v) __asm__("" : "+x"(v))

/*
 * The 32-element types' block @g of a packed column, rows 8h..8h + 7: the
 * quants of its 8 dwords in w (Q8_0: signed, and their magnitudes in wabs).
 */
static inline __attribute__((always_inline)) void
q32_weights(const enum kind kind, const uint8_t *g, int h, __m256i w[8], __m256i wabs[8])
{
	const uint8_t *q = g + kind_qs(kind) + 32 * h;
	const __m256i low = _mm256_set1_epi8(0x0f), sixteen = _mm256_set1_epi8(16);
	int j;

	if (kind == K_Q8_0) {
		UNROLL
		for (j = 0; j < 8; j++) {	/* back to signed */
			w[j] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(q + 64 * j)),
						_mm256_set1_epi8((char)0x80));
			wabs[j] = _mm256_sign_epi8(w[j], w[j]);
		}
		return;
	}
	UNROLL
	for (j = 0; j < 4; j++) {
		__m256i x = _mm256_loadu_si256((const __m256i *)(q + 64 * j));

		w[j] = _mm256_and_si256(x, low);
		w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
	}
	if (kind_five(kind)) {	/* the fifth bits: quant_simd.h */
		const __m256i qh = _mm256_loadu_si256((const __m256i *)(g + kind_qh(kind) + 32 * h));

		UNROLL
		for (j = 0; j < 8; j++) {
			const __m256i bit = _mm256_set1_epi32(q5_bit(j));
			const __m256i e = _mm256_and_si256(_mm256_shuffle_epi8(
				qh, _mm256_broadcastsi128_si256(q5_spread(j))), bit);

			w[j] = _mm256_or_si256(w[j], _mm256_and_si256(_mm256_cmpeq_epi8(e, bit), sixteen));
		}
	}
}

/*
 * @acc plus one block of 8 rows (quants @w, @wabs as q32_weights() gives
 * them; scales @dw, mins @mw) times the activation block's quants @a and
 * its floats @sd (d, and the sum or, for the unsigned types, the offset):
 * int16 pair sums hold all 8 steps of 4-bit quants (8 x 2 x 15 x 127) but
 * only 4 of 5-bit ones (4 x 2 x 31 x 127 = 31496): those widen every 4.
 */
static inline __attribute__((always_inline)) __m256
q32_block(const enum kind kind, const __m256i w[8], const __m256i wabs[8], const int8_t *a,
	  const float *sd, __m256 dw, __m256 mw, __m256 acc)
{
	const __m256i ones = _mm256_set1_epi16(1);
	__m256i s = _mm256_setzero_si256();
	__m256 isum;
	int j;

	if (kind == K_Q8_0) {
		UNROLL
		for (j = 0; j < 8; j++) {
			s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(
				wabs[j], _mm256_sign_epi8(bcast(a + 4 * j), w[j])), ones));
			IN_REG(s);
		}
		isum = _mm256_cvtepi32_ps(s);	/* signed: no offset */
	} else {
		__m256i s2 = _mm256_setzero_si256();

		UNROLL
		for (j = 0; j < 8; j++) {
			__m256i p = _mm256_maddubs_epi16(w[j], bcast(a + 4 * j));

			if (kind_five(kind) && j >= 4) {
				s2 = _mm256_add_epi16(s2, p);
				IN_REG(s2);
			} else {
				s = _mm256_add_epi16(s, p);
				IN_REG(s);
			}
		}
		s = _mm256_madd_epi16(s, ones);
		if (kind_five(kind))
			s = _mm256_add_epi32(s, _mm256_madd_epi16(s2, ones));
		isum = _mm256_cvtepi32_ps(s);
		if (!kind_mins(kind))	/* the unsigned quants' offset: exact */
			isum = _mm256_sub_ps(isum, _mm256_set1_ps(sd[1]));
	}
	acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(sd[0])), isum));
	if (kind_mins(kind))
		acc = _mm256_add_ps(acc, _mm256_mul_ps(mw, _mm256_set1_ps(sd[1])));
	return acc;
}

/* @T (1..4) activations times the group's 16 rows, half by half, block by block. */
static inline __attribute__((always_inline)) void
gemm_tile(const enum kind kind, const int T, size_t nb, const uint8_t *g, const uint8_t *act,
	  size_t as, const float *side, size_t ss, float *out, size_t os)
{
	const size_t col = kind_col(kind);
	const size_t ablk = kind_ablk(kind), aqs = kind_aqs(kind);
	__m256 acc[2][4];
	size_t b;
	int h, t;

	UNROLL
	for (t = 0; t < T; t++)
		acc[0][t] = acc[1][t] = _mm256_setzero_ps();
	for (b = 0; b < nb; b++, g += col)
		for (h = 0; h < 2; h++) {
			const __m256 dw = load8h(g + 16 * h);
			const __m256 mw = kind_mins(kind) ? load8h(g + 32 + 16 * h) : _mm256_setzero_ps();
			__m256i w[8], wabs[8];

			prefetch_share(g, col, h, 2);	/* quant_simd.h */
			q32_weights(kind, g, h, w, wabs);
			UNROLL
			for (t = 0; t < T; t++)
				acc[h][t] = q32_block(kind, w, wabs, (const int8_t *)(act + t * as + b * ablk + aqs),
						      side + t * ss + 2 * b, dw, mw, acc[h][t]);
		}
	UNROLL
	for (t = 0; t < T; t++) {
		_mm256_storeu_ps(out + t * os, acc[0][t]);
		_mm256_storeu_ps(out + t * os + 8, acc[1][t]);
	}
}

/*
 * The 32-element types for a prompt (STRETCH_MIN activations or more): as
 * the K-quants' (GEMM_STRETCHED), the quants of Q32_STRETCH blocks at a
 * time unpacked once for all activations (16 KiB: 16 vectors a block and
 * half, Q8_0's magnitudes in the second 8), then 4 activations at a time,
 * half by half, their float sums in registers through the stretch: the
 * tile's steps block after block, so the same bits.
 */
#define Q32_STRETCH 16

static inline __attribute__((always_inline)) void
q32_unpack(const enum kind kind, const uint8_t *g, size_t nbk, __m256i *w)
{
	size_t b;
	int h;

	for (h = 0; h < 2; h++)
		for (b = 0; b < nbk; b++) {
			__m256i *v = w + (Q32_STRETCH * h + b) * 16;

			q32_weights(kind, g + b * kind_col(kind), h, v, v + 8);
		}
}

static inline __attribute__((always_inline)) void
q32_stretch(const enum kind kind, const int T, size_t nbk, const __m256i *w, const uint8_t *g,
	    const uint8_t *act, size_t as, const float *side, size_t ss, float *out, size_t os,
	    bool fresh)
{
	const size_t ablk = kind_ablk(kind), aqs = kind_aqs(kind);
	size_t b;
	int h, t;

	for (h = 0; h < 2; h++) {
		__m256 acc[4];

		UNROLL
		for (t = 0; t < T; t++)
			acc[t] = fresh ? _mm256_setzero_ps() : _mm256_loadu_ps(out + t * os + 8 * h);
		for (b = 0; b < nbk; b++) {
			const uint8_t *gb = g + b * kind_col(kind);
			const __m256 dw = load8h(gb + 16 * h);
			const __m256 mw = kind_mins(kind) ? load8h(gb + 32 + 16 * h) : _mm256_setzero_ps();
			const __m256i *v = w + (Q32_STRETCH * h + b) * 16;

			UNROLL
			for (t = 0; t < T; t++)
				acc[t] = q32_block(kind, v, v + 8, (const int8_t *)(act + t * as + b * ablk + aqs),
						   side + t * ss + 2 * b, dw, mw, acc[t]);
		}
		UNROLL
		for (t = 0; t < T; t++)
			_mm256_storeu_ps(out + t * os + 8 * h, acc[t]);
	}
}

static inline __attribute__((always_inline)) void
gemm_q32_stretched(const enum kind kind, size_t nb, const uint8_t *g, const uint8_t *act,
		   size_t as, const float *side, size_t ss, size_t nt, float *out, size_t os)
{
	const size_t ablk = kind_ablk(kind);
	__m256i w[2 * Q32_STRETCH * 16];
	size_t b0, t;

	for (b0 = 0; b0 < nb; b0 += Q32_STRETCH, g += Q32_STRETCH * kind_col(kind)) {
		const size_t nbk = nb - b0 < Q32_STRETCH ? nb - b0 : Q32_STRETCH;
		const uint8_t *a = act + b0 * ablk;
		const float *sd = side + 2 * b0;

#define STRETCH(T) q32_stretch(kind, T, nbk, w, g, a + t * as, as, sd + t * ss, ss, out + t * os, os, !b0)
		q32_unpack(kind, g, nbk, w);
		for (t = 0; t + 4 <= nt; t += 4)
			STRETCH(4);
		switch (nt - t) {
		case 3: STRETCH(3); break;
		case 2: STRETCH(2); break;
		case 1: STRETCH(1); break;
		default: break;
		}
#undef STRETCH
	}
}

/*
 * The packed Q4_K (Q5_K: @five) column at @g: rows 8h..8h + 7's quants of
 * dword @j of sub-blocks 2c (*lo) and 2c + 1 (*hi), each with its fifth
 * bit for Q5_K (a qh dword holds the bits of 4 elements of all 8
 * sub-blocks), lane r row 8h + r's four.
 */
static inline void k45_weights(bool five, const uint8_t *g, int h, int c, int j, __m256i *lo,
			       __m256i *hi)
{
	const __m256i low = _mm256_set1_epi8(0x0f), sixteen = _mm256_set1_epi8(16);
	const __m256i x = _mm256_loadu_si256((const __m256i *)(g + k45_qs(five) + 64 * (8 * c + j) + 32 * h));

	*lo = _mm256_and_si256(x, low);
	*hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
	if (five) {
		const __m256i e = _mm256_loadu_si256((const __m256i *)(g + k45_qh() + 64 * j + 32 * h));
		const __m256i b0 = _mm256_set1_epi8((char)(1 << (2 * c)));
		const __m256i b1 = _mm256_set1_epi8((char)(2 << (2 * c)));

		*lo = _mm256_or_si256(*lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(e, b0), b0),
							    sixteen));
		*hi = _mm256_or_si256(*hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(e, b1), b1),
							    sixteen));
	}
}

/*
 * Q4_K and (@five) Q5_K, @T (1..4) activations: as the AVX-512 GEMM, half
 * by half. int16 pair sums hold 8 steps of 4-bit quants (8 x 2 x 15 x 127)
 * but only 4 of Q5_K's 5-bit ones (4 x 2 x 31 x 127 = 31496): those go to
 * int32 through the scales every 4 steps.
 */
static inline __attribute__((always_inline)) void
gemm_k45_tile(const bool five, const int T, size_t nb, const uint8_t *g, const uint8_t *act,
	      size_t as, float *out, size_t os)
{
	const size_t col = k45_col(five);
	const int run = five ? 4 : 8;	/* steps summed in int16 */
	__m256 acc[2][4];
	size_t b;
	int h, t, c, j;

	UNROLL
	for (t = 0; t < T; t++)
		acc[0][t] = acc[1][t] = _mm256_setzero_ps();
	for (b = 0; b < nb; b++, g += col) {
		__m128i sc[8], mn[8];

		k4_scales16(g + 64, sc, mn);
		for (h = 0; h < 2; h++) {
			const __m256 d = load8h(g + 16 * h), dmin = load8h(g + 32 + 16 * h);
			__m256i isum[4];

			UNROLL
			for (t = 0; t < T; t++)
				isum[t] = _mm256_setzero_si256();
			for (c = 0; c < 4; c++) {	/* sub-blocks 2c (low nibbles), 2c + 1 */
				const __m256i s0 = pair16(sc[2 * c], sc[2 * c], h, false);
				const __m256i s1 = pair16(sc[2 * c + 1], sc[2 * c + 1], h, false);
				__m256i p0[4], p1[4];
				UNROLL
				for (t = 0; t < T; t++)
					p0[t] = p1[t] = _mm256_setzero_si256();
				UNROLL
				for (j = 0; j < 8; j++) {
					__m256i lo, hi;

					prefetch_share(g, col, 32 * h + 8 * c + j, 64);	/* quant_simd.h */
					k45_weights(five, g, h, c, j, &lo, &hi);
					UNROLL
					for (t = 0; t < T; t++) {
						const int8_t *y = ((const struct block_q8_K *)(act + t * as) + b)->qs +
								  64 * c + 4 * j;

						p0[t] = _mm256_add_epi16(p0[t], _mm256_maddubs_epi16(lo, bcast(y)));
						p1[t] = _mm256_add_epi16(p1[t], _mm256_maddubs_epi16(hi, bcast(y + 32)));
						IN_REG(p0[t]);
						IN_REG(p1[t]);
					}
					if ((j + 1) % run)
						continue;
					UNROLL
					for (t = 0; t < T; t++) {
						isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(
							_mm256_madd_epi16(p0[t], s0), _mm256_madd_epi16(p1[t], s1)));
						p0[t] = p1[t] = _mm256_setzero_si256();
					}
				}
			}
			UNROLL
			for (t = 0; t < T; t++) {
				const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
				__m256i msum = _mm256_setzero_si256();

				UNROLL
				for (j = 0; j < 8; j += 2)
					msum = _mm256_add_epi32(msum, _mm256_madd_epi16(
						pair16(mn[j], mn[j + 1], h, false),
						_mm256_set1_epi32(i16_pair(k4_bsum(a, j), k4_bsum(a, j + 1)))));
				acc[h][t] = _mm256_add_ps(acc[h][t], _mm256_mul_ps(_mm256_set1_ps(a->d), _mm256_sub_ps(
					_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t])),
					_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(msum)))));
			}
		}
	}
	UNROLL
	for (t = 0; t < T; t++) {
		_mm256_storeu_ps(out + t * os, acc[0][t]);
		_mm256_storeu_ps(out + t * os + 8, acc[1][t]);
	}
}

/*
 * Q4_K and Q5_K for a prompt (GEMM_STRETCHED): as Q6_K's below, the quants
 * of STRETCH_BLOCKS blocks unpacked once for all activations, with each block's scales and mins as the tile's
 * madd operands, then 4 activations at a time, one sub-block at a time
 * (the 4 activations' int16 sums, their int32 sums and a dword of weights:
 * 9 of the 16 registers): the tile's sums and float steps, so the same bits.
 */
#define K45_WORDS 76	/* vectors an unpacked block half: 64 quants, 8 scales, 4 min pairs */

/*
 * Blocks [0, @nbk) of the column at @g, K45_WORDS vectors for each of its
 * halves (rows 8h..): w[8 i + j] sub-block i's dword j, then the scales,
 * then the min pairs, as the tile's madd operands
 */
static void k45_unpack(bool five, const uint8_t *g, size_t nbk, __m256i *w)
{
	size_t b;
	int h, c, j;

	for (b = 0; b < nbk; b++, g += k45_col(five)) {
		__m128i sc[8], mn[8];

		k4_scales16(g + 64, sc, mn);
		for (h = 0; h < 2; h++, w += K45_WORDS) {
			for (c = 0; c < 4; c++)
				UNROLL
				for (j = 0; j < 8; j++)
					k45_weights(five, g, h, c, j, &w[16 * c + j], &w[16 * c + 8 + j]);
			UNROLL
			for (j = 0; j < 8; j++)
				w[64 + j] = pair16(sc[j], sc[j], h, false);
			UNROLL
			for (j = 0; j < 8; j += 2)
				w[72 + j / 2] = pair16(mn[j], mn[j + 1], h, false);
		}
	}
}

/*
 * @T (1..4) activations times the @nbk blocks unpacked in @w, whose d and
 * dmin are in the column at @g; activation t's blocks at act + t * as, its
 * float sums at out + t * os (@fresh: they start at 0).
 */
static inline __attribute__((always_inline)) void
k45_stretch(const bool five, const int T, size_t nbk, const __m256i *w, const uint8_t *g,
	    const uint8_t *act, size_t as, float *out, size_t os, bool fresh)
{
	const int run = five ? 4 : 8;	/* steps summed in int16 */
	size_t b;
	int h, t, i, j;

	for (b = 0; b < nbk; b++, g += k45_col(five))
		for (h = 0; h < 2; h++, w += K45_WORDS) {
			const __m256 d = load8h(g + 16 * h), dmin = load8h(g + 32 + 16 * h);
			__m256i isum[4];

			UNROLL
			for (t = 0; t < T; t++)
				isum[t] = _mm256_setzero_si256();
			for (i = 0; i < 8; i++) {	/* sub-block i: elements 32 i.. */
				__m256i p[4];

				UNROLL
				for (t = 0; t < T; t++)
					p[t] = _mm256_setzero_si256();
				UNROLL
				for (j = 0; j < 8; j++) {
					const __m256i q = w[8 * i + j];

					UNROLL
					for (t = 0; t < T; t++) {
						p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(q, bcast(
							((const struct block_q8_K *)(act + t * as) + b)->qs + 32 * i + 4 * j)));
						IN_REG(p[t]);
					}
					if ((j + 1) % run)
						continue;
					UNROLL
					for (t = 0; t < T; t++) {
						isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p[t], w[64 + i]));
						p[t] = _mm256_setzero_si256();
					}
				}
			}
			UNROLL
			for (t = 0; t < T; t++) {
				const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
				float *o = out + t * os + 8 * h;
				const __m256 acc = fresh && !b ? _mm256_setzero_ps() : _mm256_loadu_ps(o);
				__m256i msum = _mm256_setzero_si256();

				UNROLL
				for (j = 0; j < 8; j += 2)
					msum = _mm256_add_epi32(msum, _mm256_madd_epi16(w[72 + j / 2],
						_mm256_set1_epi32(i16_pair(k4_bsum(a, j), k4_bsum(a, j + 1)))));
				_mm256_storeu_ps(o, _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(a->d), _mm256_sub_ps(
					_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t])),
					_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(msum))))));
			}
		}
}

/* Groups 2k and 2k + 1's scales of rows 8h..8h + 7 (at @scb), as q6_bias_w's madd operands */
static inline void q6_bias_pairs(const uint8_t *scb, int h, __m256i sp[8])
{
	int k;

	UNROLL
	for (k = 0; k < 8; k++)
		sp[k] = pair16(_mm_loadu_si128((const __m128i *)(scb + 32 * k)),
			       _mm_loadu_si128((const __m128i *)(scb + 32 * k + 16)), h, true);
}

/* Rows 8h..8h + 7 of block @a's -32 Σ_g sc_g (y sums)_g, the scale pairs in @sp: the offsets' sums */
static inline __m256i q6_bias_w(const __m256i *sp, const struct block_q8_K *a)
{
	__m256i bias = _mm256_setzero_si256();
	int k;

	UNROLL
	for (k = 0; k < 8; k++)
		bias = _mm256_add_epi32(bias, _mm256_madd_epi16(sp[k],
			_mm256_set1_epi32(i16_pair(a->bsums[2 * k], a->bsums[2 * k + 1]))));
	return _mm256_slli_epi32(bias, 5);
}

/* As q6_bias_w, the scales at @scb (the tiles, which unpack nothing ahead) */
static inline __m256i q6_bias(const uint8_t *scb, const struct block_q8_K *a, int h)
{
	__m256i sp[8];

	q6_bias_pairs(scb, h, sp);
	return q6_bias_w(sp, a);
}

/*
 * Q6_K, one activation (generation): the tile's sums, but each half's
 * quants read once, in address order (as the AVX-512 gemv_q6_K): a ql
 * dword feeds quarters e and e + 2, a qh dword all four; int16 pair sums
 * of two steps at a time go to int32 through the group's scale.
 */
static inline void gemv_q6_K(size_t nb, const uint8_t *g, const uint8_t *act, float *out)
{
	const size_t col = PACK_ROWS * sizeof(struct block_q6_K);
	const struct block_q8_K *a = (const struct block_q8_K *)act;
	__m256 acc[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() };
	size_t b;
	int h, hh, kq, k, e;

	for (b = 0; b < nb; b++, g += col, a++)
		for (h = 0; h < 2; h++) {	/* rows 8h..8h+7 */
			const uint8_t *ql = g + 32 * h, *qh = g + 16 * 128 + 32 * h, *scb = g + 16 * 192;
			const __m256 d = load8h(g + 16 * 208 + 16 * h);
			__m256i isum = _mm256_setzero_si256();

			for (hh = 0; hh < 2; hh++)	/* 128 elements each */
				UNROLL
				for (kq = 0; kq < 2; kq++) {
					__m256i sc[4], p[4];

					prefetch_share(g, col, 4 * h + 2 * hh + kq, 8);
					UNROLL
					for (e = 0; e < 4; e++) {
						__m128i s8 = _mm_loadu_si128((const __m128i *)
							(scb + 16 * (8 * hh + 2 * e + kq)));

						sc[e] = pair16(s8, s8, h, true);
					}
					UNROLL
					for (k = 0; k < 4; k++) {
						const int dw = 4 * kq + k;
						const __m256i A = _mm256_loadu_si256((const __m256i *)(ql + 64 * (16 * hh + dw)));
						const __m256i B = _mm256_loadu_si256((const __m256i *)(ql + 64 * (16 * hh + 8 + dw)));
						const __m256i H = _mm256_loadu_si256((const __m256i *)(qh + 64 * (8 * hh + dw)));
						const int8_t *y = a->qs + 128 * hh + 16 * kq + 4 * k;
						__m256i w[4];

						q6k_split(A, B, H, w);
						UNROLL
						for (e = 0; e < 4; e++) {
							__m256i m = _mm256_maddubs_epi16(w[e], bcast(y + 32 * e));

							p[e] = k & 1 ? _mm256_add_epi16(p[e], m) : m;
							if (k & 1) {	/* two steps' pairs fit int16 */
								isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p[e], sc[e]));
								IN_REG(isum);
							}
						}
					}
				}
			acc[h] = _mm256_add_ps(acc[h], _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(a->d), d),
					_mm256_cvtepi32_ps(_mm256_sub_epi32(isum, q6_bias(scb, a, h)))));
		}
	_mm256_storeu_ps(out, acc[0]);
	_mm256_storeu_ps(out + 8, acc[1]);
}

/*
 * The packed Q6_K column at @g (16 rows' blocks): rows 8h..8h + 7's weights
 * q (0..63) of dword @dw (0..7) of quarter @e (elements 32e..) of half @hh
 * (elements 128hh..) of the block, lane r row 8h + r's four.
 */
static inline __m256i q6_weights(const uint8_t *g, int h, int hh, int e, int dw)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
	__m256i A = _mm256_loadu_si256((const __m256i *)(g + 32 * h + 64 * (16 * hh + (e & 1) * 8 + dw)));
	__m256i H = _mm256_loadu_si256((const __m256i *)(g + 16 * 128 + 32 * h + 64 * (8 * hh + dw)));

	A = e < 2 ? A : _mm256_srli_epi16(A, 4);
	H = e == 0 ? _mm256_slli_epi16(H, 4) : e == 1 ? _mm256_slli_epi16(H, 2) :
	    e == 2 ? H : _mm256_srli_epi16(H, 2);
	return _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(H, m2));
}

/* Q6_K, @T (1..4) activations: as the AVX-512 GEMM, half by half. */
static inline __attribute__((always_inline)) void
gemm_q6_K_tile(const int T, size_t nb, const uint8_t *g, const uint8_t *act, size_t as,
	       float *out, size_t os)
{
	const size_t col = PACK_ROWS * sizeof(struct block_q6_K);
	__m256 acc[2][4];
	size_t b;
	int h, t, hh, kq, e, k;

	if (T == 1) {
		gemv_q6_K(nb, g, act, out);
		return;
	}
	UNROLL
	for (t = 0; t < T; t++)
		acc[0][t] = acc[1][t] = _mm256_setzero_ps();
	for (b = 0; b < nb; b++, g += col) {
		for (h = 0; h < 2; h++) {
			const uint8_t *scb = g + 16 * 192;
			const __m256 d = load8h(g + 16 * 208 + 16 * h);
			__m256i isum[4];

			UNROLL
			for (t = 0; t < T; t++)
				isum[t] = _mm256_setzero_si256();
			for (hh = 0; hh < 2; hh++)		/* 128 elements each */
				for (kq = 0; kq < 2; kq++)
					for (e = 0; e < 4; e++) {	/* group 8hh + 2e + kq */
						int grp = 8 * hh + 2 * e + kq;
						__m128i s8 = _mm_loadu_si128((const __m128i *)(scb + 16 * grp));
						__m256i w[4], sc16 = pair16(s8, s8, h, true);

						prefetch_share(g, col, 16 * h + 8 * hh + 4 * kq + e, 32);
						UNROLL
						for (k = 0; k < 4; k++)
							w[k] = q6_weights(g, h, hh, e, 4 * kq + k);
						UNROLL
						for (t = 0; t < T; t++) {
							const int8_t *y = ((const struct block_q8_K *)(act + t * as) + b)->qs +
									  128 * hh + 32 * e + 16 * kq;
							__m256i pa = _mm256_add_epi16(_mm256_maddubs_epi16(w[0], bcast(y)),
										      _mm256_maddubs_epi16(w[1], bcast(y + 4)));
							__m256i pb = _mm256_add_epi16(_mm256_maddubs_epi16(w[2], bcast(y + 8)),
										      _mm256_maddubs_epi16(w[3], bcast(y + 12)));

							isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(
								_mm256_madd_epi16(pa, sc16), _mm256_madd_epi16(pb, sc16)));
							IN_REG(isum[t]);
						}
					}
			UNROLL
			for (t = 0; t < T; t++) {
				const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
				__m256i tot = _mm256_sub_epi32(isum[t], q6_bias(scb, a, h));

				acc[h][t] = _mm256_add_ps(acc[h][t], _mm256_mul_ps(
					_mm256_mul_ps(_mm256_set1_ps(a->d), d), _mm256_cvtepi32_ps(tot)));
			}
		}
	}
	UNROLL
	for (t = 0; t < T; t++) {
		_mm256_storeu_ps(out + t * os, acc[0][t]);
		_mm256_storeu_ps(out + t * os + 8, acc[1][t]);
	}
}

/*
 * Q6_K for a prompt (GEMM_STRETCHED): as the AVX-512 GEMM's, each stretch
 * of STRETCH_BLOCKS blocks unpacked once for all activations (the tile above unpacks each group's weights for every 4
 * activations: 24 operations against their 40 products), with each group's
 * scales as the madd operand and the offsets' scale pairs as q6_bias's
 * (2 shuffles a group, and 16 for each activation's offsets: 5% and 20% of
 * the products' operations; pp512 on the 1B model 7% faster), then multiplied
 * 4 activations at a time, the same sums in the same order as the tile's,
 * so the same bits.
 */

/*
 * Blocks [0, @nbk) of the column at @g, Q6_WORDS2 vectors a block and half
 * (rows 8h..8h + 7): w[4 group + k] the group's dword k, w[64 + group] its
 * scales as the madd operand, w[80 + k] groups 2k and 2k + 1's scales as
 * q6_bias's madd operand
 */
#define Q6_WORDS2 88

static void q6_unpack(const uint8_t *g, size_t nbk, __m256i *w)
{
	const size_t col = PACK_ROWS * sizeof(struct block_q6_K);
	size_t b;
	int h, hh, e, dw, grp;

	for (b = 0; b < nbk; b++, g += col)
		for (h = 0; h < 2; h++, w += Q6_WORDS2) {
			for (hh = 0; hh < 2; hh++)
				UNROLL
				for (e = 0; e < 4; e++)
					UNROLL
					for (dw = 0; dw < 8; dw++)	/* group 8hh + 2e + dw / 4 */
						w[4 * (8 * hh + 2 * e) + dw] = q6_weights(g, h, hh, e, dw);
			for (grp = 0; grp < 16; grp++) {
				__m128i s8 = _mm_loadu_si128((const __m128i *)(g + 16 * 192 + 16 * grp));

				w[64 + grp] = pair16(s8, s8, h, true);
			}
			q6_bias_pairs(g + 16 * 192, h, w + 80);
		}
}

/*
 * @T (1..4) activations times the @nbk blocks unpacked in @w, whose scales
 * and d are in the column at @g; activation t's blocks at act + t * as, its
 * float sums at out + t * os (@fresh: they start at 0).
 */
static inline __attribute__((always_inline)) void
q6_stretch(const int T, size_t nbk, const __m256i *w, const uint8_t *g, const uint8_t *act,
	   size_t as, float *out, size_t os, bool fresh)
{
	const size_t col = PACK_ROWS * sizeof(struct block_q6_K);
	size_t b;
	int h, t, grp;

	for (b = 0; b < nbk; b++, g += col)
		for (h = 0; h < 2; h++, w += Q6_WORDS2) {
			const __m256 d = load8h(g + 16 * 208 + 16 * h);
			__m256i isum[4];

			UNROLL
			for (t = 0; t < T; t++)
				isum[t] = _mm256_setzero_si256();
			for (grp = 0; grp < 16; grp++) {
				const __m256i sc16 = w[64 + grp];
				const __m256i w0 = w[4 * grp], w1 = w[4 * grp + 1];
				const __m256i w2 = w[4 * grp + 2], w3 = w[4 * grp + 3];

				UNROLL
				for (t = 0; t < T; t++) {
					const int8_t *y = ((const struct block_q8_K *)(act + t * as) + b)->qs + 16 * grp;
					__m256i pa = _mm256_add_epi16(_mm256_maddubs_epi16(w0, bcast(y)),
								      _mm256_maddubs_epi16(w1, bcast(y + 4)));
					__m256i pb = _mm256_add_epi16(_mm256_maddubs_epi16(w2, bcast(y + 8)),
								      _mm256_maddubs_epi16(w3, bcast(y + 12)));

					isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(
						_mm256_madd_epi16(pa, sc16), _mm256_madd_epi16(pb, sc16)));
					IN_REG(isum[t]);
				}
			}
			UNROLL
			for (t = 0; t < T; t++) {
				const struct block_q8_K *a = (const struct block_q8_K *)(act + t * as) + b;
				const __m256i tot = _mm256_sub_epi32(isum[t], q6_bias_w(w + 80, a));
				float *o = out + t * os + 8 * h;
				const __m256 acc = fresh && !b ? _mm256_setzero_ps() : _mm256_loadu_ps(o);

				_mm256_storeu_ps(o, _mm256_add_ps(acc, _mm256_mul_ps(
					_mm256_mul_ps(_mm256_set1_ps(a->d), d), _mm256_cvtepi32_ps(tot))));
			}
		}
}

/* nt activations, 4 at a time: @tile(T, ...) with T a constant each time. */
#define GEMM(name, TILE)							\
static void name(size_t n, const void *group, const void *act, size_t as,	\
		 const float *side, size_t ss, size_t nt, float *out, size_t os) \
{										\
	const uint8_t *a = act;							\
	size_t t;								\
										\
	(void)side, (void)ss;							\
	for (t = 0; t + 4 <= nt; t += 4)					\
		TILE(4, a + t * as, side + t * ss, out + t * os);		\
	a += t * as, side += t * ss, out += t * os;				\
	switch (nt - t) {							\
	case 3: TILE(3, a, side, out); break;					\
	case 2: TILE(2, a, side, out); break;					\
	case 1: TILE(1, a, side, out); break;					\
	default: break;								\
	}									\
}

#define TILE_Q4_0(T, a_, s_, o_) gemm_tile(K_Q4_0, T, n / QK, group, a_, as, s_, ss, o_, os)
#define TILE_Q4_1(T, a_, s_, o_) gemm_tile(K_Q4_1, T, n / QK, group, a_, as, s_, ss, o_, os)
#define TILE_Q5_0(T, a_, s_, o_) gemm_tile(K_Q5_0, T, n / QK, group, a_, as, s_, ss, o_, os)
#define TILE_Q5_1(T, a_, s_, o_) gemm_tile(K_Q5_1, T, n / QK, group, a_, as, s_, ss, o_, os)
#define TILE_Q8_0(T, a_, s_, o_) gemm_tile(K_Q8_0, T, n / QK, group, a_, as, s_, ss, o_, os)
#define TILE_Q4_K(T, a_, s_, o_) gemm_k45_tile(false, T, n / QK_K, group, a_, as, o_, os)
#define TILE_Q5_K(T, a_, s_, o_) gemm_k45_tile(true, T, n / QK_K, group, a_, as, o_, os)
#define TILE_Q6_K(T, a_, s_, o_) gemm_q6_K_tile(T, n / QK_K, group, a_, as, o_, os)

GEMM(gemm_q4_0_tiles, TILE_Q4_0)
GEMM(gemm_q4_1_tiles, TILE_Q4_1)
GEMM(gemm_q5_0_tiles, TILE_Q5_0)
GEMM(gemm_q5_1_tiles, TILE_Q5_1)
GEMM(gemm_q8_0_tiles, TILE_Q8_0)

/* @name: the 32-element type @kind's GEMM: its tiles (@tiles), or stretches for a prompt */
#define GEMM_Q32(name, kind, tiles)						\
static void name(size_t n, const void *group, const void *act, size_t as,	\
		 const float *side, size_t ss, size_t nt, float *out, size_t os) \
{										\
	if (nt < STRETCH_MIN)							\
		tiles(n, group, act, as, side, ss, nt, out, os);		\
	else									\
		gemm_q32_stretched(kind, n / QK, group, act, as, side, ss, nt, out, os); \
}

GEMM_Q32(gemm_q4_0, K_Q4_0, gemm_q4_0_tiles)
GEMM_Q32(gemm_q4_1, K_Q4_1, gemm_q4_1_tiles)
GEMM_Q32(gemm_q5_0, K_Q5_0, gemm_q5_0_tiles)
GEMM_Q32(gemm_q5_1, K_Q5_1, gemm_q5_1_tiles)
GEMM_Q32(gemm_q8_0, K_Q8_0, gemm_q8_0_tiles)
GEMM(gemm_q4_K_tiles, TILE_Q4_K)
GEMM(gemm_q5_K_tiles, TILE_Q5_K)
GEMM(gemm_q6_K_tiles, TILE_Q6_K)

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
	__m256i w[STRETCH_BLOCKS * (words)];					\
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
		for (t = 0; t + 4 <= nt; t += 4)				\
			stretch(4, nbk, w, g, a + t * as, as, out + t * os, os, !b0); \
		switch (nt - t) {						\
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

GEMM_STRETCHED(gemm_q4_K, gemm_q4_K_tiles, k45_col(false), 2 * K45_WORDS, Q4_UNPACK, Q4_STRETCH)
GEMM_STRETCHED(gemm_q5_K, gemm_q5_K_tiles, k45_col(true), 2 * K45_WORDS, Q5_UNPACK, Q5_STRETCH)
GEMM_STRETCHED(gemm_q6_K, gemm_q6_K_tiles, PACK_ROWS * sizeof(struct block_q6_K), 2 * Q6_WORDS2, q6_unpack,
	       q6_stretch)

gemm16_fn quant_gemm16_avx2(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0: return gemm_q4_0;
	case GGML_TYPE_Q4_1: return gemm_q4_1;
	case GGML_TYPE_Q5_0: return gemm_q5_0;
	case GGML_TYPE_Q5_1: return gemm_q5_1;
	case GGML_TYPE_Q8_0: return gemm_q8_0;
	case GGML_TYPE_Q4_K: return gemm_q4_K;
	case GGML_TYPE_Q5_K: return gemm_q5_K;
	case GGML_TYPE_Q6_K: return gemm_q6_K;
	default: return NULL;
	}
}

vec_dot_fn quant_vec_dot_avx2(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0:
		return dot_q4_0;
	case GGML_TYPE_Q4_1:
		return dot_q4_1;
	case GGML_TYPE_Q5_0:
		return dot_q5_0;
	case GGML_TYPE_Q5_1:
		return dot_q5_1;
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
