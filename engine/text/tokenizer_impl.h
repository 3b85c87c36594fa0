/* SPDX-License-Identifier: MIT */
/*
 * Inside the text folder: a tokenizer's tables (vocab.c loads them), what
 * its encoders share, and the pieces of encoding: merging (merge.c) and
 * pre-tokenizing (pretokenize.c), put together by tokenizer.c.
 */
#ifndef PINFER_TEXT_TOKENIZER_IMPL_H
#define PINFER_TEXT_TOKENIZER_IMPL_H

#include "base/hash.h"
#include "tokenizer.h"

enum pre { PRE_GPT2, PRE_SMOLLM, PRE_LLAMA3, PRE_QWEN2 };

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
	struct hash_index vocab;	/* token text -> id */
	struct hash_index merges;	/* (left, right) -> merge */
	uint64_t *merge_pair;		/* [merge]: left << 32 | right */
	uint32_t *merge_rank, *merge_id;	/* [merge]: its rank, the joined token */
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

/* A growing list of token ids. */
struct ids {
	int32_t *v;
	size_t n, cap;
};

/* Append @id; -ENOMEM. */
int ids_push(struct ids *o, int32_t id);

/* The token whose text is s[0..n), or -1. */
int32_t tok_vocab_find(const struct tokenizer *t, const char *s, size_t n);
/* The merge of (a, b): its rank, or UINT32_MAX; *id the merged token. */
uint32_t tok_merge_find(const struct tokenizer *t, int32_t a, int32_t b, int32_t *id);
/* The child of trie node @n for @byte, or 0. */
uint32_t tok_trie_find(const struct tokenizer *t, uint32_t n, uint8_t byte);

/* BPE over one pre-tokenized piece's bytes (merge.c). */
int tok_bpe(const struct tokenizer *t, const char *s, size_t n, struct ids *o);
/* SentencePiece over one fragment of text (merge.c). */
int tok_spm(const struct tokenizer *t, const char *s, size_t n, struct ids *o);

/*
 * The pre-tokenizers' patterns (pretokenize.c): bytes matched at the start
 * of s[0..n), n > 0, by GPT-2's pattern, or llama-bpe's with \p{N}{1,@max_digits}.
 */
size_t pretok_gpt2(const char *s, size_t n);
size_t pretok_llama3(const char *s, size_t n, unsigned int max_digits);

#endif
