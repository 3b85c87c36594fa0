/* SPDX-License-Identifier: MIT */
/*
 * The paged KV cache's bookkeeping (the server): which of a pool's blocks
 * are in use and by how many sequences, and which hold a known prefix.
 *
 * A block is LLM_KV_BLOCK positions of every layer's K and V. A full block
 * whose K and V are computed is published under a key: a hash of its
 * tokens and of the key of the block before it, so a key names the whole
 * prefix up to the block's end (K and V depend on every token before
 * them). A new sequence whose prompt starts with published blocks takes a
 * reference to them instead of computing them again (a prefix-cache hit).
 *
 * Blocks nobody references wait in one list, least recently released
 * first: unpublished ones at the front, taken before published ones, which
 * stay findable until a new block needs their memory. Sequences reserve
 * the blocks they may need when they start, so a running sequence never
 * finds the pool empty. Not thread-safe: the scheduler's thread owns it.
 */
#ifndef PINFER_SERVE_BLOCKS_H
#define PINFER_SERVE_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv_blocks {
	uint32_t n;		/* blocks in the pool */
	uint32_t *ref;		/* [n] sequences using each */
	uint64_t *key;		/* [n] the prefix's key, when published */
	int32_t *toks;		/* [n][LLM_KV_BLOCK] a published block's tokens */
	uint64_t *parent;	/* [n] the key of the block before it (0: first) */
	bool *published;	/* [n] */
	int32_t *chain;		/* [n] next published block in the same bucket, -1 */
	int32_t *bucket;	/* [n_buckets] first published block, -1 */
	uint32_t n_buckets;	/* a power of two */
	int32_t *prev, *next;	/* [n] the list of unreferenced blocks */
	int32_t head, tail;	/* -1: empty */
	uint32_t n_idle;	/* unreferenced blocks (free or published) */
	uint32_t reserved;	/* promised to running sequences */
	uint64_t hits;		/* blocks found published */
};

/* A pool of @n blocks, all free; -ENOMEM. */
int kv_blocks_init(struct kv_blocks *b, uint32_t n);
void kv_blocks_free(struct kv_blocks *b);

/* The key of a block of tokens @toks after the block of key @parent (0: first). */
uint64_t kv_blocks_key(uint64_t parent, const int32_t *toks);

/*
 * The longest run of published blocks that @toks (@n_full blocks of
 * tokens) starts with: referenced, into @table, their keys into @keys.
 * Returns how many.
 */
uint32_t kv_blocks_match(struct kv_blocks *b, const int32_t *toks, uint32_t n_full,
			 uint32_t *table, uint64_t *keys);

/* Reserve @n blocks for a sequence; false when fewer are left. */
bool kv_blocks_reserve(struct kv_blocks *b, uint32_t n);
/* Return @n reserved blocks unused. */
void kv_blocks_unreserve(struct kv_blocks *b, uint32_t n);

/* A reserved block, referenced once, its contents to be written. */
uint32_t kv_blocks_take(struct kv_blocks *b);

/* Publish full block @i, of tokens @toks after the block of key @parent. */
void kv_blocks_publish(struct kv_blocks *b, uint32_t i, uint64_t parent, const int32_t *toks);

/* Drop a reference to block @i. */
void kv_blocks_release(struct kv_blocks *b, uint32_t i);

/* Blocks neither referenced nor reserved. */
static inline uint32_t kv_blocks_available(const struct kv_blocks *b)
{
	return b->n_idle - b->reserved;
}

#endif
