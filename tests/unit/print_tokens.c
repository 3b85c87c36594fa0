// SPDX-License-Identifier: MIT
/*
 * Helper for tests/e2e/test_tokenizer.py: tokenize the NUL-separated
 * strings of FILE with MODEL's tokenizer (special tokens parsed); print one
 * line per string: the ids, a tab, then the hex of the decoded bytes.
 *   print_tokens MODEL FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "text/tokenizer.h"

int main(int argc, char **argv)
{
	struct gguf_error gerr;
	struct pinfer_err err = { 0 };
	struct tokenizer *t = NULL;
	struct gguf *g = NULL;
	char *buf = NULL, *s, piece[256];
	size_t size = 0, n, i, j, k;
	int32_t *ids;
	FILE *f;

	if (argc != 3)
		return 2;
	if (gguf_open(&g, argv[1], &gerr) || tokenizer_load(&t, g, &err)) {
		fprintf(stderr, "print_tokens: %s%s\n", err.msg, err.msg[0] ? "" : gerr.msg);
		return 1;
	}
	f = fopen(argv[2], "rb");
	if (!f)
		return 1;
	buf = malloc(1 << 20);
	size = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[size] = 0;
	for (s = buf; s < buf + size; s += strlen(s) + 1) {
		if (tokenizer_encode(t, s, strlen(s), true, &ids, &n, &err))
			return 1;
		for (i = 0; i < n; i++)
			printf("%s%d", i ? " " : "", ids[i]);
		putchar('\t');
		for (i = 0; i < n; i++) {
			k = tokenizer_decode(t, ids[i], piece, sizeof(piece));
			for (j = 0; j < k; j++)
				printf("%02x", (unsigned char)piece[j]);
		}
		putchar('\n');
		free(ids);
	}
	free(buf);
	tokenizer_free(t);
	gguf_close(g);
	return 0;
}
