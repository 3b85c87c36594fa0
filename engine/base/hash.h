/* SPDX-License-Identifier: MIT */
/*
 * Hashing and one hash index, for every table the engine looks names up in
 * (GGUF keys and tensors, a tokenizer's vocabulary and merges).
 *
 * The index maps a key to an item of the caller's array: open addressing
 * with linear probing, each slot holding an item's number + 1 (0: empty),
 * at least twice as many slots as items (2-4 slots an item). The caller
 * owns the items and says how a key compares with item i (hash_eq_fn).
 */
#ifndef PINFER_BASE_HASH_H
#define PINFER_BASE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FNV-1a, 64 bits, over @n bytes. */
static inline uint64_t hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--)
		h = (h ^ *b++) * 0x100000001b3ull;
	return h;
}

/* A 64-bit integer's bits mixed (the finalizer of MurmurHash3). */
static inline uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	return x ^ x >> 33;
}

struct hash_index {
	uint64_t mask;		/* slots - 1 */
	uint32_t *slot;		/* item + 1; 0: empty */
};

/* Does @key equal item @i of @items? */
typedef bool hash_eq_fn(const void *items, uint32_t i, const void *key);

/* Room for @n items (below 2^31); -ENOMEM. */
int hash_index_init(struct hash_index *ix, uint64_t n);
void hash_index_free(struct hash_index *ix);

/* The item whose key is @key (of hash @h), or -1. */
static inline int64_t hash_index_find(const struct hash_index *ix, uint64_t h,
				      hash_eq_fn *eq, const void *items, const void *key)
{
	for (h &= ix->mask; ix->slot[h]; h = (h + 1) & ix->mask)
		if (eq(items, ix->slot[h] - 1, key))
			return ix->slot[h] - 1;
	return -1;
}

/*
 * Index item @i under its key @key (of hash @h), unless an item with an
 * equal key is there already: then that item's number, and @i is not added;
 * -1 when it is added.
 */
static inline int64_t hash_index_add(struct hash_index *ix, uint64_t h, uint32_t i,
				     hash_eq_fn *eq, const void *items, const void *key)
{
	for (h &= ix->mask; ix->slot[h]; h = (h + 1) & ix->mask)
		if (eq(items, ix->slot[h] - 1, key))
			return ix->slot[h] - 1;
	ix->slot[h] = i + 1;
	return -1;
}

#endif
