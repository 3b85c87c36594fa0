// SPDX-License-Identifier: MIT
/*
 * Tokenizer speed on inputs that cost the most: 1 MB of one word (BPE over
 * one piece of a million bytes), 1 MB of '<' and "<|" (where special
 * tokens could start at every byte), and 1 MB of English prose; MB/s and
 * tokens for each, with and without special tokens.
 * Usage: build/bench/tokenize [MODEL]   (make bench-tokenize)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/gguf.h"
#include "text/tokenizer.h"

#define MB (1 << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill(char *s, const char *pattern)
{
	size_t n = strlen(pattern), i;

	for (i = 0; i < MB; i++)
		s[i] = pattern[i % n];
	s[MB] = 0;
}

int main(int argc, char **argv)
{
	static const struct { const char *name, *pattern; } inputs[] = {
		{ "one word", "x" },
		{ "'<' at every byte", "<" },
		{ "'<|' at every other byte", "<|" },
		{ "English prose",
		  "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: once or twice she had peeped into the book her sister was reading. " },
	};
	const char *model = argc > 1 ? argv[1] : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
	struct gguf_error gerr;
	struct pinfer_err err;
	struct tokenizer *t;
	struct gguf *g;
	char *text = malloc(MB + 1);
	size_t i, n;
	int32_t *ids;
	int special;

	if (!text || gguf_open(&g, model, &gerr) || tokenizer_load(&t, g, &err)) {
		fprintf(stderr, "tokenize: %s: cannot load its tokenizer\n", model);
		return 1;
	}
	printf("tokenizer of %s, 1 MiB of each input\n", model);
	printf("| %-26s | %-8s | %10s | %9s |\n", "input", "specials", "tokens", "MB/s");
	printf("|----------------------------|----------|------------|-----------|\n");
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
		for (special = 0; special < 2; special++) {
			double t0;

			fill(text, inputs[i].pattern);
			t0 = now();
			if (tokenizer_encode(t, text, MB, special, &ids, &n, &err)) {
				fprintf(stderr, "tokenize: %s\n", err.msg);
				return 1;
			}
			printf("| %-26s | %-8s | %10zu | %9.1f |\n", inputs[i].name,
			       special ? "parsed" : "text", n, MB / 1e6 / (now() - t0));
			free(ids);
		}
	tokenizer_free(t);
	gguf_close(g);
	free(text);
	return 0;
}
