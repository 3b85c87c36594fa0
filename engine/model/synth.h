/* SPDX-License-Identifier: MIT */
/*
 * Synthetic models: valid GGUF files of a real model's shapes with random
 * weights and a small byte-level vocabulary, for tests and benchmarks
 * (pinfer synth). Deterministic for a seed; written by the thread pool.
 */
#ifndef PINFER_SYNTH_H
#define PINFER_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "libpinfer.h"
#include "model.h"

struct synth_spec {
	enum llm_arch arch;
	uint32_t n_embd, n_layer, n_ff, n_head, n_head_kv, n_vocab, ctx;
	uint32_t head_dim;	/* 0: n_embd / n_head; else attention.key_length */
	/* experts: n_expert 0 for a dense model; n_ff is then each expert's width */
	uint32_t n_expert, n_expert_used;
	float skew;		/* routing: 0 uniform; > 0 some experts far more popular */
	uint32_t type;		/* of the matrices: a ggml type */
	uint64_t seed;
	float rope_scale;	/* linear RoPE scaling factor; 0: none */
	bool rope_freqs;	/* a rope_freqs tensor of random factors in [1, 8) */
};

/*
 * The shapes of a known model: @arch "llama", "qwen2", "qwen3" or
 * "qwen3moe", @params a size such as "135M", "1B", "8B", "70B", "8x7B"
 * (Mixtral: llama with experts), "30B-A3B" (pinfer synth --help lists
 * them). Vocabulary 512, context 4096, type Q4_0, seed 1.
 */
int synth_preset(struct synth_spec *s, const char *arch, const char *params,
		 struct pinfer_err *err);
/* One line per preset, for --help. */
const char *synth_presets(void);

/*
 * Skewed routing: the router's row for expert e of a layer is scaled by
 * (1 + r)^-skew, r the expert's rank in a random order of the layer's
 * experts: the logits of low ranks spread wider, so those experts land in
 * the top k far more often. The router is F32, as llama.cpp's quantizer
 * leaves it.
 */
float synth_router_scale(const struct synth_spec *s, uint32_t layer, uint32_t expert);

/* Bytes of tensor data @s makes, or 0 when its shapes are invalid. */
uint64_t synth_bytes(const struct synth_spec *s);

/*
 * Write the model to @path (through a new @path.XXXXXX, renamed when
 * complete: gguf_out_open()); the
 * pool (or NULL) makes and writes the data in parallel.
 */
int synth_write(const struct synth_spec *s, const char *path,
		struct pinfer_pool *pool, pinfer_progress_fn progress, void *arg,
		struct pinfer_err *err);

#endif
