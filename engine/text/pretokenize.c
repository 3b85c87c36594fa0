// SPDX-License-Identifier: MIT
/*
 * The pre-tokenizers' patterns, matched by hand, alternative by
 * alternative, as a backtracking regex engine would (tokenizer.c lists
 * them).
 */
#include "tokenizer_impl.h"

#include <string.h>
#include <strings.h>

#include "unicode.h"

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
size_t pretok_gpt2(const char *s, size_t n)
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
size_t pretok_llama3(const char *s, size_t n, unsigned int max_digits)
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
