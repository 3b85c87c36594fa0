// SPDX-License-Identifier: MIT
/*
 * AVX2 dot products (built with -mavx2 -mfma -mf16c; called only when
 * pinfer_cpu() finds them). Integer products per block of 32 are exact
 * (maddubs + madd into int32); blocks are scaled and summed in float.
 */
#include <immintrin.h>

#include "quant.h"

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

static float dot_f32(size_t n, const void *row, const void *act)
{
	const float *w = row, *x = act;
	__m256 acc = _mm256_setzero_ps();
	float tail = 0;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc);
	for (; i < n; i++)
		tail += w[i] * x[i];
	return hsum(acc) + tail;
}

static float dot_f16(size_t n, const void *row, const void *act)
{
	const fp16_t *w = row;
	const float *x = act;
	__m256 acc = _mm256_setzero_ps();
	float tail = 0;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		__m256 wv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i)));

		acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + i), acc);
	}
	for (; i < n; i++)
		tail += _cvtsh_ss(w[i]) * x[i];
	return hsum(acc) + tail;
}

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
	default:
		return NULL;
	}
}
