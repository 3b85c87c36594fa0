// SPDX-License-Identifier: MIT
/*
 * The GEMM's interleaved layout (quant.h): rows of Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0, Q4_K, Q5_K and Q6_K rearranged 16 at a time in place, a row read
 * back out of a group, and the per-block floats the GEMM takes beside the
 * activations.
 *
 * A block is a run of fields (scales, quants), each cut into units of 1, 2
 * or 4 bytes; in a group's block column, field f of the 16 rows starts at
 * 16 times its offset in the block, and unit j of row r lies at
 * 16 u j + u r within it: the 16 rows' unit j side by side. One table per
 * type says it all; packing and unpacking walk the same table.
 */
#include <string.h>

#include "quant.h"

struct field {
	unsigned short off, len;	/* in the plain block */
	unsigned char unit;		/* bytes kept together */
	unsigned char flip;		/* xor'ed into each byte (Q8_0's signs) */
};

struct layout {
	unsigned nf;
	struct field f[5];
};

static const struct layout *layout_of(uint32_t type)
{
	static const struct layout q4_0 = { 2, { { 0, 2, 2, 0 }, { 2, 16, 4, 0 } } },
		q4_1 = { 3, { { 0, 2, 2, 0 }, { 2, 2, 2, 0 }, { 4, 16, 4, 0 } } },
		q5_0 = { 3, { { 0, 2, 2, 0 }, { 2, 4, 4, 0 }, { 6, 16, 4, 0 } } },
		q5_1 = { 4, { { 0, 2, 2, 0 }, { 2, 2, 2, 0 }, { 4, 4, 4, 0 }, { 8, 16, 4, 0 } } },
		q8_0 = { 2, { { 0, 2, 2, 0 }, { 2, 32, 4, 0x80 } } },
		q4_K = { 4, { { 0, 2, 2, 0 }, { 2, 2, 2, 0 }, { 4, 12, 1, 0 }, { 16, 128, 4, 0 } } },
		q5_K = { 5, { { 0, 2, 2, 0 }, { 2, 2, 2, 0 }, { 4, 12, 1, 0 }, { 16, 32, 4, 0 },
			      { 48, 128, 4, 0 } } },
		q6_K = { 4, { { 0, 128, 4, 0 }, { 128, 64, 4, 0 }, { 192, 16, 1, 0 },
			      { 208, 2, 2, 0 } } };

	switch (type) {
	case GGML_TYPE_Q4_0: return &q4_0;
	case GGML_TYPE_Q4_1: return &q4_1;
	case GGML_TYPE_Q5_0: return &q5_0;
	case GGML_TYPE_Q5_1: return &q5_1;
	case GGML_TYPE_Q8_0: return &q8_0;
	case GGML_TYPE_Q4_K: return &q4_K;
	case GGML_TYPE_Q5_K: return &q5_K;
	case GGML_TYPE_Q6_K: return &q6_K;
	default: return NULL;
	}
}

bool quant_repackable(uint32_t type)
{
	return layout_of(type) != NULL;
}

/* Plain block @blk of row @r <-> its place in the packed block column @col. */
static void move_block(const struct layout *l, uint8_t *col, uint8_t *blk, unsigned r,
		       bool pack)
{
	unsigned f, j;

	for (f = 0; f < l->nf; f++) {
		const struct field *fd = &l->f[f];
		uint8_t *p = col + PACK_ROWS * fd->off + fd->unit * r, *b = blk + fd->off;

		for (j = 0; j < fd->len; j += fd->unit, p += PACK_ROWS * fd->unit) {
			uint32_t v = 0;	/* a unit, whole: 1, 2 or 4 bytes */

			memcpy(&v, pack ? b + j : p, fd->unit);
			v ^= fd->flip * 0x01010101u;
			memcpy(pack ? p : b + j, &v, fd->unit);
		}
	}
}

void quant_repack16(uint32_t type, void *rows, size_t n, void *scratch)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	const struct layout *l = layout_of(type);
	size_t nb = n / ti->block_elems, row_bytes = nb * ti->block_bytes, b;
	uint8_t *tmp = scratch, *out = rows;
	unsigned r;

	memcpy(tmp, rows, PACK_ROWS * row_bytes);
	for (b = 0; b < nb; b++, out += PACK_ROWS * ti->block_bytes)
		for (r = 0; r < PACK_ROWS; r++)
			move_block(l, out, tmp + r * row_bytes + b * ti->block_bytes, r, true);
}

void dequantize_row_repacked(uint32_t type, const void *group, unsigned r, float *y, size_t n)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	const struct layout *l = layout_of(type);
	uint8_t blk[256];	/* the largest block: Q6_K's 210 bytes */
	const uint8_t *col = group;
	size_t b;

	for (b = 0; b < n / ti->block_elems; b++, col += PACK_ROWS * ti->block_bytes) {
		move_block(l, (uint8_t *)col, blk, r, false);
		dequantize_row_ref(type, blk, y + b * ti->block_elems, ti->block_elems);
	}
}

void quant_act_side(uint32_t type, const void *act, size_t n, float *side)
{
	const struct block_q8_1 *a1 = act;	/* Q4_1, Q5_1 */
	const struct block_q8_0 *a0 = act;	/* Q4_0, Q5_0, Q8_0 */
	float off = type == GGML_TYPE_Q4_0 ? 8 : type == GGML_TYPE_Q5_0 ? 16 : 128;
	size_t b;
	int i, sum;

	if (quant_vec_dot_type(type) == GGML_TYPE_Q8_K)
		return;		/* Q8_K blocks carry their own sums */
	for (b = 0; b < n / QK; b++, side += 2) {
		if (quant_vec_dot_type(type) == GGML_TYPE_Q8_1) {
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
