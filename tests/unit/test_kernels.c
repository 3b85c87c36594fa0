// SPDX-License-Identifier: MIT
/*
 * Every SIMD dot product kernel this CPU can run against the plain-C
 * reference, on random rows of 1, 2, 3, 17 and 48 blocks (odd counts and
 * counts that are not a multiple of any vector width), with activations
 * quantized by the reference. Integer parts are exact, so results agree to
 * float rounding of the block sums.
 */
#include <math.h>
#include <stdlib.h>

#include "cpu.h"
#include "quant.h"
#include "randq.h"
#include "../tap.h"

static void check(const char *isa, vec_dot_fn f, uint32_t type, size_t n)
{
	uint32_t atype = quant_vec_dot_type(type);
	const struct ggml_type_info *ti = ggml_type_get(type), *ai = ggml_type_get(atype);
	void *row = malloc(n / ti->block_elems * ti->block_bytes + 64);
	void *act = malloc(n / ai->block_elems * ai->block_bytes + 64);
	float *x = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
	double mag = 0;
	float want, got;
	size_t i;

	random_row(type, row, n);
	for (i = 0; i < n; i++)
		x[i] = uniform(-3, 3);
	quantize_row_act_ref(atype, x, act, n);
	dequantize_row_ref(type, row, w, n);
	for (i = 0; i < n; i++)
		mag += fabs((double)w[i] * x[i]);
	want = vec_dot_ref(type, n, row, act);
	got = f(n, row, act);
	ok(fabsf(got - want) <= 1e-5 * mag + 1e-6,
	   "%s %s, %zu elements: %.7g, reference %.7g", isa, ti->name, n, got, want);
	free(row);
	free(act);
	free(x);
	free(w);
}

int main(void)
{
	static const uint32_t types[] = {
		GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q8_0, GGML_TYPE_F32, GGML_TYPE_F16,
		GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
	};
	static const size_t blocks[] = { 1, 2, 3, 17, 48 };
	const struct pinfer_cpu *cpu = pinfer_cpu();
	const char *name;
	size_t t, b, covered = 0;

	for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		vec_dot_fn k2 = quant_vec_dot_avx2(types[t]), k5 = quant_vec_dot_avx512(types[t]);
		size_t unit = types[t] == GGML_TYPE_F32 || types[t] == GGML_TYPE_F16 ? 1 :
			      ggml_type_get(types[t])->block_elems;

		for (b = 0; b < 5; b++) {
			size_t n = blocks[b] * unit + (unit == 1 ? 5 : 0);

			if (k2 && cpu->detected >= PINFER_ISA_AVX2) {
				check("avx2", k2, types[t], n);
				covered++;
			}
			if (k5 && cpu->detected >= PINFER_ISA_AVX512 && cpu->avx512_vnni) {
				check("avx512-vnni", k5, types[t], n);
				covered++;
			}
		}
	}
	if (!covered)
		tap_skip("this CPU has neither AVX2 nor AVX-512 VNNI");
	/* four-row kernels: bit for bit the single-row kernel's results */
	for (t = 0; t < 2 && cpu->detected >= PINFER_ISA_AVX512 && cpu->avx512_vnni; t++) {
		uint32_t type = t ? GGML_TYPE_Q4_0 : GGML_TYPE_Q4_1;
		uint32_t atype = quant_vec_dot_type(type);
		const struct ggml_type_info *ai = ggml_type_get(atype);
		vec_dot4_fn f4 = quant_vec_dot4_avx512(type);
		vec_dot_fn f1 = quant_vec_dot_avx512(type);

		for (b = 0; b < 5; b++) {
			/* rows on 64-byte boundaries, as the engine lays them out */
			size_t n = blocks[b] * QK, stride = (n / QK * ai->block_bytes + 63) / 64 * 64, j;
			uint8_t *row = malloc(n / QK * ggml_type_get(type)->block_bytes);
			uint8_t *act = malloc(4 * stride);
			float x[48 * QK], out[4];
			bool same = true;

			random_row(type, row, n);
			for (j = 0; j < 4; j++) {
				size_t i;

				for (i = 0; i < n; i++)
					x[i] = uniform(-3, 3);
				quantize_row_act_ref(atype, x, act + j * stride, n);
			}
			f4(n, row, act, stride, out);
			for (j = 0; j < 4; j++)
				same = same && out[j] == f1(n, row, act + j * stride);
			ok(f4 && same, "avx512-vnni four-row %s, %zu blocks: equal to one row at a time, bit for bit",
			   ggml_type_name(type), blocks[b]);
			free(row);
			free(act);
		}
	}
	if (cpu->detected >= PINFER_ISA_AVX2) {	/* attention helpers */
		float q[69], o[69], o2[69], d = 0, want_o;
		fp16_t k[69];
		size_t i;

		for (i = 0; i < 69; i++) {
			q[i] = uniform(-1, 1);
			k[i] = f32_to_fp16(uniform(-2, 2));
			o[i] = o2[i] = uniform(-1, 1);
			d += q[i] * fp16_to_f32(k[i]);
		}
		ok(fabsf(attn_dot_f16_avx2(q, k, 69) - d) <= 1e-5f * 69,
		   "avx2 attention dot over 69 fp16 keys");
		attn_axpy_f16_avx2(o, 0.37f, k, 69);
		for (i = 0, want_o = 0; i < 69; i++)
			want_o += fabsf(o[i] - (o2[i] + 0.37f * fp16_to_f32(k[i])));
		ok(want_o <= 1e-5f * 69, "avx2 attention axpy over 69 fp16 values");
	}
	quant_vec_dot(GGML_TYPE_Q4_1, &name);
	ok(cpu->isa < PINFER_ISA_AVX2 ||
	   (name[0] == 'a' && (cpu->isa == PINFER_ISA_AVX2) == !strcmp(name, "avx2")),
	   "the dispatcher picks %s for Q4_1 at level %s", name, pinfer_isa_name(cpu->isa));
	return tap_end();
}
