/* SPDX-License-Identifier: MIT */
/*
 * Tokenizers from GGUF metadata: byte-level BPE (tokenizer.ggml.model
 * "gpt2": vocabulary, merge ranks, special tokens, and the pre-tokenizer
 * the file names in tokenizer.ggml.pre: gpt2/default, smollm, llama-bpe,
 * qwen2) and SentencePiece ("llama": pieces, scores, byte fallback, the
 * space prefix).
 */
#ifndef PINFER_TOKENIZER_H
#define PINFER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"
#include "libpinfer.h"

struct tokenizer;

int tokenizer_load(struct tokenizer **out, const struct gguf *g,
		   struct pinfer_err *err);
void tokenizer_free(struct tokenizer *t);

/*
 * Text -> token ids in *ids (malloc'd, caller frees), *n of them. With
 * @special, the text of control and user-defined tokens (<|im_start|>)
 * stands for those tokens; otherwise it is ordinary text.
 */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len,
		     bool special, int32_t **ids, size_t *n, struct pinfer_err *err);

/*
 * As tokenizer_encode() with special tokens, except in the bytes where
 * @plain[i] is non-zero (the user's text inside a chat template): a
 * special token's text there is ordinary text.
 */
int tokenizer_encode_masked(const struct tokenizer *t, const char *text, size_t len,
			    const uint8_t *plain, int32_t **ids, size_t *n,
			    struct pinfer_err *err);

/*
 * The bytes token @id stands for, into @out (@cap bytes); returns their
 * number (0 for an id out of range). Bytes may be part of a UTF-8 character
 * that the next tokens complete.
 */
size_t tokenizer_decode(const struct tokenizer *t, int32_t id, char *out, size_t cap);

uint32_t tokenizer_n_vocab(const struct tokenizer *t);
/* The token a text starts with (tokenizer.ggml.add_bos_token; by default
 * SentencePiece models have one), or -1. */
int32_t tokenizer_bos(const struct tokenizer *t);
int32_t tokenizer_eos(const struct tokenizer *t);
bool tokenizer_is_control(const struct tokenizer *t, int32_t id);

#endif
