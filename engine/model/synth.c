// SPDX-License-Identifier: MIT
/*
 * pinfer synth: a GGUF model of real shapes with random weights.
 *
 * The header is written with stdio; the tensor data, cut into work units of
 * about 4 MiB of whole rows, is made and written (pwrite at its offset) by
 * the pool's threads, so a multi-gigabyte model takes about as long as the
 * drive needs to take it. Each unit has its own random stream (a function
 * of the seed, the tensor and the unit), so the file does not depend on the
 * thread count, and no two layers are alike.
 *
 * The weights are scaled so that a row dotted with a unit-RMS input gives
 * about a unit-RMS output: activations stay finite through any depth.
 */
#include "synth.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/ggml_types.h"
#include "format/gguf.h"
#include "kernels/quant.h"

#define SYNTH_UNIT (4u << 20)	/* bytes of data per work unit, about */
#define SYNTH_ALIGN 32		/* GGUF's default data alignment */

static const struct preset {
	const char *arch, *params, *like;
	uint32_t embd, layers, ff, heads, kv_heads, head_dim, experts, used;
} presets[] = {
	{ "llama", "135M", "SmolLM2-135M", 576, 30, 1536, 9, 3, 0, 0, 0 },
	{ "llama", "360M", "SmolLM2-360M", 960, 32, 2560, 15, 5, 0, 0, 0 },
	{ "llama", "1B", "TinyLlama-1.1B", 2048, 22, 5632, 32, 4, 0, 0, 0 },
	{ "llama", "3B", "Llama-3.2-3B", 3072, 28, 8192, 24, 8, 0, 0, 0 },
	{ "llama", "7B", "Llama-2-7B", 4096, 32, 11008, 32, 32, 0, 0, 0 },
	{ "llama", "8B", "Llama-3-8B", 4096, 32, 14336, 32, 8, 0, 0, 0 },
	{ "llama", "13B", "Llama-2-13B", 5120, 40, 13824, 40, 40, 0, 0, 0 },
	{ "llama", "70B", "Llama-3-70B", 8192, 80, 28672, 64, 8, 0, 0, 0 },
	{ "qwen2", "0.5B", "Qwen2-0.5B", 896, 24, 4864, 14, 2, 0, 0, 0 },
	{ "qwen2", "1.5B", "Qwen2-1.5B", 1536, 28, 8960, 12, 2, 0, 0, 0 },
	{ "qwen2", "7B", "Qwen2-7B", 3584, 28, 18944, 28, 4, 0, 0, 0 },
	{ "qwen3", "0.6B", "Qwen3-0.6B", 1024, 28, 3072, 16, 8, 128, 0, 0 },
	{ "qwen3", "8B", "Qwen3-8B", 4096, 36, 12288, 32, 8, 128, 0, 0 },
	{ "llama", "8x7B", "Mixtral-8x7B", 4096, 32, 14336, 32, 8, 0, 8, 2 },
	{ "qwen3moe", "30B-A3B", "Qwen3-30B-A3B", 2048, 48, 768, 32, 4, 128, 128, 8 },
};

static enum llm_arch arch_of(const char *name)
{
	return !strcmp(name, "qwen2") ? LLM_ARCH_QWEN2 : !strcmp(name, "qwen3") ? LLM_ARCH_QWEN3 :
	       !strcmp(name, "qwen3moe") ? LLM_ARCH_QWEN3MOE : LLM_ARCH_LLAMA;
}

#define N_PRESETS (sizeof(presets) / sizeof(presets[0]))

const char *synth_presets(void)
{
	static char buf[1024];
	size_t i, n = 0;

	if (buf[0])
		return buf;
	for (i = 0; i < N_PRESETS && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
				      "  --arch %-8s --params %-7s shapes of %s\n",
				      presets[i].arch, presets[i].params, presets[i].like);
	return buf;
}

int synth_preset(struct synth_spec *s, const char *arch, const char *params,
		 struct pinfer_err *err)
{
	size_t i;

	for (i = 0; i < N_PRESETS; i++) {
		const struct preset *p = &presets[i];

		if (strcmp(p->arch, arch) || strcasecmp(p->params, params))
			continue;
		*s = (struct synth_spec){
			.arch = arch_of(arch),
			.n_embd = p->embd, .n_layer = p->layers, .n_ff = p->ff,
			.n_head = p->heads, .n_head_kv = p->kv_heads, .head_dim = p->head_dim,
			.n_expert = p->experts, .n_expert_used = p->used, .n_vocab = 512,
			.ctx = 4096, .type = GGML_TYPE_Q4_0, .seed = 1,
		};
		return 0;
	}
	return pinfer_fail(err, EINVAL, "no preset --arch %s --params %s; the presets are:\n%s",
			   arch, params, synth_presets());
}

/* ---- the tensor table ---------------------------------------------------------- */

enum kind { K_MATRIX, K_NORM, K_BIAS, K_FREQ, K_ROUTER };

struct stensor {
	char name[48];
	uint64_t cols, rows;	/* rows 1: a vector; of all the matrices (3-D: mats) */
	uint32_t mats;		/* 1, or the experts stacked */
	uint32_t layer;
	float gain;		/* the output's RMS for a unit-RMS input (matrices) */
	uint32_t type;
	enum kind kind;
	uint64_t row_bytes, offset;	/* offset in the data section */
};

struct table {
	struct stensor *t;
	size_t n;
	uint64_t data_bytes;
};

static void add(struct table *tb, const char *name, uint64_t cols, uint64_t rows,
		uint32_t mats, uint32_t layer, uint32_t type, enum kind kind)
{
	struct stensor *t = &tb->t[tb->n++];

	snprintf(t->name, sizeof(t->name), "%s", name);
	t->cols = cols;
	t->rows = rows * mats;
	t->mats = mats;
	t->layer = layer;
	t->gain = 1;
	t->type = kind == K_MATRIX ? type : GGML_TYPE_F32;
	t->kind = kind;
	if (!ggml_row_bytes(t->type, cols, &t->row_bytes))
		t->row_bytes = 0;	/* refused by make_table() */
	t->offset = tb->data_bytes;
	tb->data_bytes = (tb->data_bytes + t->row_bytes * t->rows + SYNTH_ALIGN - 1) /
			 SYNTH_ALIGN * SYNTH_ALIGN;
}

/* The tensors in llama.cpp's order: embeddings, the layers, the output. */
static int make_table(const struct synth_spec *s, struct table *tb,
		      struct pinfer_err *err)
{
	uint64_t hd, qd, kvd;
	char n[48];
	uint32_t i;
	size_t k;

	hd = s->head_dim ? s->head_dim : s->n_head ? s->n_embd / s->n_head : 0;
	if (!s->n_embd || !s->n_head || !s->n_head_kv || !s->n_ff || !s->n_layer ||
	    !s->n_vocab || s->n_vocab < 260 || (!s->head_dim && s->n_embd % s->n_head) ||
	    s->n_head % s->n_head_kv || !hd || hd % 2 || s->n_layer > 1024 ||
	    (s->arch == LLM_ARCH_QWEN3MOE && !s->n_expert) ||
	    (s->n_expert && (!s->n_expert_used || s->n_expert_used > s->n_expert ||
			     s->n_expert > 1024)))
		return pinfer_fail(err, EINVAL, "synth: inconsistent shapes: embedding %" PRIu32 ", %" PRIu32 " layers, %" PRIu32 " heads of %" PRIu64 ", %" PRIu32 " KV heads, FFN %" PRIu32 ", vocabulary %" PRIu32 " (at least 260), %" PRIu32 " of %" PRIu32 " experts",
				   s->n_embd, s->n_layer, s->n_head, hd, s->n_head_kv, s->n_ff,
				   s->n_vocab, s->n_expert_used, s->n_expert);
	qd = hd * s->n_head;
	kvd = hd * s->n_head_kv;
	tb->t = calloc(4 + (size_t)s->n_layer * 16, sizeof(*tb->t));
	if (!tb->t)
		return pinfer_fail(err, ENOMEM, "synth: out of memory");
	if (s->rope_freqs)
		add(tb, "rope_freqs.weight", hd / 2, 1, 1, 0, 0, K_FREQ);
	add(tb, "token_embd.weight", s->n_embd, s->n_vocab, 1, 0, s->type, K_MATRIX);
	for (i = 0; i < s->n_layer; i++) {
#define T(suffix_, cols_, rows_, mats_, kind_) \
	(snprintf(n, sizeof(n), "blk.%" PRIu32 ".%s", i, suffix_), \
	 add(tb, n, cols_, rows_, mats_, i, s->type, kind_))
		T("attn_norm.weight", s->n_embd, 1, 1, K_NORM);
		if (s->arch == LLM_ARCH_QWEN2) {
			T("attn_q.bias", qd, 1, 1, K_BIAS);
			T("attn_k.bias", kvd, 1, 1, K_BIAS);
			T("attn_v.bias", kvd, 1, 1, K_BIAS);
		}
		T("attn_q.weight", s->n_embd, qd, 1, K_MATRIX);
		T("attn_k.weight", s->n_embd, kvd, 1, K_MATRIX);
		T("attn_v.weight", s->n_embd, kvd, 1, K_MATRIX);
		T("attn_output.weight", qd, s->n_embd, 1, K_MATRIX);
		if (s->arch == LLM_ARCH_QWEN3 || s->arch == LLM_ARCH_QWEN3MOE) {
			T("attn_q_norm.weight", hd, 1, 1, K_NORM);
			T("attn_k_norm.weight", hd, 1, 1, K_NORM);
		}
		T("ffn_norm.weight", s->n_embd, 1, 1, K_NORM);
		if (s->n_expert) {
			T("ffn_gate_inp.weight", s->n_embd, s->n_expert, 1, K_ROUTER);
			T("ffn_gate_exps.weight", s->n_embd, s->n_ff, s->n_expert, K_MATRIX);
			T("ffn_up_exps.weight", s->n_embd, s->n_ff, s->n_expert, K_MATRIX);
			T("ffn_down_exps.weight", s->n_ff, s->n_embd, s->n_expert, K_MATRIX);
			continue;
		}
		T("ffn_gate.weight", s->n_embd, s->n_ff, 1, K_MATRIX);
		T("ffn_up.weight", s->n_embd, s->n_ff, 1, K_MATRIX);
		T("ffn_down.weight", s->n_ff, s->n_embd, 1, K_MATRIX);
#undef T
	}
	add(tb, "output_norm.weight", s->n_embd, 1, 1, 0, 0, K_NORM);
	add(tb, "output.weight", s->n_embd, s->n_vocab, 1, 0, s->type, K_MATRIX);
	/*
	 * As trained models are: the residual stream starts at about unit RMS
	 * (embedding rows of unit RMS elements) and each layer adds a small
	 * part to it (its output projections' gain 1/sqrt(2 layers)), so a
	 * token's identity carries through the depth: routers see different
	 * tokens differently.
	 */
	for (k = 0; k < tb->n; k++) {
		const char *nm = tb->t[k].name;

		if (!strcmp(nm, "token_embd.weight"))
			tb->t[k].gain = sqrtf((float)s->n_embd);
		else if (strstr(nm, "attn_output.") || strstr(nm, "ffn_down"))
			tb->t[k].gain = 1 / sqrtf(2.0f * (float)s->n_layer);
	}
	for (k = 0; k < tb->n; k++)
		if (!tb->t[k].row_bytes)
			return pinfer_fail(err, EINVAL, "synth: %s has rows of %" PRIu64 " elements, not whole blocks of %s (%" PRIu32 ")",
					   tb->t[k].name, tb->t[k].cols, ggml_type_name(s->type),
					   ggml_type_get(s->type)->block_elems);
	return 0;
}

uint64_t synth_bytes(const struct synth_spec *s)
{
	struct table tb = { 0 };
	uint64_t n = make_table(s, &tb, NULL) ? 0 : tb.data_bytes;

	free(tb.t);
	return n;
}

/* ---- random data ----------------------------------------------------------- */

static uint64_t mix(uint64_t x)		/* splitmix64's finalizer */
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t next(uint64_t *st)	/* xorshift64* */
{
	*st ^= *st >> 12;
	*st ^= *st << 25;
	*st ^= *st >> 27;
	return *st * 0x2545f4914f6cdd1dull;
}

static float uniform(uint64_t *st)	/* in [-1, 1) */
{
	return (float)(next(st) >> 40) / (float)(1 << 23) - 1.0f;
}

float synth_router_scale(const struct synth_spec *s, uint32_t layer, uint32_t expert)
{
	uint64_t st = mix(s->seed ^ mix(0x5eedull << 40 ^ layer)) | 1;
	uint32_t rank = 0, e;
	uint64_t key = 0, mine = 0;

	if (!(s->skew > 0))
		return 1;
	/* the layer's random order: expert e's key is the e-th draw; rank = keys below its */
	for (e = 0; e <= expert; e++)
		mine = next(&st);
	st = mix(s->seed ^ mix(0x5eedull << 40 ^ layer)) | 1;
	for (e = 0; e < s->n_expert; e++) {
		key = next(&st);
		rank += key < mine || (key == mine && e < expert);
	}
	return powf(1.0f + (float)rank, -s->skew);
}

static void put_fp16(uint8_t *p, float v)
{
	fp16_t h = f32_to_fp16(v);

	memcpy(p, &h, sizeof(h));
}

/*
 * @n rows of tensor @t: random quants, with block scales chosen so the RMS
 * of a row's elements is about 1/sqrt(cols). The divisors are the RMS of
 * the quantized integers (times the sub-block scales) of each format.
 */
static void fill(const struct synth_spec *s, const struct stensor *t, uint8_t *buf,
		 uint64_t row, uint64_t n, uint64_t *st)
{
	const struct ggml_type_info *ti = ggml_type_get(t->type);
	uint64_t bytes = n * t->row_bytes, nb = bytes / ti->block_bytes, i;
	float g = t->gain / sqrtf((float)t->cols);

	if (t->kind == K_ROUTER) {	/* F32 rows, each of its expert's scale */
		float *v = (float *)buf;
		uint64_t r, k;

		for (r = 0; r < n; r++) {
			float sc = synth_router_scale(s, t->layer, (uint32_t)(row + r));

			for (k = 0; k < t->cols; k++)
				*v++ = g * 1.7f * uniform(st) * sc;
		}
		return;
	}
	if (t->kind != K_MATRIX) {	/* F32 vectors */
		float *v = (float *)buf;

		for (i = 0; i < n * t->cols; i++)
			v[i] = t->kind == K_NORM ? 1.0f + 0.1f * uniform(st) :
			       t->kind == K_FREQ ? 4.5f + 3.5f * uniform(st) : 0.1f * uniform(st);
		return;
	}
	for (i = 0; i + 8 <= bytes; i += 8) {
		uint64_t r = next(st);

		memcpy(buf + i, &r, 8);
	}
	for (; i < bytes; i++)
		buf[i] = (uint8_t)next(st);
	for (i = 0; i < nb; i++) {
		uint8_t *b = buf + i * ti->block_bytes;
		float d;

		switch (t->type) {
		case GGML_TYPE_F32:
			((float *)b)[0] = g * 1.7f * uniform(st);
			break;
		case GGML_TYPE_F16:
			put_fp16(b, g * 1.7f * uniform(st));
			break;
		case GGML_TYPE_BF16: {
			float f = g * 1.7f * uniform(st);
			uint32_t u;

			memcpy(&u, &f, 4);
			u >>= 16;
			memcpy(b, &u, 2);
			break;
		}
		case GGML_TYPE_Q4_0:	/* quants 0..15 less 8: a mean of -0.5, so a
					   random sign per block, or every row would
					   share a direction */
			put_fp16(b, (next(st) & 1 ? g : -g) / 4.64f);
			break;
		case GGML_TYPE_Q4_1:
			d = g / 4.61f;
			put_fp16(b, d);
			put_fp16(b + 2, -7.5f * d);
			break;
		case GGML_TYPE_Q8_0:	/* -128..127: the same */
			put_fp16(b, (next(st) & 1 ? g : -g) / 73.9f);
			break;
		case GGML_TYPE_Q4_K:
			d = g / 320.0f;
			put_fp16(b, d);
			put_fp16(b + 2, 7.5f * d);
			break;
		case GGML_TYPE_Q5_K:
			d = g / 656.0f;
			put_fp16(b, d);
			put_fp16(b + 2, 15.5f * d);
			break;
		case GGML_TYPE_Q6_K:
			put_fp16(b + offsetof(struct block_q6_K, d), g / 1365.0f);
			break;
		}
	}
}

struct unit {
	uint32_t tensor;
	uint64_t row, n;	/* rows [row, row + n) */
};

struct job {
	const struct synth_spec *s;
	const struct table *tb;
	const struct unit *units;
	uint8_t **bufs;		/* one per thread */
	int fd;
	uint64_t data_off, total;
	_Atomic uint64_t done;
	_Atomic int error;	/* first errno */
	pinfer_progress_fn progress;
	void *arg;
};

static void make_units(void *arg, size_t b, size_t e, int thread)
{
	struct job *j = arg;

	for (; b < e; b++) {
		const struct unit *u = &j->units[b];
		const struct stensor *t = &j->tb->t[u->tensor];
		uint64_t st = mix(j->s->seed ^ mix(((uint64_t)u->tensor << 32) ^ u->row)) | 1;
		uint64_t len = u->n * t->row_bytes, off = j->data_off + t->offset + u->row * t->row_bytes;
		uint64_t done, w = 0;

		if (atomic_load(&j->error))
			return;
		fill(j->s, t, j->bufs[thread], u->row, u->n, &st);
		while (w < len) {
			ssize_t r = pwrite(j->fd, j->bufs[thread] + w, len - w, (off_t)(off + w));

			if (r <= 0) {
				int zero = 0;

				atomic_compare_exchange_strong(&j->error, &zero, r ? errno : ENOSPC);
				return;
			}
			w += (uint64_t)r;
		}
		done = atomic_fetch_add(&j->done, len) + len;
		if (thread == 0 && j->progress)
			j->progress(done, j->total, j->arg);
	}
}

/* ---- the file ---------------------------------------------------------------- */

/* GPT-2's byte-to-character map: printable bytes stand for themselves. */
static void byte_token(unsigned int b, char *out)
{
	unsigned int cp = b, k = 0, c;

	if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
		for (c = 0; c < b; c++)
			if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174))
				k++;
		cp = 256 + k;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = 0;
	} else {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		out[2] = 0;
	}
}

static const char chatml[] =
	"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
	"message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* Metadata: the architecture's keys and a byte-level tokenizer of n_vocab. */
static int write_meta(struct gguf_writer *w, const struct synth_spec *s, size_t n_tensors)
{
	const char *a = llm_arch_name(s->arch);
	bool qwen = s->arch != LLM_ARCH_LLAMA, qwen3 = qwen && s->arch != LLM_ARCH_QWEN2;
	uint32_t hd = s->head_dim ? s->head_dim : s->n_embd / s->n_head;
	char (*names)[24] = calloc(s->n_vocab, sizeof(*names));
	const char **tok = calloc(s->n_vocab, sizeof(*tok));
	int32_t *types = calloc(s->n_vocab, sizeof(*types));
	char key[96];
	uint32_t i;

	if (!names || !tok || !types) {
		free(names);
		free(tok);
		free(types);
		return -ENOMEM;
	}
	for (i = 0; i < s->n_vocab; i++) {
		if (i < 256)
			byte_token(i, names[i]);
		else if (i == 256)
			snprintf(names[i], sizeof(names[i]), "<|endoftext|>");
		else if (i == 257)
			snprintf(names[i], sizeof(names[i]), "<|im_start|>");
		else if (i == 258)
			snprintf(names[i], sizeof(names[i]), "<|im_end|>");
		else
			snprintf(names[i], sizeof(names[i]), "<|synth_%" PRIu32 "|>", i);
		tok[i] = names[i];
		types[i] = i < 256 ? 1 : 3;	/* normal, control */
	}
	gguf_put(w, "GGUF", 4);
	gguf_put_u32(w, 3);
	gguf_put_u64(w, n_tensors);
	/* the key-value pairs below */
	gguf_put_u64(w, 21 + (s->rope_scale > 0 ? 2 : 0) + (s->head_dim ? 2 : 0) +
		     (s->n_expert ? 3 : 0));
	gguf_put_kv_str(w, "general.architecture", a);
	gguf_put_kv_str(w, "general.name", "pinfer synth");
	gguf_put_kv_u32(w, "general.file_type", 0);
#define ARCH_U32(k_, v_) (snprintf(key, sizeof(key), "%s.%s", a, k_), gguf_put_kv_u32(w, key, v_))
#define ARCH_F32(k_, v_) (snprintf(key, sizeof(key), "%s.%s", a, k_), gguf_put_kv_f32(w, key, v_))
	ARCH_U32("context_length", s->ctx);
	ARCH_U32("embedding_length", s->n_embd);
	ARCH_U32("block_count", s->n_layer);
	/* a MoE model's dense width (unused): as Qwen3-30B-A3B's files have it */
	ARCH_U32("feed_forward_length", s->n_expert && qwen3 ? s->n_ff * 8 : s->n_ff);
	ARCH_U32("attention.head_count", s->n_head);
	ARCH_U32("attention.head_count_kv", s->n_head_kv);
	if (s->head_dim) {
		ARCH_U32("attention.key_length", hd);
		ARCH_U32("attention.value_length", hd);
	}
	if (s->n_expert) {
		ARCH_U32("expert_count", s->n_expert);
		ARCH_U32("expert_used_count", s->n_expert_used);
		ARCH_U32("expert_feed_forward_length", s->n_ff);
	}
	ARCH_U32("rope.dimension_count", hd);
	ARCH_F32("rope.freq_base", qwen ? 1000000.0f : 10000.0f);
	ARCH_F32("attention.layer_norm_rms_epsilon", qwen3 ? 1e-6f : 1e-5f);
	if (s->rope_scale > 0) {
		snprintf(key, sizeof(key), "%s.rope.scaling.type", a);
		gguf_put_kv_str(w, key, "linear");
		ARCH_F32("rope.scaling.factor", s->rope_scale);
	}
#undef ARCH_U32
#undef ARCH_F32
	gguf_put_kv_str(w, "tokenizer.ggml.model", "gpt2");
	gguf_put_kv_str(w, "tokenizer.ggml.pre", "default");
	gguf_put_kv_strs(w, "tokenizer.ggml.tokens", tok, s->n_vocab);
	gguf_put_kv_i32s(w, "tokenizer.ggml.token_type", types, s->n_vocab);
	gguf_put_kv_strs(w, "tokenizer.ggml.merges", NULL, 0);
	gguf_put_kv_u32(w, "tokenizer.ggml.bos_token_id", 256);
	gguf_put_kv_u32(w, "tokenizer.ggml.eos_token_id", 258);
	gguf_put_kv_u32(w, "tokenizer.ggml.padding_token_id", 256);
	gguf_put_kv_str(w, "tokenizer.chat_template", chatml);
	free(names);
	free(tok);
	free(types);
	return 0;
}

int synth_write(const struct synth_spec *s, const char *path,
		struct pinfer_pool *pool, pinfer_progress_fn progress, void *arg,
		struct pinfer_err *err)
{
	int threads = pool ? pinfer_pool_threads(pool) : 1, ret, i;
	struct table tb = { 0 };
	struct gguf_writer w = { 0 };
	struct unit *units = NULL;
	uint8_t **bufs = NULL;
	size_t n_units = 0, k;
	uint64_t max_unit = 0;
	struct job j;

	ret = make_table(s, &tb, err);
	if (ret)
		goto out;
	/* work units: whole rows, about SYNTH_UNIT bytes each */
	units = calloc(tb.n + tb.data_bytes / SYNTH_UNIT + 1, sizeof(*units));
	bufs = calloc((size_t)threads, sizeof(*bufs));
	if (!units || !bufs) {
		ret = pinfer_fail(err, ENOMEM, "synth: out of memory");
		goto out;
	}
	for (k = 0; k < tb.n; k++) {
		uint64_t per = SYNTH_UNIT / tb.t[k].row_bytes, r;

		per = per ? per : 1;
		for (r = 0; r < tb.t[k].rows; r += per) {
			uint64_t n = tb.t[k].rows - r < per ? tb.t[k].rows - r : per;

			units[n_units++] = (struct unit){ (uint32_t)k, r, n };
			if (n * tb.t[k].row_bytes > max_unit)
				max_unit = n * tb.t[k].row_bytes;
		}
	}
	for (i = 0; i < threads; i++)
		if (!(bufs[i] = malloc(max_unit))) {
			ret = pinfer_fail(err, ENOMEM, "synth: out of memory");
			goto out;
		}

	ret = gguf_out_open(&w, path, NULL, err);
	if (ret)
		goto out;
	if (write_meta(&w, s, tb.n)) {
		ret = pinfer_fail(err, ENOMEM, "synth: out of memory");
		goto out;
	}
	for (k = 0; k < tb.n; k++) {
		uint64_t dims[3] = { tb.t[k].cols, tb.t[k].rows / tb.t[k].mats, tb.t[k].mats };

		gguf_put_tensor_info(&w, tb.t[k].name, tb.t[k].mats > 1 ? 3 : tb.t[k].rows > 1 ? 2 : 1, dims,
				     tb.t[k].type, tb.t[k].offset);
	}
	gguf_pad(&w, SYNTH_ALIGN);
	if (fflush(w.f) || w.bad || ftruncate(fileno(w.f), (off_t)(w.pos + tb.data_bytes))) {
		ret = pinfer_fail(err, errno ? errno : EIO, "synth: writing %s: %s", w.tmp,
				  strerror(errno ? errno : EIO));
		goto out;
	}

	j = (struct job){
		.s = s, .tb = &tb, .units = units, .bufs = bufs, .fd = fileno(w.f),
		.data_off = w.pos, .total = tb.data_bytes, .progress = progress, .arg = arg,
	};
	if (progress)
		progress(0, j.total, arg);
	if (pool)
		pinfer_parallel_for(pool, n_units, 1, PINFER_DYNAMIC, make_units, &j);
	else
		make_units(&j, 0, n_units, 0);
	if (progress && !atomic_load(&j.error))	/* thread 0 may not write the last unit */
		progress(atomic_load(&j.done), j.total, arg);
	if (atomic_load(&j.error)) {
		int e = atomic_load(&j.error);

		ret = pinfer_fail(err, e, "synth: writing %s: %s", w.tmp, strerror(e));
		goto out;
	}
	ret = gguf_out_commit(&w, err);
out:
	gguf_out_abort(&w);
	for (i = 0; bufs && i < threads; i++)
		free(bufs[i]);
	free(bufs);
	free(units);
	free(tb.t);
	return ret;
}
