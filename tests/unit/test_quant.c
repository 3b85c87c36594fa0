// SPDX-License-Identifier: MIT
/*
 * The reference dot products: for every supported type and several row
 * lengths, vec_dot_ref(w, quantize(x)) equals the dot of the dequantized
 * operands (so the integer formulations are right), and differs from the
 * exact w·x by no more than the activations' 8-bit rounding allows.
 * (Dequantization itself is checked against the gguf package in
 * tests/e2e/test_quant.py.)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "../tap.h"

#include "randq.h"

/* The step of each activation after quantization (0 for F32). */
static void act_steps(uint32_t atype, const void *act, float *step, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		switch (atype) {
		case GGML_TYPE_Q8_0:
			step[i] = fp16_to_f32(((const struct block_q8_0 *)act)[i / QK].d);
			break;
		case GGML_TYPE_Q8_1:
			step[i] = fp16_to_f32(((const struct block_q8_1 *)act)[i / QK].d);
			break;
		case GGML_TYPE_Q8_K:
			step[i] = ((const struct block_q8_K *)act)[i / QK_K].d;
			break;
		default:
			step[i] = 0;
		}
	}
}

static void check(uint32_t type, size_t n)
{
	uint32_t atype = quant_vec_dot_type(type);
	const struct ggml_type_info *ti = ggml_type_get(type), *ai = ggml_type_get(atype);
	void *row = malloc(n / ti->block_elems * ti->block_bytes);
	void *act = malloc(n / ai->block_elems * ai->block_bytes);
	float *x = malloc(n * 4), *w = malloc(n * 4), *a = malloc(n * 4), *step = malloc(n * 4);
	double exact = 0, deq = 0, bound = 0, mag = 0;
	float got;
	size_t i;

	random_row(type, row, n);
	for (i = 0; i < n; i++)
		x[i] = uniform(-3, 3);
	quantize_row_act_ref(atype, x, act, n);
	got = vec_dot_ref(type, n, row, act);
	dequantize_row_ref(type, row, w, n);
	act_steps(atype, act, step, n);
	if (atype == GGML_TYPE_F32)
		memcpy(a, x, n * 4);
	for (i = 0; i < n; i++) {
		int q = atype == GGML_TYPE_Q8_0 ? ((const struct block_q8_0 *)act)[i / QK].qs[i % QK] :
			atype == GGML_TYPE_Q8_1 ? ((const struct block_q8_1 *)act)[i / QK].qs[i % QK] :
			atype == GGML_TYPE_Q8_K ? ((const struct block_q8_K *)act)[i / QK_K].qs[i % QK_K] : 0;

		if (atype != GGML_TYPE_F32)
			a[i] = q * step[i];
		exact += (double)w[i] * x[i];
		deq += (double)w[i] * a[i];
		mag += fabs((double)w[i] * a[i]);
		/* rounding to the step, plus an fp16 step's own rounding */
		bound += fabs(w[i]) * step[i] * (0.5 + 127 * 0x1p-11);
	}
	ok(fabs(got - deq) <= 1e-4 * mag + 1e-6,
	   "%s x %s, n=%zu: the integer dot equals the dequantized dot (%.6g vs %.6g)",
	   ti->name, ai->name, n, got, deq);
	ok(fabs(got - exact) <= bound + 1e-4 * mag + 1e-6,
	   "%s x %s, n=%zu: within the activations' rounding of the exact w.x (err %.3g, bound %.3g)",
	   ti->name, ai->name, n, fabs(got - exact), bound);
	free(row);
	free(act);
	free(x);
	free(w);
	free(a);
	free(step);
}

int main(void)
{
	static const uint32_t q32[] = { GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,
					GGML_TYPE_Q5_1, GGML_TYPE_Q8_0 };
	static const uint32_t qk[] = { GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K };
	static const uint32_t fl[] = { GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16 };
	static const size_t n32[] = { 32, 96, 576, 1536 }, nk[] = { 256, 768, 1536 };
	static const size_t nf[] = { 1, 37, 576 };
	size_t i, j;

	for (i = 0; i < 5; i++)
		for (j = 0; j < 4; j++)
			check(q32[i], n32[j]);
	for (i = 0; i < 3; i++)
		for (j = 0; j < 3; j++)
			check(qk[i], nk[j]);
	for (i = 0; i < 3; i++)
		for (j = 0; j < 3; j++)
			check(fl[i], nf[j]);
	ok(!quant_supported(GGML_TYPE_Q2_K) && !quant_supported(GGML_TYPE_IQ4_XS) &&
	   quant_supported(GGML_TYPE_Q4_1), "unsupported types are said to be so");
	return tap_end();
}
