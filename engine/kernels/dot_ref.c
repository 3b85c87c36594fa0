// SPDX-License-Identifier: MIT
/*
 * Reference dot products of a weight row with a quantized activation row,
 * in plain C: each SIMD kernel is tested against these, bit for bit where
 * quant.h says so.
 */
#include "quant.h"


/*
 * ---- dot products ------------------------------------------------------------
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: in the order quant.h states, which every
 * kernel keeps (dw * da is exact: two fp16 values).
 */

/* A 32-element block's integer quants (offset removed for Q4_0, Q5_0), its d and m (0 if none). */
static void block_ints(uint32_t type, const uint8_t *blk, int q[QK], fp16_t *d, fp16_t *m)
{
	int j;

	*m = 0;
	switch (type) {
	case GGML_TYPE_Q4_0: {
		const struct block_q4_0 *b = (const struct block_q4_0 *)blk;

		for (j = 0; j < QK / 2; j++) {
			q[j] = (b->qs[j] & 0xf) - 8;
			q[j + QK / 2] = (b->qs[j] >> 4) - 8;
		}
		*d = b->d;
		break;
	}
	case GGML_TYPE_Q4_1: {
		const struct block_q4_1 *b = (const struct block_q4_1 *)blk;

		for (j = 0; j < QK / 2; j++) {
			q[j] = b->qs[j] & 0xf;
			q[j + QK / 2] = b->qs[j] >> 4;
		}
		*d = b->d;
		*m = b->m;
		break;
	}
	case GGML_TYPE_Q5_0: {
		const struct block_q5_0 *b = (const struct block_q5_0 *)blk;
		uint32_t h = q5_high_bits(b->qh);

		for (j = 0; j < QK; j++)
			q[j] = q5_quant(b->qs, h, j) - 16;
		*d = b->d;
		break;
	}
	case GGML_TYPE_Q5_1: {
		const struct block_q5_1 *b = (const struct block_q5_1 *)blk;
		uint32_t h = q5_high_bits(b->qh);

		for (j = 0; j < QK; j++)
			q[j] = q5_quant(b->qs, h, j);
		*d = b->d;
		*m = b->m;
		break;
	}
	default: {	/* Q8_0 */
		const struct block_q8_0 *b = (const struct block_q8_0 *)blk;

		for (j = 0; j < QK; j++)
			q[j] = b->qs[j];
		*d = b->d;
	}
	}
}

/* With Q8_0 activations (Q4_0, Q5_0, Q8_0) or Q8_1 ones (Q4_1, Q5_1: their m times the block's sum). */
static float dot_32(uint32_t type, size_t nb, const uint8_t *w, const void *act)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	bool q8_1 = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
	float sum = 0;
	size_t i;

	for (i = 0; i < nb; i++, w += ti->block_bytes) {
		const struct block_q8_0 *a0 = (const struct block_q8_0 *)act + i;
		const struct block_q8_1 *a1 = (const struct block_q8_1 *)act + i;
		const int8_t *qa = q8_1 ? a1->qs : a0->qs;
		int q[QK], s = 0, j;
		fp16_t d, m;

		block_ints(type, w, q, &d, &m);
		for (j = 0; j < QK; j++)
			s += q[j] * qa[j];
		sum += fp16_to_f32(d) * fp16_to_f32(q8_1 ? a1->d : a0->d) * (float)s;
		if (q8_1)	/* Σ (q d + m) a = d da Σ q qa + m Σ a, and Σ a = s */
			sum += fp16_to_f32(m) * fp16_to_f32(a1->s);
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
	case GGML_TYPE_Q4_1:
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_Q5_1:
	case GGML_TYPE_Q8_0:
		return dot_32(type, n / QK, row, act);
	case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K:
	case GGML_TYPE_Q6_K:
		return dot_k(type, n / QK_K, row, act);
	default:
		return 0;
	}
}
