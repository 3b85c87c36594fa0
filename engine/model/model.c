// SPDX-License-Identifier: MIT
/*
 * Loading a llama-family model: the configuration from the GGUF metadata
 * (every count checked), every tensor found and its shape and type checked,
 * a placement plan under the memory budget (placement.h), then the resident
 * part of the file's tensor data read into one region by the runtime's
 * loader and the tensors pointed into it: no copy, the region holds the
 * file's bytes, except that the matrices the integer GEMM takes are then
 * interleaved in place (tensor.h, llm_tensor_pack). The streamed layers'
 * reads start.
 */
#include "model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "gpu.h"
#include "kernels/quant.h"
#include "placement.h"
#include "tensor.h"
#include "text/tokenizer.h"

#define MAX_LAYERS 1024

#define MAX_EXPERTS 1024

static const char *const arch_names[] = {
	[LLM_ARCH_LLAMA] = "llama", [LLM_ARCH_QWEN2] = "qwen2",
	[LLM_ARCH_QWEN3] = "qwen3", [LLM_ARCH_QWEN3MOE] = "qwen3moe",
};

const char *llm_arch_name(enum llm_arch a)
{
	return arch_names[a];
}

/* An unsigned integer value, whatever integer type the file used. */
static int meta_u32(const struct gguf *g, const char *prefix, const char *key,
		    uint32_t *v, bool required, struct pinfer_err *err)
{
	char name[128];
	const struct gguf_kv *kv;

	snprintf(name, sizeof(name), "%s%s", prefix, key);
	kv = gguf_find_kv(g, name);
	if (!kv)
		return required ? pinfer_fail(err, EINVAL, "metadata key %s is missing", name) : 1;
	switch (kv->value.type) {
	case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32:
	case GGUF_TYPE_UINT64:
		if (kv->value.u64 > UINT32_MAX)
			break;
		*v = (uint32_t)kv->value.u64;
		return 0;
	case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32:
	case GGUF_TYPE_INT64:
		if (kv->value.i64 < 0 || kv->value.i64 > UINT32_MAX)
			break;
		*v = (uint32_t)kv->value.i64;
		return 0;
	default:
		return pinfer_fail(err, EINVAL, "metadata key %s has type %s, not an integer",
				   name, gguf_type_name(kv->value.type));
	}
	return pinfer_fail(err, EINVAL, "metadata key %s is out of range", name);
}

static int meta_f32(const struct gguf *g, const char *prefix, const char *key,
		    float *v, struct pinfer_err *err)
{
	char name[128];
	const struct gguf_kv *kv;

	snprintf(name, sizeof(name), "%s%s", prefix, key);
	kv = gguf_find_kv(g, name);
	if (!kv)
		return 1;
	if (kv->value.type != GGUF_TYPE_FLOAT32 && kv->value.type != GGUF_TYPE_FLOAT64)
		return pinfer_fail(err, EINVAL, "metadata key %s has type %s, not a float",
				   name, gguf_type_name(kv->value.type));
	if (!isfinite((float)kv->value.f64))
		return pinfer_fail(err, EINVAL, "metadata key %s is %g, not a finite number",
				   name, kv->value.f64);
	*v = (float)kv->value.f64;
	return 0;
}

/*
 * RoPE scaling: none, or linear (positions divided by the factor); the
 * older key rope.scale_linear means the same. Others are refused.
 */
static int read_rope_scaling(const struct gguf *g, const char *p, struct llm_config *c,
			     struct pinfer_err *err)
{
	char name[128];
	const struct gguf_kv *kv;
	float factor = 1;

	c->rope_freq_scale = 1;
	snprintf(name, sizeof(name), "%srope.scaling.type", p);
	kv = gguf_find_kv(g, name);
	if (kv && (kv->value.type != GGUF_TYPE_STRING ||
		   (!gguf_str_eq(kv->value.str, "none") && !gguf_str_eq(kv->value.str, "linear"))))
		return pinfer_fail(err, ENOTSUP, "%s '%.*s' is not supported (supported: none, linear)",
				   name, kv->value.type == GGUF_TYPE_STRING ?
				   (int)(kv->value.str.len > 32 ? 32 : kv->value.str.len) : 1,
				   kv->value.type == GGUF_TYPE_STRING ? kv->value.str.ptr : "?");
	if (kv && gguf_str_eq(kv->value.str, "none"))
		return 0;
	if (meta_f32(g, p, kv ? "rope.scaling.factor" : "rope.scale_linear", &factor, err) < 0)
		return err->code;
	if (!(factor > 0) || factor > 1e6f)
		return pinfer_fail(err, EINVAL, "%srope scaling factor %g is not positive", p,
				   (double)factor);
	c->rope_freq_scale = 1 / factor;
	return 0;
}

/*
 * The head size: attention.key_length where the file has it (qwen3's heads
 * are not embedding / heads wide), equal to value_length; else embedding /
 * heads.
 */
static int read_head_dim(const struct gguf *g, const char *p, struct llm_config *c,
			 struct pinfer_err *err)
{
	uint32_t kl = 0, vl = 0;
	int rk, rv;

	rk = meta_u32(g, p, "attention.key_length", &kl, false, err);
	if (rk < 0 || (rv = meta_u32(g, p, "attention.value_length", &vl, false, err)) < 0)
		return err->code;
	if (rk == 1 && c->n_embd % c->n_head)
		return pinfer_fail(err, EINVAL, "inconsistent sizes: embedding %" PRIu32 " is not a multiple of %" PRIu32 " heads, and %sattention.key_length is missing",
				   c->n_embd, c->n_head, p);
	c->head_dim = rk == 1 ? c->n_embd / c->n_head : kl;
	if (rv == 1)
		vl = c->head_dim;
	if (!c->head_dim || c->head_dim % 2 || c->head_dim > 1024 || vl != c->head_dim)
		return pinfer_fail(err, EINVAL, "%sattention.key_length %" PRIu32 " and value_length %" PRIu32 ": heads must be equal, even and at most 1024 wide",
				   p, c->head_dim, vl);
	return 0;
}

/*
 * The feed-forward's width, and the experts: expert_count (absent or 0: a
 * dense model; qwen3moe must have them), expert_used_count, and
 * expert_feed_forward_length (Mixtral's files leave it out: then
 * feed_forward_length is each expert's). In a MoE model n_ff is an expert's.
 */
static int read_experts(const struct gguf *g, const char *p, struct llm_config *c,
			struct pinfer_err *err)
{
	int r;

	c->n_ff = 0;
	if (meta_u32(g, p, "expert_count", &c->n_expert, false, err) < 0)
		return err->code;
	if (!c->n_expert) {
		if (c->arch == LLM_ARCH_QWEN3MOE)
			return pinfer_fail(err, EINVAL, "metadata key %sexpert_count is missing", p);
		return meta_u32(g, p, "feed_forward_length", &c->n_ff, true, err);
	}
	if ((r = meta_u32(g, p, "expert_used_count", &c->n_expert_used, true, err)) ||
	    meta_u32(g, p, "feed_forward_length", &c->n_ff, false, err) < 0 ||
	    (r = meta_u32(g, p, "expert_feed_forward_length", &c->n_ff_exp, false, err)) < 0)
		return r < 0 ? r : err->code;
	if (r == 1)
		c->n_ff_exp = c->n_ff;
	if (c->n_expert > MAX_EXPERTS || !c->n_expert_used || c->n_expert_used > c->n_expert)
		return pinfer_fail(err, EINVAL, "%sexpert_count %" PRIu32 " and expert_used_count %" PRIu32 ": need 1 <= used <= count <= %d",
				   p, c->n_expert, c->n_expert_used, MAX_EXPERTS);
	if (!c->n_ff_exp)
		return pinfer_fail(err, EINVAL, "metadata key %sexpert_feed_forward_length is missing", p);
	c->n_ff = c->n_ff_exp;
	return 0;
}

static int read_config(const struct gguf *g, struct llm_config *c,
		       struct pinfer_err *err)
{
	const struct gguf_kv *kv = gguf_find_kv(g, "general.architecture");
	char p[16];
	size_t a;
	int ret;

	if (!kv || kv->value.type != GGUF_TYPE_STRING)
		return pinfer_fail(err, EINVAL, "general.architecture is missing");
	for (a = 0; a < sizeof(arch_names) / sizeof(arch_names[0]); a++)
		if (gguf_str_eq(kv->value.str, arch_names[a]))
			break;
	if (a == sizeof(arch_names) / sizeof(arch_names[0]))
		return pinfer_fail(err, ENOTSUP, "architecture '%.*s' is not supported (supported: llama, qwen2, qwen3, qwen3moe)",
				   (int)(kv->value.str.len > 40 ? 40 : kv->value.str.len),
				   kv->value.str.ptr);
	c->arch = (enum llm_arch)a;
	c->rope = c->arch == LLM_ARCH_LLAMA ? LLM_ROPE_NORM : LLM_ROPE_NEOX;
	c->qk_norm = c->arch == LLM_ARCH_QWEN3 || c->arch == LLM_ARCH_QWEN3MOE;
	snprintf(p, sizeof(p), "%s.", llm_arch_name(c->arch));
	if ((ret = meta_u32(g, p, "embedding_length", &c->n_embd, true, err)) ||
	    (ret = meta_u32(g, p, "block_count", &c->n_layer, true, err)) ||
	    (ret = meta_u32(g, p, "attention.head_count", &c->n_head, true, err)))
		return ret;
	ret = read_experts(g, p, c, err);
	if (ret)
		return ret;
	c->n_head_kv = c->n_head;
	c->ctx_train = 2048;
	c->rope_theta = 10000;
	c->rms_eps = 1e-5f;
	if (meta_u32(g, p, "attention.head_count_kv", &c->n_head_kv, false, err) < 0 ||
	    meta_u32(g, p, "context_length", &c->ctx_train, false, err) < 0 ||
	    meta_f32(g, p, "rope.freq_base", &c->rope_theta, err) < 0 ||
	    meta_f32(g, p, "attention.layer_norm_rms_epsilon", &c->rms_eps, err) < 0)
		return err->code;
	if (!c->n_embd || !c->n_head || !c->n_head_kv || !c->n_ff ||
	    c->n_head % c->n_head_kv)
		return pinfer_fail(err, EINVAL, "inconsistent sizes: embedding %" PRIu32 ", %" PRIu32 " heads, %" PRIu32 " KV heads, FFN %" PRIu32,
				   c->n_embd, c->n_head, c->n_head_kv, c->n_ff);
	if (!c->n_layer || c->n_layer > MAX_LAYERS)
		return pinfer_fail(err, EINVAL, "%sblock_count %" PRIu32 " is not in 1..%d",
				   p, c->n_layer, MAX_LAYERS);
	ret = read_head_dim(g, p, c, err);
	if (ret)
		return ret;
	c->n_rot = c->head_dim;
	if (meta_u32(g, p, "rope.dimension_count", &c->n_rot, false, err) < 0)
		return err->code;
	if (!c->n_rot || c->n_rot > c->head_dim || c->n_rot % 2)
		return pinfer_fail(err, EINVAL, "%srope.dimension_count %" PRIu32 " does not fit heads of %" PRIu32,
				   p, c->n_rot, c->head_dim);
	if (!(c->rms_eps > 0))
		return pinfer_fail(err, EINVAL, "%sattention.layer_norm_rms_epsilon %g is not positive",
				   p, (double)c->rms_eps);
	if (!(c->rope_theta > 0))
		return pinfer_fail(err, EINVAL, "%srope.freq_base %g is not positive", p,
				   (double)c->rope_theta);
	if (!c->ctx_train)
		return pinfer_fail(err, EINVAL, "%scontext_length is 0", p);
	return read_rope_scaling(g, p, c, err);
}

/*
 * Find tensor @name with @cols x @rows (rows 1 for vectors), or with @mats
 * > 1, @mats such matrices stacked (3-D); vectors must be F32, matrices a
 * type the engine computes with.
 */
static int bind(const struct gguf *g, const char *name, uint64_t cols, uint64_t rows,
		uint32_t mats, bool optional, struct llm_tensor *t, struct pinfer_err *err)
{
	const struct gguf_tensor *gt = gguf_find_tensor(g, name);
	uint32_t want_dims = mats > 1 ? 3 : rows > 1 ? 2 : 1;

	if (!gt) {
		if (optional)
			return 1;
		return pinfer_fail(err, EINVAL, "tensor %s is missing", name);
	}
	if (gt->dims[0] != cols || gt->n_elems != cols * rows * mats ||
	    gt->n_dims > (want_dims > 2 ? 3 : 2) ||
	    (mats > 1 && (gt->n_dims != 3 || gt->dims[1] != rows))) {
		if (mats > 1)
			return pinfer_fail(err, EINVAL, "tensor %s has %" PRIu32 " dimensions of %" PRIu64 " x %" PRIu64 " x %" PRIu64 ", expected %" PRIu64 " x %" PRIu64 " x %" PRIu32,
					   name, gt->n_dims, gt->dims[0],
					   gt->n_dims > 1 ? gt->dims[1] : 1,
					   gt->n_dims > 2 ? gt->dims[2] : 1, cols, rows, mats);
		return pinfer_fail(err, EINVAL, "tensor %s has shape %" PRIu64 " x %" PRIu64 ", expected %" PRIu64 " x %" PRIu64,
				   name, gt->dims[0], gt->n_elems / gt->dims[0], cols, rows);
	}
	if (rows == 1 ? gt->type != GGML_TYPE_F32 : !quant_supported(gt->type))
		return pinfer_fail(err, ENOTSUP, "tensor %s has type %s, which the engine cannot use here (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)",
				   name, ggml_type_name(gt->type));
	t->type = gt->type;
	t->n_mat = mats;
	t->cols = cols;
	t->rows = rows;
	t->row_bytes = gt->bytes / (rows * mats);
	t->data = NULL;		/* placed once loaded */
	t->file_off = gt->offset;
	t->bytes = gt->bytes;
	return 0;
}

/* A layer's experts (router and stacked matrices), or the old layout's refusal. */
static int bind_experts(const struct gguf *g, uint32_t i, const struct llm_config *c,
			struct llm_layer *l, struct pinfer_err *err)
{
	struct { const char *suffix; uint64_t cols, rows; uint32_t mats; struct llm_tensor *t; }
	ts[] = {
		{ "ffn_gate_inp.weight", c->n_embd, c->n_expert, 1, &l->gate_inp },
		{ "ffn_gate_exps.weight", c->n_embd, c->n_ff_exp, c->n_expert, &l->gate_exps },
		{ "ffn_up_exps.weight", c->n_embd, c->n_ff_exp, c->n_expert, &l->up_exps },
		{ "ffn_down_exps.weight", c->n_ff_exp, c->n_embd, c->n_expert, &l->down_exps },
	};
	char n[96];
	size_t k;
	int ret;

	for (k = 0; k < sizeof(ts) / sizeof(ts[0]); k++) {
		snprintf(n, sizeof(n), "blk.%" PRIu32 ".%s", i, ts[k].suffix);
		if (k == 1 && c->n_expert > 1 && !gguf_find_tensor(g, n)) {
			snprintf(n, sizeof(n), "blk.%" PRIu32 ".ffn_gate.0.weight", i);
			if (gguf_find_tensor(g, n))
				return pinfer_fail(err, ENOTSUP, "tensor %s: experts as separate tensors (an old GGUF layout) are not supported; convert the model again (stacked blk.N.ffn_gate_exps.weight)",
						   n);
			snprintf(n, sizeof(n), "blk.%" PRIu32 ".%s", i, ts[k].suffix);
		}
		ret = bind(g, n, ts[k].cols, ts[k].rows, ts[k].mats, false, ts[k].t, err);
		if (ret)
			return ret;
	}
	if (l->gate_exps.type != l->up_exps.type)
		return pinfer_fail(err, ENOTSUP, "blk.%" PRIu32 ": ffn_gate_exps is %s and ffn_up_exps %s; they must be of one type",
				   i, ggml_type_name(l->gate_exps.type), ggml_type_name(l->up_exps.type));
	return 0;
}

static int bind_all(struct llm_model *m, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	uint64_t qd = (uint64_t)c->n_head * c->head_dim, kvd = (uint64_t)c->n_head_kv * c->head_dim;
	const struct gguf *g = m->gguf;
	char n[96];
	uint32_t i;
	int ret;

#define BIND(name_, cols_, rows_, opt_, dst_) \
	(ret = bind(g, name_, cols_, rows_, 1, opt_, dst_, err)) < 0

	if (BIND("token_embd.weight", c->n_embd, c->n_vocab, false, &m->token_embd) ||
	    BIND("output_norm.weight", c->n_embd, 1, false, &m->output_norm) ||
	    BIND("output.weight", c->n_embd, c->n_vocab, true, &m->output))
		return ret;
	if (ret == 1)		/* tied embeddings */
		m->output = m->token_embd;
	if (BIND("rope_freqs.weight", c->n_rot / 2, 1, true, &m->rope_freqs))
		return ret;
	for (i = 0; i < c->n_layer; i++) {
		struct llm_layer *l = &m->layers[i];
		bool bias = c->arch == LLM_ARCH_QWEN2;

#define LAYER(suffix_, cols_, rows_, opt_, dst_) \
	(snprintf(n, sizeof(n), "blk.%" PRIu32 ".%s", i, suffix_), \
	 BIND(n, cols_, rows_, opt_, dst_))
		if (LAYER("attn_norm.weight", c->n_embd, 1, false, &l->attn_norm) ||
		    LAYER("attn_q.weight", c->n_embd, qd, false, &l->wq) ||
		    LAYER("attn_k.weight", c->n_embd, kvd, false, &l->wk) ||
		    LAYER("attn_v.weight", c->n_embd, kvd, false, &l->wv) ||
		    LAYER("attn_output.weight", qd, c->n_embd, false, &l->wo) ||
		    LAYER("ffn_norm.weight", c->n_embd, 1, false, &l->ffn_norm))
			return ret;
		if (bias && (LAYER("attn_q.bias", qd, 1, false, &l->bq) ||
			     LAYER("attn_k.bias", kvd, 1, false, &l->bk) ||
			     LAYER("attn_v.bias", kvd, 1, false, &l->bv)))
			return ret;
		if (c->qk_norm && (LAYER("attn_q_norm.weight", c->head_dim, 1, false, &l->q_norm) ||
				   LAYER("attn_k_norm.weight", c->head_dim, 1, false, &l->k_norm)))
			return ret;
		if (c->n_expert)
			ret = bind_experts(g, i, c, l, err);
		else if (LAYER("ffn_gate.weight", c->n_embd, c->n_ff, false, &l->w_gate) ||
			 LAYER("ffn_up.weight", c->n_embd, c->n_ff, false, &l->w_up) ||
			 LAYER("ffn_down.weight", c->n_ff, c->n_embd, false, &l->w_down))
			return ret;
		if (ret < 0)
			return ret;
#undef LAYER
	}
#undef BIND
	return 0;
}

/*
 * Pack the resident matrices for the GEMM (streamed ones are packed when a
 * large batch uses them: llm_stream_acquire). A tied output shares
 * token_embd's bytes: packed once.
 */
static int pack_resident(struct llm_model *m, struct pinfer_pool *pool,
			 struct pinfer_err *err)
{
	struct llm_tensor_ref *refs = malloc(LLM_MAX_TENSORS(m->cfg.n_layer) * sizeof(*refs));
	size_t n, i;
	int ret = 0;

	if (!refs)
		return pinfer_fail(err, ENOMEM, "out of memory");
	n = llm_model_tensors(m, refs);
	for (i = 0; i < n && !ret; i++) {
		struct llm_tensor *t = refs[i].t;

		if (t == &m->output && t->file_off == m->token_embd.file_off)
			t->packed = m->token_embd.packed;
		else if (refs[i].layer >= 0 && llm_gpu_layer(m, (uint32_t)refs[i].layer))
			continue;	/* the GPU's: the CPU does not multiply by it */
		else if (t->rows > 1)
			ret = llm_tensor_pack(t, pool);
	}
	free(refs);
	return ret ? pinfer_fail(err, ret, "out of memory packing the weights") : 0;
}

/* Read the header, the configuration and every tensor's description. */
static int open_model(struct llm_model **out, const char *path, struct pinfer_err *err)
{
	const struct gguf_tensor *emb;
	struct gguf_error gerr;
	struct llm_model *m;
	int ret;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return pinfer_fail(err, ENOMEM, "out of memory");
	if (gguf_open(&m->gguf, path, &gerr)) {
		ret = pinfer_fail(err, gerr.code == GGUF_E_IO ? gerr.sys_errno : EINVAL,
				  "%s: %s", path, gerr.msg);
		goto fail;
	}
	ret = read_config(m->gguf, &m->cfg, err);
	if (ret)
		goto fail;
	emb = gguf_find_tensor(m->gguf, "token_embd.weight");
	if (!emb || emb->n_dims != 2 || emb->dims[1] > INT32_MAX) {
		ret = pinfer_fail(err, EINVAL, "tensor token_embd.weight is missing or not a matrix");
		goto fail;
	}
	m->cfg.n_vocab = (uint32_t)emb->dims[1];
	m->layers = calloc(m->cfg.n_layer, sizeof(*m->layers));
	if (!m->layers) {
		ret = pinfer_fail(err, ENOMEM, "out of memory");
		goto fail;
	}
	ret = bind_all(m, err);
	if (ret)
		goto fail;
	*out = m;
	return 0;
fail:
	llm_model_free(m);
	return ret < 0 ? ret : -EINVAL;
}

/* Every norm, bias and frequency vector (resident, F32) finite. */
static int check_vectors(struct llm_model *m, struct pinfer_err *err)
{
	struct llm_tensor_ref *refs = malloc(LLM_MAX_TENSORS(m->cfg.n_layer) * sizeof(*refs));
	size_t n, i, k;
	int ret = 0;

	if (!refs)
		return pinfer_fail(err, ENOMEM, "out of memory");
	n = llm_model_tensors(m, refs);
	for (i = 0; i < n && !ret; i++) {
		const struct llm_tensor *t = refs[i].t;
		const float *v = t->data;

		if (t->rows != 1 || t->type != GGML_TYPE_F32 || !v)
			continue;
		for (k = 0; k < t->cols; k++)
			if (!isfinite(v[k])) {
				const struct gguf_tensor *gt = m->gguf->tensors;

				while (gt->offset != t->file_off)	/* it is one of them */
					gt++;
				ret = pinfer_fail(err, EINVAL, "tensor %.*s: element %zu is %g, not a finite number (file offset %" PRIu64 ")",
						  (int)gt->name.len, gt->name.ptr, k, (double)v[k],
						  t->file_off + 4 * k);
				break;
			}
	}
	free(refs);
	return ret;
}

int llm_model_check_tokenizer(const struct llm_model *m, const struct tokenizer *t,
			      struct pinfer_err *err)
{
	if (tokenizer_n_vocab(t) < m->cfg.n_vocab)
		return pinfer_fail(err, EINVAL, "tokenizer.ggml.tokens has %" PRIu32 " tokens, fewer than the %" PRIu32 " rows of token_embd.weight",
				   tokenizer_n_vocab(t), m->cfg.n_vocab);
	return 0;
}

static const struct llm_load_opts default_opts = {
	.provider = PINFER_PROVIDER_AUTO, .node = -1,
};

/* The host's plan of @m under @o, with @session bytes, and the GPU's part. */
static int plan_parts(struct llm_model *m, const struct llm_load_opts *o, uint64_t session,
		      struct llm_plan *p, struct llm_layout *lay, struct pinfer_err *err)
{
	int ret = llm_plan_make(m, o, session, p, lay, err);

	return ret ? ret : llm_gpu_plan(p, m, lay, o, err);
}

/*
 * The plan of @m under @o, with room for a session of @o's context and
 * threads. When the GPU keeps every one of its layers, the host does not
 * hold them too: they are planned as streamed, so that they are read from
 * the drive once, at load, straight to the GPU (llm_gpu_plan()'s
 * gpu_once), and the budget's memory stays free.
 */
static int plan(struct llm_model *m, const struct llm_load_opts *o, struct llm_plan *p,
		struct llm_layout *lay, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	uint32_t n_ctx = o->n_ctx && o->n_ctx < c->ctx_train ? o->n_ctx : c->ctx_train;
	uint32_t threads = o->threads ? o->threads :
			   o->pool ? (uint32_t)pinfer_pool_threads(o->pool) : 1;
	uint64_t session = llm_session_bytes(c, n_ctx, threads,
					     o->gpu_layers < c->n_layer ? o->gpu_layers : c->n_layer);
	int ret = plan_parts(m, o, session, p, lay, err);

	if (!ret && p->gpu_layers && !p->gpu_streamed &&
	    p->n_resident > c->n_layer - p->gpu_layers) {
		struct llm_load_opts o2 = *o;
		struct llm_layout lay2 = { 0 };
		struct llm_plan p2;

		o2.stream_layers = o->stream_layers > p->gpu_layers ? o->stream_layers :
				   p->gpu_layers;
		if (!plan_parts(m, &o2, session, &p2, &lay2, NULL) && !p2.gpu_streamed) {
			llm_layout_free(lay);
			*lay = lay2;
			*p = p2;
		} else {
			llm_layout_free(&lay2);
		}
	}
	p->server_kv = llm_kv_cache_bytes(c, c->n_layer - p->gpu_layers, n_ctx, o->gpu_seqs);
	return ret;
}

int llm_model_plan(struct llm_plan *out, const char *path,
		   const struct llm_load_opts *opts, struct pinfer_err *err)
{
	struct llm_layout lay;
	struct llm_model *m;
	int ret = open_model(&m, path, err);

	if (ret)
		return ret;
	ret = plan(m, opts ? opts : &default_opts, out, &lay, err);
	llm_layout_free(&lay);
	llm_model_free(m);
	return ret;
}

int llm_model_load(struct llm_model **out, const char *path,
		   const struct llm_load_opts *opts, struct pinfer_err *err)
{
	struct pinfer_range *rg = NULL;
	struct llm_layout lay = { 0 };
	struct pinfer_loader_info li;
	struct pinfer_loader *l = NULL;
	struct llm_model *m;
	size_t i;
	int ret;

	*out = NULL;
	if (!opts)
		opts = &default_opts;
	ret = open_model(&m, path, err);
	if (ret)
		return ret;
	ret = plan(m, opts, &m->plan, &lay, err);
	if (!ret && m->plan.gpu_layers) {
		/* again within the device's memory, before the region is made */
		struct llm_load_opts o = *opts;
		uint64_t limit;

		ret = llm_gpu_open(m, &limit, err);
		if (!ret && (!o.gpu_mem || limit < o.gpu_mem)) {
			o.gpu_mem = limit;
			llm_layout_free(&lay);
			ret = plan(m, &o, &m->plan, &lay, err);
		}
	}
	if (ret)
		goto fail;
	rg = calloc(lay.n, sizeof(*rg));
	if (!rg) {
		ret = pinfer_fail(err, ENOMEM, "out of memory");
		goto fail;
	}
	for (i = 0; i < lay.n; i++)
		rg[i] = (struct pinfer_range){
			.file_off = lay.pieces[i].a, .region_off = lay.pieces[i].roff,
			.len = lay.pieces[i].b - lay.pieces[i].a,
		};
	/* the last page of the file may be partial */
	if (lay.n && rg[lay.n - 1].file_off + rg[lay.n - 1].len > m->gguf->file_size)
		rg[lay.n - 1].len = m->gguf->file_size - rg[lay.n - 1].file_off;
	if ((ret = pinfer_region_create(&m->region, m->plan.region, opts->node,
					opts->provider, err)) ||
	    (ret = pinfer_loader_create(&l, m->region, path, err)))
		goto fail;
	pinfer_loader_info(l, &li);
	snprintf(m->load_note, sizeof(m->load_note), "%s", li.note);
	if (opts->progress_label) {
		struct pinfer_region_props rp;

		pinfer_region_props(m->region, &rp);
		snprintf(m->progress_label, sizeof(m->progress_label), "%s into %s memory",
			 opts->progress_label, pinfer_provider_name(rp.provider));
	}
	pinfer_loader_set_progress(l, opts->progress,
				   opts->progress_label ? m->progress_label : opts->progress_arg);
	ret = pinfer_load(l, rg, lay.n, err);
	if (ret)
		goto fail;
	pinfer_loader_set_progress(l, NULL, NULL);
	ret = llm_layout_place(m, &lay, pinfer_region_ptr(m->region), err);
	if (!ret)
		ret = check_vectors(m, err);
	if (!ret)	/* the GPU's layers read once report as loading does */
		ret = llm_gpu_start(m, &lay, l, opts->progress,
				    opts->progress_label ? "loading the GPU's layers" :
				    opts->progress_arg, err);
	if (!ret)
		ret = pack_resident(m, opts->pool, err);
	if (ret)
		goto fail;
	if (llm_streamed_layers(&m->plan, NULL, 0) || m->plan.expert_slots) {
		/* the stream, or the expert cache, owns l */
		ret = m->plan.ring ? llm_stream_start(m, &lay, l, err) :
		      llm_experts_start(m, &lay, l, err);
		l = NULL;
		if (ret)
			goto fail;
		if (m->stream && opts->progress && opts->stream_progress_arg)
			llm_stream_progress(m, opts->progress, opts->stream_progress_arg);
	}
	pinfer_loader_free(l);
	llm_layout_free(&lay);
	free(rg);
	*out = m;
	return 0;

fail:
	pinfer_loader_free(l);
	llm_layout_free(&lay);
	free(rg);
	llm_model_free(m);
	return ret < 0 ? ret : -EINVAL;
}

void llm_model_free(struct llm_model *m)
{
	if (!m)
		return;
	llm_stream_free(m->stream);	/* first: their reads write into the region */
	llm_experts_free(m->experts);
	llm_gpu_free(m->gpu);	/* before the region it registered goes */
	pinfer_region_free(m->region);
	gguf_close(m->gguf);
	free(m->layers);
	free(m);
}
