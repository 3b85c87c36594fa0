/* SPDX-License-Identifier: MIT */
/*
 * CPU features, detected once at run time (cpuid + xgetbv). Shipped code is
 * built for baseline x86-64; kernels for AVX2 and AVX-512 live in files
 * compiled with their own -m flags and are picked through pinfer_cpu().
 */
#ifndef PINFER_CPU_H
#define PINFER_CPU_H

#include <stdbool.h>

enum pinfer_isa {
	PINFER_ISA_SCALAR = 0,	/* baseline x86-64 (SSE2) */
	PINFER_ISA_AVX2 = 1,	/* AVX2 + FMA + F16C, YMM state enabled by the OS */
	PINFER_ISA_AVX512 = 2,	/* AVX-512 F/BW/DQ/VL, ZMM state enabled by the OS */
};

struct pinfer_cpu {
	enum pinfer_isa isa;	/* best level usable, after PINFER_CPU capping */
	enum pinfer_isa detected; /* best level the hardware and OS allow */
	bool f16c, fma, avx2, avx512f, avx512bw, avx512dq, avx512vl;
	bool avx512_vnni, avx_vnni, avx512_bf16;
	bool os_ymm, os_zmm;	/* XCR0 enables AVX / AVX-512 register state */
};

/*
 * The features of this CPU. The environment variable PINFER_CPU=scalar|avx2|
 * avx512 caps the level used (to test or compare code paths); a value the
 * CPU cannot run is capped to what it can.
 */
const struct pinfer_cpu *pinfer_cpu(void);

const char *pinfer_isa_name(enum pinfer_isa isa);

#endif
