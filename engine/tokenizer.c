// SPDX-License-Identifier: MIT
/*
 * Byte-level BPE, and SentencePiece (encode_spm() below). Text is split at
 * special tokens. For BPE each fragment is pre-tokenized into
 * pieces by the model's pattern, each piece's bytes become the vocabulary's
 * byte tokens, and adjacent pairs are merged by lowest merge rank, leftmost
 * first, until no pair has a rank. The patterns (tokenizer.ggml.pre):
 *
 *   gpt2, default: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   smollm:        every \p{N} alone, GPT-2's pattern between
 *   llama-bpe:     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *                  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   qwen2:         llama-bpe's with \p{N} instead of \p{N}{1,3}
 *
 * Each is matched by hand, alternative by alternative, as a backtracking
 * regex engine would.
 */
#include "tokenizer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "unicode.h"

enum pre { PRE_GPT2, PRE_SMOLLM, PRE_LLAMA3, PRE_QWEN2 };

static const struct {
	const char *name;
	enum pre pre;
} pre_names[] = {
	{ "gpt2", PRE_GPT2 }, { "default", PRE_GPT2 }, { "smollm", PRE_SMOLLM },
	{ "llama-bpe", PRE_LLAMA3 }, { "llama3", PRE_LLAMA3 }, { "qwen2", PRE_QWEN2 },
};

struct tokenizer {
	uint32_t n_vocab;
	struct gguf_str *tokens;	/* point into the gguf header */
	uint8_t *type;			/* token_type, 1 = normal */
	uint32_t *vocab_slot;		/* hash: token text -> id + 1 */
	uint64_t vocab_mask;
	uint64_t *merge_key;		/* hash: (left << 32 | right) + 1 */
	uint32_t *merge_rank, *merge_id;
	uint64_t merge_mask;
	int32_t byte_id[256];		/* the token of each byte, or -1 */
	uint8_t cp_byte[512];		/* mapped code point -> byte */
	int32_t *special;		/* control and user-defined tokens */
	size_t n_special;
	int32_t bos, eos, unk;
	enum pre pre;
	bool spm;			/* SentencePiece (model "llama") */
	bool space_prefix;		/* spm: a space before the text */
	float *score;			/* spm: each token's score */
};

static uint64_t hash_bytes(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--)
		h = (h ^ (uint8_t)*p++) * 0x100000001b3ull;
	return h;
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	return x ^ x >> 33;
}

static int32_t vocab_find(const struct tokenizer *t, const char *s, size_t n)
{
	uint64_t h;

	for (h = hash_bytes(s, n) & t->vocab_mask; t->vocab_slot[h]; h = (h + 1) & t->vocab_mask) {
		const struct gguf_str *tok = &t->tokens[t->vocab_slot[h] - 1];

		if (tok->len == n && !memcmp(tok->ptr, s, n))
			return (int32_t)(t->vocab_slot[h] - 1);
	}
	return -1;
}

/* The merge of (a, b): its rank, or UINT32_MAX; *id the merged token. */
static uint32_t merge_find(const struct tokenizer *t, int32_t a, int32_t b, int32_t *id)
{
	uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1, h;

	for (h = hash_u64(key) & t->merge_mask; t->merge_key[h]; h = (h + 1) & t->merge_mask)
		if (t->merge_key[h] == key) {
			*id = (int32_t)t->merge_id[h];
			return t->merge_rank[h];
		}
	return UINT32_MAX;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves. */
static uint32_t byte_cp(unsigned int b)
{
	static uint32_t map[256];
	static bool init;
	unsigned int i, n = 0;

	if (!init) {
		for (i = 0; i < 256; i++) {
			bool printable = (i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) ||
					 (i >= 0xae && i <= 0xff);

			map[i] = printable ? i : 256 + n++;
		}
		init = true;
	}
	return map[b];
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
	return (int32_t)kv->value.u64;
}

static int load_vocab(struct tokenizer *t, const struct gguf *g, struct pinfer_err *err)
{
	const struct gguf_kv *kv;
	struct gguf_value e;
	uint64_t n, cap = 4, i, h, pos = 0;

	if (load_strings(g, "tokenizer.ggml.tokens", &t->tokens, &n, err))
		return err->code;
	if (!n || n > INT32_MAX)
		return pinfer_fail(err, EINVAL, "tokenizer: %llu tokens", (unsigned long long)n);
	t->n_vocab = (uint32_t)n;
	while (cap < 2 * n)
		cap <<= 1;
	t->vocab_mask = cap - 1;
	t->vocab_slot = calloc(cap, sizeof(*t->vocab_slot));
	t->type = malloc(n);
	if (!t->vocab_slot || !t->type)
		return pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
	memset(t->type, 1, n);
	kv = gguf_find_kv(g, "tokenizer.ggml.token_type");
	if (kv && kv->value.type == GGUF_TYPE_ARRAY && kv->value.arr.count == n &&
	    kv->value.arr.elem_type == GGUF_TYPE_INT32)
		for (i = 0; gguf_array_next(&kv->value, &pos, &e); i++)
			t->type[i] = (uint8_t)e.i64;
	for (i = 0; i < n; i++) {
		if (vocab_find(t, t->tokens[i].ptr, t->tokens[i].len) >= 0)
			continue;	/* a duplicate: the first one wins */
		for (h = hash_bytes(t->tokens[i].ptr, t->tokens[i].len) & t->vocab_mask;
		     t->vocab_slot[h]; h = (h + 1) & t->vocab_mask)
			;
		t->vocab_slot[h] = (uint32_t)i + 1;
	}
	return 0;
}

static int load_merges(struct tokenizer *t, const struct gguf *g, struct pinfer_err *err)
{
	struct gguf_str *m;
	uint64_t n, cap = 4, i, h;
	int ret = 0;

	if (load_strings(g, "tokenizer.ggml.merges", &m, &n, err))
		return err->code;
	while (cap < 2 * n)
		cap <<= 1;
	t->merge_mask = cap - 1;
	t->merge_key = calloc(cap, sizeof(*t->merge_key));
	t->merge_rank = calloc(cap, sizeof(*t->merge_rank));
	t->merge_id = calloc(cap, sizeof(*t->merge_id));
	if (!t->merge_key || !t->merge_rank || !t->merge_id) {
		ret = pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *sp = memchr(m[i].ptr, ' ', m[i].len);
		char buf[512];
		int32_t a, b, ab, dummy;
		uint64_t key;

		if (!sp || m[i].len >= sizeof(buf)) {
			ret = pinfer_fail(err, EINVAL, "tokenizer: merge %llu is malformed",
					  (unsigned long long)i);
			goto out;
		}
		a = vocab_find(t, m[i].ptr, sp - m[i].ptr);
		b = vocab_find(t, sp + 1, m[i].ptr + m[i].len - sp - 1);
		memcpy(buf, m[i].ptr, sp - m[i].ptr);
		memcpy(buf + (sp - m[i].ptr), sp + 1, m[i].ptr + m[i].len - sp - 1);
		ab = vocab_find(t, buf, m[i].len - 1);
		if (a < 0 || b < 0 || ab < 0 || merge_find(t, a, b, &dummy) != UINT32_MAX)
			continue;	/* not applicable, or a later duplicate */
		key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
		for (h = hash_u64(key) & t->merge_mask; t->merge_key[h]; h = (h + 1) & t->merge_mask)
			;
		t->merge_key[h] = key;
		t->merge_rank[h] = (uint32_t)i;
		t->merge_id[h] = (uint32_t)ab;
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
		t->byte_id[b] = vocab_find(t, hex, 6);
	}
	kv = gguf_find_kv(g, "tokenizer.ggml.add_space_prefix");
	t->space_prefix = !kv || kv->value.type != GGUF_TYPE_BOOL || kv->value.u64;
	return 0;
}

int tokenizer_load(struct tokenizer **out, const struct gguf *g, struct pinfer_err *err)
{
	const struct gguf_kv *model = gguf_find_kv(g, "tokenizer.ggml.model");
	const struct gguf_kv *pre = gguf_find_kv(g, "tokenizer.ggml.pre");
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
		t->byte_id[b] = vocab_find(t, s, utf8_encode(cp, s));	/* may be -1 */
	}
specials:
	t->special = malloc(t->n_vocab * sizeof(*t->special));
	if (!t->special) {
		ret = pinfer_fail(err, ENOMEM, "tokenizer: out of memory");
		goto fail;
	}
	for (i = 0; i < t->n_vocab; i++)
		if ((t->type[i] == 3 || t->type[i] == 4) && t->tokens[i].len)
			t->special[t->n_special++] = (int32_t)i;
	t->bos = meta_id(g, "tokenizer.ggml.bos_token_id", -1);
	t->eos = meta_id(g, "tokenizer.ggml.eos_token_id", -1);
	t->unk = meta_id(g, "tokenizer.ggml.unknown_token_id", t->spm ? 0 : -1);
	if (t->unk >= (int32_t)t->n_vocab)
		t->unk = -1;
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
	free(t->vocab_slot);
	free(t->merge_key);
	free(t->merge_rank);
	free(t->merge_id);
	free(t->special);
	free(t->score);
	free(t);
}

/* ---- encoding ----------------------------------------------------------------- */

struct ids {
	int32_t *v;
	size_t n, cap;
};

static int push(struct ids *o, int32_t id)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 64;
		int32_t *v = realloc(o->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		o->v = v;
		o->cap = cap;
	}
	o->v[o->n++] = id;
	return 0;
}

/*
 * BPE over one piece's bytes. A byte the vocabulary has no token for (some
 * lack a few control bytes) becomes the unknown token, or is dropped when
 * there is none, as other BPE implementations do.
 */
static int bpe(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
{
	int32_t stack[64], *sym = n <= 64 ? stack : malloc(n * sizeof(*sym));
	size_t k, m = 0, best_at = 0;
	int ret = 0;

	if (!sym)
		return -ENOMEM;
	for (k = 0; k < n; k++) {
		int32_t id = t->byte_id[(uint8_t)s[k]];

		if (id < 0)
			id = t->unk;
		if (id >= 0)
			sym[m++] = id;
	}
	for (;;) {
		uint32_t best = UINT32_MAX, r;
		int32_t id, best_id = -1;

		for (k = 0; k + 1 < m; k++) {
			r = merge_find(t, sym[k], sym[k + 1], &id);
			if (r < best) {
				best = r;
				best_at = k;
				best_id = id;
			}
		}
		if (best == UINT32_MAX)
			break;
		sym[best_at] = best_id;
		memmove(sym + best_at + 1, sym + best_at + 2, (m - best_at - 2) * sizeof(*sym));
		m--;
	}
	for (k = 0; k < m && !ret; k++)
		ret = push(o, sym[k]);
	if (sym != stack)
		free(sym);
	return ret;
}

enum cls { C_LETTER, C_NUMBER, C_SPACE, C_OTHER };

static enum cls cls_of(uint32_t cp)
{
	if (uc_is_letter(cp))
		return C_LETTER;
	if (uc_is_number(cp))
		return C_NUMBER;
	if (uc_is_space(cp))
		return C_SPACE;
	return C_OTHER;
}

/* Bytes matched by the GPT-2 pattern at the start of s[0..n), n > 0. */
static size_t gpt2_match(const char *s, size_t n)
{
	static const char *const contractions[] = { "s", "t", "re", "ve", "m", "ll", "d" };
	size_t i, len, lead, run, last = 0, chars = 0;
	uint32_t c0, c;
	enum cls k;

	len = utf8_decode(s, n, &c0);
	if (c0 == '\'')
		for (i = 0; i < 7; i++) {
			size_t cl = strlen(contractions[i]);

			if (n >= 1 + cl && !memcmp(s + 1, contractions[i], cl))
				return 1 + cl;
		}
	/* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' */
	lead = c0 == ' ' && n > 1 ? 1 : 0;
	i = lead + utf8_decode(s + lead, n - lead, &c);
	k = cls_of(c);
	if (k != C_SPACE) {
		while (i < n) {
			size_t l = utf8_decode(s + i, n - i, &c);

			if (cls_of(c) != k)
				break;
			i += l;
		}
		return i;
	}
	/* '\s+(?!\S)' then '\s+': a run of white space, less its last
	 * character when something other than white space follows it */
	for (run = 0; run < n; run += len, chars++) {
		len = utf8_decode(s + run, n - run, &c);
		if (!uc_is_space(c))
			break;
		last = len;
	}
	if (run < n && chars > 1)
		return run - last;
	return run ? run : len;
}

static bool is_crlf(uint32_t c)
{
	return c == '\r' || c == '\n';
}

/* The end of the run of characters from s[i] for which @in() holds. */
static size_t run_of(const char *s, size_t n, size_t i, bool (*in)(uint32_t))
{
	uint32_t c;
	size_t l;

	while (i < n) {
		l = utf8_decode(s + i, n - i, &c);
		if (!in(c))
			break;
		i += l;
	}
	return i;
}

static bool is_other(uint32_t c)	/* [^\s\p{L}\p{N}] */
{
	return !uc_is_space(c) && !uc_is_letter(c) && !uc_is_number(c);
}

/*
 * Bytes matched by the llama-bpe pattern at the start of s[0..n), n > 0,
 * with at most @max_digits numbers in a row (3; qwen2: 1).
 */
static size_t llama3_match(const char *s, size_t n, unsigned int max_digits)
{
	static const char *const contractions[] = { "s", "t", "re", "ve", "m", "ll", "d" };
	size_t len = 0, i, l, run, last = 0, chars = 0, after_crlf = 0;
	unsigned int k;
	uint32_t c0, c;

	len = utf8_decode(s, n, &c0);
	if (c0 == '\'')	/* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
		for (k = 0; k < 7; k++) {
			size_t cl = strlen(contractions[k]);

			if (n >= 1 + cl && !strncasecmp(s + 1, contractions[k], cl))
				return 1 + cl;
		}
	/* [^\r\n\p{L}\p{N}]?\p{L}+ */
	if (uc_is_letter(c0))
		return run_of(s, n, 0, uc_is_letter);
	if (!uc_is_number(c0) && !is_crlf(c0) && len < n) {
		l = utf8_decode(s + len, n - len, &c);
		if (uc_is_letter(c))
			return run_of(s, n, len, uc_is_letter);
	}
	/* \p{N}{1,3} */
	if (uc_is_number(c0)) {
		for (i = len, k = 1; k < max_digits && i < n; k++, i += l) {
			l = utf8_decode(s + i, n - i, &c);
			if (!uc_is_number(c))
				break;
		}
		return i;
	}
	/* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
	i = c0 == ' ' ? 1 : 0;
	if (i < n) {
		utf8_decode(s + i, n - i, &c);
		if (is_other(c))
			return run_of(s, n, run_of(s, n, i, is_other), is_crlf);
	}
	/* '\s*[\r\n]+': white space up to its last CR or LF */
	for (run = 0; run < n; run += l, chars++) {
		l = utf8_decode(s + run, n - run, &c);
		if (!uc_is_space(c))
			break;
		if (is_crlf(c))
			after_crlf = run + l;
		last = l;
	}
	if (after_crlf)
		return after_crlf;
	/* '\s+(?!\S)' then '\s+', as in GPT-2's pattern */
	if (run < n && chars > 1)
		return run - last;
	return run ? run : len;
}

/*
 * Cut s[0..n) into pattern pieces and BPE each: GPT-2's pattern, or with
 * @max_digits > 0 llama-bpe's.
 */
static int split_pattern(const struct tokenizer *t, const char *s, size_t n,
			 unsigned int max_digits, struct ids *o)
{
	size_t i = 0, m;
	int ret;

	while (i < n) {
		m = max_digits ? llama3_match(s + i, n - i, max_digits) :
				 gpt2_match(s + i, n - i);
		ret = bpe(t, s + i, m, o);
		if (ret)
			return ret;
		i += m;
	}
	return 0;
}

static int push_bytes(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
{
	size_t k;
	int ret = 0;

	for (k = 0; k < n && !ret; k++) {
		int32_t id = t->byte_id[(uint8_t)s[k]];

		id = id >= 0 ? id : t->unk;
		if (id >= 0)
			ret = push(o, id);
	}
	return ret;
}

/*
 * SentencePiece over one fragment of text: spaces become U+2581 "▁" (and
 * one goes in front with add_space_prefix), each character is a symbol,
 * and the adjacent pair whose joined text is the token of the highest score
 * (the leftmost of equals) merges, until no joined pair is a token. A
 * symbol that is no token becomes the <0xXX> tokens of its bytes (byte
 * fallback), or the unknown token. Each pair's token is kept and only the
 * two pairs around a merge are looked up again.
 */
static int encode_spm(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
{
	struct sym {
		uint32_t off, len;
		int32_t pair;	/* the token of this symbol joined with the next, or -1 */
	} *sym = NULL;
	size_t len = 0, m = 0, i, k, best_k;
	char *buf = malloc(3 * n + 4);
	int ret = 0;

	if (!buf || !(sym = malloc((3 * n + 4) * sizeof(*sym)))) {
		ret = -ENOMEM;
		goto out;
	}
	if (t->space_prefix)
		len += (size_t)sprintf(buf, "\xe2\x96\x81");
	for (i = 0; i < n; i++) {
		if (s[i] == ' ')
			len += (size_t)sprintf(buf + len, "\xe2\x96\x81");
		else
			buf[len++] = s[i];
	}
	for (i = 0; i < len; i += sym[m++].len) {
		uint32_t c;

		sym[m].off = (uint32_t)i;
		sym[m].len = (uint32_t)utf8_decode(buf + i, len - i, &c);
	}
#define JOIN(k_) (sym[k_].pair = vocab_find(t, buf + sym[k_].off, sym[k_].len + sym[(k_) + 1].len))
	for (k = 0; k + 1 < m; k++)
		JOIN(k);
	for (;;) {
		float best = 0;

		best_k = m;
		for (k = 0; k + 1 < m; k++)
			if (sym[k].pair >= 0 && (best_k == m || t->score[sym[k].pair] > best)) {
				best = t->score[sym[k].pair];
				best_k = k;
			}
		if (best_k == m)
			break;
		sym[best_k].len += sym[best_k + 1].len;
		memmove(sym + best_k + 1, sym + best_k + 2, (m - best_k - 2) * sizeof(*sym));
		m--;
		if (best_k > 0)
			JOIN(best_k - 1);
		if (best_k + 1 < m)
			JOIN(best_k);
	}
#undef JOIN
	for (k = 0; k < m && !ret; k++) {
		int32_t id = vocab_find(t, buf + sym[k].off, sym[k].len);

		ret = id >= 0 ? push(o, id) : push_bytes(t, buf + sym[k].off, sym[k].len, o);
	}
out:
	free(buf);
	free(sym);
	return ret;
}

/* Ordinary text (no special tokens): pre-tokenize and BPE. */
static int encode_text(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
{
	size_t i = 0, start, l = 0;
	uint32_t c;
	int ret;

	if (t->spm)	/* as llama.cpp: each fragment gets the space prefix */
		return n ? encode_spm(t, s, n, o) : 0;

	if (t->pre == PRE_LLAMA3 || t->pre == PRE_QWEN2)
		return split_pattern(t, s, n, t->pre == PRE_LLAMA3 ? 3 : 1, o);
	if (t->pre != PRE_SMOLLM)
		return split_pattern(t, s, n, 0, o);
	while (i < n) {		/* smollm: each \p{N} alone, GPT-2 between */
		for (start = i; i < n; i += l) {
			l = utf8_decode(s + i, n - i, &c);
			if (uc_is_number(c))
				break;
		}
		if (i > start && (ret = split_pattern(t, s + start, i - start, 0, o)))
			return ret;
		if (i < n) {
			ret = bpe(t, s + i, l, o);
			if (ret)
				return ret;
			i += l;
		}
	}
	return 0;
}

/* The longest special token whose text starts s[0..n), or -1. */
static int32_t special_at(const struct tokenizer *t, const char *s, size_t n)
{
	int32_t best = -1;
	size_t i, best_len = 0;

	for (i = 0; i < t->n_special; i++) {
		const struct gguf_str *tok = &t->tokens[t->special[i]];

		if (tok->len > best_len && tok->len <= n && !memcmp(tok->ptr, s, tok->len)) {
			best = t->special[i];
			best_len = tok->len;
		}
	}
	return best;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len,
		     bool special, int32_t **ids, size_t *n, struct pinfer_err *err)
{
	struct ids o = { 0 };
	size_t i = 0, seg = 0;
	int ret = 0;

	while (i < len && !ret) {
		int32_t sp = special ? special_at(t, text + i, len - i) : -1;

		if (sp < 0) {
			i++;
			continue;
		}
		ret = encode_text(t, text + seg, i - seg, &o);
		if (!ret)
			ret = push(&o, sp);
		i += t->tokens[sp].len;
		seg = i;
	}
	if (!ret)
		ret = encode_text(t, text + seg, len - seg, &o);
	if (ret) {
		free(o.v);
		return pinfer_fail(err, -ret, "tokenizer: out of memory");
	}
	*ids = o.v;
	*n = o.n;
	return 0;
}

/* ---- decoding ------------------------------------------------------------------ */

size_t tokenizer_decode(const struct tokenizer *t, int32_t id, char *out, size_t cap)
{
	const struct gguf_str *tok;
	size_t i = 0, n = 0, l;
	uint32_t c;

	if (id < 0 || (uint32_t)id >= t->n_vocab)
		return 0;
	tok = &t->tokens[id];
	if (t->type[id] == 3 || t->type[id] == 4) {	/* special: its text */
		n = tok->len < cap ? tok->len : cap;
		memcpy(out, tok->ptr, n);
		return n;
	}
	if (t->spm && t->type[id] == 6) {	/* <0xXX> */
		unsigned int b;

		if (cap < 1 || tok->len != 6 || sscanf(tok->ptr + 3, "%2X", &b) != 1)
			return 0;
		out[0] = (char)b;
		return 1;
	}
	while (t->spm && i < tok->len && n < cap) {	/* "▁" is a space */
		if (tok->len - i >= 3 && !memcmp(tok->ptr + i, "\xe2\x96\x81", 3)) {
			out[n++] = ' ';
			i += 3;
		} else {
			out[n++] = tok->ptr[i++];
		}
	}
	while (!t->spm && i < tok->len && n < cap) {
		l = utf8_decode(tok->ptr + i, tok->len - i, &c);
		out[n++] = c < 512 ? (char)t->cp_byte[c] : '?';
		i += l;
	}
	return n;
}

uint32_t tokenizer_n_vocab(const struct tokenizer *t)
{
	return t->n_vocab;
}

int32_t tokenizer_bos(const struct tokenizer *t)
{
	return t->bos;
}

int32_t tokenizer_eos(const struct tokenizer *t)
{
	return t->eos;
}

bool tokenizer_is_control(const struct tokenizer *t, int32_t id)
{
	return id >= 0 && (uint32_t)id < t->n_vocab && t->type[id] == 3;
}
