/* SPDX-License-Identifier: MIT */
/* Random rows of every tensor type, for the kernel tests. */
#ifndef PINFER_TEST_RANDQ_H
#define PINFER_TEST_RANDQ_H

#include <stdint.h>
#include <string.h>

#include "kernels/quant.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static inline uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static inline float uniform(float lo, float hi)
{
	return lo + (hi - lo) * (next() / 4294967296.0f);
}

/* Random weight blocks of @type with finite, moderate fp16 scales. */
static inline void random_row(uint32_t type, void *row, size_t n)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	size_t nb = n / ti->block_elems, bytes = nb * ti->block_bytes, i;
	uint8_t *p = row;
	float *f = row;
	uint16_t *h = row;

	for (i = 0; i < bytes; i++)
		p[i] = (uint8_t)next();
	for (i = 0; i < nb; i++, p += ti->block_bytes) {
		switch (type) {
		case GGML_TYPE_F32:
			f[i] = uniform(-1, 1);
			break;
		case GGML_TYPE_F16:
			h[i] = f32_to_fp16(uniform(-1, 1));
			break;
		case GGML_TYPE_BF16: {
			float v = uniform(-1, 1);
			uint32_t bits;

			memcpy(&bits, &v, 4);
			h[i] = (uint16_t)(bits >> 16);
			break;
		}
		case GGML_TYPE_Q4_1:
		case GGML_TYPE_Q5_1:
		case GGML_TYPE_Q4_K:
		case GGML_TYPE_Q5_K:
			((fp16_t *)p)[1] = f32_to_fp16(uniform(-0.05f, 0.05f));
			/* fall through */
		case GGML_TYPE_Q4_0:
		case GGML_TYPE_Q5_0:
		case GGML_TYPE_Q8_0:
			((fp16_t *)p)[0] = f32_to_fp16(uniform(-0.05f, 0.05f));
			break;
		case GGML_TYPE_Q6_K:
			((struct block_q6_K *)p)->d = f32_to_fp16(uniform(-0.05f, 0.05f));
			break;
		}
	}
}

#endif
