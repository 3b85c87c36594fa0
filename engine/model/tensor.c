// SPDX-License-Identifier: MIT
/* A model's tensors as a list; rows as floats; packing for the GEMM. */
#include "tensor.h"

#include <errno.h>
#include <stdlib.h>

#include "format/ggml_types.h"
#include "kernels/quant.h"

size_t llm_model_tensors(struct llm_model *m, struct llm_tensor_ref *out)
{
	size_t n = 0;
	uint32_t i;

#define REF(t_, layer_) do { if ((t_)->bytes) out[n++] = (struct llm_tensor_ref){ (t_), (layer_) }; } while (0)
	REF(&m->token_embd, -1);
	REF(&m->output_norm, -1);
	REF(&m->output, -1);
	REF(&m->rope_freqs, -1);
	for (i = 0; i < m->cfg.n_layer; i++) {
		struct llm_layer *l = &m->layers[i];
		int32_t li = (int32_t)i;

		REF(&l->attn_norm, li);
		REF(&l->wq, li);
		REF(&l->wk, li);
		REF(&l->wv, li);
		REF(&l->wo, li);
		REF(&l->bq, li);
		REF(&l->bk, li);
		REF(&l->bv, li);
		REF(&l->q_norm, li);
		REF(&l->k_norm, li);
		REF(&l->ffn_norm, li);
		REF(&l->w_gate, li);
		REF(&l->w_up, li);
		REF(&l->w_down, li);
		REF(&l->gate_inp, li);
		REF(&l->gate_exps, li);
		REF(&l->up_exps, li);
		REF(&l->down_exps, li);
	}
#undef REF
	return n;
}

struct pack_task {
	struct llm_tensor *t;
	size_t groups;		/* per matrix */
	uint8_t *scratch;	/* a group's bytes per thread */
};

/* Groups [b, e) of all the matrices: group g of matrix g / groups. */
static void pack_groups(void *arg, size_t b, size_t e, int thread)
{
	const struct pack_task *p = arg;
	size_t group = PACK_ROWS * p->t->row_bytes, mat = p->t->rows * p->t->row_bytes, g;

	for (g = b; g < e; g++)
		quant_repack16(p->t->type, (uint8_t *)p->t->data + g / p->groups * mat +
			       g % p->groups * group, p->t->cols, p->scratch + (size_t)thread * group);
}

int llm_tensor_pack(struct llm_tensor *t, struct pinfer_pool *pool)
{
	struct pack_task p = { .t = t, .groups = t->rows / PACK_ROWS };
	size_t groups = p.groups * t->n_mat;

	if (t->packed || !t->data || !groups || !quant_repackable(t->type) ||
	    !quant_gemm16(t->type))
		return 0;	/* packing twice would scramble the rows */
	p.scratch = malloc((size_t)(pool ? pinfer_pool_threads(pool) : 1) * PACK_ROWS * t->row_bytes);
	if (!p.scratch)
		return -ENOMEM;
	if (pool)
		pinfer_parallel_for(pool, groups, 1, PINFER_DYNAMIC, pack_groups, &p);
	else
		pack_groups(&p, 0, groups, 0);
	free(p.scratch);
	t->packed = true;
	return 0;
}

void llm_tensor_mat(const struct llm_tensor *t, uint32_t i, struct llm_tensor *view)
{
	uint64_t bytes = t->rows * t->row_bytes;

	*view = *t;
	view->n_mat = 1;
	view->bytes = bytes;
	view->file_off = t->file_off + i * bytes;
	view->data = t->data ? (const uint8_t *)t->data + i * bytes : NULL;
}

void llm_tensor_row(const struct llm_tensor *w, size_t r, size_t i, size_t n, float *y)
{
	const struct ggml_type_info *ti = ggml_type_get(w->type);
	const uint8_t *base = w->data;
	size_t blk = i / ti->block_elems;

	if (w->packed && r < w->rows / PACK_ROWS * PACK_ROWS)	/* group, then its block column */
		dequantize_row_repacked(w->type, base + r / PACK_ROWS * PACK_ROWS * w->row_bytes +
					blk * PACK_ROWS * ti->block_bytes, r % PACK_ROWS, y, n);
	else
		dequantize_row_ref(w->type, base + r * w->row_bytes + blk * ti->block_bytes, y, n);
}
