// SPDX-License-Identifier: MIT
/*
 * The integer GEMM's interleaved layout (quant.h): rows of Q4_0, Q4_1 and
 * Q8_0 rearranged 16 at a time in place, a row read back out of a group,
 * and the per-block floats the GEMM takes beside the activations.
 */
#include <string.h>

#include "quant.h"

bool quant_repackable(uint32_t type)
{
	return type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q8_0;
}

/* Where a group's block column @b, its scales, minimums and quants, start. */
struct col {
	size_t bytes;		/* of a column: 16 blocks */
	size_t mins, quants;	/* offsets in the column */
	unsigned dwords;	/* quant dwords per row */
};

static struct col column(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0:
		return (struct col){ PACK_ROWS * sizeof(struct block_q4_0), 0, 32, 4 };
	case GGML_TYPE_Q4_1:
		return (struct col){ PACK_ROWS * sizeof(struct block_q4_1), 32, 64, 4 };
	default:
		return (struct col){ PACK_ROWS * sizeof(struct block_q8_0), 0, 32, 8 };
	}
}

/* Row r's block @b in the plain layout: its d, m (Q4_1) and quant bytes. */
static void plain_block(uint32_t type, const uint8_t *row, size_t b, const fp16_t **d,
			const fp16_t **m, const uint8_t **qs)
{
	if (type == GGML_TYPE_Q4_0) {
		const struct block_q4_0 *x = (const struct block_q4_0 *)row + b;

		*d = &x->d, *m = NULL, *qs = x->qs;
	} else if (type == GGML_TYPE_Q4_1) {
		const struct block_q4_1 *x = (const struct block_q4_1 *)row + b;

		*d = &x->d, *m = &x->m, *qs = x->qs;
	} else {
		const struct block_q8_0 *x = (const struct block_q8_0 *)row + b;

		*d = &x->d, *m = NULL, *qs = (const uint8_t *)x->qs;
	}
}

void quant_repack16(uint32_t type, void *rows, size_t nb, void *scratch)
{
	struct col c = column(type);
	size_t row_bytes = nb * c.bytes / PACK_ROWS, b;
	uint8_t flip = type == GGML_TYPE_Q8_0 ? 0x80 : 0;
	uint8_t *tmp = scratch, *out = rows;
	unsigned r, j, k;

	memcpy(tmp, rows, PACK_ROWS * row_bytes);
	for (b = 0; b < nb; b++, out += c.bytes)
		for (r = 0; r < PACK_ROWS; r++) {
			const fp16_t *d, *m;
			const uint8_t *qs;

			plain_block(type, tmp + r * row_bytes, b, &d, &m, &qs);
			memcpy(out + 2 * r, d, 2);
			if (m)
				memcpy(out + c.mins + 2 * r, m, 2);
			for (j = 0; j < c.dwords; j++)
				for (k = 0; k < 4; k++)
					out[c.quants + 64 * j + 4 * r + k] = qs[4 * j + k] ^ flip;
		}
}

void dequantize_row_repacked(uint32_t type, const void *group, unsigned r, float *y, size_t n)
{
	struct col c = column(type);
	const uint8_t *col = group;
	size_t b;
	unsigned i;

	for (b = 0; b < n / QK; b++, col += c.bytes, y += QK) {
		const uint8_t *q = col + c.quants + 4 * r;
		fp16_t dh, mh = 0;
		float d, m;

		memcpy(&dh, col + 2 * r, 2);
		if (type == GGML_TYPE_Q4_1)
			memcpy(&mh, col + c.mins + 2 * r, 2);
		d = fp16_to_f32(dh);
		m = fp16_to_f32(mh);
		for (i = 0; i < QK; i++) {
			uint8_t v = q[64 * (i % 16 / 4) + i % 4];

			switch (type) {
			case GGML_TYPE_Q4_0:
				y[i] = ((i < 16 ? v & 0xf : v >> 4) - 8) * d;
				break;
			case GGML_TYPE_Q4_1:
				y[i] = (i < 16 ? v & 0xf : v >> 4) * d + m;
				break;
			default:	/* Q8_0: dword i / 4 */
				y[i] = (int8_t)(q[64 * (i / 4) + i % 4] ^ 0x80) * d;
				break;
			}
		}
	}
}

void quant_act_side(uint32_t type, const void *act, size_t n, float *side)
{
	const struct block_q8_1 *a1 = act;	/* Q4_1 */
	const struct block_q8_0 *a0 = act;	/* Q4_0, Q8_0 */
	float off = type == GGML_TYPE_Q4_0 ? 8 : 128;
	size_t b;
	int i, sum;

	for (b = 0; b < n / QK; b++, side += 2) {
		if (type == GGML_TYPE_Q4_1) {
			side[0] = fp16_to_f32(a1[b].d);
			side[1] = fp16_to_f32(a1[b].s);
			continue;
		}
		for (i = 0, sum = 0; i < QK; i++)
			sum += a0[b].qs[i];
		side[0] = fp16_to_f32(a0[b].d);
		side[1] = off * (float)sum;
	}
}
