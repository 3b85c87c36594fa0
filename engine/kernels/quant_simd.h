/* SPDX-License-Identifier: MIT */
/*
 * Pieces the AVX2 and AVX-512 kernels share (both files are built with
 * the AVX2 flags): decoding K-quant scales, their sums against Q8_K's
 * group sums, and Q6_K's six-bit quants as bytes.
 */
#ifndef PINFER_QUANT_SIMD_H
#define PINFER_QUANT_SIMD_H

#include <immintrin.h>

#include "quant.h"

/* The 8 6-bit scales and mins of a Q4_K/Q5_K super-block. */
static inline void k4_scales(const uint8_t *q, uint8_t sc[8], uint8_t m[8])
{
	int j;

	for (j = 0; j < 4; j++) {
		sc[j] = q[j] & 63;
		m[j] = q[j + 4] & 63;
		sc[j + 4] = (q[j + 8] & 0xf) | ((q[j] >> 6) << 4);
		m[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
	}
}

/* Σ_j m_j (sum of sub-block j's 32 activations): Q4_K/Q5_K's offsets. */
static inline int k4_min_sum(const uint8_t m[8], const struct block_q8_K *a)
{
	int j, s = 0;

	for (j = 0; j < 8; j++)
		s += m[j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
	return s;
}

/* Σ_g sc_g (sum of group g's 16 activations): Q6_K's offset of 32 comes off it. */
static inline int q6k_bias(const struct block_q6_K *w, const struct block_q8_K *a)
{
	int g, s = 0;

	for (g = 0; g < 16; g++)
		s += w->scales[g] * a->bsums[g];
	return s;
}

/*
 * Half @h (128 elements) of a Q6_K super-block as unsigned bytes 0..63:
 * q[k] holds elements 32k..32k+31 of the half (groups 2k and 2k+1).
 */
static inline void q6k_unpack(const struct block_q6_K *w, int h, __m256i q[4])
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
	__m256i l0 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
	__m256i l1 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
	__m256i qh = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));

	q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
			       _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
	q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
			       _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
	q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
			       _mm256_and_si256(qh, m2));
	q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
			       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
}

#endif
