/* SPDX-License-Identifier: MIT */
/*
 * Llama-family models (architectures llama and qwen2) from GGUF files: the
 * configuration from the metadata, the weights loaded into a libpinfer
 * region and used in place (tensor pointers point into the region), and the
 * forward pass of one token at a time over a KV cache.
 */
#ifndef PINFER_MODEL_H
#define PINFER_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libpinfer.h"

enum llm_arch { LLM_ARCH_LLAMA, LLM_ARCH_QWEN2 };
enum llm_rope { LLM_ROPE_NORM, LLM_ROPE_NEOX };	/* pairs (2i, 2i+1) | (i, i+d/2) */

struct llm_config {
	enum llm_arch arch;
	enum llm_rope rope;
	uint32_t n_vocab, n_embd, n_layer, n_ff, n_head, n_head_kv;
	uint32_t head_dim, n_rot, ctx_train;
	float rope_theta, rms_eps;
};

/* A weight matrix of @rows rows of @cols elements, in the region. */
struct llm_tensor {
	uint32_t type;
	uint64_t cols, rows;
	const void *data;
	size_t row_bytes;
};

struct llm_layer {
	struct llm_tensor attn_norm, wq, wk, wv, wo, bq, bk, bv;	/* b*: qwen2 */
	struct llm_tensor ffn_norm, w_gate, w_up, w_down;
};

struct llm_model {
	struct llm_config cfg;
	struct llm_tensor token_embd, output_norm, output;	/* output may be token_embd */
	struct llm_layer *layers;
	struct pinfer_region *region;
	struct gguf *gguf;
};

struct llm_load_opts {
	enum pinfer_provider provider;
	int node;
	pinfer_progress_fn progress;	/* loading progress, or NULL */
	void *progress_arg;
};

/* Load @path; on error a message naming the file and the problem. */
int llm_model_load(struct llm_model **out, const char *path,
		   const struct llm_load_opts *opts, struct pinfer_err *err);
void llm_model_free(struct llm_model *m);

/* A sequence's state: the KV cache (fp16) and scratch buffers. */
struct llm_session;

int llm_session_create(struct llm_session **out, const struct llm_model *m,
		       uint32_t n_ctx, struct pinfer_pool *pool,
		       struct pinfer_err *err);
void llm_session_free(struct llm_session *s);
uint32_t llm_session_pos(const struct llm_session *s);
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

#endif
