// SPDX-License-Identifier: MIT
/*
 * The forward pass of a batch of tokens, llama2.c style, layer by layer
 * over all of them: embed, then per layer attention (RMSNorm, Q/K/V, RoPE,
 * KV cache, softmax over the past, output projection, residual) and SwiGLU
 * feed-forward (RMSNorm, gate and up, SiLU, down, residual), then the
 * final norm and the logits of the last token. Each layer's weights come
 * from the placement (llm_stream_acquire: resident, or read into the ring)
 * and are used once per call, LLM_BATCH tokens at a time.
 */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/quant.h"
#include "placement.h"
#include "tensor.h"

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

/*
 * Layer @l for the nb tokens at positions pos..pos+nb, whose residual
 * stream is @x and RoPE angles @cs.
 */
static void layer_chunk(struct llm_session *s, const struct llm_layer *ly, uint32_t l,
			uint32_t pos, size_t nb, float *x, const float *cs)
{
	const struct llm_config *c = &s->m->cfg;
	const struct attn_kernels *ak = attn_kernels();
	size_t E = c->n_embd, F = c->n_ff, kvd = s->kv_dim, qd = s->qd, b, i;

	/* attention */
	for (b = 0; b < nb; b++)
		rmsnorm(s->xb + b * E, x + b * E, ly->attn_norm.data, E, c->rms_eps);
	llm_matmul(s, &ly->wq, &ly->bq, s->xb, nb, s->q);
	llm_matmul(s, &ly->wk, &ly->bk, s->xb, nb, s->k);
	llm_matmul(s, &ly->wv, &ly->bv, s->xb, nb, s->v);
	for (b = 0; b < nb; b++) {
		size_t at = ((size_t)l * s->n_ctx + pos + b) * s->kv_row;
		fp16_t *kh = (fp16_t *)(s->kcache + at), *vh = (fp16_t *)(s->vcache + at);

		llm_rope(c, s->q + b * qd, c->n_head, cs + b * c->n_rot);
		llm_rope(c, s->k + b * kvd, c->n_head_kv, cs + b * c->n_rot);
		if (s->kv_type == LLM_KV_Q8_0) {
			quantize_row_act_ref(GGML_TYPE_Q8_0, s->k + b * kvd, s->kcache + at, kvd);
			quantize_row_act_ref(GGML_TYPE_Q8_0, s->v + b * kvd, s->vcache + at, kvd);
			continue;
		}
		ak->to_f16(s->k + b * kvd, kh, kvd);
		ak->to_f16(s->v + b * kvd, vh, kvd);
	}
	llm_attention(s, l, pos, nb, s->q, s->out);	/* causal: each up to itself */
	llm_matmul(s, &ly->wo, NULL, s->out, nb, s->tmp);
	for (i = 0; i < nb * E; i++)
		x[i] += s->tmp[i];

	/* feed-forward: down(silu(gate x) * up x) */
	for (b = 0; b < nb; b++)
		rmsnorm(s->xb + b * E, x + b * E, ly->ffn_norm.data, E, c->rms_eps);
	llm_matmul(s, &ly->w_gate, NULL, s->xb, nb, s->hb);
	llm_matmul(s, &ly->w_up, NULL, s->xb, nb, s->hb2);
	for (i = 0; i < nb * F; i++)
		s->hb[i] = s->hb[i] / (1.0f + expf(-s->hb[i])) * s->hb2[i];
	llm_matmul(s, &ly->w_down, NULL, s->hb, nb, s->tmp);
	for (i = 0; i < nb * E; i++)
		x[i] += s->tmp[i];
}

/* Room for @n tokens' residual stream and angles. */
static int reserve(struct llm_session *s, size_t n, struct pinfer_err *err)
{
	const struct llm_config *c = &s->m->cfg;
	float *x, *cs;

	if (n <= s->n_cap)
		return 0;
	x = realloc(s->x, n * c->n_embd * sizeof(float));
	if (x)
		s->x = x;
	cs = realloc(s->rope_cs, n * c->n_rot * sizeof(float));
	if (cs)
		s->rope_cs = cs;
	if (!x || !cs)
		return pinfer_fail(err, ENOMEM, "session: out of memory for a batch of %zu tokens", n);
	s->n_cap = n;
	return 0;
}

int llm_eval_batch(struct llm_session *s, const int32_t *tokens, size_t n,
		   const float **logits, struct pinfer_err *err)
{
	const struct llm_model *m = s->m;
	const struct llm_config *c = &m->cfg;
	size_t E = c->n_embd, i, b;
	uint32_t l;
	int ret;

	for (i = 0; i < n; i++)
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->n_vocab)
			return pinfer_fail(err, EINVAL, "token %" PRId32 " is not in the vocabulary of %" PRIu32,
					   tokens[i], c->n_vocab);
	if (!n || n > s->n_ctx - s->pos)
		return pinfer_fail(err, ENOSPC, "the context of %" PRIu32 " tokens is full", s->n_ctx);
	ret = reserve(s, n, err);
	if (ret)
		return ret;
	for (b = 0; b < n; b++) {	/* the same angles serve every layer */
		llm_rope_angles(m, s->pos + (uint32_t)b, s->rope_cs + b * c->n_rot);
		llm_tensor_row(&m->token_embd, (size_t)tokens[b], 0, E, s->x + b * E);
	}
	for (l = 0; l < c->n_layer; l++) {
		ret = llm_stream_acquire(m, l, s->pool, n >= GEMM_MIN, err);
		if (ret)
			return ret;	/* s->pos stays: these tokens were not fed */
		for (i = 0; i < n; i += LLM_BATCH)
			layer_chunk(s, &m->layers[l], l, s->pos + (uint32_t)i,
				    n - i < LLM_BATCH ? n - i : LLM_BATCH, s->x + i * E,
				    s->rope_cs + i * c->n_rot);
		llm_stream_release(m, l);
	}
	rmsnorm(s->xb, s->x + (n - 1) * E, m->output_norm.data, E, c->rms_eps);
	llm_matmul(s, &m->output, NULL, s->xb, 1, s->logits);
	for (i = 0; i < c->n_vocab; i++)
		if (!isfinite(s->logits[i]))
			return pinfer_fail(err, ERANGE, "the logits at position %" PRIu32 " are not finite (logit %zu is %g): the model's weights or activations hold NaN or infinity",
					   s->pos + (uint32_t)n - 1, i, (double)s->logits[i]);
	s->pos += (uint32_t)n;
	*logits = s->logits;
	return 0;
}

int llm_eval(struct llm_session *s, int32_t token, const float **logits,
	     struct pinfer_err *err)
{
	return llm_eval_batch(s, &token, 1, logits, err);
}
