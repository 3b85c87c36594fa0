// SPDX-License-Identifier: MIT
/*
 * The forward pass of one token, llama2.c style: embed, then per layer
 * attention (RMSNorm, Q/K/V, RoPE, KV cache, softmax over the past, output
 * projection, residual) and SwiGLU feed-forward (RMSNorm, gate and up,
 * SiLU, down, residual), then the final norm and the logits. Matrix-vector
 * products quantize the input once to the weights' 8-bit activation type
 * and split the rows over the thread pool.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "quant.h"

struct llm_session {
	const struct llm_model *m;
	struct pinfer_pool *pool;
	uint32_t n_ctx, pos;
	bool exact;		/* float activations: the reference mode */
	size_t kv_dim;
	fp16_t *kcache, *vcache;	/* [layer][pos][kv_dim] */
	float *x;	/* (n_embd) the residual stream */
	float *xb;	/* (n_embd) normed input of a block */
	float *q;	/* (n_head * head_dim) */
	float *k, *v;	/* (kv_dim) this position's key and value */
	float *att;	/* (n_head * n_ctx) attention weights */
	float *out;	/* (n_head * head_dim) attention output */
	float *hb, *hb2;	/* (n_ff) feed-forward hidden */
	float *tmp;	/* (max dim) a projection's output */
	float *logits;	/* (n_vocab) */
	void *act;	/* the quantized input of a matvec */
};

int llm_session_create(struct llm_session **out, const struct llm_model *m,
		       uint32_t n_ctx, struct pinfer_pool *pool,
		       struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	size_t maxd = c->n_ff > c->n_embd ? c->n_ff : c->n_embd;
	size_t qd = (size_t)c->n_head * c->head_dim;
	struct llm_session *s;

	*out = NULL;
	if (!n_ctx || n_ctx > c->ctx_train)
		n_ctx = c->ctx_train;
	maxd = maxd > qd ? maxd : qd;
	s = calloc(1, sizeof(*s));
	if (!s)
		return pinfer_fail(err, ENOMEM, "session: out of memory");
	s->m = m;
	s->pool = pool;
	s->n_ctx = n_ctx;
	s->kv_dim = (size_t)c->n_head_kv * c->head_dim;
	s->kcache = calloc((size_t)c->n_layer * n_ctx * s->kv_dim, sizeof(fp16_t));
	s->vcache = calloc((size_t)c->n_layer * n_ctx * s->kv_dim, sizeof(fp16_t));
	s->x = calloc(c->n_embd, 4);
	s->xb = calloc(c->n_embd, 4);
	s->q = calloc(qd, 4);
	s->k = calloc(s->kv_dim, 4);
	s->v = calloc(s->kv_dim, 4);
	s->att = calloc((size_t)c->n_head * n_ctx, 4);
	s->out = calloc(qd, 4);
	s->hb = calloc(c->n_ff, 4);
	s->hb2 = calloc(c->n_ff, 4);
	s->tmp = calloc(maxd, 4);
	s->logits = calloc(c->n_vocab, 4);
	s->act = calloc(maxd, 4);	/* 4 bytes/element >= any 8-bit block type */
	if (!s->kcache || !s->vcache || !s->x || !s->xb || !s->q || !s->k ||
	    !s->v || !s->att || !s->out || !s->hb || !s->hb2 || !s->tmp ||
	    !s->logits || !s->act) {
		llm_session_free(s);
		return pinfer_fail(err, ENOMEM, "session: out of memory for a context of %" PRIu32,
				   n_ctx);
	}
	*out = s;
	return 0;
}

void llm_session_free(struct llm_session *s)
{
	if (!s)
		return;
	free(s->kcache);
	free(s->vcache);
	free(s->x);
	free(s->xb);
	free(s->q);
	free(s->k);
	free(s->v);
	free(s->att);
	free(s->out);
	free(s->hb);
	free(s->hb2);
	free(s->tmp);
	free(s->logits);
	free(s->act);
	free(s);
}

void llm_session_set_exact(struct llm_session *s, bool exact)
{
	s->exact = exact;
}

uint32_t llm_session_pos(const struct llm_session *s)
{
	return s->pos;
}

uint32_t llm_session_ctx(const struct llm_session *s)
{
	return s->n_ctx;
}

/* ---- the operations --------------------------------------------------------- */

static void rmsnorm(float *o, const float *x, const float *w, size_t n, float eps)
{
	double ss = 0;
	float scale;
	size_t i;

	for (i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	scale = 1.0f / sqrtf((float)(ss / n) + eps);
	for (i = 0; i < n; i++)
		o[i] = x[i] * scale * w[i];
}

struct matvec_task {
	const struct llm_tensor *w;
	const void *act;
	float *out;
	vec_dot_fn dot;		/* NULL: the reference mode */
};

/* Σ dequant(row) · x, in double: the reference mode's dot product. */
static float dot_exact(const struct llm_tensor *w, const uint8_t *row, const float *x)
{
	float y[256];
	double sum = 0;
	size_t i, j, blk = ggml_type_get(w->type)->block_elems;
	size_t step = blk > 256 ? blk : 256 / blk * blk;
	size_t bytes = step / blk * ggml_type_get(w->type)->block_bytes;

	for (i = 0; i < w->cols; i += step, row += bytes) {
		size_t n = w->cols - i < step ? w->cols - i : step;

		dequantize_row_ref(w->type, row, y, n);
		for (j = 0; j < n; j++)
			sum += (double)y[j] * x[i + j];
	}
	return (float)sum;
}

static void matvec_rows(void *arg, size_t b, size_t e, int thread)
{
	const struct matvec_task *t = arg;
	const uint8_t *row = (const uint8_t *)t->w->data + b * t->w->row_bytes;
	size_t r;

	(void)thread;
	for (r = b; r < e; r++, row += t->w->row_bytes)
		t->out[r] = t->dot ? t->dot(t->w->cols, row, t->act) :
			    dot_exact(t->w, row, t->act);
}

/* out = W in (+ bias) */
static void matvec(struct llm_session *s, const struct llm_tensor *w,
		   const struct llm_tensor *bias, const float *in, float *out)
{
	int atype = quant_vec_dot_type(w->type);
	struct matvec_task t = {
		.w = w, .act = in, .out = out,
		.dot = s->exact ? NULL : quant_vec_dot(w->type, NULL),
	};
	size_t i;

	if (atype != GGML_TYPE_F32 && !s->exact) {
		quantize_row_act_ref(atype, in, s->act, w->cols);
		t.act = s->act;
	}
	if (s->pool)
		pinfer_parallel_for(s->pool, w->rows, 16, PINFER_STATIC, matvec_rows, &t);
	else
		matvec_rows(&t, 0, w->rows, 0);
	if (bias && bias->data)
		for (i = 0; i < w->rows; i++)
			out[i] += ((const float *)bias->data)[i];
}

/* Rotate each head's first n_rot dimensions by position @pos. */
static void rope(const struct llm_config *c, float *v, uint32_t n_heads, uint32_t pos)
{
	uint32_t h, i, half = c->n_rot / 2;

	for (i = 0; i < half; i++) {
		float theta = pos * powf(c->rope_theta, -2.0f * i / c->n_rot);
		float cs = cosf(theta), sn = sinf(theta);

		for (h = 0; h < n_heads; h++) {
			float *x = v + (size_t)h * c->head_dim;
			uint32_t a = c->rope == LLM_ROPE_NORM ? 2 * i : i;
			uint32_t b = c->rope == LLM_ROPE_NORM ? 2 * i + 1 : i + half;
			float x0 = x[a], x1 = x[b];

			x[a] = x0 * cs - x1 * sn;
			x[b] = x0 * sn + x1 * cs;
		}
	}
}

static void attention(struct llm_session *s, uint32_t layer)
{
	const struct llm_config *c = &s->m->cfg;
	size_t kvd = s->kv_dim, base = (size_t)layer * s->n_ctx * kvd;
	uint32_t group = c->n_head / c->n_head_kv, h, t, i;
	float scale = 1.0f / sqrtf((float)c->head_dim);

	for (h = 0; h < c->n_head; h++) {
		const float *q = s->q + (size_t)h * c->head_dim;
		size_t kvo = (size_t)(h / group) * c->head_dim;
		float *att = s->att + (size_t)h * s->n_ctx, *o = s->out + (size_t)h * c->head_dim;
		float max = -INFINITY, sum = 0;

		for (t = 0; t <= s->pos; t++) {
			const fp16_t *k = s->kcache + base + t * kvd + kvo;
			float d = 0;

			for (i = 0; i < c->head_dim; i++)
				d += q[i] * fp16_to_f32(k[i]);
			att[t] = d * scale;
			max = att[t] > max ? att[t] : max;
		}
		for (t = 0; t <= s->pos; t++) {
			att[t] = expf(att[t] - max);
			sum += att[t];
		}
		memset(o, 0, c->head_dim * sizeof(float));
		for (t = 0; t <= s->pos; t++) {
			const fp16_t *v = s->vcache + base + t * kvd + kvo;
			float p = att[t] / sum;

			for (i = 0; i < c->head_dim; i++)
				o[i] += p * fp16_to_f32(v[i]);
		}
	}
}

int llm_eval(struct llm_session *s, int32_t token, const float **logits,
	     struct pinfer_err *err)
{
	const struct llm_model *m = s->m;
	const struct llm_config *c = &m->cfg;
	size_t kvd = s->kv_dim, i;
	uint32_t l;

	if (token < 0 || (uint32_t)token >= c->n_vocab)
		return pinfer_fail(err, EINVAL, "token %" PRId32 " is not in the vocabulary of %" PRIu32,
				   token, c->n_vocab);
	if (s->pos >= s->n_ctx)
		return pinfer_fail(err, ENOSPC, "the context of %" PRIu32 " tokens is full", s->n_ctx);

	dequantize_row_ref(m->token_embd.type,
			   (const uint8_t *)m->token_embd.data + token * m->token_embd.row_bytes,
			   s->x, c->n_embd);
	for (l = 0; l < c->n_layer; l++) {
		const struct llm_layer *ly = &m->layers[l];
		fp16_t *kc = s->kcache + ((size_t)l * s->n_ctx + s->pos) * kvd;
		fp16_t *vc = s->vcache + ((size_t)l * s->n_ctx + s->pos) * kvd;

		/* attention */
		rmsnorm(s->xb, s->x, ly->attn_norm.data, c->n_embd, c->rms_eps);
		matvec(s, &ly->wq, &ly->bq, s->xb, s->q);
		matvec(s, &ly->wk, &ly->bk, s->xb, s->k);
		matvec(s, &ly->wv, &ly->bv, s->xb, s->v);
		rope(c, s->q, c->n_head, s->pos);
		rope(c, s->k, c->n_head_kv, s->pos);
		for (i = 0; i < kvd; i++) {
			kc[i] = f32_to_fp16(s->k[i]);
			vc[i] = f32_to_fp16(s->v[i]);
		}
		attention(s, l);
		matvec(s, &ly->wo, NULL, s->out, s->tmp);
		for (i = 0; i < c->n_embd; i++)
			s->x[i] += s->tmp[i];

		/* feed-forward: down(silu(gate x) * up x) */
		rmsnorm(s->xb, s->x, ly->ffn_norm.data, c->n_embd, c->rms_eps);
		matvec(s, &ly->w_gate, NULL, s->xb, s->hb);
		matvec(s, &ly->w_up, NULL, s->xb, s->hb2);
		for (i = 0; i < c->n_ff; i++)
			s->hb[i] = s->hb[i] / (1.0f + expf(-s->hb[i])) * s->hb2[i];
		matvec(s, &ly->w_down, NULL, s->hb, s->tmp);
		for (i = 0; i < c->n_embd; i++)
			s->x[i] += s->tmp[i];
	}
	rmsnorm(s->xb, s->x, m->output_norm.data, c->n_embd, c->rms_eps);
	matvec(s, &m->output, NULL, s->xb, s->logits);
	s->pos++;
	*logits = s->logits;
	return 0;
}
