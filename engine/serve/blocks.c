// SPDX-License-Identifier: MIT
/* The paged KV cache's bookkeeping: blocks.h. */
#include "blocks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "model/model.h"

#define BLOCK LLM_KV_BLOCK

static void unlink_idle(struct kv_blocks *b, uint32_t i)
{
	if (b->prev[i] >= 0)
		b->next[b->prev[i]] = b->next[i];
	else
		b->head = b->next[i];
	if (b->next[i] >= 0)
		b->prev[b->next[i]] = b->prev[i];
	else
		b->tail = b->prev[i];
	b->n_idle--;
}

/* Block @i into the idle list: at the front (taken first) or the back. */
static void link_idle(struct kv_blocks *b, uint32_t i, bool front)
{
	if (front) {
		b->prev[i] = -1;
		b->next[i] = b->head;
		if (b->head >= 0)
			b->prev[b->head] = (int32_t)i;
		else
			b->tail = (int32_t)i;
		b->head = (int32_t)i;
	} else {
		b->next[i] = -1;
		b->prev[i] = b->tail;
		if (b->tail >= 0)
			b->next[b->tail] = (int32_t)i;
		else
			b->head = (int32_t)i;
		b->tail = (int32_t)i;
	}
	b->n_idle++;
}

int kv_blocks_init(struct kv_blocks *b, uint32_t n)
{
	uint32_t i;

	memset(b, 0, sizeof(*b));
	b->n = n;
	for (b->n_buckets = 1; b->n_buckets < n; b->n_buckets <<= 1)
		;
	b->ref = calloc(n, sizeof(*b->ref));
	b->key = calloc(n, sizeof(*b->key));
	b->toks = calloc((size_t)n * BLOCK, sizeof(*b->toks));
	b->parent = calloc(n, sizeof(*b->parent));
	b->published = calloc(n, sizeof(*b->published));
	b->chain = calloc(n, sizeof(*b->chain));
	b->bucket = malloc(b->n_buckets * sizeof(*b->bucket));
	b->prev = calloc(n, sizeof(*b->prev));
	b->next = calloc(n, sizeof(*b->next));
	if (!b->ref || !b->key || !b->toks || !b->parent || !b->published || !b->chain ||
	    !b->bucket || !b->prev || !b->next) {
		kv_blocks_free(b);
		return -ENOMEM;
	}
	memset(b->bucket, 0xff, b->n_buckets * sizeof(*b->bucket));
	b->head = b->tail = -1;
	for (i = 0; i < n; i++)
		link_idle(b, i, false);
	return 0;
}

void kv_blocks_free(struct kv_blocks *b)
{
	free(b->ref);
	free(b->key);
	free(b->toks);
	free(b->parent);
	free(b->published);
	free(b->chain);
	free(b->bucket);
	free(b->prev);
	free(b->next);
	memset(b, 0, sizeof(*b));
}

uint64_t kv_blocks_key(uint64_t parent, const int32_t *toks)
{
	uint64_t k = hash_u64(parent ^ hash_bytes(toks, BLOCK * sizeof(*toks)));

	return k ? k : 1;	/* 0 is "no block before" */
}

/* The published block of @key, tokens @toks after @parent, or -1. */
static int32_t find(const struct kv_blocks *b, uint64_t key, uint64_t parent, const int32_t *toks)
{
	int32_t i;

	for (i = b->bucket[key & (b->n_buckets - 1)]; i >= 0; i = b->chain[i])
		if (b->key[i] == key && b->parent[i] == parent &&
		    !memcmp(b->toks + (size_t)i * BLOCK, toks, BLOCK * sizeof(*toks)))
			return i;
	return -1;
}

static void unpublish(struct kv_blocks *b, uint32_t i)
{
	int32_t *p = &b->bucket[b->key[i] & (b->n_buckets - 1)];

	while (*p != (int32_t)i)
		p = &b->chain[*p];
	*p = b->chain[i];
	b->published[i] = false;
}

uint32_t kv_blocks_match(struct kv_blocks *b, const int32_t *toks, uint32_t n_full,
			 uint32_t *table, uint64_t *keys)
{
	uint64_t parent = 0;
	uint32_t k;

	for (k = 0; k < n_full; k++) {
		const int32_t *t = toks + (size_t)k * BLOCK;
		uint64_t key = kv_blocks_key(parent, t);
		int32_t i = find(b, key, parent, t);

		if (i < 0 || (!b->ref[i] && !kv_blocks_available(b)))
			break;	/* an idle block is only had when one is left unpromised */
		if (!b->ref[i]++)
			unlink_idle(b, (uint32_t)i);
		table[k] = (uint32_t)i;
		keys[k] = parent = key;
		b->hits++;
	}
	return k;
}

bool kv_blocks_reserve(struct kv_blocks *b, uint32_t n)
{
	if (kv_blocks_available(b) < n)
		return false;
	b->reserved += n;
	return true;
}

void kv_blocks_unreserve(struct kv_blocks *b, uint32_t n)
{
	b->reserved -= n;
}

uint32_t kv_blocks_take(struct kv_blocks *b)
{
	uint32_t i = (uint32_t)b->head;	/* reserved: the list is not empty */

	unlink_idle(b, i);
	if (b->published[i])
		unpublish(b, i);
	b->reserved--;
	b->ref[i] = 1;
	return i;
}

void kv_blocks_publish(struct kv_blocks *b, uint32_t i, uint64_t parent, const int32_t *toks)
{
	uint64_t key = kv_blocks_key(parent, toks);
	uint32_t h = key & (b->n_buckets - 1);

	if (b->published[i] || find(b, key, parent, toks) >= 0)
		return;	/* another sequence's block holds it already */
	b->key[i] = key;
	b->parent[i] = parent;
	memcpy(b->toks + (size_t)i * BLOCK, toks, BLOCK * sizeof(*toks));
	b->published[i] = true;
	b->chain[i] = b->bucket[h];
	b->bucket[h] = (int32_t)i;
}

void kv_blocks_release(struct kv_blocks *b, uint32_t i)
{
	if (--b->ref[i])
		return;
	link_idle(b, i, !b->published[i]);	/* published: kept as long as can be */
}
