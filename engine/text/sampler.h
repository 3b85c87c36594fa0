/* SPDX-License-Identifier: MIT */
/* Choosing the next token from logits. */
#ifndef PINFER_SAMPLER_H
#define PINFER_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

struct sampler_params {
	float temp;		/* <= 0: greedy */
	int top_k;		/* <= 0: all */
	float top_p;		/* >= 1: off */
	float min_p;		/* <= 0: off */
	float repeat_penalty;	/* 1: off */
	int repeat_last_n;	/* tokens of history the penalty looks at */
	uint64_t seed;
};

struct sampler;

struct sampler *sampler_create(const struct sampler_params *p, uint32_t n_vocab);
void sampler_free(struct sampler *s);

/*
 * The next token. @logits (n_vocab) are modified by the penalty; @history
 * holds the tokens so far. Order: repetition penalty, top-k, temperature,
 * softmax, top-p, min-p, then a draw (or the argmax when greedy).
 */
int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history,
		       size_t n_history);

#endif
