// SPDX-License-Identifier: MIT
/*
 * Activations to the 8-bit types the dot products take (Q8_0, Q8_1,
 * Q8_K), in plain C: the reference the SIMD quantizers match bit for bit.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

static float absmax(const float *x, size_t n)
{
	float m = 0;
	size_t i;

	for (i = 0; i < n; i++)
		m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
	return m;
}

/* 32 values -> qs and their scale d = absmax / 127 (*dh as fp16); Σ qs. */
static int quant_block8(const float *x, fp16_t *dh, int8_t *qs, float *d_out)
{
	float d = absmax(x, QK) / 127, id = d ? 1 / d : 0;
	int j, sum = 0;

	*dh = f32_to_fp16(d);
	*d_out = d;
	for (j = 0; j < QK; j++) {
		qs[j] = (int8_t)roundf(x[j] * id);
		sum += qs[j];
	}
	return sum;
}

static void quant_q8_0(const float *x, struct block_q8_0 *b, size_t nb)
{
	size_t i;

	float d;

	for (i = 0; i < nb; i++, x += QK)
		quant_block8(x, &b[i].d, b[i].qs, &d);
}

/* Q8_1 adds s = d * Σ qs, which Q4_1's offsets need. */
static void quant_q8_1(const float *x, struct block_q8_1 *b, size_t nb)
{
	size_t i;

	float d;

	for (i = 0; i < nb; i++, x += QK) {
		int sum = quant_block8(x, &b[i].d, b[i].qs, &d);

		b[i].s = f32_to_fp16(d * sum);
	}
}

static void quant_q8_K(const float *x, struct block_q8_K *b, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, x += QK_K) {
		float amax = absmax(x, QK_K), id;

		memset(&b[i], 0, sizeof(b[i]));
		if (!amax)
			continue;
		id = 127 / amax;
		b[i].d = amax / 127;
		for (j = 0; j < QK_K; j++) {
			b[i].qs[j] = (int8_t)roundf(x[j] * id);
			b[i].bsums[j / 16] += b[i].qs[j];
		}
	}
}

/* Q4_0: d = max / -8 (the signed extreme), q = x / d + 8 in 0..15. */
void quantize_row_act_ref(uint32_t type, const float *x, void *out, size_t n)
{
	switch (type) {
	case GGML_TYPE_Q8_0:
		quant_q8_0(x, out, n / QK);
		break;
	case GGML_TYPE_Q8_1:
		quant_q8_1(x, out, n / QK);
		break;
	case GGML_TYPE_Q8_K:
		quant_q8_K(x, out, n / QK_K);
		break;
	default:
		memcpy(out, x, n * sizeof(float));
		break;
	}
}
