// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the text side on hostile vocabularies: the input is
 * a 16-bit length L, L bytes of text, then a GGUF header. The tokenizer
 * its metadata describes is loaded; the text is encoded with and without
 * special tokens and inside a chat template (the user's part plain), every
 * id that comes out (and a few that cannot) is decoded; the chat template
 * is recognized from the metadata and formats the text. Checks: ids are in
 * the vocabulary, the template's content spans lie inside its text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "format/gguf.h"
#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void encode_decode(const struct tokenizer *t, const char *s, size_t n, int mode,
			  const uint8_t *plain)
{
	struct pinfer_err err;
	char piece[256];
	int32_t *ids;
	size_t k, i;

	if (mode == 2 ? tokenizer_encode_masked(t, s, n, plain, &ids, &k, &err) :
			tokenizer_encode(t, s, n, mode, &ids, &k, &err))
		return;
	for (i = 0; i < k; i++) {
		if (ids[i] < 0 || (uint32_t)ids[i] >= tokenizer_n_vocab(t))
			__builtin_trap();
		tokenizer_decode(t, ids[i], piece, sizeof(piece));
	}
	free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int32_t odd[] = { -1, INT32_MIN, INT32_MAX };
	struct chat_msg msgs[2] = { { "system", "Be brief." }, { "user", NULL } };
	struct gguf_error gerr;
	struct pinfer_err err;
	struct tokenizer *t = NULL;
	struct gguf *g = NULL;
	char piece[8], sys[512], *text, *chat;
	size_t len, spans[4], i, n;
	enum chat_template ct;
	uint8_t *plain;

	if (size < 2)
		return 0;
	len = (size_t)data[0] | (size_t)data[1] << 8;
	if (len > size - 2)
		len = size - 2;
	text = malloc(len + 1);
	if (!text)
		return 0;
	memcpy(text, data + 2, len);
	text[len] = 0;
	if (gguf_parse(&g, data + 2 + len, size - 2 - len, size - 2 - len, &gerr, NULL))
		goto out;
	ct = chat_detect(g, sys, sizeof(sys));
	msgs[1].content = text;	/* up to its first NUL */
	chat = chat_format(ct, msgs, 2, 1, spans);
	if (chat) {
		n = strlen(chat);
		for (i = 0; i < 4; i++)
			if (spans[i] > n || (i % 2 && spans[i] < spans[i - 1]))
				__builtin_trap();
	}
	if (!tokenizer_load(&t, g, &err)) {
		encode_decode(t, text, len, 0, NULL);
		encode_decode(t, text, len, 1, NULL);
		if (chat && (plain = calloc(strlen(chat) + 1, 1))) {
			memset(plain + spans[2], 1, spans[3] - spans[2]);
			encode_decode(t, chat, strlen(chat), 2, plain);
			free(plain);
		}
		for (i = 0; i < tokenizer_n_vocab(t) && i < 4096; i++)
			tokenizer_decode(t, (int32_t)i, piece, sizeof(piece));
		for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
			if (tokenizer_decode(t, odd[i], piece, sizeof(piece)))
				__builtin_trap();
		tokenizer_is_control(t, -1);
		tokenizer_free(t);
	}
	free(chat);
	gguf_close(g);
out:
	free(text);
	return 0;
}
