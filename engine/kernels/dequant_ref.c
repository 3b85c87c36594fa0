// SPDX-License-Identifier: MIT
/*
 * Reference dequantizers in plain C: a row of any type the engine takes
 * to floats. Obviously right, not fast; tested against the PyPI gguf
 * package's dequantizers (tests/e2e/test_quant.py).
 */
#include "quant.h"

#include <string.h>

static void dequant_q4_0(const struct block_q4_0 *b, float *y, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, y += QK) {
		float d = fp16_to_f32(b[i].d);

		for (j = 0; j < QK / 2; j++) {
			y[j] = ((b[i].qs[j] & 0xf) - 8) * d;
			y[j + QK / 2] = ((b[i].qs[j] >> 4) - 8) * d;
		}
	}
}

static void dequant_q4_1(const struct block_q4_1 *b, float *y, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, y += QK) {
		float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);

		for (j = 0; j < QK / 2; j++) {
			y[j] = (b[i].qs[j] & 0xf) * d + m;
			y[j + QK / 2] = (b[i].qs[j] >> 4) * d + m;
		}
	}
}

static void dequant_q5_0(const struct block_q5_0 *b, float *y, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, y += QK) {
		float d = fp16_to_f32(b[i].d);
		uint32_t h = q5_high_bits(b[i].qh);

		for (j = 0; j < QK; j++)
			y[j] = (q5_quant(b[i].qs, h, (int)j) - 16) * d;
	}
}

static void dequant_q5_1(const struct block_q5_1 *b, float *y, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, y += QK) {
		float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);
		uint32_t h = q5_high_bits(b[i].qh);

		for (j = 0; j < QK; j++)
			y[j] = q5_quant(b[i].qs, h, (int)j) * d + m;
	}
}

static void dequant_q8_0(const struct block_q8_0 *b, float *y, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, y += QK) {
		float d = fp16_to_f32(b[i].d);

		for (j = 0; j < QK; j++)
			y[j] = b[i].qs[j] * d;
	}
}

/* Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K/Q5_K. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

/*
 * One Q4_K/Q5_K super-block: 8 sub-blocks of 32 with 6-bit scales and mins;
 * Q5_K adds a fifth bit per element from @qh (NULL for Q4_K).
 */
static float *dequant_k45(fp16_t dh, fp16_t dminh, const uint8_t *scales,
			  const uint8_t *q, const uint8_t *qh, float *y)
{
	float d = fp16_to_f32(dh), dmin = fp16_to_f32(dminh);
	uint8_t u1 = 1, u2 = 2;
	int j, l;

	for (j = 0; j < QK_K / 64; j++, q += 32, u1 <<= 2, u2 <<= 2) {
		uint8_t sc, m;
		float d1, m1, d2, m2;

		scale_min_k4(2 * j, scales, &sc, &m);
		d1 = d * sc;
		m1 = dmin * m;
		scale_min_k4(2 * j + 1, scales, &sc, &m);
		d2 = d * sc;
		m2 = dmin * m;
		for (l = 0; l < 32; l++)
			*y++ = d1 * ((q[l] & 0xf) + (qh && (qh[l] & u1) ? 16 : 0)) - m1;
		for (l = 0; l < 32; l++)
			*y++ = d2 * ((q[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - m2;
	}
	return y;
}

static void dequant_q4_K(const struct block_q4_K *b, float *y, size_t nb)
{
	size_t i;

	for (i = 0; i < nb; i++)
		y = dequant_k45(b[i].d, b[i].dmin, b[i].scales, b[i].qs, NULL, y);
}

static void dequant_q5_K(const struct block_q5_K *b, float *y, size_t nb)
{
	size_t i;

	for (i = 0; i < nb; i++)
		y = dequant_k45(b[i].d, b[i].dmin, b[i].scales, b[i].qs, b[i].qh, y);
}

static void dequant_q6_K(const struct block_q6_K *b, float *y, size_t nb)
{
	size_t i;
	int n, l;

	for (i = 0; i < nb; i++) {
		const uint8_t *ql = b[i].ql, *qh = b[i].qh;
		const int8_t *sc = b[i].scales;
		float d = fp16_to_f32(b[i].d);

		for (n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
			for (l = 0; l < 32; l++) {
				int is = l / 16;
				int q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
				int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

				y[l] = d * sc[is] * q1;
				y[l + 32] = d * sc[is + 2] * q2;
				y[l + 64] = d * sc[is + 4] * q3;
				y[l + 96] = d * sc[is + 6] * q4;
			}
		}
	}
}

void dequantize_row_ref(uint32_t type, const void *row, float *y, size_t n)
{
	const uint16_t *h = row;
	size_t i;

	switch (type) {
	case GGML_TYPE_F32:
		memcpy(y, row, n * sizeof(float));
		break;
	case GGML_TYPE_F16:
		for (i = 0; i < n; i++)
			y[i] = fp16_to_f32(h[i]);
		break;
	case GGML_TYPE_BF16:
		for (i = 0; i < n; i++)
			y[i] = bf16_to_f32(h[i]);
		break;
	case GGML_TYPE_Q4_0:
		dequant_q4_0(row, y, n / QK);
		break;
	case GGML_TYPE_Q4_1:
		dequant_q4_1(row, y, n / QK);
		break;
	case GGML_TYPE_Q5_0:
		dequant_q5_0(row, y, n / QK);
		break;
	case GGML_TYPE_Q5_1:
		dequant_q5_1(row, y, n / QK);
		break;
	case GGML_TYPE_Q8_0:
		dequant_q8_0(row, y, n / QK);
		break;
	case GGML_TYPE_Q4_K:
		dequant_q4_K(row, y, n / QK_K);
		break;
	case GGML_TYPE_Q5_K:
		dequant_q5_K(row, y, n / QK_K);
		break;
	case GGML_TYPE_Q6_K:
		dequant_q6_K(row, y, n / QK_K);
		break;
	default:
		memset(y, 0, n * sizeof(float));	/* callers check support first */
		break;
	}
}
