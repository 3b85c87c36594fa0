// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for what reads a model after its header: the bytes are
 * a GGUF file (in a memfd); its configuration is read and checked, its
 * tensors bound, its placement planned, and when that succeeds the model
 * is loaded (plain memory, a budget of 64 MiB; a mixture of experts, for
 * inputs of odd size, through an expert cache of 2), its tokenizer loaded and
 * checked against it, and one token evaluated. Whatever the file says,
 * each step ends in success or an error, never a crash, a leak or a hang.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model.h"
#include "text/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pinfer_pool *pool;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct pinfer_err err;

	(void)argc;
	(void)argv;
	setenv("PINFER_PROVIDER", "plain", 1);
	setenv("PINFER_URING", "0", 1);	/* no ring per input: pread() */
	if (pinfer_pool_create(&pool, 1, -1, &err))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct llm_load_opts o = { .provider = PINFER_PROVIDER_PLAIN, .node = -1,
				   .mem = 64ull << 20, .n_ctx = 4, .pool = NULL, .threads = 1 };
	struct pinfer_err err = { 0 };
	struct llm_session *s = NULL;
	struct tokenizer *tok = NULL;
	struct llm_model *m = NULL;
	struct llm_plan plan;
	const float *logits;
	char path[64];
	int fd = memfd_create("fuzz-model", MFD_CLOEXEC);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	o.expert_slots = size & 1 ? 2 : 0;	/* mixtures of experts: half through a cache */
	if (!llm_model_plan(&plan, path, &o, &err) && !llm_model_load(&m, path, &o, &err)) {
		if (!tokenizer_load(&tok, m->gguf, &err))
			llm_model_check_tokenizer(m, tok, &err);
		if (!llm_session_create(&s, m, 4, pool, &err))
			llm_eval(s, 0, &logits, &err);
	}
	llm_session_free(s);
	tokenizer_free(tok);
	llm_model_free(m);
	close(fd);
	return 0;
}
