/* SPDX-License-Identifier: MIT */
/*
 * GPU layers (-ngl N): the last N layers of a model, and its output layer,
 * run on an NVIDIA GPU through the CUDA backend (engine/cuda/cuda_api.h),
 * a shared library opened only when a run asks for them. The CPU runs the
 * first layers, hands the residual stream over once per call, and gets
 * it back (or the logits, when the output layer is there too).
 *
 * The placement is planned without the library (what goes where, and the
 * device bytes it takes), so `--plan` and the tests work on any machine.
 */
#ifndef PINFER_MODEL_GPU_H
#define PINFER_MODEL_GPU_H

#include "model.h"

struct llm_gpu;
struct llm_layout;
struct pinfer_loader;
struct llm_session;
struct pcu_device;

/*
 * The GPU part of @p (the host's plan, whose layout is @lay) for @o's
 * gpu_layers layers of @m (p->n_ctx set), its KV cache for gpu_seqs
 * sequences, within gpu_mem bytes of device memory (0: no limit known;
 * loading plans again within the device's, llm_gpu_open()): gpu_layers,
 * gpu_output, how many stream, which are read from the drive once, the
 * device bytes, and the host's streamed bytes and ring without those
 * (ring: at most as many slots as layers it still streams); an error
 * naming the tensor when a type has no GPU kernel, when the model's
 * layout cannot go there yet, or when not even the ring fits.
 */
int llm_gpu_plan(struct llm_plan *p, const struct llm_model *m, const struct llm_layout *lay,
		 const struct llm_load_opts *o, struct pinfer_err *err);

/*
 * The CUDA backend's device, or an error saying why there is none (no
 * library, no driver, no device).
 */
int llm_gpu_probe(struct pcu_device *dev, struct pinfer_err *err);

/*
 * Open the backend and its device for @m's planned GPU layers (m->gpu):
 * *@limit is the device memory a plan may use, its free memory less 5%.
 * Loading then plans again within it, before the region is made.
 */
int llm_gpu_open(struct llm_model *m, uint64_t *limit, struct pinfer_err *err);

/*
 * Upload the planned layers of @m (loaded, not yet packed for the CPU) to
 * the GPU llm_gpu_open() opened; those read from the drive once (gpu_once)
 * through @l into the host ring's first slot (@lay: the plan's layout),
 * before the stream starts, reporting their bytes to @progress (or NULL)
 * with @arg.
 */
int llm_gpu_start(struct llm_model *m, const struct llm_layout *lay, struct pinfer_loader *l,
		  pinfer_progress_fn progress, void *arg, struct pinfer_err *err);
void llm_gpu_free(struct llm_gpu *g);

/* The name of the GPU @m's layers run on (loaded with GPU layers). */
const char *llm_gpu_name(const struct llm_model *m);

/* True for the layers the GPU runs (their weights are not packed for the CPU). */
bool llm_gpu_layer(const struct llm_model *m, uint32_t l);

/*
 * The session's KV cache and buffers on the GPU: @n_blocks blocks of
 * s->kv_block positions, as its cache on the CPU (its own: one block).
 */
int llm_gpu_session(struct llm_session *s, uint32_t n_blocks, struct pinfer_err *err);
void llm_gpu_session_free(struct llm_session *s);

/* The GPU's layers over the call's @n tokens (s->x, s->tpos, s->ttab, s->rope_cs). */
int llm_gpu_layers(struct llm_session *s, size_t n, struct pinfer_err *err);

/* The output layer of @k rows @x ([k][n_embd]) into @logits, on the GPU. */
int llm_gpu_logits(struct llm_session *s, const float *x, size_t k, float *logits,
		   struct pinfer_err *err);

#endif
