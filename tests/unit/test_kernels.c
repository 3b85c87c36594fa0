// SPDX-License-Identifier: MIT
/*
 * Every SIMD dot product kernel this CPU can run against the plain-C
 * reference, on random rows of 1, 2, 3, 17 and 48 blocks (odd counts and
 * counts that are not a multiple of any vector width), with activations
 * quantized by the reference. Integer parts are exact, so results agree to
 * float rounding of the block sums; the Q4_0, Q4_1 and Q8_0 kernels of
 * both ISAs keep the reference's order of float operations and agree bit
 * for bit. The GEMM on packed rows, of both ISAs and all five packed
 * types, against that ISA's row kernel (bit for bit) and the reference;
 * the SIMD activation quantizers against the reference's bytes.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "kernels/quant.h"
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
	if (ggml_type_get(type)->block_elems == QK)	/* quant.h's order */
		ok(got == want, "%s %s, %zu elements: %.9g, reference %.9g (bit for bit)",
		   isa, ti->name, n, got, want);
	else
		ok(fabsf(got - want) <= 1e-5 * mag + 1e-6,
		   "%s %s, %zu elements: %.7g, reference %.7g", isa, ti->name, n, got, want);
	free(row);
	free(act);
	free(x);
	free(w);
}

/* Where a block's quants (and K-quant sub-block scales) start: after its fp16 scales. */
static size_t quant_offset(uint32_t type)
{
	return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1 || type == GGML_TYPE_Q4_K ||
	       type == GGML_TYPE_Q5_K ? 4 : 2;
}

enum rows_kind {
	ROWS_RANDOM,
	ROWS_WORST,	/* every quant at its top, every activation 127 */
	ROWS_LARGE,	/* Q6_K: large sums of varied products (below) */
};

/*
 * 16 random rows of @type, packed, of @kind; nt activations: @gemm gives what @dot
 * (that ISA's row kernel) gives for each row and activation, bit for bit,
 * which for the 32-element types is the reference's (quant.h's order) and
 * for the K-quants within float rounding of it; and each row reads back
 * out of the group as the reference dequantizes it.
 */
static bool gemm_case(gemm16_fn gemm, vec_dot_fn dot, uint32_t type, size_t nblk, size_t nt,
		      enum rows_kind kind)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	uint32_t atype = quant_vec_dot_type(type);
	size_t n = nblk * ti->block_elems, rb = nblk * ti->block_bytes;
	size_t as = (n / ggml_type_get(atype)->block_elems * ggml_type_get(atype)->block_bytes + 63) /
		    64 * 64, ss = 2 * (n / QK);
	uint8_t *rows = malloc(PACK_ROWS * rb), *packed = malloc(PACK_ROWS * rb), *scratch = malloc(PACK_ROWS * rb);
	uint8_t *act = malloc(nt * as);
	float *side = malloc(nt * ss * sizeof(float)), *out = malloc(nt * PACK_ROWS * sizeof(float));
	float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
	float *y2 = malloc(n * sizeof(float));
	bool same = true;
	size_t r, t, i;

	const bool worst = kind == ROWS_WORST;

	random_row(type, rows, PACK_ROWS * n);
	/*
	 * Q6_K: quants 56..63, scales 96..127, activations of one sign: each
	 * group's product with its scale about 5e6, so a block's float sum
	 * passes 2^24 and rounds; a kernel adding the groups in another order
	 * than the row kernel's gives other bits.
	 */
	if (kind == ROWS_LARGE)
		for (i = 0; i < PACK_ROWS * nblk; i++) {
			struct block_q6_K *blk = (struct block_q6_K *)(rows + i * ti->block_bytes);
			size_t j;

			for (j = 0; j < sizeof(blk->ql); j++)
				blk->ql[j] |= 0x88;
			memset(blk->qh, 0xff, sizeof(blk->qh));
			for (j = 0; j < 16; j++)
				blk->scales[j] = (int8_t)(96 + (blk->scales[j] & 31));
		}
	if (worst)	/* every quant (and sub-block scale) at its top: the int sums' worst case */
		for (i = 0; i < PACK_ROWS * nblk; i++) {
			uint8_t *blk = rows + i * ti->block_bytes;

			if (type == GGML_TYPE_Q6_K)	/* its d last */
				memset(blk, 0x77, 208);
			else	/* after the one or two fp16 scales */
				memset(blk + quant_offset(type), 0xff, ti->block_bytes - quant_offset(type));
		}
	memcpy(packed, rows, PACK_ROWS * rb);
	quant_repack16(type, packed, n, scratch);
	for (t = 0; t < nt; t++) {
		for (i = 0; i < n; i++)
			x[i] = worst ? 3 : kind == ROWS_LARGE ? uniform(2, 3) : uniform(-3, 3);
		quantize_row_act_ref(atype, x, act + t * as, n);
		quant_act_side(type, act + t * as, n, side + t * ss);
	}
	gemm(n, packed, act, as, side, ss, nt, out, PACK_ROWS);
	for (r = 0; r < PACK_ROWS; r++) {
		dequantize_row_ref(type, rows + r * rb, y, n);
		for (t = 0; t < nt; t++) {
			float got = out[t * PACK_ROWS + r], want = vec_dot_ref(type, n, rows + r * rb, act + t * as);
			/* no row kernel on this ISA (AVX-512 Q5_0, Q5_1): the reference's bits */
			float row = dot ? dot(n, rows + r * rb, act + t * as) : want;
			double mag = 0;

			for (i = 0; i < n; i++)
				mag += fabs(y[i] * 3.0);
			same = same && got == row &&
			       fabsf(got - want) <= 1e-5 * mag + 1e-6;
		}
		dequantize_row_repacked(type, packed, (unsigned)r, y2, n);
		same = same && !memcmp(y, y2, n * sizeof(float));
	}
	free(rows);
	free(packed);
	free(scratch);
	free(act);
	free(side);
	free(out);
	free(x);
	free(y);
	free(y2);
	return same;
}

static void check_gemm(const char *isa, gemm16_fn (*gemm_of)(uint32_t), vec_dot_fn (*dot_of)(uint32_t))
{
	static const uint32_t types[] = {
		GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
		GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
	};
	static const size_t blocks[] = { 1, 2, 3, 17, 48 }, nts[] = { 1, 2, 3, 4, 5, 7, 8, 9, 16, 20, 33 };
	size_t t, b, k;

	for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		bool same = true;

		for (b = 0; b < 5; b++) {
			same = true;
			for (k = 0; k < sizeof(nts) / sizeof(nts[0]); k++)
				same = gemm_case(gemm_of(types[t]), dot_of(types[t]), types[t], blocks[b],
						 nts[k], ROWS_RANDOM) && same;
			ok(same, "%s GEMM on 16 packed %s rows of %zu blocks, 1 to 33 activations: "
			   "the row kernel's results bit for bit, the reference's within rounding, "
			   "rows read back", isa, ggml_type_name(types[t]), blocks[b]);
		}
		for (k = 0, same = true; k < sizeof(nts) / sizeof(nts[0]); k++)
			same = gemm_case(gemm_of(types[t]), dot_of(types[t]), types[t], 3, nts[k], ROWS_WORST) &&
			       same;
		ok(same, "%s GEMM on 16 packed %s rows, every quant at its top and every activation "
		   "127: the row kernel's results bit for bit (no int16 sum overflows)", isa,
		   ggml_type_name(types[t]));
	}
	for (b = 0; b < 5; b++) {
		bool same = true;

		for (k = 0; k < sizeof(nts) / sizeof(nts[0]); k++)
			same = gemm_case(gemm_of(GGML_TYPE_Q6_K), dot_of(GGML_TYPE_Q6_K), GGML_TYPE_Q6_K,
					 blocks[b], nts[k], ROWS_LARGE) && same;
		ok(same, "%s GEMM on 16 packed Q6_K rows of %zu blocks whose float sums round, 1 to 33 "
		   "activations: the row kernel's results bit for bit", isa, blocks[b]);
	}
}

/*
 * The SIMD activation quantizers of @isa against the reference, bit for
 * bit: random rows, a row of ties (x / d = k + 1/2 exactly: roundf goes
 * away from 0), and zeros (a block of all zeros: d = 0).
 */
static void check_quant_act(const char *isa, quant_act_fn (*act_of)(uint32_t))
{
	static const uint32_t types[] = { GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K };
	enum { N = 2 * QK_K };
	float x[N];
	uint8_t want[2 * sizeof(struct block_q8_K)], got[sizeof(want)];
	size_t t, i, k;

	for (t = 0; t < 3; t++) {
		const struct ggml_type_info *ti = ggml_type_get(types[t]);
		quant_act_fn f = act_of(types[t]);
		size_t bytes = N / ti->block_elems * ti->block_bytes;
		bool same = true;

		for (k = 0; k < 21; k++) {
			for (i = 0; i < N; i++)
				x[i] = k < 10 ? uniform(-3, 3) * (float)(k + 1) : 0;
			if (k >= 10 && k < 20)	/* ties: amax 127, so d = 1 */
				for (i = 0; i < N; i++)
					x[i] = i % QK == 0 ? 127 : (float)((int)(i % 61) - 30) + 0.5f;
			if (k == 19)
				x[5] = -0.0f, x[6] = 1e-30f;
			quantize_row_act_ref(types[t], x, want, N);
			memset(got, 0x55, sizeof(got));
			f(x, got, N);
			same = same && !memcmp(want, got, bytes);
		}
		ok(same, "%s quantization of activations to %s: the reference's bytes, ties and zeros included",
		   isa, ti->name);
	}
}

/*
 * The AVX2 softmax against the plain one (libm's expf) on rows of 1 to 300
 * scores with a wide spread (e^-87 and below underflow to 0 in both), and
 * the fp16 row conversions against f32_to_fp16 / fp16_to_f32, bit for bit,
 * on values that round both ways, ties, subnormals and overflow.
 */
static void check_softmax_f16(void)
{
	static const size_t lens[] = { 1, 7, 8, 9, 64, 300 };
	float x[300], want[300], back[300], worst = 0;
	fp16_t h[300], hw[300];
	bool same = true;
	size_t l, i;

	for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
		for (i = 0; i < lens[l]; i++)
			x[i] = want[i] = uniform(-40, 40);
		softmax_ref(want, lens[l], 1.7f);
		softmax_avx2(x, lens[l], 1.7f);
		for (i = 0; i < lens[l]; i++)
			worst = fmaxf(worst, fabsf(x[i] - want[i]) / fmaxf(want[i], 1e-30f));
	}
	ok(worst < 1e-6f, "avx2 softmax equals libm's within %.2g relative (limit 1e-6)",
	   (double)worst);
	for (i = 0; i < 300; i++)
		x[i] = i < 200 ? ldexpf(uniform(-70000, 70000), -(int)(i % 40)) :
		       (float)(i - 250) * (1.0f / 2048) + 1.0f;	/* halfway cases */
	x[0] = 1e-8f, x[1] = -6e-8f, x[2] = 65520.0f, x[3] = -1e6f;
	f32_to_f16_row_avx2(x, h, 300);
	for (i = 0; i < 300; i++)
		hw[i] = f32_to_fp16(x[i]);
	f16_to_f32_row_avx2(hw, back, 300);
	for (i = 0; i < 300; i++)
		same = same && back[i] == fp16_to_f32(hw[i]);
	ok(!memcmp(h, hw, sizeof(h)) && same,
	   "avx2 fp16 row conversions equal f32_to_fp16 and fp16_to_f32 bit for bit");
}

/*
 * The AVX2 SwiGLU against the plain one (libm's expf) on gate values from
 * -120 to 120 (past where e^-g overflows float: both give -0 there) and
 * the signed zeros: libm's bits for at least 99.9% of the elements (its
 * e^-g rounded from double: a last-bit difference here moves the 8-bit
 * path's perplexity, as test_perplexity saw), the rest within 2.5e-7
 * relative (e^-g a unit in the last place off, then a division and a
 * product); the same bits for an element wherever it sits in the row (the
 * padded tail). The AVX2 RMSNorm against the plain one, bit for bit, on
 * rows of 1 to 2051 values spread over 2^-20..2^20.
 */
static void check_rows(void)
{
	static const size_t lens[] = { 1, 7, 8, 9, 64, 300, 2051, 2051, 2051, 2051, 2051 };
	static float g[2051], u[2051], want[2051], shifted[2051], w[2051], o[2051], o2[2051];
	float worst = 0;
	bool same = true, norm_same = true;
	size_t l, i, differ = 0, all = 0;

	for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
		size_t n = lens[l];

		for (i = 0; i < n; i++) {
			g[i] = want[i] = i % 5 ? uniform(-12, 12) : uniform(-120, 120);
			u[i] = uniform(-3, 3);
		}
		if (n > 2)
			g[1] = want[1] = -0.0f, g[2] = want[2] = 0.0f;
		memcpy(shifted, g, n * sizeof(float));
		swiglu_ref(want, u, n);
		swiglu_avx2(g, u, n);
		for (i = 0; i < n; i++, all++) {
			differ += memcmp(&g[i], &want[i], sizeof(float)) != 0;
			worst = fmaxf(worst, fabsf(g[i] - want[i]) / fabsf(want[i]));
		}
		if (n > 1) {	/* the row less its first element: every lane moves by one */
			swiglu_avx2(shifted + 1, u + 1, n - 1);
			same = same && !memcmp(shifted + 1, g + 1, (n - 1) * sizeof(float));
		}
		for (i = 0; i < n; i++) {
			g[i] = ldexpf(uniform(-1, 1), (int)(i % 41) - 20);
			w[i] = uniform(-2, 2);
		}
		rmsnorm_ref(o, g, w, n, 1e-5f);
		rmsnorm_avx2(o2, g, w, n, 1e-5f);
		norm_same = norm_same && !memcmp(o, o2, n * sizeof(float));
	}
	ok(differ * 1000 <= all && worst <= 2.5e-7f,
	   "avx2 swiglu: libm's bits on all but %zu of %zu elements (limit 0.1%%), "
	   "the rest within %.2g relative (limit 2.5e-7)", differ, all, (double)worst);
	ok(same, "avx2 swiglu: an element's bits do not depend on its place in the row");
	ok(norm_same, "avx2 rmsnorm equals the plain one bit for bit");
}

int main(void)
{
	static const uint32_t types[] = {
		GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
		GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
		GGML_TYPE_Q6_K,
	};
	static const size_t blocks[] = { 1, 2, 3, 17, 48 };
	const struct pinfer_cpu *cpu = pinfer_cpu();
	const char *name;
	size_t t, b, covered = 0;

	for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		vec_dot_fn k2 = quant_vec_dot_avx2(types[t]), k5 = quant_vec_dot_avx512(types[t]);
		size_t unit = ggml_type_get(types[t])->block_elems == 1 ? 1 :
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
	if (cpu->detected >= PINFER_ISA_AVX512 && cpu->avx512_vnni)
		check_gemm("avx512-vnni", quant_gemm16_avx512, quant_vec_dot_avx512);
	if (cpu->detected >= PINFER_ISA_AVX2)
		check_gemm("avx2", quant_gemm16_avx2, quant_vec_dot_avx2);
	if (cpu->detected >= PINFER_ISA_AVX512)
		check_quant_act("avx512", quant_act_avx512);
	if (cpu->detected >= PINFER_ISA_AVX2)
		check_quant_act("avx2", quant_act_avx2);
	else
		tap_skip("no AVX2: no GEMM on packed rows nor SIMD quantizers to test");
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
		check_softmax_f16();
		check_rows();
	}
	quant_vec_dot(GGML_TYPE_Q4_1, &name);
	ok(cpu->isa < PINFER_ISA_AVX2 ||
	   (name[0] == 'a' && (cpu->isa == PINFER_ISA_AVX2) == !strcmp(name, "avx2")),
	   "the dispatcher picks %s for Q4_1 at level %s", name, pinfer_isa_name(cpu->isa));
	return tap_end();
}
