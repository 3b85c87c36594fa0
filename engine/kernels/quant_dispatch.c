// SPDX-License-Identifier: MIT
/*
 * Picking the kernels this CPU runs (runtime/cpu.h): dot products, the GEMM
 * on packed rows, activation quantizers and the attention helpers.
 */
#include <math.h>

#include "cpu.h"
#include "quant.h"

#define REF(name, type)							\
static float name(size_t n, const void *row, const void *act)		\
{									\
	return vec_dot_ref(type, n, row, act);				\
}

REF(ref_f32, GGML_TYPE_F32)
REF(ref_f16, GGML_TYPE_F16)
REF(ref_bf16, GGML_TYPE_BF16)
REF(ref_q4_0, GGML_TYPE_Q4_0)
REF(ref_q4_1, GGML_TYPE_Q4_1)
REF(ref_q5_0, GGML_TYPE_Q5_0)
REF(ref_q5_1, GGML_TYPE_Q5_1)
REF(ref_q8_0, GGML_TYPE_Q8_0)
REF(ref_q4_K, GGML_TYPE_Q4_K)
REF(ref_q5_K, GGML_TYPE_Q5_K)
REF(ref_q6_K, GGML_TYPE_Q6_K)

static vec_dot_fn quant_vec_dot_ref(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: return ref_f32;
	case GGML_TYPE_F16: return ref_f16;
	case GGML_TYPE_BF16: return ref_bf16;
	case GGML_TYPE_Q4_0: return ref_q4_0;
	case GGML_TYPE_Q4_1: return ref_q4_1;
	case GGML_TYPE_Q5_0: return ref_q5_0;
	case GGML_TYPE_Q5_1: return ref_q5_1;
	case GGML_TYPE_Q8_0: return ref_q8_0;
	case GGML_TYPE_Q4_K: return ref_q4_K;
	case GGML_TYPE_Q5_K: return ref_q5_K;
	case GGML_TYPE_Q6_K: return ref_q6_K;
	default: return NULL;
	}
}

vec_dot_fn quant_vec_dot(uint32_t type, const char **isa_name)
{
	const struct pinfer_cpu *cpu = pinfer_cpu();
	vec_dot_fn f;
	const char *name = "scalar";

	if (cpu->isa >= PINFER_ISA_AVX512 && cpu->avx512_vnni &&
	    (f = quant_vec_dot_avx512(type)))
		name = "avx512-vnni";
	else if (cpu->isa >= PINFER_ISA_AVX2 && (f = quant_vec_dot_avx2(type)))
		name = "avx2";
	else
		f = quant_vec_dot_ref(type);
	if (isa_name)
		*isa_name = name;
	return f;
}

#define ACT_REF(name, type)						\
static void name(const float *x, void *out, size_t n)			\
{									\
	quantize_row_act_ref(type, x, out, n);				\
}

ACT_REF(act_q8_0_ref, GGML_TYPE_Q8_0)
ACT_REF(act_q8_1_ref, GGML_TYPE_Q8_1)
ACT_REF(act_q8_K_ref, GGML_TYPE_Q8_K)
ACT_REF(act_f32, GGML_TYPE_F32)

quant_act_fn quant_act(uint32_t type)
{
	const struct pinfer_cpu *cpu = pinfer_cpu();
	quant_act_fn f;

	if (cpu->isa >= PINFER_ISA_AVX512 && (f = quant_act_avx512(type)))
		return f;
	if (cpu->isa >= PINFER_ISA_AVX2 && (f = quant_act_avx2(type)))
		return f;
	switch (type) {
	case GGML_TYPE_Q8_0: return act_q8_0_ref;
	case GGML_TYPE_Q8_1: return act_q8_1_ref;
	case GGML_TYPE_Q8_K: return act_q8_K_ref;
	default: return act_f32;
	}
}

gemm16_fn quant_gemm16(uint32_t type)
{
	const struct pinfer_cpu *cpu = pinfer_cpu();

	if (cpu->isa >= PINFER_ISA_AVX512 && cpu->avx512_vnni)
		return quant_gemm16_avx512(type);
	if (cpu->isa >= PINFER_ISA_AVX2)
		return quant_gemm16_avx2(type);
	return NULL;
}

static float attn_dot_ref(const float *q, const fp16_t *k, size_t n)
{
	const float *h2f = fp16_table();
	float d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d += q[i] * h2f[k[i]];
	return d;
}

static void attn_axpy_ref(float *o, float p, const fp16_t *v, size_t n)
{
	const float *h2f = fp16_table();
	size_t i;

	for (i = 0; i < n; i++)
		o[i] += p * h2f[v[i]];
}

void softmax_ref(float *x, size_t n, float scale)
{
	float max = -INFINITY, sum = 0, inv;
	size_t i;

	for (i = 0; i < n; i++) {
		x[i] *= scale;
		max = x[i] > max ? x[i] : max;
	}
	for (i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += x[i];
	}
	inv = 1 / sum;
	for (i = 0; i < n; i++)
		x[i] *= inv;
}

static void to_f16_ref(const float *x, fp16_t *y, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		y[i] = f32_to_fp16(x[i]);
}

static void to_f32_ref(const fp16_t *x, float *y, size_t n)
{
	const float *h2f = fp16_table();
	size_t i;

	for (i = 0; i < n; i++)
		y[i] = h2f[x[i]];
}

const struct attn_kernels *attn_kernels(void)
{
	static const struct attn_kernels ref = {
		attn_dot_ref, attn_axpy_ref, softmax_ref, to_f16_ref, to_f32_ref,
	}, avx2 = {
		attn_dot_f16_avx2, attn_axpy_f16_avx2, softmax_avx2, f32_to_f16_row_avx2,
		f16_to_f32_row_avx2,
	};

	return pinfer_cpu()->isa >= PINFER_ISA_AVX2 ? &avx2 : &ref;
}

void swiglu_ref(float *g, const float *u, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void rmsnorm_ref(float *o, const float *x, const float *w, size_t n, float eps)
{
	double ss = 0;
	float scale;
	size_t i;

	for (i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	scale = 1.0f / sqrtf((float)(ss / n) + eps);
	for (i = 0; i < n; i++)
		o[i] = x[i] * scale * w[i];
}

const struct row_kernels *row_kernels(void)
{
	static const struct row_kernels ref = { swiglu_ref, rmsnorm_ref },
		avx2 = { swiglu_avx2, rmsnorm_avx2 };

	return pinfer_cpu()->isa >= PINFER_ISA_AVX2 ? &avx2 : &ref;
}

int quant_vec_dot_type(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32:
	case GGML_TYPE_F16:
	case GGML_TYPE_BF16:
		return GGML_TYPE_F32;
	case GGML_TYPE_Q4_0:
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_Q8_0:
		return GGML_TYPE_Q8_0;
	case GGML_TYPE_Q4_1:
	case GGML_TYPE_Q5_1:
		return GGML_TYPE_Q8_1;
	case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K:
	case GGML_TYPE_Q6_K:
		return GGML_TYPE_Q8_K;
	default:
		return -1;
	}
}

int quant_supported(uint32_t type)
{
	return quant_vec_dot_type(type) >= 0;
}
