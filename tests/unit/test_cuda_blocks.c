// SPDX-License-Identifier: MIT
/*
 * The CUDA backend's block arithmetic (engine/cuda/blocks.h), run on the
 * CPU: the functions the kernels call are the same source, built here by
 * the C compiler. For every type the GPU has kernels for, random blocks
 * (every bit pattern of quants and scales) are packed into the device
 * layout, and each packed block's dot product with 8-bit activations must
 * equal the dot of the engine's reference dequantization
 * (dequantize_row_ref) with the dequantized activations. A quant read
 * from the wrong nibble, bit or scale moves a sum by a whole step, far
 * beyond the float rounding allowed here.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/blocks.h"
#include "kernels/quant.h"
#include "../tap.h"

#include "randq.h"

#define N 1024		/* elements per row: 4 super-blocks, 32 blocks */
#define TRIALS 200

static const uint32_t types[] = {
	GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
	GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};

/* The layout's sizes against the engine's table of the file format. */
static void test_layouts(void)
{
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		const struct ggml_type_info *ti = ggml_type_get(types[i]);
		struct pcu_layout l = pcu_layout(types[i]);

		ok(l.elems == ti->block_elems && l.raw == ti->block_bytes && l.qb % 4 == 0 &&
		   l.qb + l.mb >= l.raw && l.qb + l.mb <= l.raw + 2,
		   "%s: device layout of %u elements, %u bytes = %u quant + %u scale bytes",
		   ti->name, l.elems, l.raw, l.qb, l.mb);
	}
	ok(!pcu_layout(GGML_TYPE_F16).elems && !pcu_layout(GGML_TYPE_Q2_K).elems,
	   "no packed layout for F16 or types without a GPU kernel");
}

/* Activations: round(x / d) within half a step, d = max |x| / 127, s = d * sum. */
static void test_quant_block(void)
{
	float x[PCU_QA], ds[2];
	int8_t q[PCU_QA];
	int t, i, bad = 0, sum;

	for (t = 0; t < 1000; t++) {
		float amax = 0, scale = t % 3 ? 1.0f : 1e-3f;

		for (i = 0; i < PCU_QA; i++) {
			x[i] = uniform(-scale, scale);
			amax = fmaxf(amax, fabsf(x[i]));
		}
		pcu_quant_block(x, q, ds);
		for (i = 0, sum = 0; i < PCU_QA; i++) {
			sum += q[i];
			if (q[i] < -127 || fabsf(q[i] * ds[0] - x[i]) > 0.5001f * ds[0])
				bad++;
		}
		if (ds[0] != amax / 127 || ds[1] != ds[0] * (float)sum)
			bad++;
	}
	pcu_quant_block((const float[PCU_QA]){ 0 }, q, ds);
	ok(!bad && ds[0] == 0 && ds[1] == 0 && !q[0] && !q[31],
	   "activation blocks: within half a step of x, d = max|x|/127, s = d sum(q); zeros stay zero");
}

static void test_dots(uint32_t type)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	struct pcu_layout l = pcu_layout(type);
	size_t nb = N / l.elems, b, i;
	uint8_t *raw = malloc(nb * l.raw), *qs = malloc(nb * l.qb), *meta = malloc(nb * l.mb);
	float *w = malloc(N * sizeof(float)), x[N], ds[N / PCU_QA * 2];
	int8_t q[N];
	double worst = 0, wworst = 0;
	int t;

	for (t = 0; t < TRIALS; t++) {
		double ref = 0, mag = 0;
		float got = 0;

		random_row(type, raw, N);
		for (b = 0; b < nb; b++)
			pcu_pack_block(type, raw + b * l.raw, qs + b * l.qb, meta + b * l.mb);
		for (i = 0; i < N; i++)
			x[i] = uniform(-1, 1) * (t % 2 ? 1.0f : 40.0f);
		for (i = 0; i < N / PCU_QA; i++)
			pcu_quant_block(x + i * PCU_QA, q + i * PCU_QA, ds + 2 * i);
		dequantize_row_ref(type, raw, w, N);
		for (i = 0; i < N; i++) {
			double a = (double)q[i] * ds[2 * (i / PCU_QA)];

			ref += (double)w[i] * a;
			mag += fabs((double)w[i] * a);
		}
		for (b = 0; b < nb; b++)
			for (i = 0; i < l.elems / PCU_QA; i++) {
				size_t e = b * l.elems + i * PCU_QA;

				got += pcu_dot_sub(type, qs + b * l.qb, meta + b * l.mb, (int)i, q + e,
						   ds + 2 * (e / PCU_QA));
			}
		if (mag > 0 && fabs(got - ref) / mag > worst)
			worst = fabs(got - ref) / mag;
		for (b = 0; b < nb; b++)	/* the reference mode's weights */
			for (i = 0; i < l.elems / PCU_QA; i++) {
				float y[PCU_QA];
				size_t k, e = b * l.elems + i * PCU_QA;

				pcu_dequant_sub(type, qs + b * l.qb, meta + b * l.mb, (int)i, y);
				for (k = 0; k < PCU_QA; k++)
					if (fabs((double)y[k] - w[e + k]) > wworst * (fabs(w[e + k]) + 1e-30))
						wworst = fabs((double)y[k] - w[e + k]) / (fabs(w[e + k]) + 1e-30);
			}
	}
	ok(worst < 2e-6, "%s: %d rows of %d, packed block dots = reference dequantization (worst error %.2g of sum |w a|)",
	   ti->name, TRIALS, N, worst);
	ok(wworst < 1e-6, "%s: packed blocks dequantized = reference dequantization (worst relative error %.2g)",
	   ti->name, wworst);
	free(raw);
	free(qs);
	free(meta);
	free(w);
}

int main(void)
{
	size_t i;

	test_layouts();
	test_quant_block();
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		test_dots(types[i]);
	return tap_end();
}
