// SPDX-License-Identifier: MIT
/* The server's scheduler: sched.h. */
#include "sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "blocks.h"

#define BLOCK LLM_KV_BLOCK
#define IDLE_CHUNK 256	/* prompt tokens in a step that no decoding waits for */

struct sched_req {
	struct sched *s;
	int refs;		/* the caller's and the scheduler's */
	int32_t *prompt;
	uint32_t n_prompt, max_tokens;
	struct sampler_params sp;
	bool ignore_eos;
	char *stop[SCHED_MAX_STOP];
	size_t n_stop;
	char *text;		/* generated so far (cut at a stop string) */
	size_t len, cap;
	size_t safe;		/* bytes of it that may be read */
	size_t sent;		/* bytes read */
	uint32_t n_gen, n_cached;
	enum sched_finish fin;
	bool cancelled;
	char err[320];
	pthread_cond_t cv;	/* text or the end came */
};

/* A sequence being decoded: a request, its blocks and tokens. */
struct slot {
	struct sched_req *r;
	uint32_t *table;	/* [blocks per context] its blocks */
	uint64_t *keys;		/* their prefix keys, while published in order */
	uint32_t n_blocks, n_published, reserved;
	uint32_t pos;		/* positions in the cache */
	int32_t *toks;		/* the prompt, then what was sampled */
	uint32_t n_toks;
	struct sampler *smp;
	float *logits;
	uint64_t order;		/* admission: prompts are fed first come first */
};

struct sched {
	const struct llm_model *m;
	const struct tokenizer *tok;
	struct pinfer_pool *pool;
	struct sched_opts o;
	struct pinfer_region *kv;
	struct llm_session *sess;
	struct kv_blocks blocks;
	struct slot *slots;
	struct llm_seq_batch *batch;
	uint32_t *batch_slot;
	struct sched_req **queue;	/* FIFO */
	uint32_t q_len;
	uint32_t held;		/* requests submitted and not yet released by their callers */
	uint64_t admitted;
	pthread_mutex_t mu;
	pthread_cond_t work;	/* a request came, or one was released */
	pthread_t thread;
	bool quit, draining, started;
	uint64_t requests, prompt_tokens, gen_tokens, cached_tokens, steps;
	double win_t0, last_step, gen_rate;
	uint64_t win_gen;
	struct llm_stream_stats stream;
	struct llm_expert_stats experts;
};

static void req_put(struct sched_req *r)	/* under s->mu */
{
	size_t i;

	if (--r->refs)
		return;
	for (i = 0; i < r->n_stop; i++)
		free(r->stop[i]);
	free(r->prompt);
	free(r->text);
	pthread_cond_destroy(&r->cv);
	free(r);
}

/* The request ends (under s->mu): all its text readable, the scheduler's reference dropped. */
static void req_finish(struct sched *s, struct sched_req *r, enum sched_finish fin)
{
	r->fin = fin;
	r->safe = r->len;
	s->requests++;
	pthread_cond_broadcast(&r->cv);
	req_put(r);
}

/* Bytes at the end of @r's text that may begin a stop string. */
static size_t stop_holdback(const struct sched_req *r)
{
	size_t i, k, most = 0;

	for (i = 0; i < r->n_stop; i++) {
		size_t n = strlen(r->stop[i]);

		for (k = n - 1 < r->len ? n - 1 : r->len; k > most; k--)
			if (!memcmp(r->text + r->len - k, r->stop[i], k)) {
				most = k;
				break;
			}
	}
	return most;
}

/* Bytes at the end of @p (@n) that are an incomplete UTF-8 character. */
static size_t utf8_partial(const char *p, size_t n)
{
	size_t i;

	for (i = 1; i <= 4 && i <= n; i++) {
		unsigned char c = (unsigned char)p[n - i];

		if ((c & 0xc0) == 0x80)
			continue;
		if (c < 0xc0)
			return 0;
		return (size_t)(c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2) > i ? i : 0;
	}
	return 0;
}

/*
 * Append a token's text to @r; true when it completes a stop string (the
 * text is then cut where the stop string begins).
 */
static bool req_append(struct sched_req *r, const char *piece, size_t n)
{
	size_t from, i, hold;

	if (r->len + n + 1 > r->cap) {
		size_t cap = (r->len + n + 1) * 2;
		char *t = realloc(r->text, cap);

		if (!t)
			return true;	/* out of memory: end it here */
		r->text = t;
		r->cap = cap;
	}
	memcpy(r->text + r->len, piece, n);
	from = r->len;
	r->len += n;
	r->text[r->len] = 0;
	for (i = 0; i < r->n_stop; i++) {
		size_t sl = strlen(r->stop[i]);
		size_t start = from + 1 > sl ? from + 1 - sl : 0;
		char *hit = memmem(r->text + start, r->len - start, r->stop[i], sl);

		if (hit) {
			r->len = (size_t)(hit - r->text);
			r->text[r->len] = 0;
			return true;
		}
	}
	hold = stop_holdback(r);
	hold += utf8_partial(r->text, r->len - hold);
	if (r->len - hold > r->safe)
		r->safe = r->len - hold;
	return false;
}

static void slot_clear(struct sched *s, struct slot *sl)
{
	uint32_t i;

	for (i = 0; i < sl->n_blocks; i++)
		kv_blocks_release(&s->blocks, sl->table[i]);
	kv_blocks_unreserve(&s->blocks, sl->reserved);
	sampler_free(sl->smp);
	sl->smp = NULL;
	sl->r = NULL;
	sl->n_blocks = sl->n_published = sl->reserved = 0;
}

static void slot_end(struct sched *s, struct slot *sl, enum sched_finish fin)
{
	struct sched_req *r = sl->r;

	slot_clear(s, sl);
	req_finish(s, r, fin);
}

/*
 * Start @r in @sl: its prompt's published blocks taken, the blocks it may
 * still need reserved. False (nothing held) when the pool cannot promise them.
 */
static bool admit(struct sched *s, struct slot *sl, struct sched_req *r)
{
	uint32_t most = r->n_prompt + r->max_tokens < s->o.n_ctx ?
			r->n_prompt + r->max_tokens : s->o.n_ctx;
	uint32_t need = (most + BLOCK - 1) / BLOCK, got, i;

	memcpy(sl->toks, r->prompt, r->n_prompt * sizeof(*r->prompt));
	/* at least the prompt's last token is fed: its logits come from it */
	got = kv_blocks_match(&s->blocks, sl->toks, (r->n_prompt - 1) / BLOCK, sl->table, sl->keys);
	if (!kv_blocks_reserve(&s->blocks, need - got)) {
		for (i = 0; i < got; i++)
			kv_blocks_release(&s->blocks, sl->table[i]);
		return false;
	}
	sl->smp = sampler_create(&r->sp, s->m->cfg.n_vocab);
	if (!sl->smp) {
		for (i = 0; i < got; i++)
			kv_blocks_release(&s->blocks, sl->table[i]);
		kv_blocks_unreserve(&s->blocks, need - got);
		snprintf(r->err, sizeof(r->err), "out of memory");
		req_finish(s, r, SCHED_ERROR);
		return true;	/* taken off the queue */
	}
	sl->r = r;
	sl->reserved = need - got;
	sl->n_blocks = sl->n_published = got;
	sl->pos = got * BLOCK;
	sl->n_toks = r->n_prompt;
	sl->order = s->admitted++;
	r->n_cached = sl->pos;
	s->cached_tokens += sl->pos;
	s->prompt_tokens += r->n_prompt;
	return true;
}

/* Cancelled requests out of the queue and the slots; queued ones into free slots. */
static void admit_all(struct sched *s)
{
	uint32_t i, j, k;

	for (i = 0; i < s->o.parallel; i++)
		if (s->slots[i].r && s->slots[i].r->cancelled)
			slot_end(s, &s->slots[i], SCHED_CANCELLED);
	for (i = j = 0; i < s->q_len; i++) {
		if (s->queue[i]->cancelled)
			req_finish(s, s->queue[i], SCHED_CANCELLED);
		else
			s->queue[j++] = s->queue[i];
	}
	s->q_len = j;
	for (i = 0, k = 0; i < s->o.parallel && k < s->q_len; i++) {
		if (s->slots[i].r)
			continue;
		if (!admit(s, &s->slots[i], s->queue[k]))
			break;	/* the pool is short: wait for blocks */
		k++;
	}
	memmove(s->queue, s->queue + k, (s->q_len - k) * sizeof(*s->queue));
	s->q_len -= k;
}

/*
 * This step's entries: every decoding sequence's token, then prompt chunks
 * of up to o.chunk tokens in all (a step's time is what the decoding
 * sequences wait for their next token), or up to IDLE_CHUNK when no
 * sequence decodes (nothing waits).
 */
static size_t build_batch(struct sched *s)
{
	const struct slot *prev = NULL;	/* the last prompt taken */
	uint32_t budget, i, n = 0;

	for (i = 0; i < s->o.parallel; i++) {
		struct slot *sl = &s->slots[i];

		if (sl->r && sl->pos >= sl->r->n_prompt) {
			s->batch[n] = (struct llm_seq_batch){ sl->toks + sl->pos, 1, sl->pos,
							      sl->table, sl->logits };
			s->batch_slot[n++] = i;
		}
	}
	budget = n || s->o.chunk > IDLE_CHUNK ? s->o.chunk : IDLE_CHUNK;
	while (budget) {	/* prompts, oldest first: each after the one before */
		struct slot *best = NULL;
		uint32_t take, bi = 0;

		for (i = 0; i < s->o.parallel; i++) {
			struct slot *sl = &s->slots[i];

			if (sl->r && sl->pos < sl->r->n_prompt && (!prev || sl->order > prev->order) &&
			    (!best || sl->order < best->order)) {
				best = sl;
				bi = i;
			}
		}
		if (!best)
			break;
		take = best->r->n_prompt - best->pos < budget ? best->r->n_prompt - best->pos : budget;
		s->batch[n] = (struct llm_seq_batch){ best->toks + best->pos, take, best->pos,
						      best->table,
						      best->pos + take == best->n_toks ? best->logits : NULL };
		s->batch_slot[n++] = bi;
		budget -= take;
		prev = best;
	}
	/* the blocks the entries write into */
	for (i = 0; i < n; i++) {
		struct slot *sl = &s->slots[s->batch_slot[i]];
		uint32_t end = s->batch[i].pos + (uint32_t)s->batch[i].n;

		while (sl->n_blocks * BLOCK < end) {
			sl->table[sl->n_blocks++] = kv_blocks_take(&s->blocks);
			sl->reserved--;
		}
	}
	return n;
}

/* After a step: entry @i's tokens are in the cache; sample when it has logits. */
static void advance(struct sched *s, size_t i)
{
	struct slot *sl = &s->slots[s->batch_slot[i]];
	struct sched_req *r = sl->r;
	char piece[256];
	int32_t t;
	size_t n;

	sl->pos += (uint32_t)s->batch[i].n;
	for (; sl->n_published < sl->pos / BLOCK; sl->n_published++) {	/* full blocks */
		uint32_t k = sl->n_published;
		uint64_t parent = k ? sl->keys[k - 1] : 0;

		kv_blocks_publish(&s->blocks, sl->table[k], parent, sl->toks + k * BLOCK);
		sl->keys[k] = kv_blocks_key(parent, sl->toks + k * BLOCK);
	}
	if (!s->batch[i].logits)
		return;
	t = sampler_sample(sl->smp, sl->logits, sl->toks, sl->n_toks);
	sl->toks[sl->n_toks++] = t;
	r->n_gen++;
	s->gen_tokens++;
	if (!r->ignore_eos && (t == tokenizer_eos(s->tok) || tokenizer_is_control(s->tok, t))) {
		slot_end(s, sl, SCHED_STOP);
		return;
	}
	n = tokenizer_decode(s->tok, t, piece, sizeof(piece));
	if (req_append(r, piece, n)) {
		slot_end(s, sl, SCHED_STOP);
		return;
	}
	if ((r->max_tokens && r->n_gen >= r->max_tokens) || sl->n_toks >= s->o.n_ctx) {
		slot_end(s, sl, SCHED_LENGTH);
		return;
	}
	pthread_cond_broadcast(&r->cv);
}

static void *sched_main(void *arg)
{
	struct sched *s = arg;
	struct pinfer_err err = { 0 };
	size_t n, i;
	int ret;

	pthread_mutex_lock(&s->mu);
	while (!s->quit) {
		admit_all(s);
		n = build_batch(s);
		if (!n) {
			pthread_cond_wait(&s->work, &s->mu);
			continue;
		}
		pthread_mutex_unlock(&s->mu);
		ret = llm_eval_seqs(s->sess, s->batch, n, &err);
		pthread_mutex_lock(&s->mu);
		s->steps++;
		for (i = 0; i < n; i++) {
			struct slot *sl = &s->slots[s->batch_slot[i]];

			if (!ret) {
				advance(s, i);
			} else if (sl->r) {
				snprintf(sl->r->err, sizeof(sl->r->err), "%s", err.msg);
				slot_end(s, sl, SCHED_ERROR);
			}
		}
		s->last_step = mono_now();
		if (s->last_step - s->win_t0 >= 2) {
			s->gen_rate = (s->gen_tokens - s->win_gen) / (s->last_step - s->win_t0);
			s->win_t0 = s->last_step;
			s->win_gen = s->gen_tokens;
		}
		llm_model_stream_stats(s->m, &s->stream);
		llm_model_expert_stats(s->m, &s->experts);
	}
	for (i = 0; i < s->o.parallel; i++)
		if (s->slots[i].r)
			slot_end(s, &s->slots[i], SCHED_CANCELLED);
	for (i = 0; i < s->q_len; i++)
		req_finish(s, s->queue[i], SCHED_CANCELLED);
	s->q_len = 0;
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int sched_create(struct sched **out, const struct llm_model *m, const struct tokenizer *tok,
		 struct pinfer_pool *pool, const struct sched_opts *o, struct pinfer_err *err)
{
	uint32_t per_seq, n_blocks, i;
	uint64_t kv_bytes;
	struct sched *s;
	int ret;

	*out = NULL;
	if (!o->parallel || !o->chunk || o->n_ctx < 2 || o->n_ctx > m->cfg.ctx_train)
		return pinfer_fail(err, EINVAL, "serve: %u slots, a chunk of %u and a context of %u (of at most %u): out of range",
				   o->parallel, o->chunk, o->n_ctx, m->cfg.ctx_train);
	s = calloc(1, sizeof(*s));
	if (!s)
		return pinfer_fail(err, ENOMEM, "serve: out of memory");
	s->m = m;
	s->tok = tok;
	s->pool = pool;
	s->o = *o;
	per_seq = (o->n_ctx + BLOCK - 1) / BLOCK;
	n_blocks = per_seq * o->parallel;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->work, NULL);
	/* (a page when every layer's K and V are on the GPU: the region is there) */
	kv_bytes = llm_kv_cache_bytes(&m->cfg, llm_kv_layers(m), o->n_ctx, o->parallel);
	ret = pinfer_region_create(&s->kv, kv_bytes ? kv_bytes : 1, o->node, o->provider, err);
	if (ret)
		goto fail;
	ret = llm_session_create_paged(&s->sess, m, o->n_ctx, pinfer_region_ptr(s->kv), n_blocks,
				       pool, err);
	if (ret)
		goto fail;
	ret = kv_blocks_init(&s->blocks, n_blocks);
	s->slots = calloc(o->parallel, sizeof(*s->slots));
	s->batch = calloc(2 * o->parallel, sizeof(*s->batch));
	s->batch_slot = calloc(2 * o->parallel, sizeof(*s->batch_slot));
	s->queue = calloc(o->queue + 1, sizeof(*s->queue));
	if (ret || !s->slots || !s->batch || !s->batch_slot || !s->queue) {
		ret = pinfer_fail(err, ENOMEM, "serve: out of memory");
		goto fail;
	}
	for (i = 0; i < o->parallel; i++) {
		struct slot *sl = &s->slots[i];

		sl->table = calloc(per_seq, sizeof(*sl->table));
		sl->keys = calloc(per_seq, sizeof(*sl->keys));
		sl->toks = calloc(o->n_ctx + 1, sizeof(*sl->toks));
		sl->logits = calloc(m->cfg.n_vocab, sizeof(*sl->logits));
		if (!sl->table || !sl->keys || !sl->toks || !sl->logits) {
			ret = pinfer_fail(err, ENOMEM, "serve: out of memory");
			goto fail;
		}
	}
	s->win_t0 = mono_now();
	if (pthread_create(&s->thread, NULL, sched_main, s)) {
		ret = pinfer_fail(err, EAGAIN, "serve: cannot start the scheduler's thread");
		goto fail;
	}
	s->started = true;
	*out = s;
	return 0;
fail:
	sched_free(s);
	return ret;
}

void sched_free(struct sched *s)
{
	uint32_t i;

	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->mu);
		s->quit = true;
		pthread_cond_signal(&s->work);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->thread, NULL);
	}
	for (i = 0; s->slots && i < s->o.parallel; i++) {
		free(s->slots[i].table);
		free(s->slots[i].keys);
		free(s->slots[i].toks);
		free(s->slots[i].logits);
	}
	free(s->slots);
	free(s->batch);
	free(s->batch_slot);
	free(s->queue);
	kv_blocks_free(&s->blocks);
	llm_session_free(s->sess);
	pinfer_region_free(s->kv);
	pthread_cond_destroy(&s->work);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int sched_submit(struct sched *s, const int32_t *prompt, size_t n_prompt,
		 const struct sched_params *p, struct sched_req **out)
{
	struct sched_req *r;
	bool oom;
	size_t i;

	*out = NULL;
	if (!n_prompt)
		return -EINVAL;
	if (n_prompt >= s->o.n_ctx)
		return -E2BIG;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->s = s;
	r->refs = 2;
	r->n_prompt = (uint32_t)n_prompt;
	r->max_tokens = p->max_tokens ? p->max_tokens : s->o.n_ctx - (uint32_t)n_prompt;
	r->sp = p->sp;
	r->ignore_eos = p->ignore_eos;
	r->prompt = malloc(n_prompt * sizeof(*prompt));
	r->text = calloc(1, 64);
	r->cap = 64;
	pthread_cond_init(&r->cv, NULL);
	oom = !r->prompt || !r->text;
	for (i = 0; i < SCHED_MAX_STOP && p->stop[i]; i++) {
		if (!p->stop[i][0])
			continue;
		r->stop[r->n_stop] = strdup(p->stop[i]);
		oom |= !r->stop[r->n_stop++];
	}
	if (oom) {
		r->refs = 1;
		pthread_mutex_lock(&s->mu);
		req_put(r);
		pthread_mutex_unlock(&s->mu);
		return -ENOMEM;
	}
	memcpy(r->prompt, prompt, n_prompt * sizeof(*prompt));
	pthread_mutex_lock(&s->mu);
	if (s->draining || s->quit || s->q_len >= s->o.queue) {
		int ret = s->draining || s->quit ? -ESHUTDOWN : -EAGAIN;

		r->refs = 1;
		req_put(r);
		pthread_mutex_unlock(&s->mu);
		return ret;
	}
	s->queue[s->q_len++] = r;
	s->held++;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->mu);
	*out = r;
	return 0;
}

size_t sched_read(struct sched_req *r, char *buf, size_t cap, int timeout_ms,
		  enum sched_finish *fin)
{
	struct sched *s = r->s;
	struct timespec until;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->mu);
	while (r->sent == r->safe && r->fin == SCHED_RUNNING)
		if (pthread_cond_timedwait(&r->cv, &s->mu, &until))
			break;
	n = r->safe - r->sent < cap ? r->safe - r->sent : cap;
	memcpy(buf, r->text + r->sent, n);
	r->sent += n;
	*fin = r->fin != SCHED_RUNNING && r->sent == r->len ? r->fin : SCHED_RUNNING;
	pthread_mutex_unlock(&s->mu);
	return n;
}

void sched_usage(struct sched_req *r, uint32_t *prompt, uint32_t *completion, uint32_t *cached)
{
	pthread_mutex_lock(&r->s->mu);
	*prompt = r->n_prompt;
	*completion = r->n_gen;
	*cached = r->n_cached;
	pthread_mutex_unlock(&r->s->mu);
}

const char *sched_error(struct sched_req *r)
{
	return r->err;	/* written before the end, which the reader saw under the lock */
}

void sched_release(struct sched_req *r)
{
	struct sched *s;

	if (!r)
		return;
	s = r->s;
	pthread_mutex_lock(&s->mu);
	r->cancelled = true;
	s->held--;
	req_put(r);
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->mu);
}

void sched_drain(struct sched *s)
{
	pthread_mutex_lock(&s->mu);
	s->draining = true;
	pthread_mutex_unlock(&s->mu);
}

void sched_cut(struct sched *s)
{
	uint32_t i;

	pthread_mutex_lock(&s->mu);
	for (i = 0; i < s->o.parallel; i++)
		if (s->slots[i].r)
			s->slots[i].r->cancelled = true;
	for (i = 0; i < s->q_len; i++)
		s->queue[i]->cancelled = true;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->mu);
}

uint32_t sched_busy(struct sched *s)
{
	uint32_t n;

	pthread_mutex_lock(&s->mu);
	n = s->held;
	pthread_mutex_unlock(&s->mu);
	return n;
}

void sched_stats(struct sched *s, struct sched_stats *st)
{
	uint32_t i;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&s->mu);
	st->requests = s->requests;
	st->prompt_tokens = s->prompt_tokens;
	st->gen_tokens = s->gen_tokens;
	st->cached_tokens = s->cached_tokens;
	st->steps = s->steps;
	st->gen_rate = mono_now() - s->last_step > 2 ? 0 : s->gen_rate;
	st->queued = s->q_len;
	st->parallel = s->o.parallel;
	for (i = 0; i < s->o.parallel; i++)
		st->active += s->slots[i].r != NULL;
	st->blocks = s->blocks.n;
	st->blocks_used = s->blocks.n - s->blocks.n_idle;
	for (i = 0; i < s->blocks.n; i++)
		st->blocks_cached += !s->blocks.ref[i] && s->blocks.published[i];
	st->block_hits = s->blocks.hits;
	st->stream = s->stream;
	st->experts = s->experts;
	pthread_mutex_unlock(&s->mu);
	pinfer_region_props(s->kv, &st->kv_region);
}
