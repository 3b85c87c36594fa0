/* SPDX-License-Identifier: MIT */
/*
 * Inside the model folder: the placement of a model's weights. The budget
 * (budget.c) and the plan (plan.c) decide which file spans are resident
 * where in the region; the ring (stream.c) streams the other layers.
 * Loading (model.c) uses it; the forward pass asks it for a layer's
 * weights (llm_stream_acquire/release) and knows nothing else of it. It
 * calls neither of them.
 */
#ifndef PINFER_MODEL_PLACEMENT_H
#define PINFER_MODEL_PLACEMENT_H

#include "model.h"

#define LLM_PAGE 4096ull	/* spans are read whole 4 KiB pages: O_DIRECT */
#define LLM_RING_DEFAULT 4

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
 * The memory budget when none is given: available memory less a margin (an
 * eighth, at least 256 MiB), within what the memory cgroup has left (less
 * the same margin of that), within pinfer.ko's max_pinned_mb when the
 * module is there; the free pages of the hugetlb pool for that provider.
 * @why (@n bytes) says which bound it is. *@lock: RLIMIT_MEMLOCK for a
 * process that is not root (what it can pin), UINT64_MAX if none.
 */
uint64_t llm_budget_default(enum pinfer_provider prov, uint64_t *lock, char *why, size_t n);

/*
 * Plan @m (its tensors bound, not loaded) under @o's budget, with @session
 * bytes for a session's KV cache and buffers: @p, and the layout of the
 * resident pieces. Fails when the budget is below the minimum, saying what
 * the minimum is.
 */
int llm_plan_make(struct llm_model *m, const struct llm_load_opts *o, uint64_t session,
		  struct llm_plan *p, struct llm_layout *lay, struct pinfer_err *err);
void llm_layout_free(struct llm_layout *lay);

/*
 * Bytes a pass reads of the streamed layers (llm_streams(@p)) under @p's
 * ring: their spans, or 0 when the ring holds them all.
 */
uint64_t llm_layout_streamed(const struct llm_plan *p, const struct llm_layout *lay);

/*
 * The read of layer @l's span into region offset @region_off: its pages,
 * the last cut at the end of the file of @file_size bytes (a partial page).
 */
struct pinfer_range llm_layout_read(const struct llm_layout *lay, uint64_t file_size, uint32_t l,
				    uint64_t region_off);

/*
 * Point @ly's matrices at @at, where its span from file offset @a was read;
 * with @fresh (just read), each is in the file's layout again, not packed.
 */
void llm_layer_point(struct llm_layer *ly, uint8_t *at, uint64_t a, bool fresh);

/* Point each resident tensor into the region at @base. */
int llm_layout_place(struct llm_model *m, const struct llm_layout *lay, uint8_t *base,
		     struct pinfer_err *err);

/*
 * Start streaming the layers llm_streams(&m->plan) names, in order,
 * through plan.ring slots after the resident part of the region, by @l
 * (the stream owns it from now on): the first reads go out at once.
 */
int llm_stream_start(struct llm_model *m, const struct llm_layout *lay,
		     struct pinfer_loader *l, struct pinfer_err *err);

/*
 * Report the first pass through the streamed layers to @fn (bytes of them
 * read, of all of them), from the first layer compute asks for to the last.
 */
void llm_stream_progress(struct llm_model *m, pinfer_progress_fn fn, void *arg);
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
/*
 * A pass broken off by an error (a layer's computation or the GPU's call
 * failing after the pass used some streamed layers): acquire and release
 * the rest of it, unused, so that the next pass starts at its first layer
 * as the ring expects. Nothing when no pass is under way, or after a read
 * error (kept, as above).
 */
void llm_stream_end_pass(const struct llm_model *m);
/* Keep the reads flowing (never blocks); called between operations. */
void llm_stream_pump(const struct llm_model *m);

/*
 * The expert cache (experts.c), for a plan with expert_slots: slots after
 * the resident part of the region, filled by @l (the cache owns it).
 */
int llm_experts_start(struct llm_model *m, const struct llm_layout *lay,
		      struct pinfer_loader *l, struct pinfer_err *err);
void llm_experts_free(struct llm_experts *x);

/* The three matrices of one expert. */
struct llm_expert_mats {
	struct llm_tensor gate, up, down;
};

/*
 * Experts @ids[0..n) of @layer into @out: views into the region when they
 * are resident, else into the cache's slots, the misses' reads sent at
 * once (a few experts per ticket); they stay until llm_experts_release().
 * Each is usable after llm_experts_ready(@i), which waits for its reads
 * and, with @pack, packs it for the GEMM over @pool unless it is already
 * (a batch large enough to repay it): so the first experts compute while
 * the later ones arrive. A read error is kept: every later call fails
 * with it.
 */
int llm_experts_acquire(const struct llm_model *m, uint32_t layer, const uint32_t *ids,
			size_t n, struct llm_expert_mats *out, struct pinfer_err *err);
int llm_experts_ready(const struct llm_model *m, size_t i, struct llm_expert_mats *out, bool pack,
		      struct pinfer_pool *pool, struct pinfer_err *err);
void llm_experts_release(const struct llm_model *m, uint32_t layer);
/* How many experts one acquire may ask for: the slots (every expert, resident). */
uint32_t llm_experts_capacity(const struct llm_model *m);

/*
 * Start reading experts @ids of @layer (the next layer's likely ones) into
 * slots that no acquired expert holds, without waiting; and remember them
 * as the guess that the layer's acquire scores.
 */
void llm_experts_prefetch(const struct llm_model *m, uint32_t layer, const uint32_t *ids,
			  size_t n);

#endif
