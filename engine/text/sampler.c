// SPDX-License-Identifier: MIT
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

struct cand {
	int32_t id;
	float v;
};

struct sampler {
	struct sampler_params p;
	uint32_t n_vocab;
	uint64_t rng;
	struct cand *c;
};

struct sampler *sampler_create(const struct sampler_params *p, uint32_t n_vocab)
{
	struct sampler *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->c = malloc(n_vocab * sizeof(*s->c));
	if (!s->c) {
		free(s);
		return NULL;
	}
	s->p = *p;
	s->n_vocab = n_vocab;
	s->rng = p->seed ^ 0x9e3779b97f4a7c15ull;
	return s;
}

void sampler_free(struct sampler *s)
{
	if (s)
		free(s->c);
	free(s);
}

/* splitmix64 -> a float in [0, 1) */
static float uniform(struct sampler *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (float)(z >> 40) / (float)(1ull << 24);
}

static int by_value_desc(const void *a, const void *b)
{
	float x = ((const struct cand *)a)->v, y = ((const struct cand *)b)->v;

	return x < y ? 1 : x > y ? -1 : 0;
}

static void penalize(const struct sampler_params *p, float *logits,
		     const int32_t *hist, size_t n, uint32_t n_vocab)
{
	size_t i, from = p->repeat_last_n > 0 && n > (size_t)p->repeat_last_n ?
			 n - p->repeat_last_n : 0;

	if (p->repeat_penalty == 1.0f)
		return;
	for (i = from; i < n; i++) {	/* a token seen twice is penalized once */
		float *l = &logits[hist[i]];
		size_t j;
		int seen = 0;

		if (hist[i] < 0 || (uint32_t)hist[i] >= n_vocab)
			continue;
		for (j = from; j < i && !seen; j++)
			seen = hist[j] == hist[i];
		if (!seen)
			*l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
	}
}

int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history,
		       size_t n_history)
{
	const struct sampler_params *p = &s->p;
	size_t n = s->n_vocab, i, keep;
	float sum = 0, acc, r;

	penalize(p, logits, history, n_history, s->n_vocab);
	if (p->temp <= 0) {
		int32_t best = 0;

		for (i = 1; i < n; i++)
			if (logits[i] > logits[best])
				best = (int32_t)i;
		return best;
	}
	for (i = 0; i < n; i++)
		s->c[i] = (struct cand){ (int32_t)i, logits[i] };
	qsort(s->c, n, sizeof(*s->c), by_value_desc);
	keep = p->top_k > 0 && (size_t)p->top_k < n ? (size_t)p->top_k : n;
	for (i = 0; i < keep; i++) {		/* softmax with temperature */
		s->c[i].v = expf((s->c[i].v - s->c[0].v) / p->temp);
		sum += s->c[i].v;
	}
	for (i = 0, acc = 0; i < keep; i++) {
		s->c[i].v /= sum;
		acc += s->c[i].v;
		if (p->top_p < 1 && acc >= p->top_p) {
			keep = i + 1;
			break;
		}
	}
	if (p->min_p > 0)
		for (i = 1; i < keep; i++)
			if (s->c[i].v < p->min_p * s->c[0].v) {
				keep = i;
				break;
			}
	for (i = 0, sum = 0; i < keep; i++)
		sum += s->c[i].v;
	r = uniform(s) * sum;
	for (i = 0, acc = 0; i < keep; i++) {
		acc += s->c[i].v;
		if (r < acc)
			return s->c[i].id;
	}
	return s->c[keep - 1].id;
}
