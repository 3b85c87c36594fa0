// SPDX-License-Identifier: MIT
/*
 * Helper for tests/e2e/test_forward.py: run the engine on token ids.
 *   print_logits MODEL ID...           logits of every position (float32)
 *   print_logits --greedy N MODEL ID...  then N greedy tokens (int32)
 *   print_logits --batch MODEL ID...   the last position's logits, the ids
 *                                      fed as one batch (llm_eval_batch)
 *   print_logits --all MODEL ID...     every position's, fed as one batch
 *                                      (llm_eval_all)
 * Threads: PINFER_THREADS (default 2). PINFER_EXACT=1: the reference mode.
 * PINFER_CTX: the context size (default the model's). PINFER_KV=q8_0: a
 * Q8_0 KV cache. PINFER_EXPERT_SLOTS=N: a mixture-of-experts model's
 * experts through a cache of N (PINFER_EXPERT_POLICY=lfu: that policy);
 * its counters on stderr. PINFER_NGL=N: the last N layers and the output
 * layer on the GPU; PINFER_GPU_MEM=BYTES: within that much of its memory.
 * PINFER_MEM=BYTES: the memory budget (layers past it stream from the drive);
 * PINFER_STREAM_LAYERS=N: the last N layers stream from the drive anyway;
 * PINFER_RING=N: through a ring of N slots.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

int main(int argc, char **argv)
{
	int greedy = 0, first = 1, threads, i, j, ret = 1, batch = 0;
	const char *env = getenv("PINFER_THREADS");
	struct llm_session *s = NULL;
	struct pinfer_pool *pool = NULL;
	struct llm_model *m = NULL;
	struct pinfer_err err = { 0 };
	struct llm_load_opts lo = { .provider = PINFER_PROVIDER_AUTO, .node = -1 };
	const float *logits = NULL;
	int32_t next;

	if (argc > 3 && !strcmp(argv[1], "--greedy")) {
		greedy = atoi(argv[2]);
		first = 3;
	} else if (argc > 2 && !strcmp(argv[1], "--batch")) {
		batch = 1;
		first = 2;
	} else if (argc > 2 && !strcmp(argv[1], "--all")) {
		batch = 2;
		first = 2;
	}
	if (argc < first + 2) {
		fprintf(stderr, "usage: print_logits [--greedy N] MODEL ID...\n");
		return 2;
	}
	threads = env ? atoi(env) : 2;
	if (getenv("PINFER_EXPERT_SLOTS"))
		lo.expert_slots = (uint32_t)atoi(getenv("PINFER_EXPERT_SLOTS"));
	if (getenv("PINFER_NGL"))
		lo.gpu_layers = (uint32_t)atoi(getenv("PINFER_NGL"));
	if (getenv("PINFER_CTX"))	/* the plan's too: the GPU's KV cache is sized by it */
		lo.n_ctx = (uint32_t)atoi(getenv("PINFER_CTX"));
	if (getenv("PINFER_MEM"))
		lo.mem = strtoull(getenv("PINFER_MEM"), NULL, 0);
	if (getenv("PINFER_STREAM_LAYERS"))
		lo.stream_layers = (uint32_t)atoi(getenv("PINFER_STREAM_LAYERS"));
	if (getenv("PINFER_RING"))
		lo.ring = (uint32_t)atoi(getenv("PINFER_RING"));
	if (getenv("PINFER_GPU_MEM"))
		lo.gpu_mem = strtoull(getenv("PINFER_GPU_MEM"), NULL, 0);
	if (getenv("PINFER_EXPERT_POLICY") && !strcmp(getenv("PINFER_EXPERT_POLICY"), "lfu"))
		lo.expert_policy = LLM_EXPERTS_LFU;
	if (pinfer_pool_create(&pool, threads, -1, &err) ||
	    llm_model_load(&m, argv[first], &lo, &err) ||
	    llm_session_create_kv(&s, m, getenv("PINFER_CTX") ? atoi(getenv("PINFER_CTX")) : 0,
				  getenv("PINFER_KV") && !strcmp(getenv("PINFER_KV"), "q8_0") ?
				  LLM_KV_Q8_0 : LLM_KV_F16, pool, &err))
		goto out;
	llm_session_set_exact(s, getenv("PINFER_EXACT") && atoi(getenv("PINFER_EXACT")));
	if (batch) {
		int32_t ids[4096];
		int n = 0;

		for (i = first + 1; i < argc && n < 4096; i++)
			ids[n++] = atoi(argv[i]);
		if (batch == 2)
			ret = llm_eval_all(s, ids, n, &logits, &err) ||
			      fwrite(logits, 4, (size_t)n * m->cfg.n_vocab, stdout) !=
				      (size_t)n * m->cfg.n_vocab;
		else
			ret = llm_eval_batch(s, ids, n, &logits, &err) ||
			      fwrite(logits, 4, m->cfg.n_vocab, stdout) != m->cfg.n_vocab;
		goto out;
	}
	for (i = first + 1; i < argc; i++) {
		if (llm_eval(s, atoi(argv[i]), &logits, &err))
			goto out;
		if (!greedy && fwrite(logits, 4, m->cfg.n_vocab, stdout) != m->cfg.n_vocab)
			goto out;
	}
	for (i = 0; i < greedy; i++) {
		next = 0;
		for (j = 1; j < (int)m->cfg.n_vocab; j++)
			if (logits[j] > logits[next])
				next = j;
		if (fwrite(&next, 4, 1, stdout) != 1 || llm_eval(s, next, &logits, &err))
			goto out;
	}
	ret = 0;
out:
	if (m && m->experts) {
		struct llm_expert_stats st;

		llm_model_expert_stats(m, &st);
		fprintf(stderr, "experts: %llu hits %llu misses %llu prefetched %llu prefetch_used %llu predicted %llu predicted_right %llu bytes\n",
			(unsigned long long)st.hits, (unsigned long long)st.misses,
			(unsigned long long)st.prefetched, (unsigned long long)st.prefetch_used,
			(unsigned long long)st.predicted, (unsigned long long)st.predicted_right,
			(unsigned long long)st.bytes);
	}
	if (ret && err.msg[0])
		fprintf(stderr, "print_logits: %s\n", err.msg);
	llm_session_free(s);
	llm_model_free(m);
	pinfer_pool_free(pool);
	return ret;
}
