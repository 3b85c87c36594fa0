// SPDX-License-Identifier: MIT
/*
 * fp16 and bf16 to and from float: the reference conversions (the fp16
 * table is what the kernels read).
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
