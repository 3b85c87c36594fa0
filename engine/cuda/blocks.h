/* SPDX-License-Identifier: MIT */
/*
 * The CUDA backend's weight layout and block arithmetic, in C that both
 * nvcc (device and host) and the C compiler build: the same functions run
 * in the kernels and in the CPU tests (tests/unit/test_cuda_blocks.c),
 * which check them against the engine's reference dequantizers.
 *
 * Layout. A GGUF block keeps its scales next to its quants, so its quants
 * sit at 2-byte offsets (Q4_0: 18 bytes, Q8_0: 34, Q6_K: 210) and a GPU
 * thread cannot load them as 32-bit words. On the device a matrix is
 * packed as two arrays, each block's quants in one (qb bytes, a multiple
 * of 4: aligned words) and its scales in the other (mb bytes):
 *
 *	[rows][blocks per row][qb]   then   [rows][blocks per row][mb]
 *
 * the same bytes as in the file, moved, never converted:
 *
 *	type  elems  qb   quants                 mb  scales
 *	Q4_0   32    16   qs                      2  d
 *	Q4_1   32    16   qs                      4  d, m
 *	Q5_0   32    20   qs, qh                  2  d
 *	Q5_1   32    20   qs, qh                  4  d, m
 *	Q8_0   32    32   qs                      2  d
 *	Q4_K  256   128   qs                     16  d, dmin, scales[12]
 *	Q5_K  256   160   qs, qh                 16  d, dmin, scales[12]
 *	Q6_K  256   192   ql, qh                 20  scales[16], d, 2 zero bytes
 *
 * Activations are quantized per 32 elements to int8 (q = round(x / d),
 * d = max |x| / 127) with two floats per block: d and s = d * sum(q).
 * A block's dot product is then integer sums of 4 bytes at a time (dp4a)
 * and a few float products, as the CPU's integer kernels do.
 */
#ifndef PINFER_CUDA_BLOCKS_H
#define PINFER_CUDA_BLOCKS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define PCU_FN static __host__ __device__ __forceinline__
#else
#define PCU_FN static inline
#endif

#define PCU_QA 32	/* activation elements per block (and d, s) */

/* A weight type's blocks on the device; elems 0: no GPU kernel for it. */
struct pcu_layout {
	uint32_t elems;	/* per block */
	uint32_t raw;	/* bytes per block in the file */
	uint32_t qb, mb;	/* packed: quant bytes, scale bytes */
};

/* GGUF (ggml) type numbers, the file format's. */
enum {
	PCU_F32 = 0, PCU_F16 = 1, PCU_Q4_0 = 2, PCU_Q4_1 = 3, PCU_Q5_0 = 6, PCU_Q5_1 = 7,
	PCU_Q8_0 = 8, PCU_Q4_K = 12, PCU_Q5_K = 13, PCU_Q6_K = 14,
};

PCU_FN struct pcu_layout pcu_layout(uint32_t type)
{
	struct pcu_layout l = { 0, 0, 0, 0 };

	switch (type) {
	case PCU_Q4_0: l.elems = 32; l.raw = 18; l.qb = 16; l.mb = 2; break;
	case PCU_Q4_1: l.elems = 32; l.raw = 20; l.qb = 16; l.mb = 4; break;
	case PCU_Q5_0: l.elems = 32; l.raw = 22; l.qb = 20; l.mb = 2; break;
	case PCU_Q5_1: l.elems = 32; l.raw = 24; l.qb = 20; l.mb = 4; break;
	case PCU_Q8_0: l.elems = 32; l.raw = 34; l.qb = 32; l.mb = 2; break;
	case PCU_Q4_K: l.elems = 256; l.raw = 144; l.qb = 128; l.mb = 16; break;
	case PCU_Q5_K: l.elems = 256; l.raw = 176; l.qb = 160; l.mb = 16; break;
	case PCU_Q6_K: l.elems = 256; l.raw = 210; l.qb = 192; l.mb = 20; break;
	default: break;
	}
	return l;
}

/*
 * Device bytes of a @rows x @cols matrix of @type: F16 and F32 rows as they
 * are, quantized ones packed; 0 when there is no kernel for the type or the
 * rows are not whole blocks. The engine's plan and the backend both count
 * with it.
 */
PCU_FN uint64_t pcu_mat_bytes(uint32_t type, uint64_t rows, uint64_t cols)
{
	struct pcu_layout l = pcu_layout(type);

	if (type == PCU_F32 || type == PCU_F16)
		return rows * cols * (type == PCU_F32 ? 4 : 2);
	if (!l.elems || cols % l.elems)
		return 0;
	return rows * (cols / l.elems) * (l.qb + l.mb);
}

/* Bytes of a @rows x @cols matrix of @type in the file: 0 for F16, F32 (not packed). */
PCU_FN uint64_t pcu_raw_bytes(uint32_t type, uint64_t rows, uint64_t cols)
{
	struct pcu_layout l = pcu_layout(type);

	return l.elems ? rows * (cols / l.elems) * l.raw : 0;
}

/* A streamed matrix's room in a ring slot: its device bytes, 256-aligned. */
PCU_FN uint64_t pcu_slot_room(uint32_t type, uint64_t rows, uint64_t cols)
{
	return (pcu_mat_bytes(type, rows, cols) + 255) / 256 * 256;
}

/* fp16 bits to float. */
PCU_FN float pcu_h2f(uint16_t h)
{
#ifdef __CUDA_ARCH__
	return __half2float(__ushort_as_half(h));
#else
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	float f;

	if (exp == 0x1f) {
		bits = sign | 0x7f800000 | man << 13;
	} else if (exp) {
		bits = sign | (exp + 112) << 23 | man << 13;
	} else {
		f = ldexpf((float)man, -24);
		return sign ? -f : f;
	}
	memcpy(&f, &bits, 4);
	return f;
#endif
}

PCU_FN uint16_t pcu_ld16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* A 32-bit word of quants (4-byte aligned on the device). */
PCU_FN int pcu_ld32(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
	return *(const int *)p;
#else
	int v;

	memcpy(&v, p, 4);
	return v;
#endif
}

/* c + the sum of the products of a's and b's four signed bytes. */
PCU_FN int pcu_dp4a(int a, int b, int c)
{
#if defined(__CUDA_ARCH__)
	return __dp4a(a, b, c);
#else
	int i;

	for (i = 0; i < 4; i++)
		c += (int)(int8_t)(a >> 8 * i) * (int)(int8_t)(b >> 8 * i);
	return c;
#endif
}

/*
 * Block @b of a row: its file bytes @raw (of a pcu_layout(type).raw) moved
 * to @qs (qb bytes) and @meta (mb bytes).
 */
PCU_FN void pcu_pack_block(uint32_t type, const uint8_t *raw, uint8_t *qs, uint8_t *meta)
{
	uint32_t i;

	switch (type) {
	case PCU_Q4_0: case PCU_Q8_0:	/* d, qs */
		meta[0] = raw[0]; meta[1] = raw[1];
		for (i = 0; i < (type == PCU_Q4_0 ? 16u : 32u); i++)
			qs[i] = raw[2 + i];
		break;
	case PCU_Q4_1:			/* d, m, qs */
		for (i = 0; i < 4; i++)
			meta[i] = raw[i];
		for (i = 0; i < 16; i++)
			qs[i] = raw[4 + i];
		break;
	case PCU_Q5_0: case PCU_Q5_1: {	/* d, (m,) qh[4], qs[16] */
		uint32_t h = type == PCU_Q5_0 ? 2 : 4;

		for (i = 0; i < h; i++)
			meta[i] = raw[i];
		for (i = 0; i < 16; i++)
			qs[i] = raw[h + 4 + i];
		for (i = 0; i < 4; i++)
			qs[16 + i] = raw[h + i];
		break;
	}
	case PCU_Q4_K: case PCU_Q5_K:	/* d, dmin, scales[12], (qh[32],) qs[128] */
		for (i = 0; i < 16; i++)
			meta[i] = raw[i];
		if (type == PCU_Q4_K) {
			for (i = 0; i < 128; i++)
				qs[i] = raw[16 + i];
		} else {
			for (i = 0; i < 128; i++)
				qs[i] = raw[48 + i];
			for (i = 0; i < 32; i++)
				qs[128 + i] = raw[16 + i];
		}
		break;
	case PCU_Q6_K:			/* ql[128], qh[64], scales[16], d */
		for (i = 0; i < 192; i++)
			qs[i] = raw[i];
		for (i = 0; i < 18; i++)
			meta[i] = raw[192 + i];
		meta[18] = meta[19] = 0;
		break;
	default:
		break;
	}
}

/*
 * Elements 32j..32j+31 of @x (n of them, n a multiple of 32) as int8 @q
 * and their block's (d, s) in @ds: what the device's quantize kernel
 * computes, a warp per block.
 */
PCU_FN void pcu_quant_block(const float *x, int8_t *q, float *ds)
{
	float amax = 0, d, id;
	int i, sum = 0;

	for (i = 0; i < PCU_QA; i++)
		amax = fmaxf(amax, fabsf(x[i]));
	d = amax / 127.0f;
	id = d > 0 ? 1.0f / d : 0.0f;
	for (i = 0; i < PCU_QA; i++) {
		int v = (int)roundf(x[i] * id);

		q[i] = (int8_t)v;
		sum += v;
	}
	ds[0] = d;
	ds[1] = d * (float)sum;
}

/* Sum of 8 words of nibbles at @qs (shifted by @sh, masked) times 32 activations. */
PCU_FN int pcu_dot_nib32(const uint8_t *qs, int sh, const int8_t *a)
{
	int i, sum = 0;

	for (i = 0; i < 8; i++)
		sum = pcu_dp4a((pcu_ld32(qs + 4 * i) >> sh) & 0x0F0F0F0F,
			       pcu_ld32((const uint8_t *)a + 4 * i), sum);
	return sum;
}

/* The qh word @h's four bits from bit @first, each at bit 4 of its byte. */
PCU_FN int pcu_q5_bits(uint32_t h, int first)
{
	return (int)(((h >> first) & 1) << 4 | ((h >> (first + 1)) & 1) << 12 |
		     ((h >> (first + 2)) & 1) << 20 | ((h >> (first + 3)) & 1) << 28);
}

/* Q4_K/Q5_K: sub-block @j's 6-bit scale and min. */
PCU_FN void pcu_scale_min_k4(int j, const uint8_t *s, int *sc, int *m)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*m = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4;
		*m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
	}
}

/*
 * Sub-block @j (32 elements) of a packed block (@qs, @meta) of @type, times
 * the activations @a (32) with block floats @ds: the float dot product.
 * The 32-element types have one sub-block (j = 0); K-quants have eight.
 */
PCU_FN float pcu_dot_sub(uint32_t type, const uint8_t *qs, const uint8_t *meta, int j,
			 const int8_t *a, const float *ds)
{
	int i, sum = 0;

	switch (type) {
	case PCU_Q4_0: case PCU_Q4_1:
		for (i = 0; i < 4; i++) {
			int v = pcu_ld32(qs + 4 * i);

			sum = pcu_dp4a(v & 0x0F0F0F0F, pcu_ld32((const uint8_t *)a + 4 * i), sum);
			sum = pcu_dp4a((v >> 4) & 0x0F0F0F0F,
				       pcu_ld32((const uint8_t *)a + 16 + 4 * i), sum);
		}
		if (type == PCU_Q4_0)
			return pcu_h2f(pcu_ld16(meta)) * (ds[0] * (float)sum - 8 * ds[1]);
		return pcu_h2f(pcu_ld16(meta)) * ds[0] * (float)sum + pcu_h2f(pcu_ld16(meta + 2)) * ds[1];
	case PCU_Q5_0: case PCU_Q5_1: {
		uint32_t h = (uint32_t)pcu_ld32(qs + 16);

		for (i = 0; i < 4; i++) {
			int v = pcu_ld32(qs + 4 * i);

			sum = pcu_dp4a((v & 0x0F0F0F0F) | pcu_q5_bits(h, 4 * i),
				       pcu_ld32((const uint8_t *)a + 4 * i), sum);
			sum = pcu_dp4a(((v >> 4) & 0x0F0F0F0F) | pcu_q5_bits(h, 16 + 4 * i),
				       pcu_ld32((const uint8_t *)a + 16 + 4 * i), sum);
		}
		if (type == PCU_Q5_0)
			return pcu_h2f(pcu_ld16(meta)) * (ds[0] * (float)sum - 16 * ds[1]);
		return pcu_h2f(pcu_ld16(meta)) * ds[0] * (float)sum + pcu_h2f(pcu_ld16(meta + 2)) * ds[1];
	}
	case PCU_Q8_0:
		for (i = 0; i < 8; i++)
			sum = pcu_dp4a(pcu_ld32(qs + 4 * i), pcu_ld32((const uint8_t *)a + 4 * i), sum);
		return pcu_h2f(pcu_ld16(meta)) * ds[0] * (float)sum;
	case PCU_Q4_K: case PCU_Q5_K: {
		int sc, m, c = j / 2, hi = j & 1;

		pcu_scale_min_k4(j, meta + 4, &sc, &m);
		if (type == PCU_Q4_K) {
			sum = pcu_dot_nib32(qs + 32 * c, 4 * hi, a);
		} else {
			for (i = 0; i < 8; i++) {
				int v = (pcu_ld32(qs + 32 * c + 4 * i) >> 4 * hi) & 0x0F0F0F0F;
				int b = (pcu_ld32(qs + 128 + 4 * i) >> (2 * c + hi)) & 0x01010101;

				sum = pcu_dp4a(v | b << 4, pcu_ld32((const uint8_t *)a + 4 * i), sum);
			}
		}
		return pcu_h2f(pcu_ld16(meta)) * (float)sc * ds[0] * (float)sum -
		       pcu_h2f(pcu_ld16(meta + 2)) * (float)m * ds[1];
	}
	case PCU_Q6_K: {
		/* sub-block j: half h, quarter k; ql's nibbles, qh's 2-bit pairs */
		int h = j / 4, k = j % 4, s2[2] = { 0, 0 };
		const uint8_t *ql = qs + 64 * h + 32 * (k & 1), *qh = qs + 128 + 32 * h;
		const int8_t *sc = (const int8_t *)meta + 8 * h + 2 * k;

		for (i = 0; i < 8; i++) {
			int v = ((pcu_ld32(ql + 4 * i) >> 4 * (k >> 1)) & 0x0F0F0F0F) |
				((pcu_ld32(qh + 4 * i) >> 2 * k) & 0x03030303) << 4;

			v = (int)(((uint32_t)v | 0x80808080u) - 0x20202020u) ^ (int)0x80808080u;	/* q - 32 */
			s2[i / 4] = pcu_dp4a(v, pcu_ld32((const uint8_t *)a + 4 * i), s2[i / 4]);
		}
		return pcu_h2f(pcu_ld16(meta + 16)) * ds[0] * (float)(sc[0] * s2[0] + sc[1] * s2[1]);
	}
	default:
		return 0;
	}
}

/*
 * Sub-block @j of a packed block as 32 floats @y: the weights themselves,
 * for the reference mode's float products (and the tests).
 */
PCU_FN void pcu_dequant_sub(uint32_t type, const uint8_t *qs, const uint8_t *meta, int j, float *y)
{
	float d = pcu_h2f(pcu_ld16(meta)), m = 0;
	int i, q[PCU_QA];

	switch (type) {
	case PCU_Q4_0: case PCU_Q4_1: case PCU_Q5_0: case PCU_Q5_1: {
		uint32_t h = type == PCU_Q5_0 || type == PCU_Q5_1 ? (uint32_t)pcu_ld32(qs + 16) : 0;
		int off = type == PCU_Q4_0 ? 8 : type == PCU_Q5_0 ? 16 : 0;

		for (i = 0; i < 16; i++) {
			q[i] = (qs[i] & 0xF) + (int)((h >> i) & 1) * 16 - off;
			q[i + 16] = (qs[i] >> 4) + (int)((h >> (i + 16)) & 1) * 16 - off;
		}
		if (type == PCU_Q4_1 || type == PCU_Q5_1)
			m = pcu_h2f(pcu_ld16(meta + 2));
		break;
	}
	case PCU_Q8_0:
		for (i = 0; i < PCU_QA; i++)
			q[i] = (int8_t)qs[i];
		break;
	case PCU_Q4_K: case PCU_Q5_K: {
		int sc, mn, c = j / 2, hi = j & 1;

		pcu_scale_min_k4(j, meta + 4, &sc, &mn);
		for (i = 0; i < PCU_QA; i++) {
			q[i] = (qs[32 * c + i] >> 4 * hi) & 0xF;
			if (type == PCU_Q5_K)
				q[i] |= ((qs[128 + i] >> (2 * c + hi)) & 1) << 4;
		}
		m = -pcu_h2f(pcu_ld16(meta + 2)) * (float)mn;
		d *= (float)sc;
		break;
	}
	case PCU_Q6_K: {
		int h = j / 4, k = j % 4;
		const uint8_t *ql = qs + 64 * h + 32 * (k & 1), *qh = qs + 128 + 32 * h;
		const int8_t *sc = (const int8_t *)meta + 8 * h + 2 * k;

		d = pcu_h2f(pcu_ld16(meta + 16));
		for (i = 0; i < PCU_QA; i++)
			q[i] = (((ql[i] >> 4 * (k >> 1)) & 0xF) | ((qh[i] >> 2 * k) & 3) << 4) - 32;
		for (i = 0; i < PCU_QA; i++)
			y[i] = d * (float)sc[i / 16] * (float)q[i];
		return;
	}
	default:
		for (i = 0; i < PCU_QA; i++)
			y[i] = 0;
		return;
	}
	for (i = 0; i < PCU_QA; i++)
		y[i] = d * (float)q[i] + m;
}

#endif
