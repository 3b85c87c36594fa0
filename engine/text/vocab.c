// SPDX-License-Identifier: MIT
/*
 * A tokenizer's tables from the GGUF metadata: the vocabulary (and its
 * index), the merge ranks (BPE) or the scores (SentencePiece), the byte
 * tokens, and the trie of the special tokens' texts.
 */
#include "tokenizer_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

static const struct {
	const char *name;
	enum pre pre;
} pre_names[] = {
	{ "gpt2", PRE_GPT2 }, { "default", PRE_GPT2 }, { "smollm", PRE_SMOLLM },
	{ "llama-bpe", PRE_LLAMA3 }, { "llama3", PRE_LLAMA3 }, { "qwen2", PRE_QWEN2 },
};

static bool token_is(const void *items, uint32_t i, const void *key)
{
	const struct gguf_str *tok = &((const struct gguf_str *)items)[i], *s = key;

	return tok->len == s->len && !memcmp(tok->ptr, s->ptr, s->len);
}

int32_t tok_vocab_find(const struct tokenizer *t, const char *s, size_t n)
{
	struct gguf_str k = { .ptr = s, .len = n };

	return (int32_t)hash_index_find(&t->vocab, hash_bytes(s, n), token_is, t->tokens, &k);
}

static bool pair_is(const void *items, uint32_t i, const void *key)
{
	return ((const uint64_t *)items)[i] == *(const uint64_t *)key;
}

uint32_t tok_merge_find(const struct tokenizer *t, int32_t a, int32_t b, int32_t *id)
{
	uint64_t pair = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	int64_t i = hash_index_find(&t->merges, hash_u64(pair), pair_is, t->merge_pair, &pair);

	if (i < 0)
		return UINT32_MAX;
	*id = (int32_t)t->merge_id[i];
	return t->merge_rank[i];
}

uint32_t tok_trie_find(const struct tokenizer *t, uint32_t n, uint8_t byte)
{
	uint32_t c;

	if (!n)
		return t->trie_root[byte];
	for (c = t->trie[n].child; c; c = t->trie[c].sibling)
		if (t->trie[c].byte == byte)
			return c;
	return 0;
}

/*
 * GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
 * others (0x00-0x20, 0x7f-0xa0, 0xad) for 256, 257, ... in byte order.
 */
static uint32_t byte_cp(unsigned int b)
{
	if (b <= 0x20)
		return 256 + b;
	if (b >= 0x7f && b <= 0xa0)
		return 256 + 33 + (b - 0x7f);
	if (b == 0xad)
		return 256 + 33 + 34;
	return b;
}

static int load_strings(const struct gguf *g, const char *key, struct gguf_str **out,
			uint64_t *n, struct pinfer_err *err)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);
	struct gguf_value e;
	uint64_t pos = 0, i = 0;

	if (!kv || kv->value.type != GGUF_TYPE_ARRAY ||
	    kv->value.arr.elem_type != GGUF_TYPE_STRING)
		return pinfer_fail(err, EINVAL, "tokenizer: %s is missing or not an array of strings", key);
	*n = kv->value.arr.count;
	*out = calloc(*n ? *n : 1, sizeof(**out));
	if (!*out)
		return pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
	while (gguf_array_next(&kv->value, &pos, &e))
		(*out)[i++] = e.str;
	return 0;
}

static int32_t meta_id(const struct gguf *g, const char *key, int32_t def)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (!kv || (kv->value.type != GGUF_TYPE_UINT32 && kv->value.type != GGUF_TYPE_INT32))
		return def;
	if (kv->value.type == GGUF_TYPE_UINT32)	/* past INT32_MAX: out of any vocabulary */
		return kv->value.u64 > INT32_MAX ? INT32_MAX : (int32_t)kv->value.u64;
	return kv->value.i64 < -1 ? INT32_MIN : (int32_t)kv->value.i64;
}

static int load_vocab(struct tokenizer *t, const struct gguf *g, struct pinfer_err *err)
{
	const struct gguf_kv *kv;
	struct gguf_value e;
	uint64_t n, i, pos = 0;

	if (load_strings(g, "tokenizer.ggml.tokens", &t->tokens, &n, err))
		return err->code;
	if (!n || n > INT32_MAX)
		return pinfer_fail(err, EINVAL, "tokenizer: %llu tokens", (unsigned long long)n);
	t->n_vocab = (uint32_t)n;
	t->type = malloc(n);
	if (hash_index_init(&t->vocab, n) || !t->type)
		return pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
	memset(t->type, 1, n);
	kv = gguf_find_kv(g, "tokenizer.ggml.token_type");
	if (kv && kv->value.type == GGUF_TYPE_ARRAY && kv->value.arr.count == n &&
	    kv->value.arr.elem_type == GGUF_TYPE_INT32)
		for (i = 0; gguf_array_next(&kv->value, &pos, &e); i++)
			t->type[i] = (uint8_t)e.i64;
	for (i = 0; i < n; i++)	/* a duplicate is not added: the first one wins */
		hash_index_add(&t->vocab, hash_bytes(t->tokens[i].ptr, t->tokens[i].len),
			       (uint32_t)i, token_is, t->tokens, &t->tokens[i]);
	return 0;
}

static int load_merges(struct tokenizer *t, const struct gguf *g, struct pinfer_err *err)
{
	struct gguf_str *m;
	uint64_t n, i;
	uint32_t k = 0;
	int ret = 0;

	if (load_strings(g, "tokenizer.ggml.merges", &m, &n, err))
		return err->code;
	t->merge_pair = malloc((n ? n : 1) * sizeof(*t->merge_pair));
	t->merge_rank = malloc((n ? n : 1) * sizeof(*t->merge_rank));
	t->merge_id = malloc((n ? n : 1) * sizeof(*t->merge_id));
	if (hash_index_init(&t->merges, n) || !t->merge_pair || !t->merge_rank || !t->merge_id) {
		ret = pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *sp = memchr(m[i].ptr, ' ', m[i].len);
		char buf[512];
		int32_t a, b, ab;

		if (!sp || m[i].len >= sizeof(buf)) {
			ret = pinfer_fail(err, EINVAL, "tokenizer: merge %llu is malformed",
					  (unsigned long long)i);
			goto out;
		}
		a = tok_vocab_find(t, m[i].ptr, sp - m[i].ptr);
		b = tok_vocab_find(t, sp + 1, m[i].ptr + m[i].len - sp - 1);
		memcpy(buf, m[i].ptr, sp - m[i].ptr);
		memcpy(buf + (sp - m[i].ptr), sp + 1, m[i].ptr + m[i].len - sp - 1);
		ab = tok_vocab_find(t, buf, m[i].len - 1);
		if (a < 0 || b < 0 || ab < 0)
			continue;	/* not applicable */
		t->merge_pair[k] = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
		t->merge_rank[k] = (uint32_t)i;
		t->merge_id[k] = (uint32_t)ab;
		if (hash_index_add(&t->merges, hash_u64(t->merge_pair[k]), k, pair_is,
				   t->merge_pair, &t->merge_pair[k]) < 0)
			k++;	/* else a later duplicate: not kept */
	}
out:
	free(m);
	return ret;
}

/* SentencePiece: the vocabulary, scores, byte tokens <0xXX>, the prefix. */
static int load_spm(struct tokenizer *t, const struct gguf *g, struct pinfer_err *err)
{
	const struct gguf_kv *kv = gguf_find_kv(g, "tokenizer.ggml.scores");
	struct gguf_value e;
	uint64_t pos = 0, i;
	unsigned int b;
	int ret;

	t->spm = true;
	ret = load_vocab(t, g, err);
	if (ret)
		return ret;
	if (!kv || kv->value.type != GGUF_TYPE_ARRAY || kv->value.arr.count != t->n_vocab ||
	    kv->value.arr.elem_type != GGUF_TYPE_FLOAT32)
		return pinfer_fail(err, EINVAL, "tokenizer: tokenizer.ggml.scores is missing or not %" PRIu32 " floats",
				   t->n_vocab);
	t->score = malloc(t->n_vocab * sizeof(*t->score));
	if (!t->score)
		return pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
	for (i = 0; gguf_array_next(&kv->value, &pos, &e); i++)
		t->score[i] = (float)e.f64;
	for (b = 0; b < 256; b++) {
		char hex[8];

		snprintf(hex, sizeof(hex), "<0x%02X>", b);
		t->byte_id[b] = tok_vocab_find(t, hex, 6);
	}
	kv = gguf_find_kv(g, "tokenizer.ggml.add_space_prefix");
	t->space_prefix = !kv || kv->value.type != GGUF_TYPE_BOOL || kv->value.u64;
	return 0;
}

/* The child of node @n for @byte, added if it is not there. */
static uint32_t trie_add(struct tokenizer *t, uint32_t n, uint8_t byte)
{
	uint32_t c = tok_trie_find(t, n, byte);

	if (c)
		return c;
	c = (uint32_t)t->n_trie++;
	t->trie[c] = (struct trie_node){ .child = 0, .sibling = t->trie[n].child,
					 .token = -1, .byte = byte };
	t->trie[n].child = c;
	if (!n)
		t->trie_root[byte] = c;
	return c;
}

/* The trie of the texts of control (3) and user-defined (4) tokens. */
static int build_trie(struct tokenizer *t, struct pinfer_err *err)
{
	size_t nodes = 1;
	uint32_t i, n;
	uint64_t k;

	for (i = 0; i < t->n_vocab; i++)
		if (t->type[i] == 3 || t->type[i] == 4)
			nodes += t->tokens[i].len;
	t->trie = malloc(nodes * sizeof(*t->trie));
	if (!t->trie)
		return pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
	t->trie[0] = (struct trie_node){ .token = -1 };
	t->n_trie = 1;
	for (i = 0; i < t->n_vocab; i++) {
		if ((t->type[i] != 3 && t->type[i] != 4) || !t->tokens[i].len)
			continue;
		for (n = 0, k = 0; k < t->tokens[i].len; k++)
			n = trie_add(t, n, (uint8_t)t->tokens[i].ptr[k]);
		if (t->trie[n].token < 0)	/* duplicates: the first one wins */
			t->trie[n].token = (int32_t)i;
	}
	return 0;
}

int tokenizer_load(struct tokenizer **out, const struct gguf *g, struct pinfer_err *err)
{
	const struct gguf_kv *model = gguf_find_kv(g, "tokenizer.ggml.model");
	const struct gguf_kv *pre = gguf_find_kv(g, "tokenizer.ggml.pre");
	const struct gguf_kv *kv;
	struct tokenizer *t;
	unsigned int b;
	uint32_t i;
	int ret;

	*out = NULL;
	if (!model || model->value.type != GGUF_TYPE_STRING)
		return pinfer_fail(err, EINVAL, "tokenizer.ggml.model is missing");
	if (!gguf_str_eq(model->value.str, "gpt2") && !gguf_str_eq(model->value.str, "llama"))
		return pinfer_fail(err, ENOTSUP, "tokenizer model '%.*s' is not supported (supported: gpt2, llama)",
				   (int)(model->value.str.len > 32 ? 32 : model->value.str.len),
				   model->value.str.ptr);
	t = calloc(1, sizeof(*t));
	if (!t)
		return pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
	if (gguf_str_eq(model->value.str, "llama")) {
		ret = load_spm(t, g, err);
		if (ret)
			goto fail;
		goto specials;
	}
	t->pre = PRE_GPT2;	/* no pre key: GPT-2's pattern */
	if (pre && pre->value.type == GGUF_TYPE_STRING) {
		for (i = 0; i < sizeof(pre_names) / sizeof(pre_names[0]); i++)
			if (gguf_str_eq(pre->value.str, pre_names[i].name))
				break;
		if (i == sizeof(pre_names) / sizeof(pre_names[0])) {
			ret = pinfer_fail(err, ENOTSUP, "pre-tokenizer '%.*s' is not supported (supported: gpt2, default, smollm, llama-bpe, qwen2)",
					  (int)(pre->value.str.len > 32 ? 32 : pre->value.str.len),
					  pre->value.str.ptr);
			goto fail;
		}
		t->pre = pre_names[i].pre;
	}
	ret = load_vocab(t, g, err);
	if (!ret)
		ret = load_merges(t, g, err);
	if (ret)
		goto fail;
	for (b = 0; b < 256; b++) {
		char s[4];
		uint32_t cp = byte_cp(b);

		t->cp_byte[cp] = (uint8_t)b;
		t->byte_id[b] = tok_vocab_find(t, s, utf8_encode(cp, s));	/* may be -1 */
	}
specials:
	ret = build_trie(t, err);
	if (ret)
		goto fail;
	t->bos = meta_id(g, "tokenizer.ggml.bos_token_id", -1);
	t->eos = meta_id(g, "tokenizer.ggml.eos_token_id", -1);
	t->unk = meta_id(g, "tokenizer.ggml.unknown_token_id", t->spm ? 0 : -1);
	if (t->unk >= (int32_t)t->n_vocab)
		t->unk = -1;
	if (t->bos < -1 || t->bos >= (int32_t)t->n_vocab || t->eos < -1 ||
	    t->eos >= (int32_t)t->n_vocab) {
		ret = pinfer_fail(err, EINVAL, "tokenizer.ggml.%s_token_id %" PRId32 " is not in the vocabulary of %" PRIu32 " tokens",
				  t->bos < -1 || t->bos >= (int32_t)t->n_vocab ? "bos" : "eos",
				  t->bos < -1 || t->bos >= (int32_t)t->n_vocab ? t->bos : t->eos,
				  t->n_vocab);
		goto fail;
	}
	kv = gguf_find_kv(g, "tokenizer.ggml.add_bos_token");
	t->add_bos = t->bos >= 0 && (kv && kv->value.type == GGUF_TYPE_BOOL ? kv->value.u64 : t->spm);
	*out = t;
	return 0;
fail:
	tokenizer_free(t);
	return ret;
}

void tokenizer_free(struct tokenizer *t)
{
	if (!t)
		return;
	free(t->tokens);
	free(t->type);
	hash_index_free(&t->vocab);
	hash_index_free(&t->merges);
	free(t->merge_pair);
	free(t->merge_rank);
	free(t->merge_id);
	free(t->trie);
	free(t->score);
	free(t);
}
