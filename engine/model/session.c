// SPDX-License-Identifier: MIT
/*
 * Sessions: one sequence's KV cache and the forward pass's scratch
 * buffers. Their sizes are listed once (buffers()), for allocating them
 * and for llm_session_bytes(), which the plan counts against the budget.
 */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "kernels/quant.h"
#include "placement.h"

/*
 * One of a session's buffers: the address of its pointer in the session
 * (a float * or uint8_t *, set and read with memcpy), its bytes now and at
 * most.
 */
struct buffer {
	void *field;
	size_t bytes;
	size_t most;	/* x, rope_cs, tpos, ttab, toks: they grow to a call's
			   tokens (reserve() in forward.c) */
};

#define MAX_BUFFERS 40

/*
 * The buffers of session @s, whose model, dimensions, KV type and context
 * are set, with a pool of @threads: @out has room for MAX_BUFFERS.
 * Scratch buffers hold LLM_BATCH tokens each.
 */
static size_t buffers(struct llm_session *s, size_t threads, struct buffer *out)
{
	const struct llm_config *c = &s->m->cfg;
	const size_t B = LLM_BATCH, f = sizeof(float), most = s->n_ctx > B ? s->n_ctx : B;
	size_t n = 0;

#define BUF(p_, bytes_, most_) (out[n++] = (struct buffer){ &s->p_, (bytes_), (most_) })
#define SCRATCH(p_, bytes_) BUF(p_, bytes_, bytes_)
	if (s->own_kv) {
		SCRATCH(kcache, (size_t)s->kv_layers * s->n_ctx * s->kv_row);
		SCRATCH(vcache, (size_t)s->kv_layers * s->n_ctx * s->kv_row);
	}
	BUF(x, B * c->n_embd * f, most * c->n_embd * f);
	BUF(tpos, B * sizeof(uint32_t), most * sizeof(uint32_t));
	BUF(ttab, B * sizeof(uint32_t *), most * sizeof(uint32_t *));
	BUF(toks, B * sizeof(int32_t), most * sizeof(int32_t));
	SCRATCH(xb, B * c->n_embd * f);
	SCRATCH(q, B * s->qd * f);
	SCRATCH(k, B * s->kv_dim * f);
	SCRATCH(v, B * s->kv_dim * f);
	/* a row per head (one token), then a row per thread (batches) */
	SCRATCH(att, (c->n_head + threads) * s->n_ctx * f);
	SCRATCH(out, B * s->qd * f);
	SCRATCH(hb, B * c->n_ff * f);
	SCRATCH(hb2, B * c->n_ff * f);
	SCRATCH(tmp, B * s->maxd * f);
	SCRATCH(logits, c->n_vocab * f);
	BUF(rope_cs, B * c->n_rot * f, most * c->n_rot * f);
	SCRATCH(act, B * s->maxd * 4);	/* 4 bytes/element >= any 8-bit type */
	SCRATCH(side, B * (s->maxd / QK + 1) * 2 * f);
	SCRATCH(tiles, threads * GEMM_ROWS * s->maxd * f);
	SCRATCH(kf, (size_t)s->n_ctx * s->kv_dim * f);	/* touched as used */
	SCRATCH(vf, (size_t)s->n_ctx * s->kv_dim * f);
	SCRATCH(scores, threads * ATTN_BLOCK * s->n_ctx * f);
	if (c->n_expert) {
		size_t k = c->n_expert_used;

		SCRATCH(route, B * c->n_expert * f);
		SCRATCH(sel, B * k * sizeof(uint32_t));
		SCRATCH(selw, B * k * f);
		SCRATCH(etok, B * k * sizeof(uint32_t));
		SCRATCH(efirst, (c->n_expert + 1) * sizeof(uint32_t));
		SCRATCH(xe, B * c->n_embd * f);
		SCRATCH(moe, B * c->n_embd * f);
		SCRATCH(used, c->n_expert * sizeof(uint32_t));
		SCRATCH(emats, c->n_expert * sizeof(struct llm_expert_mats));
		SCRATCH(pred, c->n_expert * sizeof(uint32_t));
		SCRATCH(psel, k * sizeof(uint32_t));
		SCRATCH(pselw, k * f);
	}
#undef SCRATCH
#undef BUF
	return n;
}

/* The dimensions of a session of @m (n_ctx set) with a KV cache of @kv. */
static void dimensions(struct llm_session *s, enum llm_kv_type kv)
{
	const struct llm_config *c = &s->m->cfg;

	s->kv_dim = (size_t)c->n_head_kv * c->head_dim;
	s->qd = (size_t)c->n_head * c->head_dim;
	s->maxd = c->n_ff > c->n_embd ? c->n_ff : c->n_embd;
	s->maxd = s->maxd > s->qd ? s->maxd : s->qd;
	s->maxd = s->maxd > c->n_expert ? s->maxd : c->n_expert;
	s->kv_type = kv;
	s->kv_layers = llm_kv_layers(s->m);
	s->kv_row = kv == LLM_KV_Q8_0 ? s->kv_dim / QK * sizeof(struct block_q8_0) :
		    s->kv_dim * sizeof(fp16_t);
	s->n_cap = LLM_BATCH;
	s->n_logits = 1;
	s->kv_block = s->n_ctx;
}

/* A session of @m, its context @n_ctx (0 or beyond the model's: the model's); no buffers yet. */
static struct llm_session *session_new(const struct llm_model *m, uint32_t n_ctx,
				       enum llm_kv_type kv, struct pinfer_pool *pool)
{
	struct llm_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->m = m;
	s->pool = pool;
	s->n_ctx = !n_ctx || n_ctx > m->cfg.ctx_train ? m->cfg.ctx_train : n_ctx;
	dimensions(s, kv);
	return s;
}

/*
 * The buffers are zeroed and each starts a cache line: a GEMM's threads
 * write neighbouring groups of 16 rows (64 bytes of floats) of one
 * output, and where calloc left a buffer 16 bytes past a line, each
 * group's 64 bytes shared a line with the next group's, which the other
 * thread was writing (a 1B Q6_K prompt, 2 threads: 14% of its time). The
 * pointer calloc gave is kept just before the aligned one; large buffers
 * stay untouched until used (calloc's fresh pages).
 */
void *llm_buf_alloc(size_t bytes)
{
	uint8_t *raw, *p;

	if (bytes > SIZE_MAX - 64 - sizeof(raw))
		return NULL;
	raw = calloc(1, bytes + 64 + sizeof(raw));
	if (!raw)
		return NULL;
	p = (uint8_t *)(((uintptr_t)raw + sizeof(raw) + 63) & ~(uintptr_t)63);
	memcpy(p - sizeof(raw), &raw, sizeof(raw));
	return p;
}

void llm_buf_free(void *p)
{
	void *raw;

	if (!p)
		return;
	memcpy(&raw, (uint8_t *)p - sizeof(raw), sizeof(raw));
	free(raw);
}

void *llm_buf_grow(void *p, size_t old, size_t bytes)
{
	void *q = llm_buf_alloc(bytes);

	if (!q)
		return NULL;
	if (p)
		memcpy(q, p, old < bytes ? old : bytes);
	llm_buf_free(p);
	return q;
}

/* Allocate the buffers of @s (dimensions set) and hand it out, or free it. */
static int allocate(struct llm_session **out, struct llm_session *s, struct pinfer_err *err)
{
	struct buffer b[MAX_BUFFERS];
	size_t n, i;

	n = buffers(s, s->pool ? (size_t)pinfer_pool_threads(s->pool) : 1, b);
	for (i = 0; i < n; i++) {
		void *p = llm_buf_alloc(b[i].bytes);

		memcpy(b[i].field, &p, sizeof(p));
		if (!p) {
			uint32_t n_ctx = s->n_ctx;

			llm_session_free(s);
			return pinfer_fail(err, ENOMEM, "session: out of memory for a context of %" PRIu32,
					   n_ctx);
		}
	}
	*out = s;
	return 0;
}

int llm_session_create(struct llm_session **out, const struct llm_model *m,
		       uint32_t n_ctx, struct pinfer_pool *pool,
		       struct pinfer_err *err)
{
	return llm_session_create_kv(out, m, n_ctx, LLM_KV_F16, pool, err);
}

int llm_session_create_kv(struct llm_session **out, const struct llm_model *m,
			  uint32_t n_ctx, enum llm_kv_type kv, struct pinfer_pool *pool,
			  struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	struct llm_session *s;

	*out = NULL;
	if (kv == LLM_KV_Q8_0 && c->head_dim % QK)
		return pinfer_fail(err, EINVAL, "a Q8_0 KV cache needs heads of a multiple of %d dimensions, not %" PRIu32,
				   QK, c->head_dim);
	s = session_new(m, n_ctx, kv, pool);
	if (!s)
		return pinfer_fail(err, ENOMEM, "session: out of memory");
	s->own_kv = true;
	if (allocate(out, s, err))
		return -ENOMEM;
	if (llm_gpu_session(*out, 1, err)) {
		llm_session_free(*out);
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

int llm_session_create_paged(struct llm_session **out, const struct llm_model *m,
			     uint32_t n_ctx, void *kv, uint32_t n_blocks,
			     struct pinfer_pool *pool, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	struct llm_session *s;

	*out = NULL;
	s = session_new(m, n_ctx, LLM_KV_F16, pool);
	if (!s)
		return pinfer_fail(err, ENOMEM, "session: out of memory");
	s->kv_block = LLM_KV_BLOCK;
	s->kcache = kv;
	s->vcache = (uint8_t *)kv + (size_t)n_blocks * (llm_kv_block_bytes(c, s->kv_layers) / 2);
	if (allocate(out, s, err))
		return -ENOMEM;
	if (llm_gpu_session(*out, n_blocks, err)) {	/* the GPU layers' blocks, numbered alike */
		llm_session_free(*out);
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

size_t llm_kv_block_bytes(const struct llm_config *c, uint32_t layers)
{
	return 2 * (size_t)layers * LLM_KV_BLOCK * c->n_head_kv * c->head_dim * sizeof(fp16_t);
}

uint64_t llm_kv_cache_bytes(const struct llm_config *c, uint32_t layers, uint32_t n_ctx,
			    uint32_t n_seqs)
{
	return (uint64_t)n_seqs * ((n_ctx + LLM_KV_BLOCK - 1) / LLM_KV_BLOCK) *
	       llm_kv_block_bytes(c, layers);
}

uint64_t llm_session_bytes(const struct llm_config *c, uint32_t n_ctx, uint32_t threads,
			   uint32_t gpu_layers)
{
	struct llm_model m = { .cfg = *c, .plan.gpu_layers = gpu_layers };
	struct llm_session s = { .m = &m, .n_ctx = n_ctx, .own_kv = true };
	struct buffer b[MAX_BUFFERS];
	uint64_t sum = 0;
	size_t n, i;

	dimensions(&s, LLM_KV_F16);	/* the larger cache */
	n = buffers(&s, threads ? threads : 1, b);
	for (i = 0; i < n; i++)
		sum += b[i].most + 4096;	/* and the allocator's rounding */
	return sum;
}

void llm_session_free(struct llm_session *s)
{
	struct buffer b[MAX_BUFFERS];
	size_t n, i;

	if (!s)
		return;
	llm_gpu_session_free(s);
	n = buffers(s, 1, b);
	for (i = 0; i < n; i++) {
		void *p;

		memcpy(&p, b[i].field, sizeof(p));
		llm_buf_free(p);
	}
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

void llm_session_reset(struct llm_session *s)
{
	s->pos = 0;
}

uint32_t llm_session_ctx(const struct llm_session *s)
{
	return s->n_ctx;
}
