// SPDX-License-Identifier: MIT
/*
 * Helper for tests/e2e/test_chat.py: the chat template chat_detect() finds
 * in MODEL's metadata on the first line, its default system prompt on the
 * second, chat_turn_end() on the third, then chat_format() of the messages
 * (first turn of a conversation, or a later one with --later).
 *   print_chat [--later] MODEL [ROLE TEXT]...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "format/gguf.h"

int main(int argc, char **argv)
{
	int later = argc > 1 && !strcmp(argv[1], "--later");
	struct chat_msg msgs[16];
	struct gguf_error gerr;
	struct gguf *g = NULL;
	enum chat_template t;
	char sys[256], *text;
	size_t n = 0;
	int i;

	argv += later, argc -= later;
	if (argc < 2 || argc % 2 || argc > 2 + 2 * 16)
		return 2;
	if (gguf_open(&g, argv[1], &gerr)) {
		fprintf(stderr, "print_chat: %s\n", gerr.msg);
		return 1;
	}
	for (i = 2; i < argc; i += 2)
		msgs[n++] = (struct chat_msg){ argv[i], argv[i + 1] };
	t = chat_detect(g, sys, sizeof(sys));
	text = chat_format(t, msgs, n, !later, NULL);
	printf("%s\n%s\n%s\n%s", chat_template_name(t), sys, chat_turn_end(t), text ? text : "");
	free(text);
	gguf_close(g);
	return text ? 0 : 1;
}
