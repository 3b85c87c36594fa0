// SPDX-License-Identifier: MIT
/*
 * RoPE, and attention over a session's KV cache (fp16 or Q8_0): one
 * token's heads over the pool, a batch's (token, head) pairs, or for large
 * batches GEMMs over blocks of tokens per head (OpenBLAS).
 */
#include "session.h"

#include <math.h>
#include <string.h>

#include "format/ggml_types.h"
#include "kernels/blas.h"
#include "kernels/quant.h"

/*
 * cos and sin of each rotated pair's angle at position @pos: the position
 * (times the linear scaling's 1/factor) times base^(-2i/n_rot), divided by
 * the model's frequency factor of pair i if it has them.
 */
void llm_rope_angles(const struct llm_model *m, uint32_t pos, float *cs)
{
	const struct llm_config *c = &m->cfg;
	const float *ff = m->rope_freqs.data;
	uint32_t i;

	for (i = 0; i < c->n_rot / 2; i++) {
		float theta = pos * c->rope_freq_scale * powf(c->rope_theta, -2.0f * i / c->n_rot);

		if (ff)
			theta /= ff[i];

		cs[2 * i] = cosf(theta);
		cs[2 * i + 1] = sinf(theta);
	}
}

/* Rotate each head's first n_rot dimensions by the angles @cs. */
void llm_rope(const struct llm_config *c, float *v, uint32_t n_heads, const float *cs)
{
	uint32_t h, i, half = c->n_rot / 2;

	for (i = 0; i < half; i++) {
		float co = cs[2 * i], sn = cs[2 * i + 1];

		for (h = 0; h < n_heads; h++) {
			float *x = v + (size_t)h * c->head_dim;
			uint32_t a = c->rope == LLM_ROPE_NORM ? 2 * i : i;
			uint32_t b = c->rope == LLM_ROPE_NORM ? 2 * i + 1 : i + half;
			float x0 = x[a], x1 = x[b];

			x[a] = x0 * co - x1 * sn;
			x[b] = x0 * sn + x1 * co;
		}
	}
}

struct attn_task {
	struct llm_session *s;
	uint32_t layer;
	size_t b0;		/* the call's first token of this attention */
	const float *q;
	float *out;
	const struct attn_kernels *k;	/* the fp16 cache's kernels, softmax */
};

/* q · k for a head of the Q8_0 cache: n / 32 blocks. */
static float dot_kv_q8(const float *q, const struct block_q8_0 *k, size_t n)
{
	float sum = 0;
	size_t b, i;

	for (b = 0; b < n / QK; b++, q += QK) {
		float part = 0;

		for (i = 0; i < QK; i++)
			part += q[i] * k[b].qs[i];
		sum += part * fp16_to_f32(k[b].d);
	}
	return sum;
}

/* o += p v for a head of the Q8_0 cache. */
static void axpy_kv_q8(float *o, float p, const struct block_q8_0 *v, size_t n)
{
	size_t b, i;

	for (b = 0; b < n / QK; b++, o += QK) {
		float pd = p * fp16_to_f32(v[b].d);

		for (i = 0; i < QK; i++)
			o[i] += pd * v[b].qs[i];
	}
}

/*
 * Head @h of the attention of the call's token @tok (its q and out, all
 * heads) over positions 0..its own of @layer of its sequence, with @att
 * (pos + 1 floats) for scores. The cache is read a block's run of
 * positions at a time.
 */
static void attn_one(const struct attn_task *a, size_t tok, const float *qt, float *outt,
		     size_t h, float *att)
{
	struct llm_session *s = a->s;
	const struct llm_config *c = &s->m->cfg;
	const uint32_t *tab = s->ttab[tok], pos = s->tpos[tok];
	size_t row = s->kv_row;
	uint32_t group = c->n_head / c->n_head_kv, t, t0, run;
	float scale = 1.0f / sqrtf((float)c->head_dim);
	bool q8 = s->kv_type == LLM_KV_Q8_0;
	const float *q = qt + h * c->head_dim;
	size_t kvo = (h / group) * (q8 ? c->head_dim / QK * sizeof(struct block_q8_0) :
					 c->head_dim * sizeof(fp16_t));
	float *o = outt + h * c->head_dim;

	for (t0 = 0; t0 <= pos; t0 += run) {
		const uint8_t *kc = s->kcache + llm_kv_at(s, tab, a->layer, t0) + kvo;

		run = llm_kv_run(s, t0, pos + 1);
		for (t = 0; t < run; t++) {
			const void *k = kc + t * row;

			att[t0 + t] = q8 ? dot_kv_q8(q, k, c->head_dim) :
					   a->k->dot(q, k, c->head_dim);
		}
	}
	a->k->softmax(att, pos + 1, scale);
	memset(o, 0, c->head_dim * sizeof(float));
	for (t0 = 0; t0 <= pos; t0 += run) {
		const uint8_t *vc = s->vcache + llm_kv_at(s, tab, a->layer, t0) + kvo;

		run = llm_kv_run(s, t0, pos + 1);
		for (t = 0; t < run; t++) {
			const void *v = vc + t * row;

			if (q8)
				axpy_kv_q8(o, att[t0 + t], v, c->head_dim);
			else
				a->k->axpy(o, att[t0 + t], v, c->head_dim);
		}
	}
}

/* Heads [hb, he) of one token's attention; each head has its own scores. */
static void attn_heads(void *arg, size_t hb, size_t he, int thread)
{
	const struct attn_task *a = arg;
	size_t h;

	(void)thread;
	for (h = hb; h < he; h++)
		attn_one(a, a->b0, a->q, a->out, h, a->s->att + h * a->s->n_ctx);
}

/*
 * Items [ib, ie) of a batch's attention: item i is head i % n_head of
 * token i / n_head; scores in the thread's own row of s->att.
 */
static void attn_items(void *arg, size_t ib, size_t ie, int thread)
{
	const struct attn_task *a = arg;
	struct llm_session *s = a->s;
	size_t nh = s->m->cfg.n_head, i;
	float *att = s->att + (nh + (size_t)thread) * s->n_ctx;

	for (i = ib; i < ie; i++)
		attn_one(a, a->b0 + i / nh, a->q + i / nh * s->qd, a->out + i / nh * s->qd,
			 i % nh, att);
}

struct attn_gemm {
	struct llm_session *s;
	uint32_t layer, pos;	/* the batch's first position: all of one sequence */
	const uint32_t *tab;
	size_t nb;
	const float *q;
	float *out;
	const struct attn_kernels *k;
};

/* Positions [b, e) of the layer's K and V cache, as floats. */
static void kv_to_float(void *arg, size_t b, size_t e, int thread)
{
	const struct attn_gemm *g = arg;
	struct llm_session *s = g->s;
	size_t t, run;

	(void)thread;
	for (t = b; t < e; t += run) {	/* a block's run of positions at a time */
		size_t at = llm_kv_at(s, g->tab, g->layer, (uint32_t)t), i;

		run = llm_kv_run(s, (uint32_t)t, (uint32_t)e);
		if (s->kv_type == LLM_KV_F16) {
			g->k->to_f32((const fp16_t *)(s->kcache + at), s->kf + t * s->kv_dim,
				     run * s->kv_dim);
			g->k->to_f32((const fp16_t *)(s->vcache + at), s->vf + t * s->kv_dim,
				     run * s->kv_dim);
			continue;
		}
		for (i = 0; i < run; i++) {
			dequantize_row_ref(GGML_TYPE_Q8_0, s->kcache + at + i * s->kv_row,
					   s->kf + (t + i) * s->kv_dim, s->kv_dim);
			dequantize_row_ref(GGML_TYPE_Q8_0, s->vcache + at + i * s->kv_row,
					   s->vf + (t + i) * s->kv_dim, s->kv_dim);
		}
	}
}

/*
 * Items [ib, ie): head i / blocks, tokens (i % blocks) * ATTN_BLOCK.. of
 * the batch: scores = Q K^T (sgemm), causal mask and softmax per token,
 * out = P V (sgemm).
 */
static void attn_gemm_items(void *arg, size_t ib, size_t ie, int thread)
{
	const struct attn_gemm *g = arg;
	struct llm_session *s = g->s;
	const struct llm_config *c = &s->m->cfg;
	size_t blocks = (g->nb + ATTN_BLOCK - 1) / ATTN_BLOCK, hd = c->head_dim;
	size_t group = c->n_head / c->n_head_kv, qd = s->qd, kvd = s->kv_dim, i, r, t;
	float *sc = s->scores + (size_t)thread * ATTN_BLOCK * s->n_ctx;
	float scale = 1.0f / sqrtf((float)hd);

	for (i = ib; i < ie; i++) {
		size_t h = i / blocks, b0 = i % blocks * ATTN_BLOCK;
		size_t m = g->nb - b0 < ATTN_BLOCK ? g->nb - b0 : ATTN_BLOCK;
		size_t n = g->pos + b0 + m;	/* positions the block's last token sees */

		blas_sgemm_nt((int)m, (int)n, (int)hd, g->q + b0 * qd + h * hd, (int)qd,
			      s->kf + h / group * hd, (int)kvd, sc, (int)n);
		for (r = 0; r < m; r++) {
			float *row = sc + r * n;
			size_t seen = g->pos + b0 + r + 1;

			g->k->softmax(row, seen, scale);
			for (t = seen; t < n; t++)
				row[t] = 0;
		}
		blas_sgemm_nn((int)m, (int)hd, (int)n, sc, (int)n, s->vf + h / group * hd, (int)kvd,
			      g->out + b0 * qd + h * hd, (int)qd);
	}
}

/*
 * Attention of the call's tokens b0.. (@nb; their q, stride qd) over the
 * cache of @layer up to each: for large batches of one sequence (with
 * OpenBLAS, unless the call must be batch-invariant) as GEMMs over blocks
 * of tokens per head; else one token's heads split over the pool (long
 * contexts), or a batch's (token, head) pairs handed out to it. The last
 * two compute each (token, head) alike, whatever the batch.
 */
void llm_attention(struct llm_session *s, uint32_t layer, size_t b0, size_t nb,
		   const float *q, float *out)
{
	struct attn_task a = { .s = s, .layer = layer, .b0 = b0, .q = q, .out = out,
			       .k = attn_kernels() };
	size_t b;

	if (nb >= GEMM_MIN && !s->exact && !s->invariant && blas_available()) {
		uint32_t pos = s->tpos[b0];
		struct attn_gemm g = { .s = s, .layer = layer, .pos = pos, .tab = s->ttab[b0],
				       .nb = nb, .q = q, .out = out, .k = a.k };
		size_t items = s->m->cfg.n_head * ((nb + ATTN_BLOCK - 1) / ATTN_BLOCK);

		if (s->pool) {
			pinfer_parallel_for(s->pool, pos + nb, 64, PINFER_STEAL, kv_to_float, &g);
			pinfer_parallel_for(s->pool, items, 1, PINFER_DYNAMIC, attn_gemm_items, &g);
		} else {
			kv_to_float(&g, 0, pos + nb, 0);
			attn_gemm_items(&g, 0, items, 0);
		}
		return;
	}
	if (s->pool && nb > 1) {
		pinfer_parallel_for(s->pool, nb * s->m->cfg.n_head, 1, PINFER_DYNAMIC,
				    attn_items, &a);
		return;
	}
	for (b = 0; b < nb; b++) {
		a.b0 = b0 + b;
		a.q = q + b * s->qd;
		a.out = out + b * s->qd;
		if (s->pool && s->tpos[a.b0] >= 64)	/* short contexts: not worth a hand-off */
			pinfer_parallel_for(s->pool, s->m->cfg.n_head, 1, PINFER_STATIC,
					    attn_heads, &a);
		else
			attn_heads(&a, 0, s->m->cfg.n_head, 0);
	}
}
