// SPDX-License-Identifier: MIT
/*
 * pinfer quantize IN OUT TYPE: the model in another tensor type, so every
 * kernel can run on a real model. Metadata is copied byte for byte (with
 * general.file_type updated); matrices whose rows are whole blocks of TYPE
 * are converted row by row (dequantized, then quantized), the others and
 * all vectors are kept; the file is written to a new OUT.XXXXXX and renamed
 * (gguf_out_open()), removed on any failure and on SIGINT, SIGTERM, SIGHUP.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "format/ggml_types.h"
#include "format/gguf.h"
#include "kernels/quant.h"

static const char quantize_help[] =
	"usage: pinfer quantize [-q] IN OUT TYPE\n\n"
	"Writes the GGUF model IN to OUT with its weight matrices in TYPE:\n"
	"f32, f16, q8_0, q4_0, q4_1, q4_k or q6_k, as llama.cpp's quantizer chooses:\n"
	"the output layer (or the token embedding the model ties to it) at Q6_K for\n"
	"the 4-bit types (Q8_0 where its rows are not whole 256-element blocks);\n"
	"vectors (norms, biases) f32; the routers of mixture-of-experts layers in\n"
	"their own type; matrices whose rows are not whole blocks of TYPE: Q8_0 for\n"
	"q6_k, else their own type. A progress bar on stderr when it is a terminal;\n"
	"-q: none.\n";

static const struct { const char *name; uint32_t type, ftype; } targets[] = {
	{ "f32", GGML_TYPE_F32, 0 }, { "f16", GGML_TYPE_F16, 1 },
	{ "q4_0", GGML_TYPE_Q4_0, 2 }, { "q4_1", GGML_TYPE_Q4_1, 3 },
	{ "q8_0", GGML_TYPE_Q8_0, 7 }, { "q4_k", GGML_TYPE_Q4_K, 14 },
	{ "q6_k", GGML_TYPE_Q6_K, 18 },
};

static bool name_is(const struct gguf_tensor *t, const char *name)
{
	return t->name.len == strlen(name) && !memcmp(t->name.ptr, name, t->name.len);
}

/*
 * The type tensor @t gets, following llama.cpp's quantizer:
 * - the output layer (output.weight, or token_embd.weight when the model
 *   ties the two: @tied) at more bits than a 4-bit TYPE: Q6_K where its rows
 *   are whole super-blocks of 256, else Q8_0 (Q8_0 and float TYPEs as
 *   asked). Its errors go straight into every logit: SmolLM2's tied
 *   embedding at Q4_0 cost 9% of perplexity (Documentation/engine.md);
 * - a MoE router (ffn_gate_inp) keeps its own type: small, and which
 *   experts run hangs on it;
 * - vectors (norms, biases) are F32;
 * - rows that are not whole blocks of TYPE: Q6_K falls back to Q8_0 (as
 *   llama.cpp's); Q4_K (whose fallback there, Q5_0, pinfer does not
 *   write) keeps the tensor's own type;
 * - the rest TYPE.
 */
static uint32_t new_type(const struct gguf_tensor *t, uint32_t type, bool tied)
{
	static const char router[] = "ffn_gate_inp.weight";
	const struct ggml_type_info *ti = ggml_type_get(type);
	bool four_bit = type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q4_K;

	if (t->name.len >= sizeof(router) - 1 &&
	    !memcmp(t->name.ptr + t->name.len - (sizeof(router) - 1), router, sizeof(router) - 1))
		return t->type;
	if (t->n_dims < 2)
		return GGML_TYPE_F32;
	if (name_is(t, "output.weight") || (tied && name_is(t, "token_embd.weight"))) {
		if (four_bit || type == GGML_TYPE_Q6_K)
			type = t->dims[0] % QK_K ? GGML_TYPE_Q8_0 : GGML_TYPE_Q6_K;
		ti = ggml_type_get(type);
	}
	if (t->dims[0] % ti->block_elems)
		return type == GGML_TYPE_Q6_K ? GGML_TYPE_Q8_0 : t->type;
	return type;
}

/* Convert tensor @t into @o: 0, or a negative errno (-EIO for a short read). */
static int convert(int in, const struct gguf_tensor *t, uint32_t type, struct gguf_writer *o)
{
	uint64_t rows = t->n_elems / t->dims[0], src_row = t->bytes / rows, dst_row = 0, r;
	uint8_t *src = malloc(src_row), *dst;
	float *x = malloc(t->dims[0] * sizeof(float));

	ggml_row_bytes(type, t->dims[0], &dst_row);
	dst = malloc(dst_row);
	if (!src || !dst || !x) {
		free(src);
		free(dst);
		free(x);
		return -ENOMEM;
	}
	errno = EIO;		/* a short read sets none */
	for (r = 0; r < rows && !o->bad; r++) {
		if (pread(in, src, src_row, (off_t)(t->offset + r * src_row)) != (ssize_t)src_row)
			break;
		dequantize_row_ref(t->type, src, x, t->dims[0]);
		quantize_row_weight_ref(type, x, dst, t->dims[0]);
		gguf_put(o, dst, dst_row);
	}
	free(src);
	free(dst);
	free(x);
	return r == rows || o->bad ? 0 : -errno;
}

/* SIGINT, SIGTERM, SIGHUP: remove the temporary file, then die of the signal. */
static void on_signal(int sig)
{
	gguf_out_remove_pending();
	signal(sig, SIG_DFL);
	raise(sig);
}

void cli_remove_output_on_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGXFSZ, SIG_IGN);	/* past ulimit -f: EFBIG, reported as any write error */
}

int cmd_quantize(int argc, char **argv)
{
	struct gguf_error gerr;
	struct pinfer_err err = { 0 };
	struct gguf_writer o = { 0 };
	struct gguf *g = NULL;
	uint32_t type = 0, ftype = 0, *types = NULL;
	bool tied = true;
	pinfer_progress_fn progress = cli_progress_fn(false);
	uint64_t done = 0, total = 0;
	uint64_t i, off, *offs = NULL;
	size_t k;
	int in = -1, ret = EXIT_FAIL, e;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(quantize_help, stdout);
		return EXIT_OK;
	}
	for (k = 1; k < (size_t)argc; k++)	/* -q anywhere: the rest are positional */
		if (!strcmp(argv[k], "-q") || !strcmp(argv[k], "--quiet")) {
			progress = NULL;
			memmove(argv + k, argv + k + 1, (argc - k) * sizeof(*argv));
			argc--;
			break;
		}
	if (argc != 4) {
		fputs(quantize_help, stderr);
		return EXIT_USAGE;
	}
	for (k = 0; k < sizeof(targets) / sizeof(targets[0]); k++)
		if (!strcmp(argv[3], targets[k].name)) {
			type = targets[k].type;
			ftype = targets[k].ftype;
			break;
		}
	if (k == sizeof(targets) / sizeof(targets[0])) {
		cli_error("quantize: type '%s' is not one of f32, f16, q8_0, q4_0, q4_1, q4_k, q6_k",
			  argv[3]);
		return EXIT_USAGE;
	}
	if (gguf_open(&g, argv[1], &gerr)) {
		cli_error("%s: %s", argv[1], gerr.msg);
		return EXIT_FAIL;
	}
	in = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		cli_error("quantize: %s: %s", argv[1], strerror(errno));
		goto out;
	}
	cli_remove_output_on_signals();
	if (gguf_out_open(&o, argv[2], argv[1], &err)) {
		cli_error("quantize: %s", err.msg);
		goto out;
	}
	types = calloc(g->n_tensors + 1, sizeof(*types));
	offs = calloc(g->n_tensors + 1, sizeof(*offs));
	if (!types || !offs) {
		cli_error("quantize: out of memory");
		goto out;
	}
	for (i = 0; i < g->n_tensors; i++)
		if (name_is(&g->tensors[i], "output.weight"))
			tied = false;
	for (i = 0; i < g->n_tensors; i++)
		if (!quant_supported(g->tensors[i].type)) {
			cli_error("quantize: tensor %.*s has type %s, which cannot be converted",
				  (int)g->tensors[i].name.len, g->tensors[i].name.ptr,
				  ggml_type_name(g->tensors[i].type));
			goto out;
		}

	/* header: counts, the KVs copied (file_type updated), tensor infos */
	gguf_put(&o, "GGUF", 4);
	gguf_put_u32(&o, 3);
	gguf_put_u64(&o, g->n_tensors);
	gguf_put_u64(&o, g->n_kv);
	for (i = 0; i < g->n_kv; i++) {
		const struct gguf_kv *kv = &g->kv[i];
		uint64_t end = i + 1 < g->n_kv ? g->kv[i + 1].offset :
			       g->n_tensors ? g->tensors[0].info_offset : g->data_offset;
		uint8_t *raw = malloc(end - kv->offset);

		if (!raw || pread(in, raw, end - kv->offset, (off_t)kv->offset) !=
			    (ssize_t)(end - kv->offset)) {
			free(raw);
			cli_error("quantize: reading %s: %s", argv[1], strerror(errno ? errno : EIO));
			goto out;
		}
		if (gguf_str_eq(kv->key, "general.file_type") && kv->value.type == GGUF_TYPE_UINT32)
			memcpy(raw + 8 + kv->key.len + 4, &ftype, 4);
		gguf_put(&o, raw, end - kv->offset);
		free(raw);
	}
	for (i = 0, off = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		uint64_t bytes = 0;
		uint32_t d;

		types[i] = new_type(t, type, tied);
		ggml_row_bytes(types[i], t->dims[0], &bytes);
		offs[i] = off;
		off = (off + bytes * (t->n_elems / t->dims[0]) + g->alignment - 1) /
		      g->alignment * g->alignment;
		gguf_put_u64(&o, t->name.len);	/* names as stored: not NUL-terminated */
		gguf_put(&o, t->name.ptr, t->name.len);
		gguf_put_u32(&o, t->n_dims);
		for (d = 0; d < t->n_dims; d++)
			gguf_put_u64(&o, t->dims[d]);
		gguf_put_u32(&o, types[i]);
		gguf_put_u64(&o, offs[i]);
	}
	gguf_pad(&o, g->alignment);

	/* data, in the order of the offsets given above; progress in bytes read */
	for (i = 0; i < g->n_tensors; i++)
		total += g->tensors[i].bytes;
	if (progress)
		progress(0, total, (void *)"quantizing");
	for (i = 0; i < g->n_tensors && !o.bad; i++) {
		e = convert(in, &g->tensors[i], types[i], &o);
		if (e) {
			cli_error("quantize: reading tensor %.*s of %s: %s", (int)g->tensors[i].name.len,
				  g->tensors[i].name.ptr, argv[1], strerror(-e));
			goto out;
		}
		gguf_pad(&o, g->alignment);
		done += g->tensors[i].bytes;
		if (progress)
			progress(done, total, (void *)"quantizing");
	}
	if (gguf_out_commit(&o, &err)) {
		cli_error("quantize: %s", err.msg);
		goto out;
	}
	fprintf(stderr, "pinfer: wrote %s (%s, %.1f MiB)\n", argv[2], argv[3], o.pos / 1048576.0);
	ret = EXIT_OK;
out:
	gguf_out_abort(&o);
	if (in >= 0)
		close(in);
	free(types);
	free(offs);
	gguf_close(g);
	return ret;
}
