/* SPDX-License-Identifier: MIT */
/*
 * Inside the model folder: a session (one sequence's KV cache and the
 * scratch buffers of the forward pass) and the operations the forward pass
 * (forward.c) is made of: matrix products (matmul.c), RoPE and attention
 * (attention.c).
 */
#ifndef PINFER_MODEL_SESSION_H
#define PINFER_MODEL_SESSION_H

#include "kernels/quant.h"
#include "model.h"

struct llm_expert_mats;
struct pcu_ctx;

#define LLM_BATCH 256	/* tokens evaluated together, at most */
#define GEMM_MIN 32	/* batches at least this large: sgemm on dequantized tiles,
			   and streamed layers packed for the integer GEMM */
#define GEMM_ROWS 32	/* weight rows dequantized at a time, per thread */
#define ATTN_BLOCK 32	/* tokens per item of a batch's attention GEMMs */
#define LLM_MATMULS_MAX 3	/* products llm_matmuls() takes at once */

/* What generation's workers read ahead while the caller works alone (matmul.c). */
struct llm_ahead {
	const struct pinfer_pool *pool;
	const struct llm_tensor *w[LLM_MATMULS_MAX];
	size_t start[LLM_MATMULS_MAX + 1];	/* each one's first group, of all of them */
	size_t n;
};

/*
 * Scratch buffers hold LLM_BATCH tokens each, token b at b * (its width):
 * a batch reads each weight row once for all its tokens. The residual
 * stream, the RoPE angles and each token's position and block table hold
 * every token of a call, which runs layer by layer over all of them: each
 * layer is used (and, when it streams, read) once per call.
 *
 * The KV cache is in blocks of kv_block positions of every layer, K and V
 * apart: a sequence's block table says which block holds its positions
 * i * kv_block... A session's own cache is one block of n_ctx positions
 * (table own_table); a paged session's blocks are a shared pool's
 * (llm_session_create_paged()).
 */
struct llm_session {
	const struct llm_model *m;
	struct pinfer_pool *pool;
	uint32_t n_ctx, pos;
	bool exact;		/* float activations: the reference mode */
	bool invariant;		/* this call: every token's results independent of
				   the batch (no sgemm paths) */
	bool own_kv;		/* kcache, vcache allocated here */
	size_t kv_dim, qd, maxd;
	enum llm_kv_type kv_type;
	size_t kv_row;		/* bytes of one position's K (or V) of one layer */
	uint32_t kv_layers;	/* the layers it holds: the CPU's (llm_kv_layers) */
	uint32_t kv_block;	/* positions per block */
	uint32_t own_table[1];	/* {0}: the own cache's block table */
	uint8_t *kcache, *vcache;	/* [block][layer][kv_block][kv_row bytes] */
	uint32_t *tpos;		/* [n] each token's position */
	const uint32_t **ttab;	/* [n] its sequence's block table */
	int32_t *toks;		/* [n] the tokens of an llm_eval_seqs() call */
	float *x;	/* [n][n_embd] the residual stream of the call's tokens */
	float *xb;	/* [b][n_embd] normed input of a block */
	float *q;	/* [b][qd] */
	float *k, *v;	/* [b][kv_dim] */
	float *att;	/* (n_head * n_ctx) attention weights of one token */
	float *out;	/* [b][qd] attention output */
	float *hb, *hb2;	/* [b][n_ff] feed-forward hidden */
	float *tmp;	/* [b][maxd] a projection's output */
	float *logits;	/* [n_logits][n_vocab] */
	size_t n_logits;	/* rows logits has room for */
	float *rope_cs;	/* [n][n_rot/2][cos, sin] of the call's positions */
	size_t n_cap;	/* tokens x and rope_cs have room for */
	uint8_t *act;	/* [b][maxd * 4 bytes] quantized matmul inputs */
	float *side;	/* [b][maxd / 32][2] their blocks' floats for the GEMM */
	float *tiles;	/* [thread][GEMM_ROWS][maxd] dequantized weight rows */
	float *kf, *vf;	/* [n_ctx][kv_dim] one layer's cache as floats (batches) */
	float *scores;	/* [thread][ATTN_BLOCK][n_ctx] a batch's attention scores */
	/* mixture of experts (n_expert > 0), for a block of b tokens */
	float *route;	/* [b][n_expert] the router's logits */
	uint32_t *sel;	/* [b][n_expert_used] each token's experts */
	float *selw;	/* [b][n_expert_used] and their weights */
	uint32_t *etok;	/* [b * n_expert_used] the tokens of each expert, in turn */
	uint32_t *efirst;	/* [n_expert + 1] expert e's are etok[efirst[e]..] */
	float *xe;	/* [b][n_embd] the inputs of one expert's tokens */
	float *moe;	/* [b][n_embd] the experts' weighted sum */
	uint32_t *used;	/* [n_expert] the experts the block uses, in order */
	struct llm_expert_mats *emats;	/* [n_expert] their matrices */
	uint32_t *pred;	/* [n_expert] the next layer's likely experts */
	uint32_t *psel;	/* [n_expert_used] one token's guess */
	float *pselw;	/* [n_expert_used] */
	struct pcu_ctx *gpu;	/* the GPU layers' KV cache and buffers (gpu.h), or NULL */
	struct llm_ahead ahead;	/* lent to the pool's workers (llm_matmul_ahead) */
};

/*
 * The session's buffers (session.c): @bytes of zeros on cache lines of
 * their own; llm_buf_grow() gives @p (@old bytes) @bytes, its contents
 * kept, or NULL (and @p kept) when out of memory.
 */
void *llm_buf_alloc(size_t bytes);
void *llm_buf_grow(void *p, size_t old, size_t bytes);
void llm_buf_free(void *p);

/*
 * out[b] = W in[b] (+ bias) for the @nb inputs of a batch (in: stride
 * cols), by whichever path suits the matrix, the batch and the CPU.
 */
void llm_matmul(struct llm_session *s, const struct llm_tensor *w,
		const struct llm_tensor *bias, const float *in, size_t nb, float *out);

/* One product of llm_matmuls(): out[b] = w in[b] (+ bias). */
struct llm_mm {
	const struct llm_tensor *w, *bias;
	float *out;
};

/*
 * llm_matmul() of @n (<= LLM_MATMULS_MAX) matrices with the same inputs
 * (Q, K and V; gate and up): the inputs quantized once and the products
 * run as one task where the matrices allow it.
 */
void llm_matmuls(struct llm_session *s, const struct llm_mm *ops, size_t n, const float *in,
		 size_t nb);

/*
 * For generation (one token) with a pool: lend its workers the products
 * @ops (as llm_matmuls() takes them) that the caller will run next, to
 * read the front of their shares of the weights while the caller works
 * alone; its next use of the pool takes them back. Only packed matrices;
 * nothing else changes, the results included.
 */
void llm_matmul_ahead(struct llm_session *s, const struct llm_mm *ops, size_t n);

/*
 * The mixture-of-experts feed-forward of layer @ly (@l) for the block's
 * @nb tokens, whose normed inputs are in s->xb: the sum of each token's
 * experts weighted by the router, into @out ([nb][n_embd]). A token's
 * experts are summed in the order of their numbers, whatever the batch.
 * The experts come from the placement (resident, or the expert cache,
 * which fails when a read does).
 */
int llm_moe(struct llm_session *s, const struct llm_layer *ly, uint32_t l, size_t nb,
	    float *out, struct pinfer_err *err);

/*
 * @fn over a call's @nb tokens, split over the session's pool for a batch
 * in shares that a thread which lost its CPU has taken from it
 * (PINFER_STEAL); one token on the calling thread alone.
 */
static inline void llm_per_token(struct llm_session *s, size_t nb, pinfer_for_fn fn, void *arg)
{
	if (s->pool && nb > 1)
		pinfer_parallel_for(s->pool, nb, 1, PINFER_STEAL, fn, arg);
	else
		fn(arg, 0, nb, 0);
}

/* SwiGLU of @n gate values @g and up values @u: g = silu(g) * u (the dense feed-forward's and the experts') */
static inline void llm_swiglu(float *g, const float *u, size_t n)
{
	row_kernels()->swiglu(g, u, n);
}

/* cos and sin of each rotated pair's angle at position @pos (n_rot floats). */
void llm_rope_angles(const struct llm_model *m, uint32_t pos, float *cs);
/* Rotate each of @n_heads heads' first n_rot dimensions by the angles @cs. */
void llm_rope(const struct llm_config *c, float *v, uint32_t n_heads, const float *cs);

/* Byte offset of position @pos of @layer in the cache, for block table @tab. */
static inline size_t llm_kv_at(const struct llm_session *s, const uint32_t *tab,
			       uint32_t layer, uint32_t pos)
{
	size_t blk = tab[pos / s->kv_block];

	return ((blk * s->kv_layers + layer) * s->kv_block + pos % s->kv_block) * s->kv_row;
}

/* Positions from @t that lie in @t's block, up to (not including) @end. */
static inline uint32_t llm_kv_run(const struct llm_session *s, uint32_t t, uint32_t end)
{
	uint32_t run = s->kv_block - t % s->kv_block;

	return run < end - t ? run : end - t;
}

/*
 * Attention of the call's tokens @b0.. (@nb of them; their q, stride qd)
 * over the cache of @layer, each up to its own position in its own
 * sequence (causal), into @out.
 */
void llm_attention(struct llm_session *s, uint32_t layer, size_t b0, size_t nb,
		   const float *q, float *out);

#endif
