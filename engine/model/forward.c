// SPDX-License-Identifier: MIT
/*
 * The forward pass of a batch of tokens, llama2.c style, layer by layer
 * over all of them: embed, then per layer attention (RMSNorm, Q/K/V, the
 * per-head q/k norms of qwen3, RoPE, KV cache, softmax over the past,
 * output projection, residual) and SwiGLU feed-forward (RMSNorm, gate and
 * up, SiLU, down, residual; or the experts the router picks: moe.c), then the
 * final norm and the logits of the last token. Each layer's weights come
 * from the placement (llm_stream_acquire: resident, or read into the ring)
 * and are used once per call, LLM_BATCH tokens at a time. With GPU layers
 * (gpu.h) the last layers and the output run there, after the CPU's (in the
 * reference mode too: float products there as well).
 */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "kernels/quant.h"
#include "placement.h"
#include "tensor.h"

static void rmsnorm(float *o, const float *x, const float *w, size_t n, float eps)
{
	row_kernels()->rmsnorm(o, x, w, n, eps);
}

/*
 * The element-wise steps between a layer's products, token by token:
 * SwiGLU (@g = silu(@g) * @u over @F elements), the residual (@x += @add),
 * then RMSNorm of @x into @norm (each optional). Split over the pool's
 * threads for a batch (on the calling thread alone, with the others
 * waiting, they held pp512 on the 1B models down by 5-10%); each element
 * is computed as on one thread, so the bits are the same.
 */
struct tok_task {
	float *g;
	const float *u;
	size_t F;
	float *x;
	const float *add, *norm_w;
	float *norm;
	size_t E;
	float eps;
};

static void tok_steps(void *arg, size_t b, size_t e, int thread)
{
	const struct tok_task *t = arg;
	size_t k, i;

	(void)thread;
	for (k = b; k < e; k++) {
		if (t->g)
			llm_swiglu(t->g + k * t->F, t->u + k * t->F, t->F);
		if (t->add)
			for (i = 0; i < t->E; i++)
				t->x[k * t->E + i] += t->add[k * t->E + i];
		if (t->norm)
			rmsnorm(t->norm + k * t->E, t->x + k * t->E, t->norm_w, t->E, t->eps);
	}
}

static void tok_run(struct llm_session *s, size_t nb, struct tok_task t)
{
	llm_per_token(s, nb, tok_steps, &t);
}

/* The call's tokens from @b0 at layer @l: the per-head q/k norms (qwen3), RoPE, K and V into the cache. */
struct qk_task {
	struct llm_session *s;
	const struct llm_layer *ly;
	uint32_t l;
	size_t b0;
	const float *cs;	/* the tokens' RoPE angles */
};

static void qk_rows(void *arg, size_t bb, size_t be, int thread)
{
	const struct qk_task *t = arg;
	struct llm_session *s = t->s;
	const struct llm_layer *ly = t->ly;
	const struct llm_config *c = &s->m->cfg;
	const struct attn_kernels *ak = attn_kernels();
	size_t kvd = s->kv_dim, qd = s->qd, b, i;

	(void)thread;
	for (b = bb; b < be; b++) {
		size_t at = llm_kv_at(s, s->ttab[t->b0 + b], t->l, s->tpos[t->b0 + b]);
		fp16_t *kh = (fp16_t *)(s->kcache + at), *vh = (fp16_t *)(s->vcache + at);

		if (c->qk_norm) {
			for (i = 0; i < c->n_head; i++)
				rmsnorm(s->q + b * qd + i * c->head_dim, s->q + b * qd + i * c->head_dim,
					ly->q_norm.data, c->head_dim, c->rms_eps);
			for (i = 0; i < c->n_head_kv; i++)
				rmsnorm(s->k + b * kvd + i * c->head_dim, s->k + b * kvd + i * c->head_dim,
					ly->k_norm.data, c->head_dim, c->rms_eps);
		}
		llm_rope(c, s->q + b * qd, c->n_head, t->cs + b * c->n_rot);
		llm_rope(c, s->k + b * kvd, c->n_head_kv, t->cs + b * c->n_rot);
		if (s->kv_type == LLM_KV_Q8_0) {
			quantize_row_act_ref(GGML_TYPE_Q8_0, s->k + b * kvd, s->kcache + at, kvd);
			quantize_row_act_ref(GGML_TYPE_Q8_0, s->v + b * kvd, s->vcache + at, kvd);
			continue;
		}
		ak->to_f16(s->k + b * kvd, kh, kvd);
		ak->to_f16(s->v + b * kvd, vh, kvd);
	}
}

/* Layer @ly's Q, K and V products for llm_matmuls() */
static void qkv_ops(struct llm_session *s, const struct llm_layer *ly, struct llm_mm ops[3])
{
	ops[0] = (struct llm_mm){ &ly->wq, &ly->bq, s->q };
	ops[1] = (struct llm_mm){ &ly->wk, &ly->bk, s->k };
	ops[2] = (struct llm_mm){ &ly->wv, &ly->bv, s->v };
}

/* The layers the CPU runs: the first ones, before the GPU's (gpu.h). */
static uint32_t cpu_layers(const struct llm_session *s)
{
	const struct llm_model *m = s->m;

	return s->gpu ? m->cfg.n_layer - m->plan.gpu_layers : m->cfg.n_layer;
}

/*
 * Generation, after layer @l: lend the pool's workers what comes next
 * (llm_matmul_ahead): the next layer's Q, K and V when it is resident and
 * on the CPU, the output after the last layer when the CPU computes it.
 */
static void ahead_next_layer(struct llm_session *s, uint32_t l)
{
	const struct llm_model *m = s->m;
	uint32_t n_cpu = cpu_layers(s);
	struct llm_mm ops[3];

	if (l + 1 < n_cpu && l + 1 < m->plan.n_resident) {
		qkv_ops(s, &m->layers[l + 1], ops);
		llm_matmul_ahead(s, ops, 3);
	} else if (l + 1 == m->cfg.n_layer && !(s->gpu && m->plan.gpu_output)) {
		ops[0] = (struct llm_mm){ &m->output, NULL, s->logits };
		llm_matmul_ahead(s, ops, 1);
	}
}

/*
 * Layer @l for the call's tokens b0..b0+nb, whose residual stream is @x
 * and RoPE angles @cs; token b is at position s->tpos[b] of the sequence
 * whose block table is s->ttab[b]. For one token (generation), each
 * product's weights are lent to the pool's workers to read ahead
 * (llm_matmul_ahead) while the caller does the steps before it alone.
 */
static int layer_chunk(struct llm_session *s, const struct llm_layer *ly, uint32_t l,
		       size_t b0, size_t nb, float *x, const float *cs, struct pinfer_err *err)
{
	const struct llm_config *c = &s->m->cfg;
	size_t E = c->n_embd, F = c->n_ff;
	const bool ahead = nb == 1;
	struct llm_mm qkv[3], wo = { &ly->wo, NULL, s->tmp };
	struct llm_mm ffn[2] = { { &ly->w_gate, NULL, s->hb }, { &ly->w_up, NULL, s->hb2 } };
	struct llm_mm down = { &ly->w_down, NULL, s->tmp };

	/* attention */
	qkv_ops(s, ly, qkv);
	tok_run(s, nb, (struct tok_task){ .x = x, .E = E, .norm = s->xb, .norm_w = ly->attn_norm.data,
					  .eps = c->rms_eps });
	llm_matmuls(s, qkv, 3, s->xb, nb);
	if (ahead)
		llm_matmul_ahead(s, &wo, 1);
	llm_per_token(s, nb, qk_rows, &(struct qk_task){ .s = s, .ly = ly, .l = l, .b0 = b0, .cs = cs });
	llm_attention(s, l, b0, nb, s->q, s->out);	/* causal: each up to itself */
	llm_matmuls(s, &wo, 1, s->out, nb);

	/* feed-forward: down(silu(gate x) * up x), or a mixture of such experts */
	if (ahead && !c->n_expert)
		llm_matmul_ahead(s, ffn, 2);
	tok_run(s, nb, (struct tok_task){ .x = x, .E = E, .add = s->tmp, .norm = s->xb,
					  .norm_w = ly->ffn_norm.data, .eps = c->rms_eps });
	if (c->n_expert) {
		int ret = llm_moe(s, ly, l, nb, s->moe, err);

		if (!ret && ahead)
			ahead_next_layer(s, l);
		if (!ret)
			tok_run(s, nb, (struct tok_task){ .x = x, .E = E, .add = s->moe });
		return ret;
	}
	llm_matmuls(s, ffn, 2, s->xb, nb);
	if (ahead)
		llm_matmul_ahead(s, &down, 1);
	tok_run(s, nb, (struct tok_task){ .g = s->hb, .u = s->hb2, .F = F });
	llm_matmuls(s, &down, 1, s->hb, nb);
	if (ahead)
		ahead_next_layer(s, l);
	tok_run(s, nb, (struct tok_task){ .x = x, .E = E, .add = s->tmp });
	return 0;
}

/* Grow the session buffer *@p from @had to @n elements of @size bytes; false when out of memory. */
static bool grow(void *p, size_t had, size_t n, size_t size)
{
	void *old, *q;

	memcpy(&old, p, sizeof(old));
	q = llm_buf_grow(old, had * size, n * size);
	if (q)
		memcpy(p, &q, sizeof(q));
	return q != NULL;
}

/* Room for @n tokens' residual stream, angles, positions and tables. */
static int reserve(struct llm_session *s, size_t n, struct pinfer_err *err)
{
	const struct llm_config *c = &s->m->cfg;
	bool ok;

	if (n <= s->n_cap)
		return 0;
	ok = grow(&s->x, s->n_cap, n, c->n_embd * sizeof(float));
	ok = grow(&s->rope_cs, s->n_cap, n, c->n_rot * sizeof(float)) && ok;
	ok = grow(&s->tpos, s->n_cap, n, sizeof(*s->tpos)) && ok;
	ok = grow(&s->ttab, s->n_cap, n, sizeof(*s->ttab)) && ok;
	ok = grow(&s->toks, s->n_cap, n, sizeof(*s->toks)) && ok;
	if (!ok)
		return pinfer_fail(err, ENOMEM, "session: out of memory for a batch of %zu tokens", n);
	s->n_cap = n;
	return 0;
}

static int check_tokens(const struct llm_config *c, const int32_t *tokens, size_t n,
			struct pinfer_err *err)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->n_vocab)
			return pinfer_fail(err, EINVAL, "token %" PRId32 " is not in the vocabulary of %" PRIu32,
					   tokens[i], c->n_vocab);
	return 0;
}

/*
 * The layers over the @n tokens (positions and tables in s->tpos and
 * s->ttab), leaving their residual streams in s->x.
 */
static int run_layers(struct llm_session *s, const int32_t *tokens, size_t n,
		      struct pinfer_err *err)
{
	const struct llm_model *m = s->m;
	const struct llm_config *c = &m->cfg;
	size_t E = c->n_embd, i, b;
	uint32_t l, n_cpu = cpu_layers(s);
	int ret;

	for (b = 0; b < n; b++) {	/* the same angles serve every layer */
		llm_rope_angles(m, s->tpos[b], s->rope_cs + b * c->n_rot);
		llm_tensor_row(&m->token_embd, (size_t)tokens[b], 0, E, s->x + b * E);
	}
	for (l = 0, ret = 0; l < n_cpu && !ret; l++) {
		ret = llm_stream_acquire(m, l, s->pool, n >= GEMM_MIN, err);
		if (ret)
			break;
		for (i = 0; i < n && !ret; i += LLM_BATCH)
			ret = layer_chunk(s, &m->layers[l], l, i, n - i < LLM_BATCH ? n - i : LLM_BATCH,
					  s->x + i * E, s->rope_cs + i * c->n_rot, err);
		llm_stream_release(m, l);
	}
	if (!ret && n_cpu < c->n_layer)
		ret = llm_gpu_layers(s, n, err);
	if (ret)
		llm_stream_end_pass(m);	/* the next call's layers in the ring's order */
	return ret;
}

/*
 * The logits after each of the @k tokens @rows of the call, into rows of
 * s->logits; an error when one is not finite.
 */
static int output_logits(struct llm_session *s, const size_t *rows, size_t k,
			 struct pinfer_err *err)
{
	const struct llm_model *m = s->m;
	const struct llm_config *c = &m->cfg;
	size_t E = c->n_embd, V = c->n_vocab, i, j, j0;

	if (k > s->n_logits) {
		if (!grow(&s->logits, s->n_logits, k, V * sizeof(float)))
			return pinfer_fail(err, ENOMEM, "session: out of memory for %zu rows of logits", k);
		s->n_logits = k;
	}
	for (j0 = 0; j0 < k; j0 += LLM_BATCH) {
		size_t nb = k - j0 < LLM_BATCH ? k - j0 : LLM_BATCH;

		if (s->gpu && m->plan.gpu_output) {
			int ret;

			for (j = 0; j < nb; j++)
				memcpy(s->xb + j * E, s->x + rows[j0 + j] * E, E * sizeof(float));
			ret = llm_gpu_logits(s, s->xb, nb, s->logits + j0 * V, err);
			if (ret)
				return ret;
			continue;
		}
		for (j = 0; j < nb; j++)
			rmsnorm(s->xb + j * E, s->x + rows[j0 + j] * E, m->output_norm.data, E,
				c->rms_eps);
		llm_matmul(s, &m->output, NULL, s->xb, nb, s->logits + j0 * V);
	}
	for (j = 0; j < k; j++)
		for (i = 0; i < V; i++)
			if (!isfinite(s->logits[j * V + i]))
				return pinfer_fail(err, ERANGE, "the logits at position %" PRIu32 " are not finite (logit %zu is %g): the model's weights or activations hold NaN or infinity",
						   s->tpos[rows[j]], i, (double)s->logits[j * V + i]);
	return 0;
}

/*
 * Feed @n tokens at the next positions; the logits after the @k tokens
 * @rows of them into s->logits. On failure s->pos stays: the tokens were
 * not fed.
 */
static int feed(struct llm_session *s, const int32_t *tokens, size_t n, const size_t *rows,
		size_t k, const float **logits, struct pinfer_err *err)
{
	size_t b;
	int ret;

	ret = check_tokens(&s->m->cfg, tokens, n, err);
	if (ret)
		return ret;
	if (!n || n > s->n_ctx - s->pos)
		return pinfer_fail(err, ENOSPC, "the context of %" PRIu32 " tokens is full", s->n_ctx);
	ret = reserve(s, n, err);
	if (ret)
		return ret;
	for (b = 0; b < n; b++) {
		s->tpos[b] = s->pos + (uint32_t)b;
		s->ttab[b] = s->own_table;
	}
	ret = run_layers(s, tokens, n, err);
	if (!ret)
		ret = output_logits(s, rows, k, err);
	if (s->pool)	/* a failed layer may have lent the workers its next products */
		pinfer_pool_reclaim(s->pool);
	if (ret)
		return ret;
	s->pos += (uint32_t)n;
	*logits = s->logits;
	return 0;
}

int llm_eval_batch(struct llm_session *s, const int32_t *tokens, size_t n,
		   const float **logits, struct pinfer_err *err)
{
	size_t last = n - 1;

	return feed(s, tokens, n, &last, 1, logits, err);
}

int llm_eval_all(struct llm_session *s, const int32_t *tokens, size_t n,
		 const float **logits, struct pinfer_err *err)
{
	size_t *rows = malloc((n ? n : 1) * sizeof(*rows)), b;
	int ret;

	if (!rows)
		return pinfer_fail(err, ENOMEM, "session: out of memory for %zu rows of logits", n);
	for (b = 0; b < n; b++)
		rows[b] = b;
	ret = feed(s, tokens, n, rows, n, logits, err);
	free(rows);
	return ret;
}

int llm_eval(struct llm_session *s, int32_t token, const float **logits,
	     struct pinfer_err *err)
{
	return llm_eval_batch(s, &token, 1, logits, err);
}

int llm_eval_seqs(struct llm_session *s, const struct llm_seq_batch *seqs, size_t n_seqs,
		  struct pinfer_err *err)
{
	const size_t V = s->m->cfg.n_vocab;
	size_t n = 0, k = 0, i, b, *rows;
	int ret;

	for (i = 0; i < n_seqs; i++) {
		const struct llm_seq_batch *q = &seqs[i];

		ret = check_tokens(&s->m->cfg, q->tokens, q->n, err);
		if (ret)
			return ret;
		if (!q->n || q->pos > s->n_ctx || q->n > s->n_ctx - q->pos)
			return pinfer_fail(err, ENOSPC, "the context of %" PRIu32 " tokens is full", s->n_ctx);
		n += q->n;
	}
	if (!n)
		return 0;
	ret = reserve(s, n, err);
	if (ret)
		return ret;
	rows = malloc(n_seqs * sizeof(*rows));
	if (!rows)
		return pinfer_fail(err, ENOMEM, "session: out of memory");
	for (i = 0, n = 0; i < n_seqs; i++) {
		const struct llm_seq_batch *q = &seqs[i];

		for (b = 0; b < q->n; b++, n++) {
			s->toks[n] = q->tokens[b];
			s->tpos[n] = q->pos + (uint32_t)b;
			s->ttab[n] = q->blocks;
		}
		if (q->logits)
			rows[k++] = n - 1;
	}
	s->invariant = true;
	ret = run_layers(s, s->toks, n, err);
	if (!ret && k)
		ret = output_logits(s, rows, k, err);
	if (s->pool)	/* as in feed() */
		pinfer_pool_reclaim(s->pool);
	s->invariant = false;
	free(rows);
	if (ret)
		return ret;
	for (i = 0, k = 0; i < n_seqs; i++)
		if (seqs[i].logits)
			memcpy(seqs[i].logits, s->logits + k++ * V, V * sizeof(float));
	return 0;
}
