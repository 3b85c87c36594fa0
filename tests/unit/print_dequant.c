// SPDX-License-Identifier: MIT
/*
 * Helper for tests/e2e/test_quant.py: the engine's reference kernels on
 * data the test gives, results as raw little-endian arrays on stdout.
 *   print_dequant blocks TYPE N FILE    dequantize N elements of TYPE
 *   print_dequant tensor GGUF NAME      dequantize a tensor of a GGUF file
 *   print_dequant q8 TYPE N FILE        quantize N float32s to TYPE (8-bit)
 *   print_dequant weights TYPE N FILE   quantize N float32s to weights of TYPE
 *   print_dequant f16 FILE              fp16 bits -> f32, f32 -> fp16 bits
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "kernels/quant.h"

static void *slurp(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	void *buf;
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		return NULL;
	buf = malloc(n ? n : 1);
	if (buf && fread(buf, 1, n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*size = n;
	return buf;
}

static int put(const void *p, size_t n)
{
	return fwrite(p, 1, n, stdout) == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	size_t size, n, i;
	void *in;
	float *y;

	if (argc == 5 && !strcmp(argv[1], "blocks")) {
		n = strtoul(argv[3], NULL, 10);
		in = slurp(argv[4], &size);
		y = malloc(n * sizeof(float));
		if (!in || !y)
			return 1;
		dequantize_row_ref(atoi(argv[2]), in, y, n);
		return put(y, n * sizeof(float));
	}
	if (argc == 4 && !strcmp(argv[1], "tensor")) {
		struct gguf_error err;
		const struct gguf_tensor *t;
		struct gguf *g;
		FILE *f;

		if (gguf_open(&g, argv[2], &err) || !(t = gguf_find_tensor(g, argv[3])))
			return 1;
		in = malloc(t->bytes);
		y = malloc(t->n_elems * sizeof(float));
		f = fopen(argv[2], "rb");
		if (!in || !y || !f || fseek(f, (long)t->offset, SEEK_SET) ||
		    fread(in, 1, t->bytes, f) != t->bytes)
			return 1;
		fclose(f);
		dequantize_row_ref(t->type, in, y, t->n_elems);
		return put(y, t->n_elems * sizeof(float));
	}
	if (argc == 5 && !strcmp(argv[1], "q8")) {
		const struct ggml_type_info *ti = ggml_type_get(atoi(argv[2]));

		n = strtoul(argv[3], NULL, 10);
		in = slurp(argv[4], &size);
		y = malloc(n / ti->block_elems * ti->block_bytes);
		if (!in || !y || size != n * sizeof(float))
			return 1;
		quantize_row_act_ref(atoi(argv[2]), in, y, n);
		return put(y, n / ti->block_elems * ti->block_bytes);
	}
	if (argc == 5 && !strcmp(argv[1], "weights")) {
		const struct ggml_type_info *ti = ggml_type_get(atoi(argv[2]));

		n = strtoul(argv[3], NULL, 10);
		in = slurp(argv[4], &size);
		y = malloc(n / ti->block_elems * ti->block_bytes);
		if (!in || !y || size != n * sizeof(float) ||
		    quantize_row_weight_ref(atoi(argv[2]), in, y, n))
			return 1;
		return put(y, n / ti->block_elems * ti->block_bytes);
	}
	if (argc == 3 && !strcmp(argv[1], "f16")) {
		const float *f;
		uint16_t *h;
		float *o;

		in = slurp(argv[2], &size);	/* float32s */
		if (!in)
			return 1;
		n = size / 4;
		f = in;
		o = malloc(65536 * sizeof(float));
		h = malloc(n * sizeof(uint16_t));
		for (i = 0; i < 65536; i++)
			o[i] = fp16_to_f32((fp16_t)i);
		for (i = 0; i < n; i++)
			h[i] = f32_to_fp16(f[i]);
		return put(o, 65536 * sizeof(float)) || put(h, n * sizeof(uint16_t));
	}
	fprintf(stderr, "usage: see the comment at the top of %s\n", __FILE__);
	return 2;
}
