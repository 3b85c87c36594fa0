// SPDX-License-Identifier: MIT
/*
 * Weights to the types `pinfer quantize` writes (Q8_0, Q4_0, Q4_1, Q4_K,
 * Q6_K, F16), from floats: the GGUF block layouts, scales chosen per block.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

static void quant_q4_0(const float *x, struct block_q4_0 *b, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, x += QK) {
		float amax = 0, max = 0, d, id;

		for (j = 0; j < QK; j++)
			if (fabsf(x[j]) > amax) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		d = max / -8;
		id = d ? 1 / d : 0;
		b[i].d = f32_to_fp16(d);
		for (j = 0; j < QK / 2; j++) {
			int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + QK / 2] * id + 8.5f);

			lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
			hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
			b[i].qs[j] = (uint8_t)(lo | hi << 4);
		}
	}
}

/* Q4_1: m = min, d = (max - min) / 15, q = (x - m) / d in 0..15. */
static void quant_q4_1(const float *x, struct block_q4_1 *b, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, x += QK) {
		float mn = x[0], mx = x[0], d, id;

		for (j = 1; j < QK; j++) {
			mn = x[j] < mn ? x[j] : mn;
			mx = x[j] > mx ? x[j] : mx;
		}
		d = (mx - mn) / 15;
		id = d ? 1 / d : 0;
		b[i].d = f32_to_fp16(d);
		b[i].m = f32_to_fp16(mn);
		for (j = 0; j < QK / 2; j++) {
			int lo = (int)roundf((x[j] - mn) * id), hi = (int)roundf((x[j + QK / 2] - mn) * id);

			lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
			hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
			b[i].qs[j] = (uint8_t)(lo | hi << 4);
		}
	}
}

static int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/*
 * Q4_K: per sub-block of 32, scale (max - min) / 15 and min -min (at
 * least 0), both as 6-bit multiples of the super-block's d and dmin; the
 * elements quantized with the scale and min as rounded. (A plain min-max
 * fit: llama.cpp searches for better ones.)
 */
static void quant_q4_K(const float *x, struct block_q4_K *b, size_t nb)
{
	size_t i;
	int j, l;

	for (i = 0; i < nb; i++, x += QK_K) {
		float scale[8], min[8], maxs = 0, maxm = 0, d, dmin;
		uint8_t sc[8], mn[8], q[QK_K];

		for (j = 0; j < 8; j++) {
			float lo = 0, hi = x[32 * j];

			for (l = 0; l < 32; l++) {
				lo = x[32 * j + l] < lo ? x[32 * j + l] : lo;
				hi = x[32 * j + l] > hi ? x[32 * j + l] : hi;
			}
			scale[j] = (hi - lo) / 15;
			min[j] = -lo;
			maxs = scale[j] > maxs ? scale[j] : maxs;
			maxm = min[j] > maxm ? min[j] : maxm;
		}
		d = maxs / 63;
		dmin = maxm / 63;
		b[i].d = f32_to_fp16(d);
		b[i].dmin = f32_to_fp16(dmin);
		d = fp16_to_f32(b[i].d);
		dmin = fp16_to_f32(b[i].dmin);
		memset(b[i].scales, 0, sizeof(b[i].scales));
		for (j = 0; j < 8; j++) {
			float ds, dm;

			sc[j] = (uint8_t)clampi(d ? (int)lroundf(scale[j] / d) : 0, scale[j] > 0, 63);
			mn[j] = (uint8_t)clampi(dmin ? (int)lroundf(min[j] / dmin) : 0, 0, 63);
			if (j < 4) {
				b[i].scales[j] |= sc[j];
				b[i].scales[j + 4] |= mn[j];
			} else {
				b[i].scales[j + 4] = (uint8_t)((sc[j] & 0xf) | (mn[j] & 0xf) << 4);
				b[i].scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
				b[i].scales[j] |= (uint8_t)((mn[j] >> 4) << 6);
			}
			ds = d * sc[j];
			dm = dmin * mn[j];
			for (l = 0; l < 32; l++)
				q[32 * j + l] = (uint8_t)clampi(ds ? (int)lroundf((x[32 * j + l] + dm) / ds) : 0,
							       0, 15);
		}
		for (j = 0; j < QK_K / 64; j++)	/* low nibbles sub-block 2j, high 2j+1 */
			for (l = 0; l < 32; l++)
				b[i].qs[32 * j + l] = (uint8_t)(q[64 * j + l] | q[64 * j + 32 + l] << 4);
	}
}

/*
 * Q6_K: per sub-block of 16, scale = its signed extreme / -32 as an 8-bit
 * multiple of the super-block's d; elements in -32..31, stored + 32 as
 * four low bits (ql) and two high bits (qh).
 */
static void quant_q6_K(const float *x, struct block_q6_K *b, size_t nb)
{
	size_t i;
	int j, l;

	for (i = 0; i < nb; i++, x += QK_K) {
		float scale[16], maxs = 0, d;
		uint8_t q[QK_K];

		for (j = 0; j < 16; j++) {
			float amax = 0, ext = 0;

			for (l = 0; l < 16; l++)
				if (fabsf(x[16 * j + l]) > amax) {
					amax = fabsf(x[16 * j + l]);
					ext = x[16 * j + l];
				}
			scale[j] = ext / -32;
			maxs = fabsf(scale[j]) > maxs ? fabsf(scale[j]) : maxs;
		}
		d = maxs / 127;
		b[i].d = f32_to_fp16(d);
		d = fp16_to_f32(b[i].d);
		for (j = 0; j < 16; j++) {
			float ds;

			b[i].scales[j] = (int8_t)clampi(d ? (int)lroundf(scale[j] / d) : 0, -128, 127);
			ds = d * b[i].scales[j];
			for (l = 0; l < 16; l++)
				q[16 * j + l] = (uint8_t)(clampi(ds ? (int)lroundf(x[16 * j + l] / ds) : 0,
								 -32, 31) + 32);
		}
		for (j = 0; j < QK_K; j += 128) {
			uint8_t *ql = b[i].ql + j / 2, *qh = b[i].qh + j / 4;
			const uint8_t *L = q + j;

			for (l = 0; l < 32; l++) {
				ql[l] = (uint8_t)((L[l] & 0xf) | (L[l + 64] & 0xf) << 4);
				ql[l + 32] = (uint8_t)((L[l + 32] & 0xf) | (L[l + 96] & 0xf) << 4);
				qh[l] = (uint8_t)((L[l] >> 4) | (L[l + 32] >> 4) << 2 |
						  (L[l + 64] >> 4) << 4 | (L[l + 96] >> 4) << 6);
			}
		}
	}
}

int quantize_row_weight_ref(uint32_t type, const float *x, void *out, size_t n)
{
	fp16_t *h = out;
	size_t i;

	switch (type) {
	case GGML_TYPE_F32:
		memcpy(out, x, n * sizeof(float));
		return 0;
	case GGML_TYPE_F16:
		for (i = 0; i < n; i++)
			h[i] = f32_to_fp16(x[i]);
		return 0;
	case GGML_TYPE_Q8_0:	/* as an activation: round to nearest */
		quantize_row_act_ref(GGML_TYPE_Q8_0, x, out, n);
		return 0;
	case GGML_TYPE_Q4_0:
		quant_q4_0(x, out, n / QK);
		return 0;
	case GGML_TYPE_Q4_1:
		quant_q4_1(x, out, n / QK);
		return 0;
	case GGML_TYPE_Q4_K:
		quant_q4_K(x, out, n / QK_K);
		return 0;
	case GGML_TYPE_Q6_K:
		quant_q6_K(x, out, n / QK_K);
		return 0;
	default:
		return -1;
	}
}
