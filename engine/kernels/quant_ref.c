// SPDX-License-Identifier: MIT
/*
 * Reference kernels in plain C: obviously right, not fast. Each fast kernel
 * is tested against these, and these against the PyPI gguf package's
 * dequantizers (tests/e2e/test_quant.py).
 */
#include "quant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

float fp16_to_f32(fp16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	float f;

	if (exp == 0x1f) {			/* inf, nan */
		bits = sign | 0x7f800000 | man << 13;
	} else if (exp) {			/* normal */
		bits = sign | (exp + 112) << 23 | man << 13;
	} else {				/* zero, subnormal: man * 2^-24 */
		f = ldexpf((float)man, -24);
		return sign ? -f : f;
	}
	memcpy(&f, &bits, 4);
	return f;
}

static float fp16_values[65536];
static pthread_once_t fp16_once = PTHREAD_ONCE_INIT;

static void fp16_fill(void)
{
	uint32_t i;

	for (i = 0; i < 65536; i++)
		fp16_values[i] = fp16_to_f32((fp16_t)i);
}

const float *fp16_table(void)
{
	pthread_once(&fp16_once, fp16_fill);
	return fp16_values;
}

fp16_t f32_to_fp16(float f)
{
	uint32_t x, sign, man;
	int exp;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	exp = (int)((x >> 23) & 0xff) - 127 + 15;
	man = x & 0x7fffff;
	if (((x >> 23) & 0xff) == 0xff)		/* inf, nan */
		return (fp16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
	if (exp >= 0x1f)			/* overflow */
		return (fp16_t)(sign | 0x7c00);
	if (exp <= 0) {				/* subnormal or zero */
		uint32_t shift, half, q;

		if (exp < -10)
			return (fp16_t)sign;
		man |= 0x800000;
		shift = (uint32_t)(14 - exp);
		q = man >> shift;
		half = 1u << (shift - 1);
		if ((man & ((half << 1) - 1)) > half ||
		    ((man & ((half << 1) - 1)) == half && (q & 1)))
			q++;
		return (fp16_t)(sign | q);
	}
	/* normal: round the 13 dropped bits to nearest even */
	{
		uint32_t h = sign | (uint32_t)exp << 10 | man >> 13;
		uint32_t rest = man & 0x1fff;

		if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
			h++;		/* may carry into the exponent: correct */
		return (fp16_t)h;
	}
}

float bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;

	memcpy(&f, &bits, 4);
	return f;
}

int quant_vec_dot_type(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32:
	case GGML_TYPE_F16:
	case GGML_TYPE_BF16:
		return GGML_TYPE_F32;
	case GGML_TYPE_Q4_0:
	case GGML_TYPE_Q8_0:
		return GGML_TYPE_Q8_0;
	case GGML_TYPE_Q4_1:
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

/* ---- dequantization ---------------------------------------------------------- */

static void dequant_q4_0(const struct block_q4_0 *b, float *y, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, y += QK) {
		float d = fp16_to_f32(b[i].d);

		for (j = 0; j < QK / 2; j++) {
			y[j] = ((b[i].qs[j] & 0xf) - 8) * d;
			y[j + QK / 2] = ((b[i].qs[j] >> 4) - 8) * d;
		}
	}
}

static void dequant_q4_1(const struct block_q4_1 *b, float *y, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, y += QK) {
		float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);

		for (j = 0; j < QK / 2; j++) {
			y[j] = (b[i].qs[j] & 0xf) * d + m;
			y[j + QK / 2] = (b[i].qs[j] >> 4) * d + m;
		}
	}
}

static void dequant_q8_0(const struct block_q8_0 *b, float *y, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, y += QK) {
		float d = fp16_to_f32(b[i].d);

		for (j = 0; j < QK; j++)
			y[j] = b[i].qs[j] * d;
	}
}

/* Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K/Q5_K. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

/*
 * One Q4_K/Q5_K super-block: 8 sub-blocks of 32 with 6-bit scales and mins;
 * Q5_K adds a fifth bit per element from @qh (NULL for Q4_K).
 */
static float *dequant_k45(fp16_t dh, fp16_t dminh, const uint8_t *scales,
			  const uint8_t *q, const uint8_t *qh, float *y)
{
	float d = fp16_to_f32(dh), dmin = fp16_to_f32(dminh);
	uint8_t u1 = 1, u2 = 2;
	int j, l;

	for (j = 0; j < QK_K / 64; j++, q += 32, u1 <<= 2, u2 <<= 2) {
		uint8_t sc, m;
		float d1, m1, d2, m2;

		scale_min_k4(2 * j, scales, &sc, &m);
		d1 = d * sc;
		m1 = dmin * m;
		scale_min_k4(2 * j + 1, scales, &sc, &m);
		d2 = d * sc;
		m2 = dmin * m;
		for (l = 0; l < 32; l++)
			*y++ = d1 * ((q[l] & 0xf) + (qh && (qh[l] & u1) ? 16 : 0)) - m1;
		for (l = 0; l < 32; l++)
			*y++ = d2 * ((q[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - m2;
	}
	return y;
}

static void dequant_q4_K(const struct block_q4_K *b, float *y, size_t nb)
{
	size_t i;

	for (i = 0; i < nb; i++)
		y = dequant_k45(b[i].d, b[i].dmin, b[i].scales, b[i].qs, NULL, y);
}

static void dequant_q5_K(const struct block_q5_K *b, float *y, size_t nb)
{
	size_t i;

	for (i = 0; i < nb; i++)
		y = dequant_k45(b[i].d, b[i].dmin, b[i].scales, b[i].qs, b[i].qh, y);
}

static void dequant_q6_K(const struct block_q6_K *b, float *y, size_t nb)
{
	size_t i;
	int n, l;

	for (i = 0; i < nb; i++) {
		const uint8_t *ql = b[i].ql, *qh = b[i].qh;
		const int8_t *sc = b[i].scales;
		float d = fp16_to_f32(b[i].d);

		for (n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
			for (l = 0; l < 32; l++) {
				int is = l / 16;
				int q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
				int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

				y[l] = d * sc[is] * q1;
				y[l + 32] = d * sc[is + 2] * q2;
				y[l + 64] = d * sc[is + 4] * q3;
				y[l + 96] = d * sc[is + 6] * q4;
			}
		}
	}
}

void dequantize_row_ref(uint32_t type, const void *row, float *y, size_t n)
{
	const uint16_t *h = row;
	size_t i;

	switch (type) {
	case GGML_TYPE_F32:
		memcpy(y, row, n * sizeof(float));
		break;
	case GGML_TYPE_F16:
		for (i = 0; i < n; i++)
			y[i] = fp16_to_f32(h[i]);
		break;
	case GGML_TYPE_BF16:
		for (i = 0; i < n; i++)
			y[i] = bf16_to_f32(h[i]);
		break;
	case GGML_TYPE_Q4_0:
		dequant_q4_0(row, y, n / QK);
		break;
	case GGML_TYPE_Q4_1:
		dequant_q4_1(row, y, n / QK);
		break;
	case GGML_TYPE_Q8_0:
		dequant_q8_0(row, y, n / QK);
		break;
	case GGML_TYPE_Q4_K:
		dequant_q4_K(row, y, n / QK_K);
		break;
	case GGML_TYPE_Q5_K:
		dequant_q5_K(row, y, n / QK_K);
		break;
	case GGML_TYPE_Q6_K:
		dequant_q6_K(row, y, n / QK_K);
		break;
	default:
		memset(y, 0, n * sizeof(float));	/* callers check support first */
		break;
	}
}

/* ---- activations to 8 bits ----------------------------------------------------- */

static float absmax(const float *x, size_t n)
{
	float m = 0;
	size_t i;

	for (i = 0; i < n; i++)
		m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
	return m;
}

/* 32 values -> qs and their scale d = absmax / 127 (*dh as fp16); Σ qs. */
static int quant_block8(const float *x, fp16_t *dh, int8_t *qs, float *d_out)
{
	float d = absmax(x, QK) / 127, id = d ? 1 / d : 0;
	int j, sum = 0;

	*dh = f32_to_fp16(d);
	*d_out = d;
	for (j = 0; j < QK; j++) {
		qs[j] = (int8_t)roundf(x[j] * id);
		sum += qs[j];
	}
	return sum;
}

static void quant_q8_0(const float *x, struct block_q8_0 *b, size_t nb)
{
	size_t i;

	float d;

	for (i = 0; i < nb; i++, x += QK)
		quant_block8(x, &b[i].d, b[i].qs, &d);
}

/* Q8_1 adds s = d * Σ qs, which Q4_1's offsets need. */
static void quant_q8_1(const float *x, struct block_q8_1 *b, size_t nb)
{
	size_t i;

	float d;

	for (i = 0; i < nb; i++, x += QK) {
		int sum = quant_block8(x, &b[i].d, b[i].qs, &d);

		b[i].s = f32_to_fp16(d * sum);
	}
}

static void quant_q8_K(const float *x, struct block_q8_K *b, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, x += QK_K) {
		float amax = absmax(x, QK_K), id;

		memset(&b[i], 0, sizeof(b[i]));
		if (!amax)
			continue;
		id = 127 / amax;
		b[i].d = amax / 127;
		for (j = 0; j < QK_K; j++) {
			b[i].qs[j] = (int8_t)roundf(x[j] * id);
			b[i].bsums[j / 16] += b[i].qs[j];
		}
	}
}

/* Q4_0: d = max / -8 (the signed extreme), q = x / d + 8 in 0..15. */
static void quant_q4_0(const float *x, struct block_q4_0 *b, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, x += QK) {
		float amax = 0, max = 0, d, id;

		for (j = 0; j < QK; j++)
			if (fabsf(x[j]) > amax) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		d = max / -8;
		id = d ? 1 / d : 0;
		b[i].d = f32_to_fp16(d);
		for (j = 0; j < QK / 2; j++) {
			int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + QK / 2] * id + 8.5f);

			lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
			hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
			b[i].qs[j] = (uint8_t)(lo | hi << 4);
		}
	}
}

/* Q4_1: m = min, d = (max - min) / 15, q = (x - m) / d in 0..15. */
static void quant_q4_1(const float *x, struct block_q4_1 *b, size_t nb)
{
	size_t i, j;

	for (i = 0; i < nb; i++, x += QK) {
		float mn = x[0], mx = x[0], d, id;

		for (j = 1; j < QK; j++) {
			mn = x[j] < mn ? x[j] : mn;
			mx = x[j] > mx ? x[j] : mx;
		}
		d = (mx - mn) / 15;
		id = d ? 1 / d : 0;
		b[i].d = f32_to_fp16(d);
		b[i].m = f32_to_fp16(mn);
		for (j = 0; j < QK / 2; j++) {
			int lo = (int)roundf((x[j] - mn) * id), hi = (int)roundf((x[j + QK / 2] - mn) * id);

			lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
			hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
			b[i].qs[j] = (uint8_t)(lo | hi << 4);
		}
	}
}

static int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/*
 * Q4_K: per sub-block of 32, scale (max - min) / 15 and min -min (at
 * least 0), both as 6-bit multiples of the super-block's d and dmin; the
 * elements quantized with the scale and min as rounded. (A plain min-max
 * fit: llama.cpp searches for better ones.)
 */
static void quant_q4_K(const float *x, struct block_q4_K *b, size_t nb)
{
	size_t i;
	int j, l;

	for (i = 0; i < nb; i++, x += QK_K) {
		float scale[8], min[8], maxs = 0, maxm = 0, d, dmin;
		uint8_t sc[8], mn[8], q[QK_K];

		for (j = 0; j < 8; j++) {
			float lo = 0, hi = x[32 * j];

			for (l = 0; l < 32; l++) {
				lo = x[32 * j + l] < lo ? x[32 * j + l] : lo;
				hi = x[32 * j + l] > hi ? x[32 * j + l] : hi;
			}
			scale[j] = (hi - lo) / 15;
			min[j] = -lo;
			maxs = scale[j] > maxs ? scale[j] : maxs;
			maxm = min[j] > maxm ? min[j] : maxm;
		}
		d = maxs / 63;
		dmin = maxm / 63;
		b[i].d = f32_to_fp16(d);
		b[i].dmin = f32_to_fp16(dmin);
		d = fp16_to_f32(b[i].d);
		dmin = fp16_to_f32(b[i].dmin);
		memset(b[i].scales, 0, sizeof(b[i].scales));
		for (j = 0; j < 8; j++) {
			float ds, dm;

			sc[j] = (uint8_t)clampi(d ? (int)lroundf(scale[j] / d) : 0, scale[j] > 0, 63);
			mn[j] = (uint8_t)clampi(dmin ? (int)lroundf(min[j] / dmin) : 0, 0, 63);
			if (j < 4) {
				b[i].scales[j] |= sc[j];
				b[i].scales[j + 4] |= mn[j];
			} else {
				b[i].scales[j + 4] = (uint8_t)((sc[j] & 0xf) | (mn[j] & 0xf) << 4);
				b[i].scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
				b[i].scales[j] |= (uint8_t)((mn[j] >> 4) << 6);
			}
			ds = d * sc[j];
			dm = dmin * mn[j];
			for (l = 0; l < 32; l++)
				q[32 * j + l] = (uint8_t)clampi(ds ? (int)lroundf((x[32 * j + l] + dm) / ds) : 0,
							       0, 15);
		}
		for (j = 0; j < QK_K / 64; j++)	/* low nibbles sub-block 2j, high 2j+1 */
			for (l = 0; l < 32; l++)
				b[i].qs[32 * j + l] = (uint8_t)(q[64 * j + l] | q[64 * j + 32 + l] << 4);
	}
}

/*
 * Q6_K: per sub-block of 16, scale = its signed extreme / -32 as an 8-bit
 * multiple of the super-block's d; elements in -32..31, stored + 32 as
 * four low bits (ql) and two high bits (qh).
 */
static void quant_q6_K(const float *x, struct block_q6_K *b, size_t nb)
{
	size_t i;
	int j, l;

	for (i = 0; i < nb; i++, x += QK_K) {
		float scale[16], maxs = 0, d;
		uint8_t q[QK_K];

		for (j = 0; j < 16; j++) {
			float amax = 0, ext = 0;

			for (l = 0; l < 16; l++)
				if (fabsf(x[16 * j + l]) > amax) {
					amax = fabsf(x[16 * j + l]);
					ext = x[16 * j + l];
				}
			scale[j] = ext / -32;
			maxs = fabsf(scale[j]) > maxs ? fabsf(scale[j]) : maxs;
		}
		d = maxs / 127;
		b[i].d = f32_to_fp16(d);
		d = fp16_to_f32(b[i].d);
		for (j = 0; j < 16; j++) {
			float ds;

			b[i].scales[j] = (int8_t)clampi(d ? (int)lroundf(scale[j] / d) : 0, -128, 127);
			ds = d * b[i].scales[j];
			for (l = 0; l < 16; l++)
				q[16 * j + l] = (uint8_t)(clampi(ds ? (int)lroundf(x[16 * j + l] / ds) : 0,
								 -32, 31) + 32);
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
	case GGML_TYPE_Q8_0:
		quant_q8_0(x, out, n / QK);
		return 0;
	case GGML_TYPE_Q4_0:
		quant_q4_0(x, out, n / QK);
		return 0;
	case GGML_TYPE_Q4_1:
		quant_q4_1(x, out, n / QK);
		return 0;
	case GGML_TYPE_Q4_K:
		quant_q4_K(x, out, n / QK_K);
		return 0;
	case GGML_TYPE_Q6_K:
		quant_q6_K(x, out, n / QK_K);
		return 0;
	default:
		return -1;
	}
}

void quantize_row_act_ref(uint32_t type, const float *x, void *out, size_t n)
{
	switch (type) {
	case GGML_TYPE_Q8_0:
		quant_q8_0(x, out, n / QK);
		break;
	case GGML_TYPE_Q8_1:
		quant_q8_1(x, out, n / QK);
		break;
	case GGML_TYPE_Q8_K:
		quant_q8_K(x, out, n / QK_K);
		break;
	default:
		memcpy(out, x, n * sizeof(float));
		break;
	}
}

/*
 * ---- dot products ------------------------------------------------------------
 * Q4_0, Q4_1, Q8_0: in the order quant.h states, which every kernel keeps
 * (dw * da is exact: two fp16 values).
 */

static float dot_q4_0(size_t nb, const struct block_q4_0 *w, const struct block_q8_0 *a)
{
	float sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++) {
		int s = 0;

		for (j = 0; j < QK / 2; j++)
			s += ((w[i].qs[j] & 0xf) - 8) * a[i].qs[j] +
			     ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + QK / 2];
		sum += fp16_to_f32(w[i].d) * fp16_to_f32(a[i].d) * (float)s;
	}
	return sum;
}

static float dot_q4_1(size_t nb, const struct block_q4_1 *w, const struct block_q8_1 *a)
{
	float sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++) {
		int s = 0;

		for (j = 0; j < QK / 2; j++)
			s += (w[i].qs[j] & 0xf) * a[i].qs[j] +
			     (w[i].qs[j] >> 4) * a[i].qs[j + QK / 2];
		/* Σ (q d + m) a = d da Σ q qa + m Σ a, and Σ a = s */
		sum += fp16_to_f32(w[i].d) * fp16_to_f32(a[i].d) * (float)s;
		sum += fp16_to_f32(w[i].m) * fp16_to_f32(a[i].s);
	}
	return sum;
}

static float dot_q8_0(size_t nb, const struct block_q8_0 *w, const struct block_q8_0 *a)
{
	float sum = 0;
	size_t i;
	int j;

	for (i = 0; i < nb; i++) {
		int s = 0;

		for (j = 0; j < QK; j++)
			s += w[i].qs[j] * a[i].qs[j];
		sum += fp16_to_f32(w[i].d) * fp16_to_f32(a[i].d) * (float)s;
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
		return dot_q4_0(n / QK, row, act);
	case GGML_TYPE_Q4_1:
		return dot_q4_1(n / QK, row, act);
	case GGML_TYPE_Q8_0:
		return dot_q8_0(n / QK, row, act);
	case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K:
	case GGML_TYPE_Q6_K:
		return dot_k(type, n / QK_K, row, act);
	default:
		return 0;
	}
}
