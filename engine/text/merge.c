// SPDX-License-Identifier: MIT
/* Merging symbols into tokens: byte-level BPE, and SentencePiece. */
#include "tokenizer_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

int ids_push(struct ids *o, int32_t id)
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
	rank = tok_merge_find(t, mg->sym[l].id, mg->sym[r].id, &id);
	if (rank != UINT32_MAX)
		heap_push(mg, (struct cand){ .prio = rank, .left = (uint32_t)l, .right = (uint32_t)r,
					     .id_l = mg->sym[l].id, .id_r = mg->sym[r].id, .id = id });
}

/*
 * BPE over one piece's bytes. A byte the vocabulary has no token for (some
 * lack a few control bytes) becomes the unknown token, or is dropped when
 * there is none, as other BPE implementations do.
 */
int tok_bpe(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
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
		ret = ids_push(o, mg.sym[k].id);
	merger_free(&mg);
	return ret;
}

static int push_bytes(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
{
	size_t k;
	int ret = 0;

	for (k = 0; k < n && !ret; k++) {
		int32_t id = t->byte_id[(uint8_t)s[k]];

		id = id >= 0 ? id : t->unk;
		if (id >= 0)
			ret = ids_push(o, id);
	}
	return ret;
}

/* Symbol @l and its next as a SentencePiece candidate, if joined they are a token. */
static void spm_cand(const struct tokenizer *t, struct merger *mg, const char *buf, int32_t l)
{
	int32_t r = l >= 0 ? mg->sym[l].next : -1, id;

	if (r < 0)
		return;
	id = tok_vocab_find(t, buf + mg->sym[l].off, mg->sym[l].len + mg->sym[r].len);
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
int tok_spm(const struct tokenizer *t, const char *s, size_t n, struct ids *o)
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
		int32_t id = tok_vocab_find(t, buf + mg.sym[k].off, mg.sym[k].len);

		ret = id >= 0 ? ids_push(o, id) : push_bytes(t, buf + mg.sym[k].off, mg.sym[k].len, o);
	}
out:
	free(buf);
	merger_free(&mg);
	return ret;
}
