// SPDX-License-Identifier: MIT
/*
 * The ring that streams the layers a model's plan (plan.c) leaves out of
 * memory: streamed layers are used in a fixed cyclic order, so use number
 * q (counting from the start) is layer order[q % m] in slot q % K. When use
 * q is released, the read for use q + K goes into its slot; the reads are
 * submitted as tickets of the runtime's loader (O_DIRECT or pinfer.ko
 * prefetch, 4 MiB requests, 32 in flight), kept moving by
 * llm_stream_pump() between operations, and a layer waits only for its own
 * ticket. With K == m the slots keep their layers and nothing is re-read.
 */
#include "placement.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "format/gguf.h"
#include "tensor.h"

struct llm_slot {
	int ticket;		/* reads in flight, or 0 */
	int32_t layer;		/* held or being read; -1: none */
	bool ready;
};

struct llm_stream {
	const struct llm_model *model;
	struct pinfer_loader *loader;
	uint8_t *base;		/* the region */
	uint64_t ring_off, slot_bytes;
	uint32_t *order, m, k;	/* layers order[0..m), ascending, through k slots */
	uint64_t use;		/* the next use number */
	struct pinfer_range *span;	/* [layer]: the read of its matrices (region_off 0) */
	struct llm_slot *slots;
	struct llm_stream_stats stats;
	struct pinfer_err error;	/* code 0: none */
	pinfer_progress_fn progress;	/* the first pass, until it is done */
	void *progress_arg;
	uint64_t first_done, first_total;	/* bytes of it */
};

static uint32_t slot_of(const struct llm_stream *st, uint64_t q)
{
	return (uint32_t)(q % st->k);
}

static uint32_t layer_of(const struct llm_stream *st, uint64_t q)
{
	return st->order[q % st->m];
}

/* The tensor of @layer holding file offset @off (or the next after it). */
static const char *tensor_at(const struct llm_model *m, uint32_t layer, uint64_t off,
			     char *buf, size_t n)
{
	static const char *const names[LLM_LAYER_MATS] = {
		"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
		"ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
	};
	const char *best = NULL;
	uint64_t best_off = UINT64_MAX;
	unsigned i;

	for (i = 0; i < LLM_LAYER_MATS; i++) {
		const struct llm_tensor *t = llm_layer_cmat(&m->layers[layer], i);

		if (!t->bytes)
			continue;
		if (t->file_off <= off && off < t->file_off + t->bytes) {
			best = names[i];
			break;
		}
		if (t->file_off > off && t->file_off < best_off) {
			best_off = t->file_off;
			best = names[i];
		}
	}
	snprintf(buf, n, "blk.%" PRIu32 ".%s.weight", layer, best ? best : "?");
	return buf;
}

/* Keep @e, the failure of @layer's reads, naming the tensor where it broke. */
static void stream_failed(struct llm_stream *st, uint32_t layer, const struct pinfer_err *e)
{
	char name[64];

	if (e->file_off >= 0)
		pinfer_fail(&st->error, e->code, "streaming %s (file offset %" PRId64 "): %s",
			    tensor_at(st->model, layer, (uint64_t)e->file_off, name, sizeof(name)),
			    e->file_off, e->msg);
	else
		pinfer_fail(&st->error, e->code, "streaming layer %" PRIu32 ": %s", layer, e->msg);
}

/* Send the reads of use @q's layer into its slot. */
static void submit(struct llm_stream *st, uint64_t q)
{
	struct llm_slot *s = &st->slots[slot_of(st, q)];
	uint32_t layer = layer_of(st, q);
	struct pinfer_err e = { 0 };
	struct pinfer_range rg = st->span[layer];
	int ticket;

	if (s->layer == (int32_t)layer && s->ready)
		return;		/* still there: the ring holds every layer */
	s->layer = (int32_t)layer;
	s->ready = false;
	s->ticket = 0;
	if (st->error.code)
		return;
	rg.region_off = st->ring_off + slot_of(st, q) * st->slot_bytes;
	ticket = pinfer_load_submit(st->loader, &rg, 1, &e);
	if (ticket < 0)
		stream_failed(st, layer, &e);
	else {
		s->ticket = ticket;
		st->stats.bytes += rg.len;
		st->stats.reads++;
	}
}

void llm_model_stream_stats(const struct llm_model *m, struct llm_stream_stats *st)
{
	if (m->stream)
		*st = m->stream->stats;
	else
		memset(st, 0, sizeof(*st));
}

int llm_stream_start(struct llm_model *m, const struct llm_layout *lay,
		     struct pinfer_loader *l, struct pinfer_err *err)
{
	struct llm_stream *st = calloc(1, sizeof(*st));
	uint64_t q;

	if (!st || !(st->slots = calloc(m->plan.ring, sizeof(*st->slots)))) {
		free(st);
		pinfer_loader_free(l);
		return pinfer_fail(err, ENOMEM, "stream: out of memory");
	}
	st->model = m;
	st->loader = l;
	st->base = pinfer_region_ptr(m->region);
	st->ring_off = lay->resident;
	st->slot_bytes = m->plan.slot;
	st->span = malloc(m->cfg.n_layer * sizeof(*st->span));
	st->order = malloc(m->cfg.n_layer * sizeof(*st->order));
	if (!st->span || !st->order) {
		llm_stream_free(st);
		return pinfer_fail(err, ENOMEM, "stream: out of memory");
	}
	for (q = 0; q < m->cfg.n_layer; q++) {
		st->span[q] = llm_layout_read(lay, m->gguf->file_size, (uint32_t)q, 0);
		if (llm_streams(&m->plan, (uint32_t)q))
			st->order[st->m++] = (uint32_t)q;
	}
	st->k = m->plan.ring < st->m ? m->plan.ring : st->m;	/* as planned: at most m */
	for (q = 0; q < st->k; q++)
		st->slots[q].layer = -1;
	for (q = 0; q < st->k; q++)
		submit(st, q);
	m->stream = st;
	return 0;
}

void llm_stream_progress(struct llm_model *m, pinfer_progress_fn fn, void *arg)
{
	struct llm_stream *st = m->stream;
	uint32_t i;

	st->progress = fn;
	st->progress_arg = arg;
	st->first_done = st->first_total = 0;
	for (i = 0; i < st->m; i++)
		st->first_total += st->span[st->order[i]].len;
}

/* The first pass: @layer's bytes arrived (@bytes 0: compute is about to ask for the first). */
static void first_pass(struct llm_stream *st, uint64_t bytes)
{
	if (!st->progress)
		return;
	st->first_done += bytes;
	st->progress(st->first_done, st->first_total, st->progress_arg);
	if (st->first_done >= st->first_total)
		st->progress = NULL;
}

void llm_stream_free(struct llm_stream *st)
{
	if (!st)
		return;
	pinfer_loader_free(st->loader);	/* waits for reads in flight */
	free(st->span);
	free(st->order);
	free(st->slots);
	free(st);
}

/* A layer's matrices (dense or experts): what streams; their number. */
static size_t layer_mats(struct llm_layer *ly, struct llm_tensor *mats[LLM_LAYER_MATS])
{
	size_t n = 0;
	unsigned i;

	for (i = 0; i < LLM_LAYER_MATS; i++)
		if (llm_layer_mat(ly, i)->bytes)
			mats[n++] = llm_layer_mat(ly, i);
	return n;
}

void llm_layer_point(struct llm_layer *ly, uint8_t *at, uint64_t a, bool fresh)
{
	struct llm_tensor *mats[LLM_LAYER_MATS];
	size_t i, n = layer_mats(ly, mats);

	for (i = 0; i < n; i++) {
		mats[i]->data = at + (mats[i]->file_off - a);
		if (fresh)
			mats[i]->packed = false;	/* the file's layout again */
	}
}

int llm_stream_acquire(const struct llm_model *m, uint32_t layer, struct pinfer_pool *pool,
		       bool pack, struct pinfer_err *err)
{
	struct llm_stream *st = m->stream;
	struct llm_tensor *mats[LLM_LAYER_MATS];
	struct llm_slot *s;
	bool fresh = false;
	size_t i, n;
	uint64_t q;

	if (!st || !llm_streams(&m->plan, layer))
		return 0;
	if (st->error.code) {
		if (err)
			*err = st->error;
		return st->error.code;
	}
	q = st->use;
	if (layer_of(st, q) != layer)
		return pinfer_fail(err, EPROTO, "stream: layer %" PRIu32 " used out of order (expected %" PRIu32 ")",
				   layer, layer_of(st, q));
	s = &st->slots[slot_of(st, q)];
	if (q == 0)
		first_pass(st, 0);
	if (!s->ready) {
		struct pinfer_err e = { 0 };
		double t0 = mono_now();
		int ret = pinfer_load_wait(st->loader, s->ticket, &e);

		st->stats.wait_s += mono_now() - t0;
		if (ret) {
			s->ticket = 0;
			s->layer = -1;
			stream_failed(st, layer, &e);
			if (err)
				*err = st->error;
			return st->error.code;
		}
		s->ticket = 0;
		s->ready = true;
		fresh = true;
		if (q < st->m)
			first_pass(st, st->span[layer].len);
	}
	llm_layer_point(&m->layers[layer], st->base + st->ring_off + slot_of(st, q) * st->slot_bytes,
			st->span[layer].file_off, fresh);
	n = layer_mats(&m->layers[layer], mats);
	for (i = 0; pack && i < n; i++) {
		struct llm_tensor *t = mats[i];

		if (!t->packed && llm_tensor_pack(t, pool)) {
			pinfer_fail(&st->error, ENOMEM, "streaming layer %" PRIu32 ": out of memory packing it",
				    layer);
			if (err)
				*err = st->error;
			return st->error.code;
		}
	}
	return 0;
}

void llm_stream_release(const struct llm_model *m, uint32_t layer)
{
	struct llm_stream *st = m->stream;
	struct llm_tensor *mats[LLM_LAYER_MATS];
	size_t i, n;

	if (!st || !llm_streams(&m->plan, layer))
		return;
	n = layer_mats(&m->layers[layer], mats);
	for (i = 0; i < n; i++)
		mats[i]->data = NULL;
	submit(st, st->use + st->k);
	st->use++;
}

void llm_stream_end_pass(const struct llm_model *m)
{
	struct llm_stream *st = m->stream;

	while (st && !st->error.code && st->use % st->m) {
		uint32_t layer = layer_of(st, st->use);

		if (llm_stream_acquire(m, layer, NULL, false, NULL))
			return;
		llm_stream_release(m, layer);
	}
}

void llm_stream_pump(const struct llm_model *m)
{
	if (m->stream)
		pinfer_load_pump(m->stream->loader);
}
