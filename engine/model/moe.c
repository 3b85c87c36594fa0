// SPDX-License-Identifier: MIT
/*
 * The mixture-of-experts feed-forward (qwen3moe, Mixtral): the router's
 * logits for each token, softmax, the top n_expert_used, their weights
 * renormalised to sum to 1; then expert by expert, in the order of their
 * numbers, the tokens that chose it gathered into one batch, SwiGLU through
 * the expert's three matrices (each read once for all of them), and each
 * result added into its token's sum with its weight.
 *
 * A token's result does not depend on the others of the batch: its experts
 * are summed in the same order whatever the batch, and the products are
 * those of llm_matmuls(), whose rows give the same bits for any batch
 * (except through sgemm, which the server's invariant calls leave out).
 */
#include "session.h"

#include <math.h>
#include <string.h>

#include "placement.h"
#include "tensor.h"

/*
 * Token @b's experts: the @k largest of the @n logits (the lower number
 * first among equals), and their softmax weights renormalised over the k,
 * which is the softmax of their logits: exp(l_i - l_max) / sum over the k.
 */
static void route(const float *logits, uint32_t n, uint32_t k, uint32_t *sel, float *w)
{
	double sum = 0;
	uint32_t i, j, e;

	for (j = 0; j < k; j++) {
		uint32_t best = UINT32_MAX;

		for (e = 0; e < n; e++) {
			for (i = 0; i < j && sel[i] != e; i++)
				;
			if (i == j && (best == UINT32_MAX || logits[e] > logits[best]))
				best = e;
		}
		sel[j] = best;
	}
	for (j = 0; j < k; j++)
		sum += exp((double)logits[sel[j]] - (double)logits[sel[0]]);
	for (j = 0; j < k; j++)
		w[j] = (float)(exp((double)logits[sel[j]] - (double)logits[sel[0]]) / sum);
}

/*
 * The next layer's likely experts for the block's tokens, from their
 * current normed inputs through the next layer's router, read ahead.
 */
static void read_ahead(struct llm_session *s, uint32_t next, size_t nb)
{
	const struct llm_config *c = &s->m->cfg;
	const uint32_t k = c->n_expert_used, n_exp = c->n_expert;
	uint32_t *ids = s->pred, n = 0, e, j;
	size_t b;

	llm_matmul(s, &s->m->layers[next].gate_inp, NULL, s->xb, nb, s->route);
	memset(ids, 0, n_exp * sizeof(*ids));
	for (b = 0; b < nb; b++) {
		route(s->route + b * n_exp, n_exp, k, s->psel, s->pselw);
		for (j = 0; j < k; j++)
			ids[s->psel[j]] = 1;
	}
	for (e = 0; e < n_exp; e++)	/* marks to numbers, in place: n <= e */
		if (ids[e])
			ids[n++] = e;
	llm_experts_prefetch(s->m, next, ids, n);
}

int llm_moe(struct llm_session *s, const struct llm_layer *ly, uint32_t l, size_t nb,
	    float *out, struct pinfer_err *err)
{
	const struct llm_config *c = &s->m->cfg;
	const uint32_t k = c->n_expert_used, n_exp = c->n_expert;
	const size_t E = c->n_embd, F = c->n_ff_exp;
	uint32_t cap = llm_experts_capacity(s->m), e, j, n_used = 0, u0, u;
	size_t b, i;
	int ret;

	llm_matmul(s, &ly->gate_inp, NULL, s->xb, nb, s->route);
	memset(s->efirst, 0, (n_exp + 1) * sizeof(*s->efirst));
	for (b = 0; b < nb; b++) {
		route(s->route + b * n_exp, n_exp, k, s->sel + b * k, s->selw + b * k);
		for (j = 0; j < k; j++)
			s->efirst[s->sel[b * k + j] + 1]++;
	}
	for (e = 0; e < n_exp; e++) {	/* counts to starts: a counting sort by expert */
		if (s->efirst[e + 1])
			s->used[n_used++] = e;
		s->efirst[e + 1] += s->efirst[e];
	}
	for (b = 0; b < nb; b++)	/* each expert's tokens in order; efirst[e] moves to its end */
		for (j = 0; j < k; j++)
			s->etok[s->efirst[s->sel[b * k + j]]++] = (uint32_t)(b * k + j);
	memset(out, 0, nb * E * sizeof(*out));
	/* the experts in the order of their numbers, as many at a time as the cache holds */
	for (u0 = 0; u0 < n_used; u0 += cap) {
		uint32_t nu = n_used - u0 < cap ? n_used - u0 : cap;

		ret = llm_experts_acquire(s->m, l, s->used + u0, nu, s->emats, err);
		if (ret)
			return ret;
		if (u0 + nu == n_used && s->m->experts && l + 1 < c->n_layer)
			read_ahead(s, l + 1, nb);	/* overlapping this layer's compute */
		for (u = 0; u < nu; u++) {
			const struct llm_expert_mats *xm = &s->emats[u];
			size_t first, cnt;

			ret = llm_experts_ready(s->m, u, &s->emats[u], nb >= GEMM_MIN, s->pool, err);
			if (ret)
				return ret;

			e = s->used[u0 + u];
			first = e ? s->efirst[e - 1] : 0;
			cnt = s->efirst[e] - first;
			for (i = 0; i < cnt; i++)
				memcpy(s->xe + i * E, s->xb + s->etok[first + i] / k * E, E * sizeof(float));
			llm_matmuls(s, (const struct llm_mm[]){ { &xm->gate, NULL, s->hb },
								{ &xm->up, NULL, s->hb2 } }, 2, s->xe, cnt);
			llm_swiglu(s->hb, s->hb2, cnt * F);
			llm_matmul(s, &xm->down, NULL, s->hb, cnt, s->tmp);
			for (i = 0; i < cnt; i++) {
				uint32_t pick = s->etok[first + i];
				float w = s->selw[pick], *o = out + pick / k * E;
				const float *y = s->tmp + i * E;
				size_t d;

				for (d = 0; d < E; d++)
					o[d] += w * y[d];
			}
		}
		llm_experts_release(s->m, l);
	}
	return 0;
}
