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

/* A node of the special tokens' trie: its children are a sibling list. */
struct trie_node {
	uint32_t child, sibling;	/* indices; 0: none (0 is the root) */
	int32_t token;			/* the token whose text ends here, or -1 */
	uint8_t byte;
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
	struct trie_node *trie;		/* the texts of control and user-defined tokens */
	size_t n_trie;
	uint32_t trie_root[256];	/* the root's child for each first byte, or 0 */
	int32_t bos, eos, unk;
	bool add_bos;			/* tokenizer.ggml.add_bos_token */
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

/* The child of trie node @n for @byte, or 0 (the root's children by table). */
static uint32_t trie_find(const struct tokenizer *t, uint32_t n, uint8_t byte)
{
	uint32_t c;

	if (!n)
		return t->trie_root[byte];
	for (c = t->trie[n].child; c; c = t->trie[c].sibling)
		if (t->trie[c].byte == byte)
			return c;
	return 0;
}

/* The child of node @n for @byte, added if it is not there. */
static uint32_t trie_add(struct tokenizer *t, uint32_t n, uint8_t byte)
{
	uint32_t c = trie_find(t, n, byte);

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
		t->byte_id[b] = vocab_find(t, s, utf8_encode(cp, s));	/* may be -1 */
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
	free(t->vocab_slot);
	free(t->merge_key);
	free(t->merge_rank);
	free(t->merge_id);
	free(t->trie);
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
 * Merging, for BPE and SentencePiece alike: the symbols of a piece in a
 * linked list, the candidate merges of adjacent pairs in a binary heap
 * ordered by priority (BPE: the merge rank; SentencePiece: minus the
 * joined token's score), then by position, leftmost first. A merge joins
 * the pair and adds the two pairs around it; entries whose symbols changed
 * since are skipped when they come up. n log n for a piece of n symbols.
 */
struct sym {
	uint32_t off, len;	/* SentencePiece: the symbol's bytes */
	int32_t id;		/* BPE: its token */
	int32_t prev, next;	/* -1: none */
};

struct cand {
	double prio;
	uint32_t left, right;	/* symbols, by their first position */
	uint32_t len_l, len_r;	/* SentencePiece: their lengths then */
	int32_t id_l, id_r, id;	/* BPE: their tokens then; the joined token */
};

struct merger {
	struct sym *sym;
	struct cand *heap;
	size_t n_heap;
};

static bool cand_before(const struct cand *a, const struct cand *b)
{
	return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

static void heap_push(struct merger *mg, struct cand c)
{
	size_t i = mg->n_heap++;

	while (i && cand_before(&c, &mg->heap[(i - 1) / 2])) {
		mg->heap[i] = mg->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	mg->heap[i] = c;
}

static struct cand heap_pop(struct merger *mg)
{
	struct cand top = mg->heap[0], last = mg->heap[--mg->n_heap];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < mg->n_heap) {
		if (c + 1 < mg->n_heap && cand_before(&mg->heap[c + 1], &mg->heap[c]))
			c++;
		if (!cand_before(&mg->heap[c], &last))
			break;
		mg->heap[i] = mg->heap[c];
		i = c;
	}
	if (mg->n_heap)
		mg->heap[i] = last;
	return top;
}

static void merger_free(struct merger *mg)
{
	free(mg->sym);
	free(mg->heap);
	mg->sym = NULL;
	mg->heap = NULL;
}

/* Room for @n symbols and the pairs they can form (each merge adds two). */
static int merger_init(struct merger *mg, size_t n)
{
	mg->sym = malloc((n ? n : 1) * sizeof(*mg->sym));
	mg->heap = malloc((3 * n + 1) * sizeof(*mg->heap));
	mg->n_heap = 0;
	if (!mg->sym || !mg->heap) {
		merger_free(mg);
		return -ENOMEM;
	}
	return 0;
}

/* Symbol @l and its next as a BPE candidate, if their pair has a merge. */
static void bpe_cand(const struct tokenizer *t, struct merger *mg, int32_t l)
{
	int32_t r = l >= 0 ? mg->sym[l].next : -1, id;
	uint32_t rank;

	if (r < 0)
		return;
	rank = merge_find(t, mg->sym[l].id, mg->sym[r].id, &id);
	if (rank != UINT32_MAX)
		heap_push(mg, (struct cand){ .prio = rank, .left = (uint32_t)l, .right = (uint32_t)r,
					     .id_l = mg->sym[l].id, .id_r = mg->sym[r].id, .id = id });
}

/*
 * BPE over one piece's bytes. A byte the vocabulary has no token for (some
 * lack a few control bytes) becomes the unknown token, or is dropped when
 * there is none, as other BPE implementations do.
 */
static int bpe(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
{
	struct merger mg;
	int32_t k, m = 0;
	size_t i;
	int ret = merger_init(&mg, n);

	if (ret)
		return ret;
	for (i = 0; i < n; i++) {
		int32_t id = t->byte_id[(uint8_t)s[i]];

		if (id < 0)
			id = t->unk;
		if (id >= 0) {
			mg.sym[m] = (struct sym){ .id = id, .prev = m - 1, .next = -1 };
			if (m)
				mg.sym[m - 1].next = m;
			m++;
		}
	}
	for (k = 0; k + 1 < m; k++)
		bpe_cand(t, &mg, k);
	while (mg.n_heap) {
		struct cand c = heap_pop(&mg);
		struct sym *l = &mg.sym[c.left], *r = &mg.sym[c.right];

		if (l->next != (int32_t)c.right || l->id != c.id_l || r->id != c.id_r)
			continue;	/* stale: one of them merged since */
		l->id = c.id;
		l->next = r->next;
		if (r->next >= 0)
			mg.sym[r->next].prev = (int32_t)c.left;
		r->id = -1;
		r->next = -1;
		bpe_cand(t, &mg, l->prev);
		bpe_cand(t, &mg, (int32_t)c.left);
	}
	for (k = m ? 0 : -1; k >= 0 && !ret; k = mg.sym[k].next)
		ret = push(o, mg.sym[k].id);
	merger_free(&mg);
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

/* Symbol @l and its next as a SentencePiece candidate, if joined they are a token. */
static void spm_cand(const struct tokenizer *t, struct merger *mg, const char *buf, int32_t l)
{
	int32_t r = l >= 0 ? mg->sym[l].next : -1, id;

	if (r < 0)
		return;
	id = vocab_find(t, buf + mg->sym[l].off, mg->sym[l].len + mg->sym[r].len);
	if (id >= 0)
		heap_push(mg, (struct cand){ .prio = -(double)t->score[id], .left = (uint32_t)l,
					     .right = (uint32_t)r, .len_l = mg->sym[l].len,
					     .len_r = mg->sym[r].len, .id = id });
}

/*
 * SentencePiece over one fragment of text: spaces become U+2581 "▁" (and
 * one goes in front with add_space_prefix), each character is a symbol,
 * and the adjacent pair whose joined text is the token of the highest score
 * (the leftmost of equals) merges, until no joined pair is a token. A
 * symbol that is no token becomes the <0xXX> tokens of its bytes (byte
 * fallback), or the unknown token.
 */
static int encode_spm(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
{
	struct merger mg = { 0 };
	size_t len = 0, i;
	int32_t k, m = 0;
	char *buf = malloc(3 * n + 4);
	int ret = buf ? merger_init(&mg, 3 * n + 4) : -ENOMEM;

	if (ret)
		goto out;
	if (t->space_prefix)
		len += (size_t)sprintf(buf, "\xe2\x96\x81");
	for (i = 0; i < n; i++) {
		if (s[i] == ' ')
			len += (size_t)sprintf(buf + len, "\xe2\x96\x81");
		else
			buf[len++] = s[i];
	}
	for (i = 0; i < len; i += mg.sym[m++].len) {
		uint32_t c;

		mg.sym[m] = (struct sym){ .off = (uint32_t)i, .prev = m - 1, .next = -1,
					  .len = (uint32_t)utf8_decode(buf + i, len - i, &c) };
		if (m)
			mg.sym[m - 1].next = m;
	}
	for (k = 0; k + 1 < m; k++)
		spm_cand(t, &mg, buf, k);
	while (mg.n_heap) {
		struct cand c = heap_pop(&mg);
		struct sym *l = &mg.sym[c.left], *r = &mg.sym[c.right];

		if (l->next != (int32_t)c.right || l->len != c.len_l || r->len != c.len_r)
			continue;	/* stale: one of them merged since */
		l->len += r->len;
		l->next = r->next;
		if (r->next >= 0)
			mg.sym[r->next].prev = (int32_t)c.left;
		r->len = 0;
		r->next = -1;
		spm_cand(t, &mg, buf, l->prev);
		spm_cand(t, &mg, buf, (int32_t)c.left);
	}
	for (k = m ? 0 : -1; k >= 0 && !ret; k = mg.sym[k].next) {
		int32_t id = vocab_find(t, buf + mg.sym[k].off, mg.sym[k].len);

		ret = id >= 0 ? push(o, id) : push_bytes(t, buf + mg.sym[k].off, mg.sym[k].len, o);
	}
out:
	free(buf);
	merger_free(&mg);
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

/*
 * The longest special token whose text starts s[0..n) (and lies where
 * @plain, if any, is 0 for each of its bytes), or -1.
 */
static int32_t special_at(const struct tokenizer *t, const char *s, size_t n,
			  const uint8_t *plain)
{
	int32_t best = -1;
	uint32_t node = 0;
	size_t i;

	for (i = 0; i < n && !(plain && plain[i]); i++) {
		node = trie_find(t, node, (uint8_t)s[i]);
		if (!node)
			break;
		if (t->trie[node].token >= 0)
			best = t->trie[node].token;
	}
	return best;
}

static int encode(const struct tokenizer *t, const char *text, size_t len, bool special,
		  const uint8_t *plain, int32_t **ids, size_t *n, struct pinfer_err *err)
{
	struct ids o = { 0 };
	size_t i = 0, seg = 0;
	int ret = 0;

	while (special && t->n_trie > 1 && i < len && !ret) {
		int32_t sp = plain && plain[i] ? -1 :
			     special_at(t, text + i, len - i, plain ? plain + i : NULL);

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
		return pinfer_fail(err, ret, "tokenizer: out of memory");
	}
	*ids = o.v;
	*n = o.n;
	return 0;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len,
		     bool special, int32_t **ids, size_t *n, struct pinfer_err *err)
{
	return encode(t, text, len, special, NULL, ids, n, err);
}

int tokenizer_encode_masked(const struct tokenizer *t, const char *text, size_t len,
			    const uint8_t *plain, int32_t **ids, size_t *n,
			    struct pinfer_err *err)
{
	return encode(t, text, len, true, plain, ids, n, err);
}

/* ---- decoding ------------------------------------------------------------------ */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

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
		int hi = tok->len == 6 ? hex_digit(tok->ptr[3]) : -1;
		int lo = tok->len == 6 ? hex_digit(tok->ptr[4]) : -1;

		if (cap < 1 || hi < 0 || lo < 0 || memcmp(tok->ptr, "<0x", 3) || tok->ptr[5] != '>')
			return 0;
		out[0] = (char)(hi << 4 | lo);
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
	return t->add_bos ? t->bos : -1;
}

int32_t tokenizer_eos(const struct tokenizer *t)
{
	return t->eos;
}

bool tokenizer_is_control(const struct tokenizer *t, int32_t id)
{
	return id >= 0 && (uint32_t)id < t->n_vocab && t->type[id] == 3;
}
