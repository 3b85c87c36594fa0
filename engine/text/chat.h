/* SPDX-License-Identifier: MIT */
/* Chat templates, recognized from tokenizer.chat_template. */
#ifndef PINFER_CHAT_H
#define PINFER_CHAT_H

#include <stddef.h>

#include "format/gguf.h"

enum chat_template { CHAT_NONE, CHAT_CHATML, CHAT_LLAMA2, CHAT_LLAMA3 };

struct chat_msg {
	const char *role;	/* "system", "user", "assistant" */
	const char *content;
};

/* The template the model's metadata describes, and its default system prompt. */
enum chat_template chat_detect(const struct gguf *g, char *default_system, size_t cap);
const char *chat_template_name(enum chat_template t);

/*
 * The text that closes the assistant's turn ("<|im_end|>" for ChatML; ""
 * without a template): what a later turn follows when the model's answer
 * was cut off before it wrote its end-of-turn token.
 */
const char *chat_turn_end(enum chat_template t);

/*
 * The text for @n messages, ending with the assistant's turn opened, as the
 * model's Jinja template renders them (Llama 2 and 3 trim the contents).
 * @first: the conversation's start, where a beginning-of-text marker
 * belongs; otherwise the text continues after the assistant's end-of-turn
 * token (ChatML: the newline that follows it comes first). malloc'd; NULL
 * when out of memory. @spans (2 * @n, or NULL): where each message's
 * content lies in the text, [start, end) in bytes: what is the user's own
 * text, not the template's (tokenizer_encode_masked()).
 */
char *chat_format(enum chat_template t, const struct chat_msg *m, size_t n, int first,
		  size_t *spans);

#endif
