// SPDX-License-Identifier: MIT
/*
 * Reference dot products of a weight row with a quantized activation row,
 * in plain C: each SIMD kernel is tested against these, bit for bit where
 * quant.h says so.
 */
#include "quant.h"


/*
 * ---- dot products ------------------------------------------------------------
 * Q4_0, Q4_1, Q8_0: in the order quant.h states, which every kernel keeps
 * (dw * da is exact: two fp16 values).
 */

static float dot_q4_0(size_t nb, const struct block_q4_0 *w, const struct block_q8_0 *a)
{
	float sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++) {
		int s = 0;

		for (j = 0; j < QK / 2; j++)
			s += ((w[i].qs[j] & 0xf) - 8) * a[i].qs[j] +
			     ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + QK / 2];
		sum += fp16_to_f32(w[i].d) * fp16_to_f32(a[i].d) * (float)s;
	}
	return sum;
}

static float dot_q4_1(size_t nb, const struct block_q4_1 *w, const struct block_q8_1 *a)
{
	float sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++) {
		int s = 0;

		for (j = 0; j < QK / 2; j++)
			s += (w[i].qs[j] & 0xf) * a[i].qs[j] +
			     (w[i].qs[j] >> 4) * a[i].qs[j + QK / 2];
		/* Σ (q d + m) a = d da Σ q qa + m Σ a, and Σ a = s */
		sum += fp16_to_f32(w[i].d) * fp16_to_f32(a[i].d) * (float)s;
		sum += fp16_to_f32(w[i].m) * fp16_to_f32(a[i].s);
	}
	return sum;
}

static float dot_q8_0(size_t nb, const struct block_q8_0 *w, const struct block_q8_0 *a)
{
	float sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++) {
		int s = 0;

		for (j = 0; j < QK; j++)
			s += w[i].qs[j] * a[i].qs[j];
		sum += fp16_to_f32(w[i].d) * fp16_to_f32(a[i].d) * (float)s;
	}
	return sum;
}

/* K-quants: dequantize a super-block of weights, multiply by the activations. */
static float dot_k(uint32_t type, size_t nb, const uint8_t *w, const struct block_q8_K *a)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	float y[QK_K], sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++, w += ti->block_bytes) {
		float s = 0;

		dequantize_row_ref(type, w, y, QK_K);
		for (j = 0; j < QK_K; j++)
			s += y[j] * a[i].qs[j];
		sum += s * a[i].d;
	}
	return sum;
}

float vec_dot_ref(uint32_t type, size_t n, const void *row, const void *act)
{
	const float *x = act;
	const uint16_t *h = row;
	float sum = 0;
	size_t i;

	switch (type) {
	case GGML_TYPE_F32:
		for (i = 0; i < n; i++)
			sum += ((const float *)row)[i] * x[i];
		return sum;
	case GGML_TYPE_F16:
		for (i = 0; i < n; i++)
			sum += fp16_to_f32(h[i]) * x[i];
		return sum;
	case GGML_TYPE_BF16:
		for (i = 0; i < n; i++)
			sum += bf16_to_f32(h[i]) * x[i];
		return sum;
	case GGML_TYPE_Q4_0:
		return dot_q4_0(n / QK, row, act);
	case GGML_TYPE_Q4_1:
		return dot_q4_1(n / QK, row, act);
	case GGML_TYPE_Q8_0:
		return dot_q8_0(n / QK, row, act);
	case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K:
	case GGML_TYPE_Q6_K:
		return dot_k(type, n / QK_K, row, act);
	default:
		return 0;
	}
}
