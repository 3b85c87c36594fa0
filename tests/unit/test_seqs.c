// SPDX-License-Identifier: MIT
/*
 * Many sequences in one pass over a paged KV cache (llm_eval_seqs(), the
 * server's continuous batching), against the single-sequence path fed one
 * token at a time (llm_eval(), its own cache) as the reference:
 *
 * - a prompt in one call, then single steps: the reference's logits, bit
 *   for bit (the batch-invariant kernels are the one-token kernels);
 * - the same sequence among others (another's prefill, others' steps, in
 *   one call): the same bits again;
 * - a sequence whose first blocks are another's (a shared prefix): the
 *   same bits as that sequence, without feeding the prefix;
 * - bad calls: a token outside the vocabulary, past the context.
 *
 * On SmolLM2 ($PINFER_TEST_MODEL or models/SmolLM2-135M-Instruct.Q4_1.gguf;
 * skipped when missing) and on a synthetic qwen2 model (biases, GQA); then
 * again with their last layers and the output layer on a GPU: the CUDA
 * backend $PINFER_CUDA_LIB names (tests/gpu/run.sh, on a GPU), or else its
 * contract carried out on the CPU (libpinfer-cuda-emul.so beside this
 * program, tests/gpu/emul.c): the GPU's paged KV cache, its blocks
 * numbered as the CPU's, in the same calls.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/ggml_types.h"
#include "model/model.h"
#include "model/synth.h"
#include "../tap.h"

#define N_PROMPT 40	/* two and a half blocks, more than the GEMM's 32 */
#define N_STEP 4
#define N_CTX 96
#define BLOCKS (N_CTX / LLM_KV_BLOCK)

static struct pinfer_pool *pool;

static int32_t tok_of(uint32_t seed, int i, uint32_t n_vocab)
{
	return (int32_t)(((uint32_t)i * 7919u + seed * 104729u + 13) % n_vocab);
}

static bool same(const float *a, const float *b, size_t n)
{
	return !memcmp(a, b, n * sizeof(float));
}

/* @name (@path), its last @ngl layers on the GPU (0: none). */
static void check_model(const char *name, const char *path, uint32_t ngl)
{
	struct llm_load_opts o = { .provider = PINFER_PROVIDER_AUTO, .node = -1, .n_ctx = N_CTX,
				   .gpu_layers = ngl, .gpu_seqs = 4 };
	struct pinfer_err err = { 0 };
	struct llm_model *m = NULL;
	struct llm_session *ref = NULL, *s = NULL;
	uint32_t tab_a[BLOCKS], tab_b[BLOCKS], tab_c[BLOCKS], tab_d[BLOCKS];
	int32_t toks[N_PROMPT + N_STEP], other[N_PROMPT];
	float *want, *got, *junk;
	const float *lg;
	void *kv = NULL;
	size_t V;
	int i, ret;
	bool all = true;

	if (!ok(!llm_model_load(&m, path, &o, &err), "%s: loads%s%s", name, err.msg[0] ? ": " : "",
		err.msg))
		return;
	V = m->cfg.n_vocab;
	want = malloc((N_PROMPT + N_STEP) * V * sizeof(float));
	got = malloc(V * sizeof(float));
	junk = malloc(2 * V * sizeof(float));
	kv = calloc(4 * BLOCKS, llm_kv_block_bytes(&m->cfg, llm_kv_layers(m)));
	for (i = 0; i < BLOCKS; i++) {
		tab_a[i] = (uint32_t)i;
		tab_b[i] = (uint32_t)(BLOCKS + i);
		tab_c[i] = (uint32_t)(2 * BLOCKS + i);
		tab_d[i] = i < 2 ? (uint32_t)i : (uint32_t)(3 * BLOCKS + i);	/* A's first two */
	}
	for (i = 0; i < N_PROMPT + N_STEP; i++)
		toks[i] = tok_of(1, i, (uint32_t)V);
	for (i = 0; i < N_PROMPT; i++)
		other[i] = tok_of(2, i, (uint32_t)V);

	/* the reference: one token at a time, the session's own cache */
	ret = llm_session_create(&ref, m, N_CTX, pool, &err);
	for (i = 0; !ret && i < N_PROMPT + N_STEP; i++) {
		ret = llm_eval(ref, toks[i], &lg, &err);
		if (!ret)
			memcpy(want + i * V, lg, V * sizeof(float));
	}
	if (!ok(!ret, "%s: the reference run%s%s", name, err.msg[0] ? ": " : "", err.msg))
		goto out;
	ret = llm_session_create_paged(&s, m, N_CTX, kv, 4 * BLOCKS, pool, &err);
	if (!ok(!ret, "%s: a paged session of %d blocks", name, 4 * BLOCKS))
		goto out;

	/* A alone: the prompt in one call, then single steps */
	{
		struct llm_seq_batch a = { toks, N_PROMPT, 0, tab_a, got };

		ret = llm_eval_seqs(s, &a, 1, &err);
		ok(!ret && same(got, want + (N_PROMPT - 1) * V, V),
		   "%s: a prompt of %d tokens in one call: the one-by-one logits, bit for bit%s",
		   name, N_PROMPT, err.msg);
	}
	for (i = N_PROMPT; i < N_PROMPT + N_STEP; i++) {
		struct llm_seq_batch a = { toks + i, 1, (uint32_t)i, tab_a, got };

		ret = llm_eval_seqs(s, &a, 1, &err);
		all = all && !ret && same(got, want + i * V, V);
	}
	ok(all, "%s: %d single steps after it: the same bits", name, N_STEP);

	/* A again, among others: B's prefill and C's steps in the same calls */
	{
		struct llm_seq_batch first[] = {
			{ other, 7, 0, tab_c, junk + V },
			{ toks, 24, 0, tab_a, NULL },
			{ other, N_PROMPT, 0, tab_b, junk },
		};
		struct llm_seq_batch second[] = {
			{ other, 1, 0, tab_c, NULL },	/* rewrites C's position 0: its own */
			{ toks + 24, N_PROMPT - 24, 24, tab_a, got },
		};

		ret = llm_eval_seqs(s, first, 3, &err);
		if (!ret)
			ret = llm_eval_seqs(s, second, 2, &err);
		ok(!ret && same(got, want + (N_PROMPT - 1) * V, V),
		   "%s: the prompt in two calls among two other sequences: the same bits%s", name,
		   err.msg);
		all = true;
		for (i = N_PROMPT; i < N_PROMPT + N_STEP; i++) {
			struct llm_seq_batch step[] = {
				{ other + i - N_PROMPT, 1, (uint32_t)i, tab_b, junk },
				{ toks + i, 1, (uint32_t)i, tab_a, got },
				{ other + 10 + i - N_PROMPT, 1, (uint32_t)(7 + i - N_PROMPT), tab_c, junk + V },
			};

			ret = llm_eval_seqs(s, step, 3, &err);
			all = all && !ret && same(got, want + i * V, V);
		}
		ok(all, "%s: %d steps batched with two others: the same bits%s", name, N_STEP,
		   err.msg);
	}

	/* D shares A's first two blocks: only the rest is fed */
	{
		const uint32_t shared = 2 * LLM_KV_BLOCK;
		struct llm_seq_batch d = { toks + shared, N_PROMPT - shared, shared, tab_d, got };

		ret = llm_eval_seqs(s, &d, 1, &err);
		ok(!ret && same(got, want + (N_PROMPT - 1) * V, V),
		   "%s: a sequence on A's first %u positions' blocks, fed the rest: A's bits%s",
		   name, shared, err.msg);
	}

	/* bad calls */
	{
		int32_t bad = (int32_t)V;
		struct llm_seq_batch b1 = { &bad, 1, 0, tab_b, got };
		struct llm_seq_batch b2 = { toks, 2, N_CTX - 1, tab_b, got };

		memset(&err, 0, sizeof(err));
		ret = llm_eval_seqs(s, &b1, 1, &err);
		ok(ret == -EINVAL && strstr(err.msg, "vocabulary"),
		   "%s: a token outside the vocabulary: EINVAL (%s)", name, err.msg);
		memset(&err, 0, sizeof(err));
		ret = llm_eval_seqs(s, &b2, 1, &err);
		ok(ret == -ENOSPC && strstr(err.msg, "full"),
		   "%s: past the context: ENOSPC (%s)", name, err.msg);
	}
out:
	llm_session_free(s);
	llm_session_free(ref);
	llm_model_free(m);
	free(kv);
	free(want);
	free(got);
	free(junk);
}

/*
 * A CUDA backend for -ngl: $PINFER_CUDA_LIB's, or else the emulation beside
 * this program; false: none.
 */
static bool gpu_backend(void)
{
	char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);

	if (getenv("PINFER_CUDA_LIB") && *getenv("PINFER_CUDA_LIB"))
		return true;
	if (n <= 0)
		return false;
	path[n] = 0;
	strcpy(strrchr(path, '/'), "/libpinfer-cuda-emul.so");
	if (access(path, R_OK)) {
		tap_skip("-ngl: %s is not there (make tests)", path);
		return false;
	}
	return !setenv("PINFER_CUDA_LIB", path, 1);
}

int main(void)
{
	struct pinfer_err err = { 0 };
	const char *real = getenv("PINFER_TEST_MODEL") ? getenv("PINFER_TEST_MODEL") :
			   "models/SmolLM2-135M-Instruct.Q4_1.gguf";
	char qwen[600], moe[600];
	/* qwen2 (biases, grouped heads) in Q4_K: never packed, so its batches
	   would take the sgemm paths if the call allowed them */
	struct synth_spec sp = {
		.arch = LLM_ARCH_QWEN2, .n_embd = 256, .n_layer = 4, .n_ff = 512, .n_head = 4,
		.n_head_kv = 2, .n_vocab = 300, .ctx = 256, .type = GGML_TYPE_Q4_K, .seed = 7,
	};
	/* qwen3moe: each sequence's tokens routed among 16 experts, 4 each */
	struct synth_spec mp = {
		.arch = LLM_ARCH_QWEN3MOE, .n_embd = 256, .n_layer = 3, .n_ff = 256, .n_head = 4,
		.n_head_kv = 2, .head_dim = 64, .n_expert = 16, .n_expert_used = 4, .skew = 0.5f,
		.n_vocab = 300, .ctx = 256, .type = GGML_TYPE_Q8_0, .seed = 9,
	};

	if (pinfer_pool_create(&pool, 2, -1, &err)) {
		printf("not ok 1 - pool: %s\n", err.msg);
		return 1;
	}
	if (access(real, R_OK))
		tap_skip("SmolLM2: %s is not there (make model)", real);
	else
		check_model("SmolLM2", real, 0);
	snprintf(qwen, sizeof(qwen), "%s/pinfer-seqs-qwen2-%d.gguf",
		 getenv("PINFER_TEST_DIR") ? getenv("PINFER_TEST_DIR") : "/var/tmp", (int)getpid());
	if (ok(!synth_write(&sp, qwen, pool, NULL, NULL, &err), "a synthetic qwen2 model%s",
	       err.msg)) {
		check_model("synthetic qwen2", qwen, 0);
		if (gpu_backend()) {
			check_model("synthetic qwen2, layers 2-3 on the GPU", qwen, 2);
			if (!access(real, R_OK))
				check_model("SmolLM2, layers 20-29 on the GPU", real, 10);
		}
	}
	unlink(qwen);
	snprintf(moe, sizeof(moe), "%s/pinfer-seqs-qwen3moe-%d.gguf",
		 getenv("PINFER_TEST_DIR") ? getenv("PINFER_TEST_DIR") : "/var/tmp", (int)getpid());
	if (ok(!synth_write(&mp, moe, pool, NULL, NULL, &err), "a synthetic qwen3moe model%s",
	       err.msg))
		check_model("synthetic qwen3moe", moe, 0);
	unlink(moe);
	pinfer_pool_free(pool);
	return tap_end();
}
