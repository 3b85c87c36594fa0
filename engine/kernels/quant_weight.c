// SPDX-License-Identifier: MIT
/*
 * Weights to the types `pinfer quantize` writes (Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q4_K, Q5_K, Q6_K, F16), from floats: the GGUF block layouts, scales chosen per block.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

static int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/*
 * The K-quants' rounding: to nearest, ties to even (rintf in the default
 * mode). A file quantized again from a quantized one puts many values on
 * exact ties (Q4_1's 16 levels at 2.0333 steps of 30.5 land the top one on
 * 30.5); rounding those away from zero pushed the top level past the fit,
 * which then lost to a worse one: Q5_K from SmolLM2's Q4_1 had 1.7 times
 * llama-quantize's squared error.
 */
static int nearest(float v)
{
	return (int)rintf(v);
}

/*
 * The 32-element types, by llama.cpp's rules so that the same weights give
 * the same bytes. Symmetric (Q4_0, Q5_0): d = the block's signed extreme /
 * -@half, q = x / d + @half in 0..2 @half - 1. With a minimum (Q4_1, Q5_1):
 * m = min, d = (max - min) / @nmax, q = (x - m) / d in 0..@nmax. Both round
 * as llama.cpp does, adding one half and truncating.
 */
static float block_symmetric(const float *x, int half, uint8_t q[QK])
{
	float amax = 0, max = 0, d, id;
	int j;

	for (j = 0; j < QK; j++)
		if (fabsf(x[j]) > amax) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	d = max / -half;
	id = d ? 1 / d : 0;
	for (j = 0; j < QK; j++)
		q[j] = (uint8_t)clampi((int)(x[j] * id + half + 0.5f), 0, 2 * half - 1);
	return d;
}

static float block_min(const float *x, int nmax, uint8_t q[QK], float *min)
{
	float mn = x[0], mx = x[0], d, id;
	int j;

	for (j = 1; j < QK; j++) {
		mn = x[j] < mn ? x[j] : mn;
		mx = x[j] > mx ? x[j] : mx;
	}
	d = (mx - mn) / nmax;
	id = d ? 1 / d : 0;
	for (j = 0; j < QK; j++)
		q[j] = (uint8_t)clampi((int)((x[j] - mn) * id + 0.5f), 0, nmax);
	*min = mn;
	return d;
}

/* Elements j and j + 16 in the low and high nibbles of qs[j]; fifth bits (if @qh) in qh. */
static void pack_32(const uint8_t q[QK], uint8_t qs[QK / 2], uint8_t *qh)
{
	uint32_t h = 0;
	int j;

	for (j = 0; j < QK / 2; j++)
		qs[j] = (uint8_t)((q[j] & 0xf) | (q[j + QK / 2] & 0xf) << 4);
	if (!qh)
		return;
	for (j = 0; j < QK; j++)
		h |= (uint32_t)(q[j] >> 4) << j;
	memcpy(qh, &h, 4);	/* little-endian, as the format */
}

static void quant_32(uint32_t type, const float *x, void *out, size_t nb)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	uint8_t *blk = out, q[QK];
	size_t i;
	float m;

	for (i = 0; i < nb; i++, x += QK, blk += ti->block_bytes) {
		switch (type) {
		case GGML_TYPE_Q4_0: {
			struct block_q4_0 *b = (struct block_q4_0 *)blk;

			b->d = f32_to_fp16(block_symmetric(x, 8, q));
			pack_32(q, b->qs, NULL);
			break;
		}
		case GGML_TYPE_Q5_0: {
			struct block_q5_0 *b = (struct block_q5_0 *)blk;

			b->d = f32_to_fp16(block_symmetric(x, 16, q));
			pack_32(q, b->qs, b->qh);
			break;
		}
		case GGML_TYPE_Q4_1: {
			struct block_q4_1 *b = (struct block_q4_1 *)blk;

			b->d = f32_to_fp16(block_min(x, 15, q, &m));
			b->m = f32_to_fp16(m);
			pack_32(q, b->qs, NULL);
			break;
		}
		case GGML_TYPE_Q5_1: {
			struct block_q5_1 *b = (struct block_q5_1 *)blk;

			b->d = f32_to_fp16(block_min(x, 31, q, &m));
			b->m = f32_to_fp16(m);
			pack_32(q, b->qs, b->qh);
			break;
		}
		}
	}
}

/*
 * A sub-block's fit for Q4_K/Q5_K: x ~ s q - m with q in 0..nmax, s >= 0 and
 * m >= 0 (the range always reaches down to 0 or below), minimising
 * Σ w (s q - m - x)^2 with w = rms(x) + |x| (large weights count more, as
 * they matter more to a dot product). The min-max fit first; then for
 * trial level counts nmax - 1 + k / 10 (k = 0..20) over the range, the
 * levels each value rounds to, and for them the weighted least-squares s
 * and m (m held at 0 if it would go negative); the best fit wins.
 * llama.cpp's quantizer searches the same way, over the same trials for
 * Q4_K and over nmax - 0.5 .. nmax + 1 for Q5_K; starting at nmax - 1 is a
 * superset of those, so a fit here is never worse, and it finds the half
 * step of a 4-bit grid (a Q4_1 file requantized) whose top level lands on a
 * tie at nmax - 0.5.
 */
static float fit_error(const float *x, const float *w, const uint8_t *q, int n, float s, float b)
{
	float e = 0;
	int i;

	for (i = 0; i < n; i++) {
		float diff = s * q[i] + b - x[i];

		e += w[i] * diff * diff;
	}
	return e;
}

/* The fit's weights of sub-block @x: w = rms(x) + |x|. */
static void fit_weights(const float *x, int n, float *w)
{
	float sq = 0, rms;
	int i;

	for (i = 0; i < n; i++)
		sq += x[i] * x[i];
	rms = sqrtf(sq / n);
	for (i = 0; i < n; i++)
		w[i] = rms + fabsf(x[i]);
}

static void fit_sub_block(const float *x, int n, int nmax, float *scale, float *offset)
{
	float w[32], lo = 0, hi = x[0], sw = 0, swx = 0, s, b, best, inv;
	uint8_t q[32], t[32];
	int i, k;

	for (i = 0; i < n; i++) {
		lo = x[i] < lo ? x[i] : lo;
		hi = x[i] > hi ? x[i] : hi;
	}
	if (hi <= lo) {		/* all equal, and not above 0 */
		*scale = 0;
		*offset = -lo;
		return;
	}
	fit_weights(x, n, w);
	for (i = 0; i < n; i++) {
		sw += w[i];
		swx += w[i] * x[i];
	}
	inv = nmax / (hi - lo);
	s = 1 / inv;
	b = lo;
	for (i = 0; i < n; i++)
		q[i] = (uint8_t)clampi(nearest(inv * (x[i] - lo)), 0, nmax);
	best = fit_error(x, w, q, n, s, b);
	for (k = 0; k <= 20; k++) {
		float is = (-1.0f + 0.1f * k + nmax) / (hi - lo), sl = 0, sll = 0, sxl = 0, det;
		float ts, tb, e;

		for (i = 0; i < n; i++) {
			t[i] = (uint8_t)clampi(nearest(is * (x[i] - lo)), 0, nmax);
			sl += w[i] * t[i];
			sll += w[i] * t[i] * t[i];
			sxl += w[i] * t[i] * x[i];
		}
		det = sw * sll - sl * sl;
		if (det <= 0)
			continue;
		ts = (sw * sxl - swx * sl) / det;
		tb = (sll * swx - sl * sxl) / det;
		if (tb > 0) {	/* the offset may only lower the levels */
			tb = 0;
			ts = sxl / sll;
		}
		e = fit_error(x, w, t, n, ts, tb);
		if (e < best) {
			best = e;
			s = ts;
			b = tb;
		}
	}
	*scale = s;
	*offset = -b;
}

/*
 * The weighted error of sub-block @x (@n elements, weights @w) quantized
 * with scale @ds and offset -@dm as stored: each element to its nearest
 * level in 0..@nmax (written to @q).
 */
static float stored_error(const float *x, const float *w, int n, int nmax, float ds, float dm,
			  uint8_t *q)
{
	int l;

	for (l = 0; l < n; l++)
		q[l] = (uint8_t)clampi(ds ? nearest((x[l] + dm) / ds) : 0, 0, nmax);
	return fit_error(x, w, q, n, ds, -dm);
}

/*
 * Q4_K and Q5_K (@nmax 15 or 31): each sub-block of 32 fitted
 * (fit_sub_block), its scale and offset stored as 6-bit multiples of the
 * super-block's d and dmin; the elements then quantized with the scale and
 * offset as rounded, into q[0..256) (0..nmax). Rounding a small scale to 6
 * bits moves it by up to a few percent, so from the nearest multiples the
 * stored pair moves one up or down (each) while that lowers the fit's
 * weighted error of the stored sub-block, to a pair none of whose
 * neighbours is better: never worse than the nearest, where llama.cpp's
 * quantizer stops.
 */
static void fit_k45(const float *x, int nmax, fp16_t *dh, fp16_t *dminh, uint8_t scales[12],
		    uint8_t q[QK_K])
{
	float scale[8], min[8], maxs = 0, maxm = 0, d, dmin;
	uint8_t sc[8], mn[8];
	int j;

	for (j = 0; j < 8; j++) {
		fit_sub_block(x + 32 * j, 32, nmax, &scale[j], &min[j]);
		maxs = scale[j] > maxs ? scale[j] : maxs;
		maxm = min[j] > maxm ? min[j] : maxm;
	}
	*dh = f32_to_fp16(maxs / 63);
	*dminh = f32_to_fp16(maxm / 63);
	d = fp16_to_f32(*dh);
	dmin = fp16_to_f32(*dminh);
	memset(scales, 0, 12);
	for (j = 0; j < 8; j++) {
		const float *xs = x + 32 * j;
		float w[32], best;
		uint8_t t[32];
		int a, c, s0, m0;

		s0 = clampi(maxs > 0 ? nearest(63 / maxs * scale[j]) : 0, 0, 63);
		m0 = clampi(maxm > 0 ? nearest(63 / maxm * min[j]) : 0, 0, 63);
		fit_weights(xs, 32, w);
		best = stored_error(xs, w, 32, nmax, d * s0, dmin * m0, q + 32 * j);
		do {	/* to the best neighbour while one is better: the error falls each step */
			sc[j] = (uint8_t)s0;
			mn[j] = (uint8_t)m0;
			for (a = sc[j] - 1; a <= sc[j] + 1; a++)
				for (c = mn[j] - 1; c <= mn[j] + 1; c++) {
					float e;

					if (a < 0 || a > 63 || c < 0 || c > 63)
						continue;
					e = stored_error(xs, w, 32, nmax, d * a, dmin * c, t);
					if (e < best) {
						best = e;
						s0 = a;
						m0 = c;
						memcpy(q + 32 * j, t, 32);
					}
				}
		} while (s0 != sc[j] || m0 != mn[j]);
		if (j < 4) {
			scales[j] |= sc[j];
			scales[j + 4] |= mn[j];
		} else {
			scales[j + 4] = (uint8_t)((sc[j] & 0xf) | (mn[j] & 0xf) << 4);
			scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
			scales[j] |= (uint8_t)((mn[j] >> 4) << 6);
		}
	}
}

/* Low four bits: sub-block 2c in the low nibbles of qs[32c..], 2c + 1 in the high. */
static void pack_k45_nibbles(const uint8_t q[QK_K], uint8_t qs[QK_K / 2])
{
	int c, l;

	for (c = 0; c < QK_K / 64; c++)
		for (l = 0; l < 32; l++)
			qs[32 * c + l] = (uint8_t)((q[64 * c + l] & 0xf) | (q[64 * c + 32 + l] & 0xf) << 4);
}

static void quant_q4_K(const float *x, struct block_q4_K *b, size_t nb)
{
	uint8_t q[QK_K];
	size_t i;

	for (i = 0; i < nb; i++, x += QK_K) {
		fit_k45(x, 15, &b[i].d, &b[i].dmin, b[i].scales, q);
		pack_k45_nibbles(q, b[i].qs);
	}
}

/* Q5_K: Q4_K's nibbles; the fifth bit of sub-block s's element l in bit s of qh[l]. */
static void quant_q5_K(const float *x, struct block_q5_K *b, size_t nb)
{
	uint8_t q[QK_K];
	size_t i;
	int s, l;

	for (i = 0; i < nb; i++, x += QK_K) {
		fit_k45(x, 31, &b[i].d, &b[i].dmin, b[i].scales, q);
		pack_k45_nibbles(q, b[i].qs);
		memset(b[i].qh, 0, sizeof(b[i].qh));
		for (s = 0; s < 8; s++)
			for (l = 0; l < 32; l++)
				b[i].qh[l] |= (uint8_t)((q[32 * s + l] >> 4) << s);
	}
}

/*
 * A symmetric fit for Q6_K's sub-blocks: x ~ s q with q in -32..31,
 * minimising Σ x^2 (s q - x)^2 (the large values count most). For trial
 * level counts 32 + k / 10 (k = -9..9) over the signed extreme, the levels
 * each value rounds to, and for them the weighted least-squares s; the best
 * fit wins. (llama.cpp's quantizer searches the same way.) Returns s,
 * signed: the extreme maps to -32.
 */
static float fit_symmetric(const float *x, int n)
{
	float amax = 0, ext = 0, best = -1, s = 0;
	int i, k;

	for (i = 0; i < n; i++)
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			ext = x[i];
		}
	if (amax == 0)
		return 0;
	for (k = -9; k <= 9; k++) {
		float is = -(32 + 0.1f * k) / ext, slx = 0, sll = 0;

		for (i = 0; i < n; i++) {
			int l = clampi(nearest(is * x[i]), -32, 31);
			float w = x[i] * x[i];

			slx += w * x[i] * l;
			sll += w * l * l;
		}
		/* the error at the best s for these levels is Σ w x^2 - slx^2 / sll */
		if (sll > 0 && slx * slx / sll > best) {
			best = slx * slx / sll;
			s = slx / sll;
		}
	}
	return s;
}

/* The x^2-weighted error of Q6_K sub-block @x stored with scale @ds; its quants + 32 to @q. */
static float q6_error(const float *x, float ds, uint8_t q[16])
{
	float e = 0;
	int l;

	for (l = 0; l < 16; l++) {
		int v = clampi(ds ? nearest(x[l] / ds) : 0, -32, 31);
		float diff = ds * (float)v - x[l];

		q[l] = (uint8_t)(v + 32);
		e += x[l] * x[l] * diff * diff;
	}
	return e;
}

/*
 * Q6_K: each sub-block of 16 fitted (fit_symmetric), its scale stored as an
 * 8-bit multiple of the super-block's d = the largest scale / -128 (so that
 * one reaches -128 and the range is used whole), rounded against d before
 * d goes to fp16, as llama.cpp rounds them; elements then quantized with
 * the scale as stored, -32..31, stored + 32 as four low bits (ql) and two
 * high bits (qh). From the nearest multiple, the scale moves up or down by
 * ones while that lowers the x^2-weighted error of the stored sub-block
 * (llama.cpp takes the nearest).
 */
static void quant_q6_K(const float *x, struct block_q6_K *b, size_t nb)
{
	size_t i;
	int j, l;

	for (i = 0; i < nb; i++, x += QK_K) {
		float scale[16], maxs = 0, amaxs = 0, d, is;
		uint8_t q[QK_K];

		for (j = 0; j < 16; j++) {
			scale[j] = fit_symmetric(x + 16 * j, 16);
			if (fabsf(scale[j]) > amaxs) {
				amaxs = fabsf(scale[j]);
				maxs = scale[j];
			}
		}
		is = maxs ? -128 / maxs : 0;
		b[i].d = f32_to_fp16(is ? 1 / is : 0);
		d = fp16_to_f32(b[i].d);
		for (j = 0; j < 16; j++) {
			const float *xs = x + 16 * j;
			int s0 = clampi(nearest(is * scale[j]), -128, 127), c, step;
			float best = q6_error(xs, d * (float)s0, q + 16 * j), e;
			uint8_t t[16];

			/* up or down while that lowers the error */
			for (step = -1; step <= 1; step += 2)
				for (c = s0 + step; c >= -128 && c <= 127; c += step) {
					e = q6_error(xs, d * (float)c, t);
					if (e >= best)
						break;
					best = e;
					s0 = c;
					memcpy(q + 16 * j, t, 16);
				}
			b[i].scales[j] = (int8_t)s0;
		}
		for (j = 0; j < QK_K; j += 128) {
			uint8_t *ql = b[i].ql + j / 2, *qh = b[i].qh + j / 4;
			const uint8_t *L = q + j;

			for (l = 0; l < 32; l++) {
				ql[l] = (uint8_t)((L[l] & 0xf) | (L[l + 64] & 0xf) << 4);
				ql[l + 32] = (uint8_t)((L[l + 32] & 0xf) | (L[l + 96] & 0xf) << 4);
				qh[l] = (uint8_t)((L[l] >> 4) | (L[l + 32] >> 4) << 2 |
						  (L[l + 64] >> 4) << 4 | (L[l + 96] >> 4) << 6);
			}
		}
	}
}

int quantize_row_weight_ref(uint32_t type, const float *x, void *out, size_t n)
{
	fp16_t *h = out;
	size_t i;

	switch (type) {
	case GGML_TYPE_F32:
		memcpy(out, x, n * sizeof(float));
		return 0;
	case GGML_TYPE_F16:
		for (i = 0; i < n; i++)
			h[i] = f32_to_fp16(x[i]);
		return 0;
	case GGML_TYPE_Q8_0:	/* as an activation: round to nearest */
		quantize_row_act_ref(GGML_TYPE_Q8_0, x, out, n);
		return 0;
	case GGML_TYPE_Q4_0:
	case GGML_TYPE_Q4_1:
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_Q5_1:
		quant_32(type, x, out, n / QK);
		return 0;
	case GGML_TYPE_Q4_K:
		quant_q4_K(x, out, n / QK_K);
		return 0;
	case GGML_TYPE_Q5_K:
		quant_q5_K(x, out, n / QK_K);
		return 0;
	case GGML_TYPE_Q6_K:
		quant_q6_K(x, out, n / QK_K);
		return 0;
	default:
		return -1;
	}
}
