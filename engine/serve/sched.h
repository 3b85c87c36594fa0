/* SPDX-License-Identifier: MIT */
/*
 * The server's scheduler: continuous batching of many requests over one
 * model (pinfer serve; Documentation/serve.md).
 *
 * One thread owns the model, the paged KV cache (blocks.h, in a runtime
 * region: pinned, hugepage-backed where it can be) and the thread pool,
 * and runs steps: it admits queued requests into free slots (taking what
 * the prefix cache holds of their prompts), then runs one llm_eval_seqs()
 * over every active sequence's next token and up to a chunk of waiting
 * prompt tokens, then samples each sequence's next token, decodes its text
 * and checks its stop strings. Requests come from other threads
 * (sched_submit) and are read from them (sched_read); nothing else
 * touches the model.
 */
#ifndef PINFER_SERVE_SCHED_H
#define PINFER_SERVE_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libpinfer.h"
#include "model/model.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

#define SCHED_MAX_STOP 4	/* stop strings per request (the OpenAI API's) */

struct sched_opts {
	uint32_t parallel;	/* sequences decoding together */
	uint32_t n_ctx;		/* positions per sequence */
	uint32_t queue;		/* requests waiting for a slot, at most */
	uint32_t chunk;		/* tokens per step, at most (prompts are cut to fit) */
	enum pinfer_provider provider;	/* for the KV cache's region */
	int node;
};

/* What a request asks for. */
struct sched_params {
	struct sampler_params sp;
	uint32_t max_tokens;	/* 0: until the context is full */
	const char *stop[SCHED_MAX_STOP];	/* NULL-terminated unless all four */
	bool ignore_eos;	/* go on past end-of-text and end-of-turn (benchmarks) */
};

enum sched_finish { SCHED_RUNNING, SCHED_STOP, SCHED_LENGTH, SCHED_CANCELLED, SCHED_ERROR };

struct sched_stats {
	uint64_t requests;	/* finished */
	uint64_t prompt_tokens, gen_tokens, cached_tokens;	/* cached: from the prefix cache */
	uint64_t steps;
	double gen_rate;	/* tokens/s generated over the last seconds */
	uint32_t queued, active, parallel;
	uint32_t blocks, blocks_used, blocks_cached;	/* cached: idle, findable */
	uint64_t block_hits;
	struct pinfer_region_props kv_region;
	struct llm_stream_stats stream;
	struct llm_expert_stats experts;	/* a mixture of experts' cache */
};

struct sched;
struct sched_req;

int sched_create(struct sched **out, const struct llm_model *m, const struct tokenizer *tok,
		 struct pinfer_pool *pool, const struct sched_opts *o, struct pinfer_err *err);
/* Cut every request still running (SCHED_CANCELLED), stop the thread, free. */
void sched_free(struct sched *s);

/*
 * Queue @n_prompt tokens (copied) with @p (stop strings copied); *@out is
 * the caller's until sched_release(). -EAGAIN: the queue is full;
 * -ESHUTDOWN: the scheduler is draining; -E2BIG: the prompt leaves no room
 * in the context; -EINVAL: empty.
 */
int sched_submit(struct sched *s, const int32_t *prompt, size_t n_prompt,
		 const struct sched_params *p, struct sched_req **out);

/*
 * Up to @cap bytes of the request's text not read yet (whole UTF-8
 * characters, none that may be the start of a stop string), waiting up
 * to @timeout_ms for some; *@fin: SCHED_RUNNING, or how it ended once all
 * its text is read. Returns the bytes copied.
 */
size_t sched_read(struct sched_req *r, char *buf, size_t cap, int timeout_ms,
		  enum sched_finish *fin);

/* Token counts: the prompt, generated, and the prompt's tokens the cache had. */
void sched_usage(struct sched_req *r, uint32_t *prompt, uint32_t *completion, uint32_t *cached);
/* Why it ended in SCHED_ERROR. */
const char *sched_error(struct sched_req *r);

/* The caller is done with @r: a running request is cancelled, its slot freed. */
void sched_release(struct sched_req *r);

/* Stop taking requests (-ESHUTDOWN); the running ones go on. */
void sched_drain(struct sched *s);
/* End every request queued or running (SCHED_CANCELLED); readers see the end. */
void sched_cut(struct sched *s);
/*
 * Requests not yet released by their callers: queued, running, or ended
 * with their answer still being sent (a server waits for all three).
 */
uint32_t sched_busy(struct sched *s);
void sched_stats(struct sched *s, struct sched_stats *st);

#endif
