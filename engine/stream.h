/* SPDX-License-Identifier: MIT */
/*
 * Inside the engine: the placement of a model's weights (which file spans
 * are resident where in the region) and the ring that streams the other
 * layers (stream.c), used by model.c (loading) and forward.c (compute).
 */
#ifndef PINFER_STREAM_H
#define PINFER_STREAM_H

#include "model.h"

#define LLM_PAGE 4096ull	/* spans are read whole 4 KiB pages: O_DIRECT */
#define LLM_RING_DEFAULT 4

/* Every tensor of a model, with the layer it belongs to (-1: none). */
struct llm_tref {
	struct llm_tensor *t;
	int32_t layer;
};

/* Room for every tensor: 4 outside the layers, 12 per layer at most. */
#define LLM_TREFS(n_layer) (4 + 12 * (size_t)(n_layer))

/* The model's tensors that exist; @out has room for LLM_TREFS(n_layer). */
size_t llm_model_trefs(struct llm_model *m, struct llm_tref *out);

/*
 * Interleave @t's rows for the integer GEMM in place (quant.h), when this
 * CPU has the GEMM for its type and they are not packed yet: rows
 * 0..rows/16*16, 16 at a time, over @pool (or not, when NULL). -ENOMEM
 * when there is no scratch memory.
 */
int llm_tensor_pack(struct llm_tensor *t, struct pinfer_pool *pool);

/* A file span [a, b) (whole pages) kept at region offset @roff. */
struct llm_piece {
	uint64_t a, b, roff;
};

struct llm_layout {
	struct llm_piece *pieces;
	size_t n;
	uint64_t resident;	/* bytes of the pieces; the ring follows */
	uint64_t *span_a, *span_b;	/* [layer]: the pages of its matrices */
};

/*
 * Plan @m (its tensors bound, not loaded) under @o's budget: @p, and the
 * layout of the resident pieces. Fails when the budget is below the
 * minimum, saying what the minimum is.
 */
int llm_plan_make(struct llm_model *m, const struct llm_load_opts *o,
		  struct llm_plan *p, struct llm_layout *lay, struct pinfer_err *err);
void llm_layout_free(struct llm_layout *lay);

/* Point each resident tensor into the region at @base. */
int llm_layout_place(struct llm_model *m, const struct llm_layout *lay, uint8_t *base,
		     struct pinfer_err *err);

/*
 * Start streaming layers [plan.n_resident, n_layer) through plan.ring
 * slots after the resident part of the region, by @l (the stream owns it
 * from now on): the first reads go out at once.
 */
int llm_stream_start(struct llm_model *m, const struct llm_layout *lay,
		     struct pinfer_loader *l, struct pinfer_err *err);
void llm_stream_free(struct llm_stream *st);

/*
 * Layers are used in order, 0 .. n_layer - 1, in every pass. acquire()
 * waits for the layer's reads (resident layers: returns at once), points
 * its matrices at its slot and, with @pack, packs them for the GEMM over
 * @pool unless they are already (a batch large enough to repay the pass
 * over memory; unpacked ones give the same results); release() hands the slot to the layer ring
 * slots ahead. A read error is kept: every later acquire() fails with it.
 */
int llm_stream_acquire(const struct llm_model *m, uint32_t layer,
		       struct pinfer_pool *pool, bool pack, struct pinfer_err *err);
void llm_stream_release(const struct llm_model *m, uint32_t layer);
/* Keep the reads flowing (never blocks); called between operations. */
void llm_stream_pump(const struct llm_model *m);

#endif
