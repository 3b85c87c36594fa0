// SPDX-License-Identifier: MIT
/*
 * Encoding and decoding, over the tables of vocab.c. Text is split at
 * special tokens. For byte-level BPE each fragment is pre-tokenized into
 * pieces by the model's pattern (pretokenize.c), each piece's bytes become
 * the vocabulary's byte tokens, and adjacent pairs are merged by lowest
 * merge rank, leftmost first, until no pair has a rank (merge.c, as is
 * SentencePiece). The patterns (tokenizer.ggml.pre):
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
#include "tokenizer_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

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
		m = max_digits ? pretok_llama3(s + i, n - i, max_digits) :
				 pretok_gpt2(s + i, n - i);
		ret = tok_bpe(t, s + i, m, o);
		if (ret)
			return ret;
		i += m;
	}
	return 0;
}

/* Ordinary text (no special tokens): pre-tokenize and BPE. */
static int encode_text(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
{
	size_t i = 0, start, l = 0;
	uint32_t c;
	int ret;

	if (t->spm)	/* as llama.cpp: each fragment gets the space prefix */
		return n ? tok_spm(t, s, n, o) : 0;

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
			ret = tok_bpe(t, s + i, l, o);
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
		node = tok_trie_find(t, node, (uint8_t)s[i]);
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
			ret = ids_push(&o, sp);
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
