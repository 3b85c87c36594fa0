// SPDX-License-Identifier: MIT
/*
 * pinfer quantize IN OUT TYPE: the model in another tensor type (or mix of
 * types, new_type()), as llama.cpp's quantizer writes it. Metadata is
 * copied byte for byte (with general.file_type updated); each tensor is
 * converted row by row (dequantized, then quantized, or copied when its
 * type stays); the file is written to a new OUT.XXXXXX and renamed
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
	"Writes the GGUF model IN to OUT with its weight matrices in TYPE, choosing\n"
	"each tensor's type by llama.cpp's quantizer's rules:\n"
	"  f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q5_k, q6_k: every matrix in that\n"
	"      type, but the output layer (or the token embedding the model ties to\n"
	"      it) at Q6_K (all but f32, f16, q8_0);\n"
	"  q4_k (llama.cpp's Q4_K_S): Q4_K, attn_v in the first 4 layers and\n"
	"      ffn_down in the first eighth at Q5_K, the output at Q6_K;\n"
	"  q4_k_m, q5_k_m: Q4_K or Q5_K, with attn_v and ffn_down at Q6_K in the\n"
	"      first and last eighth of the layers and every third between, the\n"
	"      output at Q6_K;\n"
	"  with 8 experts (Mixtral) attn_k and attn_v at Q8_0, and for q4_k and\n"
	"  q4_k_m attn_output at Q5_K.\n"
	"A matrix whose rows are not whole blocks of its type falls back as\n"
	"llama.cpp's does: Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0 (others keep\n"
	"their own type). Vectors (norms, biases) are f32, the routers of\n"
	"mixture-of-experts layers keep their type. A progress bar on stderr when it\n"
	"is a terminal; -q: none.\n";

enum mix { MIX_NONE, MIX_Q4_K_S, MIX_Q4_K_M, MIX_Q5_K_M };

/* ftype: general.file_type, llama.cpp's numbering */
static const struct { const char *name; uint32_t type, ftype; enum mix mix; } targets[] = {
	{ "f32", GGML_TYPE_F32, 0, MIX_NONE }, { "f16", GGML_TYPE_F16, 1, MIX_NONE },
	{ "q4_0", GGML_TYPE_Q4_0, 2, MIX_NONE }, { "q4_1", GGML_TYPE_Q4_1, 3, MIX_NONE },
	{ "q8_0", GGML_TYPE_Q8_0, 7, MIX_NONE }, { "q5_0", GGML_TYPE_Q5_0, 8, MIX_NONE },
	{ "q5_1", GGML_TYPE_Q5_1, 9, MIX_NONE }, { "q4_k", GGML_TYPE_Q4_K, 14, MIX_Q4_K_S },
	{ "q4_k_m", GGML_TYPE_Q4_K, 15, MIX_Q4_K_M }, { "q5_k", GGML_TYPE_Q5_K, 16, MIX_NONE },
	{ "q5_k_m", GGML_TYPE_Q5_K, 17, MIX_Q5_K_M }, { "q6_k", GGML_TYPE_Q6_K, 18, MIX_NONE },
};

/* What the per-tensor rules need to know of the model. */
struct plan {
	uint32_t type;		/* TYPE */
	enum mix mix;
	bool tied;		/* no output.weight: token_embd.weight is the output */
	uint32_t n_layer;	/* blk.N. tensors: the largest N + 1 */
	uint64_t n_expert;	/* ARCH.expert_count, 0 for none */
};

static bool name_is(const struct gguf_tensor *t, const char *name)
{
	return t->name.len == strlen(name) && !memcmp(t->name.ptr, name, t->name.len);
}

static bool name_has(const struct gguf_tensor *t, const char *part)
{
	return memmem(t->name.ptr, t->name.len, part, strlen(part)) != NULL;
}

/* N of a "blk.N." tensor, or -1. */
static long layer_of(const struct gguf_tensor *t)
{
	char name[GGUF_MAX_NAME + 1];
	long n;

	snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.ptr);
	return sscanf(name, "blk.%ld.", &n) == 1 ? n : -1;
}

/* llama.cpp's choice of layers that get more bits: the first and last eighth, every third between. */
static bool more_bits(long i, long n)
{
	return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/*
 * The type tensor @t gets, following llama.cpp's quantizer
 * (llama_tensor_get_type(), for the mixes above):
 * - a MoE router (ffn_gate_inp) keeps its own type: small, and which
 *   experts run hangs on it; vectors (norms, biases) are F32; float TYPEs
 *   apply to every matrix;
 * - the output layer (output.weight, or token_embd.weight when the model
 *   ties the two) at Q6_K, unless TYPE is Q8_0. Its errors go straight
 *   into every logit: SmolLM2's tied embedding at Q4_0 cost 9% of
 *   perplexity (Documentation/engine.md);
 * - with 8 experts (Mixtral), attn_k and attn_v at Q8_0; q4_k's and
 *   q4_k_m's attn_output at Q5_K;
 * - q4_k_m, q5_k_m: attn_v and ffn_down at Q6_K in the layers more_bits()
 *   picks; q4_k (llama.cpp's Q4_K_S): attn_v in the first 4 layers and
 *   ffn_down in the first eighth at Q5_K (llama.cpp counts attn_v tensors
 *   and ffn_down tensors in file order; here the layer number and the
 *   layer count, the same for every model whose layers each have one of
 *   each);
 * - rows that are not whole blocks of the type chosen: Q4_K falls back to
 *   Q5_0, Q5_K to Q5_1, Q6_K to Q8_0 (llama.cpp's fallbacks); if that still
 *   does not fit, the tensor's own type.
 */
static uint32_t new_type(const struct gguf_tensor *t, const struct plan *p)
{
	uint32_t type = p->type;
	long layer = layer_of(t);
	bool k_m = p->mix == MIX_Q4_K_M || p->mix == MIX_Q5_K_M;

	if (name_has(t, "ffn_gate_inp.weight"))
		return t->type;
	if (t->n_dims < 2)
		return GGML_TYPE_F32;
	if (type == GGML_TYPE_F32 || type == GGML_TYPE_F16)
		return type;
	if (name_is(t, "output.weight") || (p->tied && name_is(t, "token_embd.weight"))) {
		if (type != GGML_TYPE_Q8_0)
			type = GGML_TYPE_Q6_K;
	} else if (name_has(t, "attn_v.weight")) {
		if (p->n_expert == 8)
			type = GGML_TYPE_Q8_0;
		else if (k_m && more_bits(layer, p->n_layer))
			type = GGML_TYPE_Q6_K;
		else if (p->mix == MIX_Q4_K_S && layer < 4)
			type = GGML_TYPE_Q5_K;
	} else if (name_has(t, "attn_k.weight")) {
		if (p->n_expert == 8)
			type = GGML_TYPE_Q8_0;
	} else if (name_has(t, "ffn_down")) {
		if (k_m && more_bits(layer, p->n_layer))
			type = GGML_TYPE_Q6_K;
		else if (p->mix == MIX_Q4_K_S && layer < p->n_layer / 8)
			type = GGML_TYPE_Q5_K;
	} else if (name_has(t, "attn_output.weight")) {
		if (p->n_expert == 8 && (p->mix == MIX_Q4_K_S || p->mix == MIX_Q4_K_M))
			type = GGML_TYPE_Q5_K;
	}
	if (t->dims[0] % ggml_type_get(type)->block_elems)
		type = type == GGML_TYPE_Q4_K ? GGML_TYPE_Q5_0 :
		       type == GGML_TYPE_Q5_K ? GGML_TYPE_Q5_1 :
		       type == GGML_TYPE_Q6_K ? GGML_TYPE_Q8_0 : type;
	return t->dims[0] % ggml_type_get(type)->block_elems ? t->type : type;
}

/* The model's layer count, expert count and whether its output is tied. */
static void plan_model(const struct gguf *g, struct plan *p)
{
	const struct gguf_kv *arch = gguf_find_kv(g, "general.architecture"), *kv;
	uint64_t i;

	p->tied = true;
	p->n_layer = 0;
	p->n_expert = 0;
	for (i = 0; i < g->n_tensors; i++) {
		long layer = layer_of(&g->tensors[i]);

		if (name_is(&g->tensors[i], "output.weight"))
			p->tied = false;
		if (layer >= 0 && (uint64_t)layer + 1 > p->n_layer)
			p->n_layer = (uint32_t)layer + 1;
	}
	if (arch && arch->value.type == GGUF_TYPE_STRING) {
		char key[128];

		snprintf(key, sizeof(key), "%.*s.expert_count", (int)arch->value.str.len,
			 arch->value.str.ptr);
		kv = gguf_find_kv(g, key);
		if (kv && (kv->value.type == GGUF_TYPE_UINT32 || kv->value.type == GGUF_TYPE_UINT64))
			p->n_expert = kv->value.u64;
	}
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
		if (type == t->type) {	/* kept: the bytes as they are (BF16 has no writer) */
			gguf_put(o, src, src_row);
			continue;
		}
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
	uint32_t ftype = 0, *types = NULL;
	struct plan plan = { 0 };
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
			plan.type = targets[k].type;
			plan.mix = targets[k].mix;
			ftype = targets[k].ftype;
			break;
		}
	if (k == sizeof(targets) / sizeof(targets[0])) {
		cli_error("quantize: type '%s' is not one of f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, "
			  "q4_k, q4_k_m, q5_k, q5_k_m, q6_k", argv[3]);
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
	plan_model(g, &plan);
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

		types[i] = new_type(t, &plan);
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
