/* SPDX-License-Identifier: MIT */
/*
 * Inside the model folder: a model's weight matrices as a list, and what
 * every user of a matrix needs of it (its rows as floats, its packing for
 * the GEMM), whether it is resident or streamed.
 */
#ifndef PINFER_MODEL_TENSOR_H
#define PINFER_MODEL_TENSOR_H

#include "model.h"

/* A tensor of a model, with the layer it belongs to (-1: none). */
struct llm_tensor_ref {
	struct llm_tensor *t;
	int32_t layer;
};

/* Room for every tensor: 4 outside the layers, 18 per layer at most. */
#define LLM_MAX_TENSORS(n_layer) (4 + 18 * (size_t)(n_layer))

/* The model's tensors that exist; @out has room for LLM_MAX_TENSORS(n_layer). */
size_t llm_model_tensors(struct llm_model *m, struct llm_tensor_ref *out);

/*
 * Interleave @t's rows for the integer GEMM in place (kernels/quant.h),
 * when this CPU has the GEMM for its type and they are not packed yet:
 * rows 0..rows/16*16 of each of its matrices, 16 at a time, over @pool
 * (or not, when NULL).
 * -ENOMEM when there is no scratch memory.
 */
int llm_tensor_pack(struct llm_tensor *t, struct pinfer_pool *pool);

/* Matrix @i of the n_mat matrices of @t (an expert's), as a tensor of its own. */
void llm_tensor_mat(const struct llm_tensor *t, uint32_t i, struct llm_tensor *view);

/*
 * Elements [i, i + n) of row @r of @w as floats, whichever layout it is in
 * (@i a multiple of the type's block).
 */
void llm_tensor_row(const struct llm_tensor *w, size_t r, size_t i, size_t n, float *y);

#endif
