/* SPDX-License-Identifier: MIT */
/* UTF-8 decoding and the Unicode categories the pre-tokenizers need. */
#ifndef PINFER_UNICODE_H
#define PINFER_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ucd_range {
	uint32_t lo, hi;
};

extern const struct ucd_range ucd_letter[], ucd_number[], ucd_space[];
extern const size_t ucd_letter_count, ucd_number_count, ucd_space_count;

bool uc_is_letter(uint32_t cp);	/* \p{L} */
bool uc_is_number(uint32_t cp);	/* \p{N} */
bool uc_is_space(uint32_t cp);	/* \s */

/*
 * Decode the code point at s[0..n): returns its length in bytes (1..4), or
 * 1 with *cp = 0xFFFD for a byte that does not start a valid sequence.
 */
size_t utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Encode @cp as UTF-8 into @out (4 bytes at least); returns the length. */
size_t utf8_encode(uint32_t cp, char *out);

#endif
