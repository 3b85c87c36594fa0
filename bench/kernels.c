// SPDX-License-Identifier: MIT
/*
 * The packed GEMM of each weight type, one thread, against a plain read
 * loop over the same buffer: GB/s of weights for @T activations (1:
 * generation), on a matrix that stays in L2 and on one far larger than the
 * caches. Where the kernel's in-cache rate is not well above the memory
 * read rate, generation is bound by the kernel, not by memory. For T > 1
 * it also prints the multiply-adds a second, the measure of a prompt's
 * GEMM; -k gives the rows' length (the model's: 2048 for a 1B model's
 * attention and gate/up matrices, 5632 for its down matrix), and
 * -t 128 the activations the engine hands one call for a 128-token prompt.
 *
 *   build/bench/kernels [-t T] [-k COLS] [-i avx512|avx2] [-s MiB] [TYPE...]
 * (default: every ISA this CPU has, T = 1, rows of 4096, a 256 MiB matrix, all types)
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu.h"
#include "kernels/quant.h"
#include "bench.h"
#include "randq.h"

static size_t cols = 4096;	/* elements a row, -k */

/* Sum every 64-byte line of @p: the read rate a kernel competes with. */
__attribute__((target("avx2"))) static uint64_t read_loop(const uint8_t *p, size_t n)
{
	__m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
	uint64_t s[4];
	size_t i;

	for (i = 0; i + 64 <= n; i += 64) {
		a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
		b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
	}
	_mm256_storeu_si256((__m256i *)s, _mm256_add_epi64(a, b));
	return s[0] + s[1] + s[2] + s[3];
}

/* Weights on 2 MiB pages where THP allows it, as the engine's regions are. */
static void *huge_alloc(size_t bytes)
{
	size_t n = (bytes + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
	void *p = aligned_alloc(2u << 20, n);

	if (p)
		madvise(p, n, MADV_HUGEPAGE);
	return p;
}

struct mat {
	uint32_t type;
	uint8_t *w;
	size_t groups, group_bytes;
	uint8_t *act;
	size_t as;
	float *side, *out;
};

static int make(struct mat *m, uint32_t type, size_t bytes, int nt)
{
	const struct ggml_type_info *ti = ggml_type_get(type);
	uint32_t atype = quant_vec_dot_type(type);
	size_t rb = cols / ti->block_elems * ti->block_bytes, g, t;
	uint8_t *scratch;
	float *x = malloc(cols * sizeof(float));

	m->type = type;
	m->group_bytes = PACK_ROWS * rb;
	m->groups = bytes / m->group_bytes ? bytes / m->group_bytes : 1;
	m->w = huge_alloc(m->groups * m->group_bytes);
	scratch = malloc(m->group_bytes);
	m->as = (cols / ggml_type_get(atype)->block_elems * ggml_type_get(atype)->block_bytes + 63) / 64 * 64;
	m->act = aligned_alloc(64, nt * m->as);
	m->side = malloc(nt * 2 * (cols / QK) * sizeof(float));
	m->out = malloc(nt * m->groups * PACK_ROWS * sizeof(float));
	if (!m->w || !scratch || !m->act || !m->side || !m->out || !x)
		return -1;
	for (g = 0; g < m->groups; g++) {
		uint8_t *p = m->w + g * m->group_bytes;

		random_row(type, p, PACK_ROWS * cols);
		quant_repack16(type, p, cols, scratch);
	}
	for (t = 0; t < (size_t)nt; t++) {
		size_t i;

		for (i = 0; i < cols; i++)
			x[i] = uniform(-2, 2);
		quantize_row_act_ref(atype, x, m->act + t * m->as, cols);
		quant_act_side(type, m->act + t * m->as, cols, m->side + t * 2 * (cols / QK));
	}
	free(scratch);
	free(x);
	return 0;
}

static void unmake(struct mat *m)
{
	free(m->w);
	free(m->act);
	free(m->side);
	free(m->out);
}

/* Seconds per pass over the whole matrix, best of a few passes of at least 0.2 s. */
static double time_gemm(const struct mat *m, gemm16_fn f, int nt)
{
	double best = 1e9;
	int rep;

	for (rep = 0; rep < 5; rep++) {
		double t0 = mono_now(), dt;
		int passes = 0;
		size_t g;

		do {
			for (g = 0; g < m->groups; g++)
				f(cols, m->w + g * m->group_bytes, m->act, m->as, m->side,
				  2 * (cols / QK), nt, m->out + g * PACK_ROWS, m->groups * PACK_ROWS);
			passes++;
		} while ((dt = mono_now() - t0) < 0.2);
		if (dt / passes < best)
			best = dt / passes;
	}
	return best;
}

static volatile uint64_t sink;

static double time_read(const struct mat *m)
{
	size_t n = m->groups * m->group_bytes;
	double best = 1e9;
	int rep;

	for (rep = 0; rep < 5; rep++) {
		double t0 = mono_now(), dt;
		int passes = 0;

		do {
			sink += read_loop(m->w, n);
			passes++;
		} while ((dt = mono_now() - t0) < 0.2);
		if (dt / passes < best)
			best = dt / passes;
	}
	return best;
}

static const struct {
	const char *name;
	uint32_t type;
} types[] = {
	{ "q4_0", GGML_TYPE_Q4_0 }, { "q4_1", GGML_TYPE_Q4_1 }, { "q5_0", GGML_TYPE_Q5_0 },
	{ "q5_1", GGML_TYPE_Q5_1 }, { "q8_0", GGML_TYPE_Q8_0 },
	{ "q4_k", GGML_TYPE_Q4_K }, { "q5_k", GGML_TYPE_Q5_K }, { "q6_k", GGML_TYPE_Q6_K },
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: kernels [-t ACTIVATIONS] [-k COLS] [-i avx512|avx2] [-s MiB] [TYPE...]\n"
		   "  GB/s of the packed GEMM (one thread) against a read loop, in L2 and in memory;\n"
		   "  for more than one activation also G multiply-adds/s (GMAC/s)\n"
		   "  -t: activations a call, 1..512 (default 1)\n"
		   "  -k: elements a row, a multiple of 256 (default 4096)\n"
		   "  -i: one ISA (default: AVX-512 VNNI where the CPU has it, and AVX2)\n"
		   "  -s: the matrix from memory, MiB (default 256)\n"
		   "  TYPE: q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k (default: all)\n");
}

int main(int argc, char **argv)
{
	const struct pinfer_cpu *cpu = pinfer_cpu();
	bool vnni = cpu->detected >= PINFER_ISA_AVX512 && cpu->avx512_vnni;
	const char *isa = NULL;	/* both the CPU has */
	size_t big = 256;
	int nt = 1, i, j, k;
	bool want[NTYPES] = { 0 }, any = false;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
			nt = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "-k") && i + 1 < argc) {
			cols = strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "-i") && i + 1 < argc) {
			isa = argv[++i];
		} else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
			big = strtoul(argv[++i], NULL, 10);
		} else {
			bool known = false;

			for (k = 0; k < (int)NTYPES; k++)
				if (!strcmp(argv[i], types[k].name))
					want[k] = any = known = true;
			if (!known) {
				fprintf(stderr, "kernels: bad argument '%s'\n", argv[i]);
				usage(stderr);
				return 2;
			}
		}
	}
	if (nt < 1 || nt > 512 || !cols || cols % 256 || cols > (1u << 20) ||
	    (isa && strcmp(isa, "avx512") && strcmp(isa, "avx2")) ||
	    (isa && !strcmp(isa, "avx512") && !vnni) || cpu->detected < PINFER_ISA_AVX2) {
		fprintf(stderr, "kernels: -t 1..512, -k a multiple of 256, and an ISA this CPU has\n");
		return 2;
	}
	printf("%-5s %-6s %3s %12s %12s %12s %12s", "type", "isa", "T", "L2 GB/s",
	       "mem GB/s", "read L2", "read mem");
	printf(nt > 1 ? " %12s %12s\n" : "\n", "L2 GMAC/s", "mem GMAC/s");
	for (j = 0; j < 2; j++) {
		const char *name = j ? "avx2" : "avx512";

		if ((isa && strcmp(isa, name)) || (!j && !vnni))
			continue;
		for (k = 0; k < (int)NTYPES; k++) {
			gemm16_fn f = j ? quant_gemm16_avx2(types[k].type) : quant_gemm16_avx512(types[k].type);
			struct mat s, b;
			double ts, tb, rs, rb;

			if ((any && !want[k]) || !f)
				continue;
			if (make(&s, types[k].type, 256 << 10, nt) || make(&b, types[k].type, big << 20, nt)) {
				fprintf(stderr, "kernels: out of memory\n");
				return 1;
			}
			ts = time_gemm(&s, f, nt);
			tb = time_gemm(&b, f, nt);
			rs = time_read(&s);
			rb = time_read(&b);
			printf("%-5s %-6s %3d %12.2f %12.2f %12.1f %12.1f", types[k].name, name, nt,
			       s.groups * s.group_bytes / ts / 1e9, b.groups * b.group_bytes / tb / 1e9,
			       s.groups * s.group_bytes / rs / 1e9, b.groups * b.group_bytes / rb / 1e9);
			if (nt > 1)	/* rows x cols x nt each pass */
				printf(" %12.1f %12.1f", (double)s.groups * PACK_ROWS * cols * nt / ts / 1e9,
				       (double)b.groups * PACK_ROWS * cols * nt / tb / 1e9);
			printf("\n");
			unmake(&s);
			unmake(&b);
		}
	}
	return 0;
}
