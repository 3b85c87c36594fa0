/* SPDX-License-Identifier: MIT */
/*
 * Pieces the AVX2 and AVX-512 kernels share (both files are built with
 * the AVX2 flags): the 32-element types' packed columns, decoding K-quant
 * scales, their sums against Q8_K's group sums, and Q6_K's six-bit quants
 * as bytes.
 */
#ifndef PINFER_QUANT_SIMD_H
#define PINFER_QUANT_SIMD_H

#include <immintrin.h>
#include <stddef.h>

#include "quant.h"

/*
 * The 32-element types' GEMM (both ISAs): which type, and where its fields
 * lie in a packed block column (quant.h: 16 times their offset in a block).
 * Q4_1 and Q5_1 have minimums (and Q8_1 activations), Q5_0 and Q5_1 fifth
 * bits.
 */
enum kind { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

static inline bool kind_mins(enum kind kind)
{
	return kind == K_Q4_1 || kind == K_Q5_1;
}

static inline bool kind_five(enum kind kind)
{
	return kind == K_Q5_0 || kind == K_Q5_1;
}

/* Bytes of a packed block column; offsets in it of the quants and of Q5's qh. */
static inline size_t kind_col(enum kind kind)
{
	switch (kind) {
	case K_Q4_0: return PACK_ROWS * sizeof(struct block_q4_0);
	case K_Q4_1: return PACK_ROWS * sizeof(struct block_q4_1);
	case K_Q5_0: return PACK_ROWS * sizeof(struct block_q5_0);
	case K_Q5_1: return PACK_ROWS * sizeof(struct block_q5_1);
	default: return PACK_ROWS * sizeof(struct block_q8_0);
	}
}

static inline size_t kind_qs(enum kind kind)
{
	switch (kind) {
	case K_Q4_0: return PACK_ROWS * offsetof(struct block_q4_0, qs);
	case K_Q4_1: return PACK_ROWS * offsetof(struct block_q4_1, qs);
	case K_Q5_0: return PACK_ROWS * offsetof(struct block_q5_0, qs);
	case K_Q5_1: return PACK_ROWS * offsetof(struct block_q5_1, qs);
	default: return PACK_ROWS * offsetof(struct block_q8_0, qs);
	}
}

static inline size_t kind_qh(enum kind kind)
{
	return PACK_ROWS * (kind == K_Q5_0 ? offsetof(struct block_q5_0, qh) :
			    offsetof(struct block_q5_1, qh));
}

/* The activations' blocks for @kind (Q8_1 with the mins' sums, else Q8_0): bytes, and their quants' offset */
static inline size_t kind_ablk(enum kind kind)
{
	return kind_mins(kind) ? sizeof(struct block_q8_1) : sizeof(struct block_q8_0);
}

static inline size_t kind_aqs(enum kind kind)
{
	return kind_mins(kind) ? offsetof(struct block_q8_1, qs) : offsetof(struct block_q8_0, qs);
}

/*
 * Packed Q5_0/Q5_1 quants' dword j holds elements 4j..4j+3 of each row
 * (16 + 4(j - 4).. for j >= 4: the high nibbles), whose fifth bits are
 * bits 4j..4j+3 of the row's qh dword. A shuffle by q5_spread(j) copies
 * the qh byte that holds them (j / 2) to the 4 bytes of each dword (of a
 * 128-bit lane's 4), where byte k is tested against q5_bit(j)'s byte k
 * (bit 4 (j % 2) + k).
 */
static inline __m128i q5_spread(int j)
{
	const char by = (char)(j / 2);

	return _mm_setr_epi8(by, by, by, by, 4 + by, 4 + by, 4 + by, 4 + by,
			     8 + by, 8 + by, 8 + by, 8 + by, 12 + by, 12 + by, 12 + by, 12 + by);
}

static inline int q5_bit(int j)
{
	return j % 2 ? (int)0x80402010 : 0x08040201;
}

/* Q4_K's and (@five) Q5_K's packed block column: its bytes, and where its quants and qh start. */
static inline size_t k45_col(bool five)
{
	return PACK_ROWS * (five ? sizeof(struct block_q5_K) : sizeof(struct block_q4_K));
}

static inline size_t k45_qs(bool five)
{
	return PACK_ROWS * (five ? offsetof(struct block_q5_K, qs) : offsetof(struct block_q4_K, qs));
}

static inline size_t k45_qh(void)
{
	return PACK_ROWS * offsetof(struct block_q5_K, qh);
}

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
 * 32 bytes of Q6_K's low bits @l0 and @l1 (ql: quarters e and e + 2 in
 * each byte's two nibbles) and high bits @qh (all four quarters) as
 * unsigned bytes 0..63: q[e] is quarter e.
 */
static inline void q6k_split(__m256i l0, __m256i l1, __m256i qh, __m256i q[4])
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);

	q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
			       _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
	q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
			       _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
	q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
			       _mm256_and_si256(qh, m2));
	q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
			       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
}

/*
 * Half @h (128 elements) of a Q6_K super-block as unsigned bytes 0..63:
 * q[k] holds elements 32k..32k+31 of the half (groups 2k and 2k+1).
 */
static inline void q6k_unpack(const struct block_q6_K *w, int h, __m256i q[4])
{
	q6k_split(_mm256_loadu_si256((const __m256i *)(w->ql + 64 * h)),
		  _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32)),
		  _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h)), q);
}

/*
 * Generation (one activation) reads each weight once from memory, and a
 * kernel busy with its arithmetic keeps too few loads in flight for the
 * hardware's prefetchers to stream at a core's share of the bandwidth:
 * bench/kernels, one thread, AVX2 Q4_K 24 GB/s in L2 but 11 from memory
 * where a read loop gets 17.5, as if the two times added. Q6_K's column,
 * read as two streams, was worse: 8 GB/s. So each tile of one to four
 * activations (generation, and the server's batches of a few sequences:
 * from memory 2 and 4 activations gained 20-55% too; more were not
 * tried) asks for the column of @bytes that starts at least
 * PREFETCH_AHEAD past @col, the one it reads (at least the next one:
 * nearer, this column's own loads have already missed), a share of its
 * lines at each of @n steps (step @i), and each line PREFETCH_L2 further
 * on into L2 only. A burst of the whole column at once helped nothing, nor
 * did a further first prefetch alone (4 KiB: 5-10% less), which holds an
 * L1 fill buffer for all of a miss to memory; the second, into L2, keeps
 * the lines coming. It was worth 5-25%: bench/kernels -t 1 -k 2048 -s 256,
 * two copies at once (one a core, as generation runs), their GB/s from
 * memory against their read loops' (about 41 together) went from 80-90%
 * to 92-97% for every type and both ISAs but AVX2 Q6_K (74% to 84%) and
 * AVX-512 Q4_K (80%; 97% once its steps were evened out, there); one
 * copy alone from 17-21 GB/s to 19-22.6 against 22-23. 2 KiB beyond the
 * first did a little less, 4 KiB as well but AVX-512 Q4_K (worse), 6 and
 * 8 KiB less. Past the end of a matrix is harmless.
 *
 * always_inline: a prefetch has no side effects in GCC's eyes, and in the
 * big tile functions its interprocedural analysis (ipa-pure-const and
 * ipa-modref: with -fno-ipa-pure-const -fno-ipa-modref they stay) found
 * this function free of them and deleted its calls, whose result nobody
 * uses, before it came to inline them. Silently: an earlier measurement of
 * these prefetches there measured nothing.
 */
#define PREFETCH_AHEAD 2048
#define PREFETCH_L2 3072

static inline __attribute__((always_inline)) void
prefetch_share(const uint8_t *col, size_t bytes, int i, int n)
{
	const uint8_t *p = col + (bytes > PREFETCH_AHEAD ? bytes : PREFETCH_AHEAD);
	const int lines = (int)((bytes + 63) / 64);
	const int per = (lines + n - 1) / n;	/* constants, inlined */
	int l;

	for (l = 0; l < per && i * per + l < lines; l++) {
		_mm_prefetch((const char *)p + 64 * (i * per + l), _MM_HINT_T0);
		_mm_prefetch((const char *)p + PREFETCH_L2 + 64 * (i * per + l), _MM_HINT_T2);
	}
}

/*
 * The packed layout's Q4_K scales (byte i of 16 rows at s + 16 i): sc[j]
 * and m[j] lane r = row r's 6-bit scale and min of sub-block j.
 */
static inline void k4_scales16(const uint8_t *s, __m128i sc[8], __m128i m[8])
{
	const __m128i m6 = _mm_set1_epi8(63), m4 = _mm_set1_epi8(0x0f);
	const __m128i top = _mm_set1_epi8((char)0xc0);
	__m128i q[12];
	int j;

	for (j = 0; j < 12; j++)
		q[j] = _mm_loadu_si128((const __m128i *)(s + 16 * j));
	for (j = 0; j < 4; j++) {	/* (q >> 6) << 4 = (q & 0xc0) >> 2 */
		sc[j] = _mm_and_si128(q[j], m6);
		m[j] = _mm_and_si128(q[j + 4], m6);
		sc[j + 4] = _mm_or_si128(_mm_and_si128(q[j + 8], m4),
					 _mm_srli_epi16(_mm_and_si128(q[j], top), 2));
		m[j + 4] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(q[j + 8], 4), m4),
					_mm_srli_epi16(_mm_and_si128(q[j + 4], top), 2));
	}
}

/*
 * The K-quant GEMMs' prompt path (both ISAs, GEMM_STRETCHED): for
 * STRETCH_MIN activations or more, a group's quants are unpacked
 * STRETCH_BLOCKS blocks at a time once for all of them (16 to 22 KiB of
 * vectors, which stay in L1 with a pass's activations) and then
 * multiplied with each; fewer take the tiles, which unpack for every pass.
 */
#define STRETCH_BLOCKS 4
#define STRETCH_MIN 16

/* @lo and @hi (within int16) as the int16 pair of a dword */
static inline int i16_pair(int lo, int hi)
{
	return (int)(((uint32_t)(uint16_t)hi << 16) | (uint16_t)lo);
}

/* The sum of a Q8_K block's 32 activations of Q4_K sub-block @j (within int16) */
static inline int k4_bsum(const struct block_q8_K *a, int j)
{
	return a->bsums[2 * j] + a->bsums[2 * j + 1];
}

/*
 * Rows 8h..8h+7 of bytes @x (lane r of the 16) and @y side by side as the
 * int16 pairs (x, y) of 8 dwords, the bytes unsigned or (@sgn) signed: the
 * other operand of a madd_epi16 by bsum_pair().
 */
static inline __m256i pair16(__m128i x, __m128i y, int h, bool sgn)
{
	__m128i v = h ? _mm_unpackhi_epi8(x, y) : _mm_unpacklo_epi8(x, y);

	return sgn ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v);
}

#endif
