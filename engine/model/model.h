/* SPDX-License-Identifier: MIT */
/*
 * Llama-family models (architectures llama, qwen2, qwen3 and qwen3moe, and
 * llama with experts: Mixtral) from GGUF files: the
 * configuration from the metadata, the weights loaded into a libpinfer
 * region and used in place (tensor pointers point into the region), and the
 * forward pass over a KV cache.
 *
 * A memory budget smaller than the model makes a placement plan: the
 * embeddings, the output, every norm and bias vector and the first layers
 * stay resident; the other layers stream from the file through a ring of
 * slots in the same region, read ahead while earlier layers compute
 * (engine/model/stream.c). Results are the same bits either way.
 */
#ifndef PINFER_MODEL_H
#define PINFER_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libpinfer.h"

enum llm_arch { LLM_ARCH_LLAMA, LLM_ARCH_QWEN2, LLM_ARCH_QWEN3, LLM_ARCH_QWEN3MOE };

/* The architecture's name in GGUF (general.architecture, the keys' prefix). */
const char *llm_arch_name(enum llm_arch a);
enum llm_rope { LLM_ROPE_NORM, LLM_ROPE_NEOX };	/* pairs (2i, 2i+1) | (i, i+d/2) */

struct llm_config {
	enum llm_arch arch;
	enum llm_rope rope;
	uint32_t n_vocab, n_embd, n_layer, n_ff, n_head, n_head_kv;
	uint32_t head_dim, n_rot, ctx_train;
	float rope_theta, rms_eps;
	float rope_freq_scale;	/* positions times this: 1 / linear scaling factor */
	bool qk_norm;		/* q and k RMS-normed per head before RoPE (qwen3) */
	/*
	 * Mixture of experts (n_expert > 0): each layer's feed-forward is
	 * n_expert_used of n_expert experts of n_ff_exp, chosen per token by
	 * the router: softmax over its logits, the top n_expert_used, their
	 * weights renormalised to sum to 1 (Qwen3-MoE and Mixtral alike).
	 */
	uint32_t n_expert, n_expert_used, n_ff_exp;
};

/*
 * A weight matrix of @rows rows of @cols elements, in the region; or
 * @n_mat such matrices one after the other (a layer's experts: a 3-D
 * tensor, each expert's matrix contiguous), each packed on its own.
 */
struct llm_tensor {
	uint32_t type;
	uint32_t n_mat;		/* matrices: 1, or n_expert */
	uint64_t cols, rows;	/* of one matrix */
	const void *data;	/* NULL for a streamed layer's matrix between uses */
	size_t row_bytes;
	bool packed;		/* rows 0..rows/16*16 interleaved for the GEMM (quant.h) */
	uint64_t file_off, bytes;	/* where its data is in the file */
};

struct llm_layer {
	struct llm_tensor attn_norm, wq, wk, wv, wo, bq, bk, bv;	/* b*: qwen2 */
	struct llm_tensor q_norm, k_norm;	/* qwen3: head_dim each */
	struct llm_tensor ffn_norm, w_gate, w_up, w_down;	/* dense */
	struct llm_tensor gate_inp;	/* MoE: the router, n_expert rows */
	struct llm_tensor gate_exps, up_exps, down_exps;	/* MoE: n_expert matrices each */
};

/*
 * A layer's matrices by number: the dense ones first (LLM_DENSE_MATS: wq,
 * wk, wv, wo, w_gate, w_up, w_down, the order of the GPU's pcu_layer),
 * then the mixture-of-experts' (gate_inp, gate_exps, up_exps, down_exps).
 * A model has either kind; the other's are empty (bytes 0).
 */
enum { LLM_DENSE_MATS = 7, LLM_LAYER_MATS = 11 };

static inline struct llm_tensor *llm_layer_mat(struct llm_layer *ly, unsigned i)
{
	struct llm_tensor *const all[LLM_LAYER_MATS] = {
		&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down,
		&ly->gate_inp, &ly->gate_exps, &ly->up_exps, &ly->down_exps,
	};

	return all[i];
}

static inline const struct llm_tensor *llm_layer_cmat(const struct llm_layer *ly, unsigned i)
{
	return llm_layer_mat((struct llm_layer *)ly, i);
}

/* Which expert the cache gives up for a new one. */
enum llm_expert_policy {
	LLM_EXPERTS_LRU,	/* the least recently used */
	LLM_EXPERTS_LFU,	/* the least often used (ties: least recently) */
};

/*
 * The placement of a model's weights under a memory budget. The budget
 * covers the region (resident weights and the ring) and the session (KV
 * cache and buffers at n_ctx).
 */
struct llm_plan {
	uint64_t budget;	/* bytes: --mem, or what the machine can pin */
	char budget_why[320];	/* where a default budget came from */
	uint32_t n_ctx;
	uint64_t weights;	/* all tensor data in the file */
	uint64_t fixed;		/* embeddings, output, norms, biases (resident) */
	uint64_t session;	/* KV cache and buffers at n_ctx */
	uint32_t n_layer, n_resident;	/* layers [0, n_resident) are resident */
	uint32_t ring;		/* slots; 0: nothing streams */
	uint64_t slot;		/* bytes per slot: the largest streamed layer */
	uint64_t region;	/* the region: resident part + ring */
	uint64_t streamed;	/* bytes read per token (0 when the ring holds them all);
				   with an expert cache: when every expert a token
				   uses is a miss */
	uint64_t minimum;	/* the smallest budget this ring size works with */
	uint64_t server_kv;	/* a server's (gpu_seqs > 0) KV cache for gpu_seqs
				   contexts of n_ctx: a region of its own,
				   beside the budget; 0: none */
	/*
	 * A mixture-of-experts model that does not fit: every layer resident
	 * but its experts, which go through a cache of expert_slots slots of
	 * expert_slot bytes (one expert's three matrices each).
	 */
	uint32_t n_experts, n_experts_used;	/* per layer: the model's */
	uint32_t expert_slots;
	uint64_t expert_slot;	/* bytes: the room of its three matrices, */
	uint64_t expert_span[3];	/* gate, up, down: whole pages of any layer's */
	uint64_t expert_bytes;	/* one expert's three matrices, in the file (the largest) */
	enum llm_expert_policy expert_policy;
	/*
	 * GPU layers (-ngl, engine/model/gpu.h): the last gpu_layers layers,
	 * and the output layer when gpu_output, run on the GPU; their weights
	 * take gpu_weights bytes of its memory (within gpu_mem, when known), a
	 * session gpu_session more. When they do not fit, the last
	 * gpu_streamed of them stay in host memory and are copied through a
	 * ring of gpu_ring slots of gpu_slot bytes on the device each time
	 * they run (gpu_stream_bytes per call); the last gpu_drive of those
	 * are the layers the budget streams from the drive (ring), read into
	 * the host's ring and copied on from there. The first gpu_once of
	 * the GPU layers the budget streams are instead read from the drive
	 * once, at load, and kept on the GPU: all of them when every GPU layer
	 * fits there, else as many as fit beside the streamed ones; the host
	 * streams only the rest
	 * (llm_streams). gpu_seqs > 0: the session is a server's, its KV
	 * cache gpu_seqs contexts of n_ctx in blocks.
	 */
	uint32_t gpu_layers, gpu_seqs, gpu_drive, gpu_once;
	bool gpu_output;
	uint64_t gpu_weights, gpu_session, gpu_mem;
	uint32_t gpu_streamed, gpu_ring;
	uint64_t gpu_slot, gpu_stream_bytes;
};

/*
 * Whether the host streams layer @l from the drive at every pass: the
 * layers from n_resident on (with a ring) but the GPU's first gpu_once of
 * them, which it read once, at load, and keeps. The streamed layers are
 * thus at most two ranges: the CPU's before the kept ones and the GPU's
 * after them.
 */
static inline bool llm_streams(const struct llm_plan *p, uint32_t l)
{
	uint32_t gpu = p->n_layer - p->gpu_layers;
	uint32_t d = p->n_resident > gpu ? p->n_resident : gpu;	/* the GPU's first from the drive */

	return p->ring && l >= p->n_resident && l < p->n_layer && (l < d || l >= d + p->gpu_once);
}

/*
 * The layers llm_streams() names, as text ("22-25, 28-29"; "" for none)
 * in @buf of @n bytes; their number.
 */
uint32_t llm_streamed_layers(const struct llm_plan *p, char *buf, size_t n);

struct llm_experts;
struct llm_gpu;

struct llm_stream;

struct llm_model {
	struct llm_config cfg;
	struct llm_tensor token_embd, output_norm, output;	/* output may be token_embd */
	struct llm_tensor rope_freqs;	/* n_rot/2 frequency divisors (Llama 3.1), optional */
	struct llm_layer *layers;
	struct pinfer_region *region;
	struct gguf *gguf;
	struct llm_plan plan;
	struct llm_stream *stream;	/* NULL: every layer is resident */
	struct llm_experts *experts;	/* NULL: every expert is resident */
	struct llm_gpu *gpu;	/* NULL: no layer runs on a GPU */
	char load_note[200];	/* how reads fall short of io_uring, or empty */
	char progress_label[80];	/* llm_load_opts.progress_label and the provider */
};

struct llm_load_opts {
	enum pinfer_provider provider;
	int node;
	pinfer_progress_fn progress;	/* loading progress, or NULL */
	void *progress_arg;
	const char *progress_label;	/* if set, loading reports with the string
					   "LABEL into PROVIDER memory" as its arg
					   instead of @progress_arg */
	void *stream_progress_arg;	/* with @progress and streamed layers: the
					   first pass through them (their first
					   reads) reported with this; NULL: not */
	uint64_t mem;		/* the memory budget in bytes; 0: the default */
	uint32_t ring;		/* slots of the streaming ring; 0: the default (4) */
	uint32_t n_ctx;		/* the context sessions will use; 0: the model's */
	uint32_t stream_layers;	/* stream at least this many (the last) layers */
	uint32_t expert_slots;	/* MoE: an expert cache of this many slots, even
				   when everything fits; 0: one when it does not */
	enum llm_expert_policy expert_policy;
	struct pinfer_pool *pool;	/* packs the weights for the GEMM; NULL: this thread */
	uint32_t threads;	/* threads sessions will use (their buffers); 0: the
				   pool's, or else 1 */
	uint32_t gpu_layers;	/* run the last this many layers (and the output
				   layer) on the GPU: -ngl; 0: none */
	uint64_t gpu_mem;	/* GPU memory to use at most (--gpu-mem); 0: what is free */
	uint32_t gpu_seqs;	/* sequences whose KV caches the GPU holds at once, in
				   a paged cache of blocks (pinfer serve's
				   --parallel, each of n_ctx); 0: one session's own */
};

/* Load @path; on error a message naming the file and the problem. */
int llm_model_load(struct llm_model **out, const char *path,
		   const struct llm_load_opts *opts, struct pinfer_err *err);
void llm_model_free(struct llm_model *m);

struct tokenizer;

/* A tokenizer with a text for each row of the embedding, or an error naming both. */
int llm_model_check_tokenizer(const struct llm_model *m, const struct tokenizer *t,
			      struct pinfer_err *err);

/*
 * The plan llm_model_load() would follow, without reading any weights. A
 * budget below the plan's minimum is an error that states the minimum.
 */
int llm_model_plan(struct llm_plan *out, const char *path,
		   const struct llm_load_opts *opts, struct pinfer_err *err);

/* What the ring has done since the model was loaded. */
struct llm_stream_stats {
	uint64_t bytes;		/* read into slots (the first fill included) */
	uint64_t reads;		/* layers read */
	double wait_s;		/* compute waiting for its layer's reads */
};

void llm_model_stream_stats(const struct llm_model *m, struct llm_stream_stats *st);

/* What the expert cache has done since the model was loaded. */
struct llm_expert_stats {
	/* each expert a layer needed was one of: */
	uint64_t hits;		/* in the cache from an earlier use */
	uint64_t prefetch_used;	/* there because the read-ahead guessed it */
	uint64_t misses;	/* read then, the layer waiting */
	uint64_t prefetched;	/* experts read ahead (used or not) */
	uint64_t predicted, predicted_right;	/* experts a layer needed, and of them
						   the ones the read-ahead had guessed */
	uint64_t bytes;		/* read into slots */
	double wait_s;		/* compute waiting for reads */
	double read_s;		/* time with reads in flight */
};

void llm_model_expert_stats(const struct llm_model *m, struct llm_expert_stats *st);

/*
 * Bytes a session of @n_ctx with a pool of @threads allocates at most (an
 * fp16 KV cache of the CPU's layers, all but the last @gpu_layers, and its
 * buffers).
 */
uint64_t llm_session_bytes(const struct llm_config *c, uint32_t n_ctx, uint32_t threads,
			   uint32_t gpu_layers);

/* A sequence's state: the KV cache (fp16) and scratch buffers. */
struct llm_session;


int llm_session_create(struct llm_session **out, const struct llm_model *m,
		       uint32_t n_ctx, struct pinfer_pool *pool,
		       struct pinfer_err *err);

/* The KV cache's element type: fp16 (the default), or Q8_0 blocks. */
enum llm_kv_type { LLM_KV_F16, LLM_KV_Q8_0 };

/* As llm_session_create(), with the KV cache in @kv (Q8_0: heads of 32k). */
int llm_session_create_kv(struct llm_session **out, const struct llm_model *m,
			  uint32_t n_ctx, enum llm_kv_type kv, struct pinfer_pool *pool,
			  struct pinfer_err *err);
void llm_session_free(struct llm_session *s);
uint32_t llm_session_pos(const struct llm_session *s);
/* Start over at position 0 (the cache is overwritten as it refills). */
void llm_session_reset(struct llm_session *s);
uint32_t llm_session_ctx(const struct llm_session *s);	/* its context length */

/*
 * The reference mode: matrix-vector products of dequantized weights with
 * float activations (accumulated in double) instead of 8-bit activations.
 * Slow; for checking the model's math against an independent reference.
 */
void llm_session_set_exact(struct llm_session *s, bool exact);

/*
 * Feed @token at the next position; the logits of the next token (n_vocab
 * floats, valid until the next call) go to *logits. Fails when the context
 * is full or the token is out of range.
 */
int llm_eval(struct llm_session *s, int32_t token, const float **logits,
	     struct pinfer_err *err);

/*
 * Feed @n tokens at the next positions, evaluated in batches (each weight
 * row read once per batch); the logits are those after the last token.
 * The same results as feeding them one by one.
 */
int llm_eval_batch(struct llm_session *s, const int32_t *tokens, size_t n,
		   const float **logits, struct pinfer_err *err);

/*
 * As llm_eval_batch(), but the logits after every one of the @n tokens:
 * n rows of n_vocab floats (perplexity), valid until the next call.
 */
int llm_eval_all(struct llm_session *s, const int32_t *tokens, size_t n,
		 const float **logits, struct pinfer_err *err);

/*
 * Many sequences in one pass (the server's continuous batching): a paged
 * KV cache of blocks of LLM_KV_BLOCK positions of every layer, in memory
 * the caller gives, and each sequence's block table naming its blocks.
 */
#define LLM_KV_BLOCK 16

/*
 * The layers whose K and V a session of @m keeps in host memory: the
 * CPU's (the GPU's keep theirs on the GPU).
 */
static inline uint32_t llm_kv_layers(const struct llm_model *m)
{
	return m->cfg.n_layer - m->plan.gpu_layers;
}

/* Bytes of one block: K and V of LLM_KV_BLOCK positions of @layers layers (fp16). */
size_t llm_kv_block_bytes(const struct llm_config *c, uint32_t layers);

/*
 * Bytes of a paged KV cache of @layers layers for @n_seqs sequences of up
 * to @n_ctx positions each: whole blocks per sequence. The server
 * allocates this, and its plan (llm_plan.server_kv) and start line report
 * it.
 */
uint64_t llm_kv_cache_bytes(const struct llm_config *c, uint32_t layers, uint32_t n_ctx,
			    uint32_t n_seqs);

/*
 * A session for llm_eval_seqs() whose KV cache is the @n_blocks blocks at
 * @kv (n_blocks * llm_kv_block_bytes(llm_kv_layers()) bytes, the
 * caller's); sequences of
 * up to @n_ctx positions.
 */
int llm_session_create_paged(struct llm_session **out, const struct llm_model *m,
			     uint32_t n_ctx, void *kv, uint32_t n_blocks,
			     struct pinfer_pool *pool, struct pinfer_err *err);

/* One sequence's tokens in an llm_eval_seqs() call. */
struct llm_seq_batch {
	const int32_t *tokens;	/* @n tokens at positions pos.. */
	size_t n;
	uint32_t pos;
	const uint32_t *blocks;	/* block i holds positions i * LLM_KV_BLOCK..; written
				   from pos on, so those blocks must be its own */
	float *logits;		/* NULL, or n_vocab floats: the logits after its last token */
};

/*
 * Feed each of @n_seqs sequences its tokens, all in one pass (each weight
 * row read once for all of them). Every token's results are independent of
 * the rest of the batch: a sequence gets the same bits alone or among
 * others (the kernels whose rounding depends on the batch are not used).
 */
int llm_eval_seqs(struct llm_session *s, const struct llm_seq_batch *seqs, size_t n_seqs,
		  struct pinfer_err *err);

#endif
