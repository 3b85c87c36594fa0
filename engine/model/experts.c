// SPDX-License-Identifier: MIT
/*
 * The expert cache of a mixture-of-experts model that does not fit: every
 * layer's attention, norms and router are resident; its experts live in
 * slots after the resident part of the region, each slot one expert's
 * three matrices (gate, up, down: three spans of whole pages of the file,
 * O_DIRECT). A layer's router says which experts it needs before they are
 * used: the missing ones are read in one submission of the runtime's
 * loader (io_uring, or pinfer.ko's uring_cmd) and waited for together;
 * the next layer's likely experts (the forward pass guesses them from the
 * current hidden state through the next router) are read ahead while this
 * layer computes. A slot holding an acquired expert or a read in flight is
 * never given up; among the others the policy picks: least recently used,
 * or least often (ties: least recently).
 *
 * An expert read into a slot is used in the file's layout, as a streamed
 * layer is, until a batch large enough to repay the pass over its memory
 * (GEMM_MIN tokens) uses it: then it is packed for the GEMM as resident ones
 * are when loaded. Either layout gives the same bits (the kernels keep one
 * order of operations), so the results are the resident run's whatever the
 * cache's size.
 */
#include "placement.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "format/gguf.h"
#include "tensor.h"

enum slot_state { SLOT_EMPTY, SLOT_LOADING, SLOT_READY };

#define XGROUP 8	/* experts read per ticket: one layer's misses in a few */

struct xslot {
	int32_t layer, expert;	/* what it holds (-1: nothing) */
	enum slot_state state;
	int ticket;		/* SLOT_LOADING: its reads */
	bool packed;		/* rearranged for the GEMM since read */
	bool prefetched;	/* read ahead and not used yet */
	uint64_t pin;		/* == the cache's acquire stamp: in use */
	uint64_t last, uses;	/* for the policy */
};

struct llm_experts {
	const struct llm_model *model;
	struct pinfer_loader *loader;
	uint8_t *base;		/* the region */
	uint64_t off;		/* the first slot's region offset */
	uint64_t slot_bytes, span[3];	/* a slot; the room of each matrix in it */
	uint32_t n_slots;
	struct xslot *slots;
	int32_t *where;		/* [layer * n_expert + e]: its slot, or -1 */
	uint8_t *guess;		/* [n_expert]: the read-ahead's guess for guess_layer */
	int32_t guess_layer;
	int32_t *acq_slot;	/* [n_expert]: the last acquire's experts' slots, */
	uint32_t *acq_id;	/* their numbers */
	uint32_t acq_layer;
	size_t acq_n;
	enum llm_expert_policy policy;
	uint64_t clock, stamp;	/* uses; the current acquire */
	double busy_since;	/* reads in flight since (0: none) */
	struct pinfer_err error;
	struct llm_expert_stats stats;
};

static uint64_t page_down(uint64_t x) { return x / LLM_PAGE * LLM_PAGE; }
static uint64_t page_up(uint64_t x) { return (x + LLM_PAGE - 1) / LLM_PAGE * LLM_PAGE; }

static const struct llm_tensor *mat_of(const struct llm_layer *ly, int k)
{
	return k == 0 ? &ly->gate_exps : k == 1 ? &ly->up_exps : &ly->down_exps;
}

/* Expert @e's three matrices as views: into @slot when given, else resident. */
static void views(const struct llm_experts *x, const struct llm_layer *ly, uint32_t e,
		  const struct xslot *slot, uint8_t *at, struct llm_expert_mats *out)
{
	struct llm_tensor *v[3] = { &out->gate, &out->up, &out->down };
	int k;

	for (k = 0; k < 3; k++) {
		llm_tensor_mat(mat_of(ly, k), e, v[k]);
		if (slot) {
			v[k]->data = at + (v[k]->file_off - page_down(v[k]->file_off));
			v[k]->packed = slot->packed;
			at += x->span[k];
		}
	}
}

int llm_experts_start(struct llm_model *m, const struct llm_layout *lay,
		      struct pinfer_loader *l, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	struct llm_experts *x = calloc(1, sizeof(*x));
	size_t i, cells = (size_t)c->n_layer * c->n_expert;
	int k;

	if (!x || !(x->slots = calloc(m->plan.expert_slots, sizeof(*x->slots))) ||
	    !(x->where = malloc(cells * sizeof(*x->where))) ||
	    !(x->guess = calloc(c->n_expert, 1)) ||
	    !(x->acq_slot = calloc(c->n_expert, sizeof(*x->acq_slot))) ||
	    !(x->acq_id = calloc(c->n_expert, sizeof(*x->acq_id)))) {
		if (x) {
			free(x->slots);
			free(x->where);
			free(x->guess);
			free(x->acq_slot);
		}
		free(x);
		pinfer_loader_free(l);
		return pinfer_fail(err, ENOMEM, "expert cache: out of memory");
	}
	x->model = m;
	x->loader = l;
	x->base = pinfer_region_ptr(m->region);
	x->off = lay->resident;
	x->n_slots = m->plan.expert_slots;
	x->slot_bytes = m->plan.expert_slot;
	x->policy = m->plan.expert_policy;
	x->guess_layer = -1;
	for (k = 0; k < 3; k++)
		x->span[k] = m->plan.expert_span[k];
	for (i = 0; i < cells; i++)
		x->where[i] = -1;
	for (i = 0; i < x->n_slots; i++)
		x->slots[i] = (struct xslot){ .layer = -1, .expert = -1 };
	m->experts = x;
	return 0;
}

void llm_experts_free(struct llm_experts *x)
{
	if (!x)
		return;
	pinfer_loader_free(x->loader);	/* waits for reads in flight */
	free(x->slots);
	free(x->where);
	free(x->guess);
	free(x->acq_slot);
	free(x->acq_id);
	free(x);
}

void llm_model_expert_stats(const struct llm_model *m, struct llm_expert_stats *st)
{
	if (m->experts)
		*st = m->experts->stats;
	else
		memset(st, 0, sizeof(*st));
}

/* The slot to give up for a new expert, or -1 when every one is pinned or busy. */
static int32_t victim(struct llm_experts *x)
{
	int32_t best = -1;
	uint32_t i;

	for (i = 0; i < x->n_slots; i++) {
		const struct xslot *s = &x->slots[i], *b;

		if (s->state == SLOT_EMPTY)
			return (int32_t)i;
		if (s->state == SLOT_LOADING || s->pin == x->stamp)
			continue;
		if (best < 0) {
			best = (int32_t)i;
			continue;
		}
		b = &x->slots[best];
		if (x->policy == LLM_EXPERTS_LFU && s->uses != b->uses ? s->uses < b->uses :
		    s->last < b->last)
			best = (int32_t)i;
	}
	return best;
}

/* Keep the first read error, naming the expert and where its data is in the file. */
static void failed(struct llm_experts *x, uint32_t layer, uint32_t e, const struct pinfer_err *why)
{
	struct llm_tensor v;

	if (x->error.code)
		return;
	llm_tensor_mat(&x->model->layers[layer].gate_exps, e, &v);
	pinfer_fail(&x->error, why->code, "reading expert %" PRIu32 " of layer %" PRIu32 " (blk.%" PRIu32 ".ffn_{gate,up,down}_exps.weight, file offset %" PRIu64 "): %s",
		    e, layer, layer, v.file_off, why->msg);
}

/* Slot @s holds nothing again (its reads failed, or were never sent). */
static void forget(struct llm_experts *x, struct xslot *s)
{
	x->where[(size_t)s->layer * x->model->cfg.n_expert + (uint32_t)s->expert] = -1;
	*s = (struct xslot){ .layer = -1, .expert = -1 };
}

static int wait_slot(struct llm_experts *x, int32_t i);

/*
 * Put expert @e of @layer into a slot no acquired expert holds (when only
 * reads ahead are left, after waiting for one: @wait) and add its three
 * spans to @rg (room for 3 more); the slot, or -1 when there is none.
 */
static int32_t place(struct llm_experts *x, uint32_t layer, uint32_t e, struct pinfer_range *rg,
		     size_t *n_rg, bool wait)
{
	const struct llm_model *m = x->model;
	const struct llm_layer *ly = &m->layers[layer];
	uint64_t at, end = m->gguf->file_size;
	int32_t i = victim(x);
	struct xslot *s;
	uint32_t j;
	int k;

	for (j = 0; i < 0 && wait && j < x->n_slots; j++)
		if (x->slots[j].state == SLOT_LOADING && x->slots[j].pin != x->stamp &&
		    x->slots[j].ticket) {
			if (wait_slot(x, (int32_t)j))
				return -1;
			i = victim(x);
		}
	if (i < 0)
		return -1;
	s = &x->slots[i];
	if (s->layer >= 0)
		x->where[(size_t)s->layer * m->cfg.n_expert + (uint32_t)s->expert] = -1;
	*s = (struct xslot){ .layer = (int32_t)layer, .expert = (int32_t)e, .state = SLOT_LOADING };
	x->where[(size_t)layer * m->cfg.n_expert + e] = i;
	at = x->off + (uint64_t)i * x->slot_bytes;
	for (k = 0; k < 3; k++) {
		struct llm_tensor v;
		uint64_t a, b;

		llm_tensor_mat(mat_of(ly, k), e, &v);
		a = page_down(v.file_off);
		b = page_up(v.file_off + v.bytes);
		rg[(*n_rg)++] = (struct pinfer_range){
			.file_off = a, .region_off = at, .len = (b < end ? b : end) - a,
		};
		x->stats.bytes += v.bytes;
		at += x->span[k];
	}
	return i;
}

/* Submit @n ranges for the slots that hold @ticket's experts; 0 or an error. */
static int submit(struct llm_experts *x, const struct pinfer_range *rg, size_t n,
		  const int32_t *slots, size_t n_slots)
{
	struct pinfer_err e = { 0 };
	int ticket;
	size_t i;

	if (!n)
		return 0;
	ticket = pinfer_load_submit(x->loader, rg, n, &e);
	if (ticket < 0) {
		for (i = 0; i < n_slots; i++) {
			struct xslot *s = &x->slots[slots[i]];

			failed(x, (uint32_t)s->layer, (uint32_t)s->expert, &e);
			forget(x, s);
		}
		return x->error.code;
	}
	for (i = 0; i < n_slots; i++)
		x->slots[slots[i]].ticket = ticket;
	if (!x->busy_since)
		x->busy_since = mono_now();
	return 0;
}

/*
 * @ticket is done (@ret: 0, or its error @e): its slots are ready (or
 * empty again); the time with reads in flight ends when none is left.
 */
static void finish(struct llm_experts *x, int ticket, int ret, const struct pinfer_err *e)
{
	bool more = false;
	uint32_t j;

	for (j = 0; j < x->n_slots; j++) {
		struct xslot *o = &x->slots[j];

		if (o->state != SLOT_LOADING)
			continue;
		if (o->ticket != ticket) {
			more = true;
			continue;
		}
		if (ret) {
			failed(x, (uint32_t)o->layer, (uint32_t)o->expert, e);
			forget(x, o);
			continue;
		}
		o->state = SLOT_READY;
		o->ticket = 0;
	}
	if (!more && x->busy_since) {
		x->stats.read_s += mono_now() - x->busy_since;
		x->busy_since = 0;
	}
}

/* Wait for slot @i's reads (and so every slot of the same ticket). */
static int wait_slot(struct llm_experts *x, int32_t i)
{
	struct pinfer_err e = { 0 };
	int ticket = x->slots[i].ticket, ret;
	double t0 = mono_now();

	ret = pinfer_load_wait(x->loader, ticket, &e);
	x->stats.wait_s += mono_now() - t0;
	finish(x, ticket, ret, &e);
	return ret ? x->error.code : 0;
}

/*
 * Collect the reads that are done, without blocking: their slots become
 * ready (and can be given up), their tickets are closed.
 */
static void reap(struct llm_experts *x)
{
	uint32_t j;

	pinfer_load_pump(x->loader);
	for (j = 0; j < x->n_slots; j++) {
		struct xslot *o = &x->slots[j];
		struct pinfer_err e = { 0 };
		int ret;

		if (o->state != SLOT_LOADING || !o->ticket)
			continue;
		ret = pinfer_load_poll(x->loader, o->ticket, &e);
		if (ret)
			finish(x, o->ticket, ret < 0 ? ret : 0, &e);
	}
}

int llm_experts_acquire(const struct llm_model *m, uint32_t layer, const uint32_t *ids,
			size_t n, struct llm_expert_mats *out, struct pinfer_err *err)
{
	struct llm_experts *x = m->experts;
	const struct llm_layer *ly = &m->layers[layer];
	const uint32_t E = m->cfg.n_expert;
	struct pinfer_range *rg;
	int32_t *slot, *fresh;
	size_t i, n_rg = 0, n_fresh = 0;
	int ret = 0;

	if (!x) {
		for (i = 0; i < n; i++)
			views(NULL, ly, ids[i], NULL, NULL, &out[i]);
		return 0;
	}
	if (x->error.code)
		goto failed;
	rg = malloc(3 * n * sizeof(*rg));
	slot = malloc(n * sizeof(*slot));
	fresh = calloc(n, sizeof(*fresh));
	if (!rg || !slot || !fresh) {
		free(rg);
		free(slot);
		free(fresh);
		return pinfer_fail(err, ENOMEM, "expert cache: out of memory");
	}
	reap(x);
	x->stamp++;
	for (i = 0; i < n; i++) {	/* pin what is there, so that misses do not evict it */
		slot[i] = x->where[(size_t)layer * E + ids[i]];
		if (x->guess_layer == (int32_t)layer) {
			x->stats.predicted++;
			x->stats.predicted_right += x->guess[ids[i]];
		}
		if (slot[i] < 0) {
			x->stats.misses++;
			continue;
		}
		x->slots[slot[i]].pin = x->stamp;
		if (x->slots[slot[i]].prefetched) {	/* there because it was guessed */
			x->slots[slot[i]].prefetched = false;
			x->stats.prefetch_used++;
		} else {
			x->stats.hits++;
		}
	}
	for (i = 0; i < n; i++) {
		if (slot[i] >= 0)
			continue;
		slot[i] = place(x, layer, ids[i], rg, &n_rg, true);
		if (slot[i] < 0) {
			size_t j;

			for (j = 0; j < n_fresh; j++)	/* placed, never submitted */
				forget(x, &x->slots[fresh[j]]);
			if (!x->error.code)
				ret = pinfer_fail(err, ENOSPC, "expert cache: %" PRIu32 " slots cannot hold layer %" PRIu32 "'s %zu experts at once",
						  x->n_slots, layer, n);
			else
				ret = x->error.code;
			break;
		}
		x->slots[slot[i]].pin = x->stamp;
		fresh[n_fresh++] = slot[i];
	}
	/* in groups, so that the first experts can be used while later ones arrive */
	for (i = 0; i < n_fresh && !ret; i += XGROUP)
		ret = submit(x, rg + 3 * i, 3 * (n_fresh - i < XGROUP ? n_fresh - i : XGROUP),
			     fresh + i, n_fresh - i < XGROUP ? n_fresh - i : XGROUP);
	for (i = 0; i < n && !ret; i++) {
		x->acq_slot[i] = slot[i];
		x->acq_id[i] = ids[i];
		views(x, ly, ids[i], &x->slots[slot[i]],
		      x->base + x->off + (uint64_t)slot[i] * x->slot_bytes, &out[i]);
	}
	x->acq_layer = layer;
	x->acq_n = ret ? 0 : n;
	free(rg);
	free(slot);
	free(fresh);
	if (ret && x->error.code)
		goto failed;
	return ret;
failed:
	if (err)
		*err = x->error;
	return x->error.code;
}

int llm_experts_ready(const struct llm_model *m, size_t i, struct llm_expert_mats *out, bool pack,
		      struct pinfer_pool *pool, struct pinfer_err *err)
{
	struct llm_experts *x = m->experts;
	struct xslot *s;
	int ret = 0;

	if (!x)
		return 0;
	if (x->error.code || i >= x->acq_n)
		goto failed;
	s = &x->slots[x->acq_slot[i]];
	if (s->state == SLOT_LOADING && (ret = wait_slot(x, x->acq_slot[i])))
		goto failed;
	s->last = ++x->clock;
	s->uses++;
	if (pack && !s->packed) {
		if (llm_tensor_pack(&out->gate, pool) || llm_tensor_pack(&out->up, pool) ||
		    llm_tensor_pack(&out->down, pool))
			return pinfer_fail(err, ENOMEM, "expert cache: out of memory packing");
		s->packed = true;
	}
	views(x, &m->layers[x->acq_layer], x->acq_id[i], s,
	      x->base + x->off + (uint64_t)x->acq_slot[i] * x->slot_bytes, out);
	return 0;
failed:
	if (!x->error.code)
		return pinfer_fail(err, EINVAL, "expert cache: expert %zu was not acquired", i);
	if (err)
		*err = x->error;
	return x->error.code;
}

void llm_experts_release(const struct llm_model *m, uint32_t layer)
{
	(void)layer;
	if (m->experts)
		m->experts->stamp++;	/* nothing is pinned now */
}

void llm_experts_prefetch(const struct llm_model *m, uint32_t layer, const uint32_t *ids,
			  size_t n)
{
	struct llm_experts *x = m->experts;
	struct pinfer_range rg[3 * 64];
	int32_t fresh[64];
	size_t i, n_rg = 0, n_fresh = 0;

	if (!x || x->error.code || layer >= m->cfg.n_layer)
		return;
	reap(x);
	memset(x->guess, 0, m->cfg.n_expert);
	x->guess_layer = (int32_t)layer;
	for (i = 0; i < n; i++) {
		int32_t s;

		x->guess[ids[i]] = 1;
		if (x->where[(size_t)layer * m->cfg.n_expert + ids[i]] >= 0 || n_fresh == 64)
			continue;
		s = place(x, layer, ids[i], rg, &n_rg, false);
		if (s < 0)
			break;	/* every slot is in use or being read */
		x->slots[s].prefetched = true;
		fresh[n_fresh++] = s;
		x->stats.prefetched++;
	}
	submit(x, rg, n_rg, fresh, n_fresh);
	pinfer_load_pump(x->loader);
}

uint32_t llm_experts_capacity(const struct llm_model *m)
{
	return m->experts ? m->experts->n_slots : m->cfg.n_expert;
}
