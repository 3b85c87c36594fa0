// SPDX-License-Identifier: MIT
#include "chat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *find(struct gguf_str s, const char *needle)
{
	size_t n = strlen(needle), i;

	for (i = 0; i + n <= s.len; i++)
		if (!memcmp(s.ptr + i, needle, n))
			return s.ptr + i;
	return NULL;
}

/* ChatML templates that add a system turn of their own (SmolLM2 does). */
static void default_system(struct gguf_str s, char *out, size_t cap)
{
	const char *p = find(s, "<|im_start|>system"), *end;
	size_t n;

	out[0] = 0;
	if (!p || !cap)
		return;
	p += strlen("<|im_start|>system");
	if (p < s.ptr + s.len && *p == '\n')
		p++;
	else if (p + 1 < s.ptr + s.len && p[0] == '\\' && p[1] == 'n')
		p += 2;		/* the escape inside a Jinja string literal */
	else
		return;
	for (end = p; end < s.ptr + s.len && *end != '<' && *end != '\'' && *end != '{'; end++)
		;
	n = (size_t)(end - p) < cap - 1 ? (size_t)(end - p) : cap - 1;
	memcpy(out, p, n);
	out[n] = 0;
}

enum chat_template chat_detect(const struct gguf *g, char *sys, size_t cap)
{
	const struct gguf_kv *kv = gguf_find_kv(g, "tokenizer.chat_template");

	if (cap)
		sys[0] = 0;
	if (!kv || kv->value.type != GGUF_TYPE_STRING)
		return CHAT_NONE;
	if (find(kv->value.str, "<|im_start|>")) {
		default_system(kv->value.str, sys, cap);
		return CHAT_CHATML;
	}
	if (find(kv->value.str, "<|start_header_id|>"))
		return CHAT_LLAMA3;
	if (find(kv->value.str, "[INST]"))
		return CHAT_LLAMA2;
	return CHAT_NONE;
}

const char *chat_template_name(enum chat_template t)
{
	static const char *const names[] = { "none", "chatml", "llama2", "llama3" };

	return names[t];
}

const char *chat_turn_end(enum chat_template t)
{
	static const char *const ends[] = { "", "<|im_end|>", " </s>", "<|eot_id|>" };

	return ends[t];
}

struct buf {
	char *p;
	size_t n, cap;
	int bad;
};

static void add(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int need;

	va_start(ap, fmt);
	need = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (b->bad || need < 0)
		return;
	if (b->n + need + 1 > b->cap) {
		size_t cap = (b->n + need + 1) * 2;
		char *p = realloc(b->p, cap);

		if (!p) {
			b->bad = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
	va_end(ap);
	b->n += need;
}

/* @s without leading and trailing white space, as Jinja's trim: its length in *n. */
static const char *trim(const char *s, int *n)
{
	size_t len;

	s += strspn(s, " \t\n\r");
	len = strlen(s);
	while (len && strchr(" \t\n\r", s[len - 1]))
		len--;
	*n = (int)len;
	return s;
}

/* Message @i's content (@len bytes of @c), its bytes' span noted in @spans. */
static void add_content(struct buf *b, size_t *spans, size_t i, const char *c, int len)
{
	if (spans)
		spans[2 * i] = b->n;
	add(b, "%.*s", len, c);
	if (spans)
		spans[2 * i + 1] = b->n;
}

char *chat_format(enum chat_template t, const struct chat_msg *m, size_t n, int first,
		  size_t *spans)
{
	struct buf b = { 0 };
	const char *c;
	size_t i;
	int len;

	add(&b, "%s", "");
	switch (t) {
	case CHAT_CHATML:
		/* a later turn follows the assistant's "<|im_end|>": its newline first */
		if (!first)
			add(&b, "\n");
		for (i = 0; i < n; i++) {
			add(&b, "<|im_start|>%s\n", m[i].role);
			add_content(&b, spans, i, m[i].content, (int)strlen(m[i].content));
			add(&b, "<|im_end|>\n");
		}
		add(&b, "<|im_start|>assistant\n");
		break;
	case CHAT_LLAMA3:
		if (first)
			add(&b, "<|begin_of_text|>");
		for (i = 0; i < n; i++) {
			c = trim(m[i].content, &len);
			add(&b, "<|start_header_id|>%s<|end_header_id|>\n\n", m[i].role);
			add_content(&b, spans, i, c, len);
			add(&b, "<|eot_id|>");
		}
		add(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
		break;
	case CHAT_LLAMA2:
		/* every user turn opens with <s>[INST]; a system prompt joins the first */
		for (i = 0; i < n; i++) {
			c = trim(m[i].content, &len);
			if (!strcmp(m[i].role, "system")) {
				add(&b, "<s>[INST] <<SYS>>\n");
				add_content(&b, spans, i, c, len);
				add(&b, "\n<</SYS>>\n\n");
			} else if (!strcmp(m[i].role, "user")) {
				add(&b, "%s", i && !strcmp(m[i - 1].role, "system") ? "" : "<s>[INST] ");
				add_content(&b, spans, i, c, len);
				add(&b, " [/INST]");
			} else {
				add(&b, " ");
				add_content(&b, spans, i, c, len);
				add(&b, " </s>");
			}
		}
		break;
	default:
		for (i = 0; i < n; i++)
			add_content(&b, spans, i, m[i].content, (int)strlen(m[i].content));
		break;
	}
	if (b.bad) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
