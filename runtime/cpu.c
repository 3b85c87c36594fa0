// SPDX-License-Identifier: MIT
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct pinfer_cpu cpu;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (uint64_t)hi << 32 | lo;
}

static bool bit(uint32_t reg, unsigned int n)
{
	return reg >> n & 1;
}

static void detect(void)
{
	uint32_t a, b, c, d, max;
	const char *cap;

	max = __get_cpuid_max(0, NULL);
	if (max >= 1 && __get_cpuid(1, &a, &b, &c, &d)) {
		cpu.fma = bit(c, 12);
		cpu.f16c = bit(c, 29);
		if (bit(c, 27) && bit(c, 28)) {	/* OSXSAVE and AVX */
			uint64_t xcr0 = xgetbv0();

			cpu.os_ymm = (xcr0 & 0x6) == 0x6;	/* XMM, YMM */
			cpu.os_zmm = (xcr0 & 0xe6) == 0xe6;	/* + opmask, ZMM */
		}
	}
	if (max >= 7) {
		__cpuid_count(7, 0, a, b, c, d);
		cpu.avx2 = bit(b, 5);
		cpu.avx512f = bit(b, 16);
		cpu.avx512dq = bit(b, 17);
		cpu.avx512bw = bit(b, 30);
		cpu.avx512vl = bit(b, 31);
		cpu.avx512_vnni = bit(c, 11);
		__cpuid_count(7, 1, a, b, c, d);
		cpu.avx_vnni = bit(a, 4);
		cpu.avx512_bf16 = bit(a, 5);
	}
	cpu.detected = PINFER_ISA_SCALAR;
	if (cpu.os_ymm && cpu.avx2 && cpu.fma && cpu.f16c) {
		cpu.detected = PINFER_ISA_AVX2;
		if (cpu.os_zmm && cpu.avx512f && cpu.avx512bw && cpu.avx512dq &&
		    cpu.avx512vl)
			cpu.detected = PINFER_ISA_AVX512;
	}
	cpu.isa = cpu.detected;
	cap = getenv("PINFER_CPU");
	if (cap) {
		enum pinfer_isa want = cpu.detected;

		if (!strcmp(cap, "scalar"))
			want = PINFER_ISA_SCALAR;
		else if (!strcmp(cap, "avx2"))
			want = PINFER_ISA_AVX2;
		if (want < cpu.isa)
			cpu.isa = want;
	}
}

const struct pinfer_cpu *pinfer_cpu(void)
{
	pthread_once(&cpu_once, detect);
	return &cpu;
}

const char *pinfer_isa_name(enum pinfer_isa isa)
{
	switch (isa) {
	case PINFER_ISA_AVX512:
		return "avx512";
	case PINFER_ISA_AVX2:
		return "avx2";
	default:
		return "scalar";
	}
}
