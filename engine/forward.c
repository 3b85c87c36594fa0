// SPDX-License-Identifier: MIT
/*
 * The forward pass of one token, llama2.c style: embed, then per layer
 * attention (RMSNorm, Q/K/V, RoPE, KV cache, softmax over the past, output
 * projection, residual) and SwiGLU feed-forward (RMSNorm, gate and up,
 * SiLU, down, residual), then the final norm and the logits. Matrix-vector
 * products quantize the input once to the weights' 8-bit activation type
 * and split the rows over the thread pool.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "model.h"
#include "quant.h"
#include "stream.h"

#define LLM_BATCH 256	/* tokens evaluated together, at most */
#define GEMM_MIN 32	/* batches at least this large: sgemm on dequantized tiles,
			   and streamed layers packed for the integer GEMM */
#define GEMM_ROWS 32	/* weight rows dequantized at a time, per thread */
#define ATTN_BLOCK 32	/* tokens per item of a batch's attention GEMMs */

/*
 * Scratch buffers hold LLM_BATCH tokens each, token b at b * (its width):
 * a batch reads each weight row once for all its tokens. The residual
 * stream and the RoPE angles hold every token of an llm_eval_batch() call,
 * which runs layer by layer over all of them: each layer is used (and,
 * when it streams, read) once per call.
 */
struct llm_session {
	const struct llm_model *m;
	struct pinfer_pool *pool;
	uint32_t n_ctx, pos;
	bool exact;		/* float activations: the reference mode */
	size_t kv_dim, qd, maxd;
	enum llm_kv_type kv_type;
	size_t kv_row;		/* bytes of one position's K (or V) of one layer */
	uint8_t *kcache, *vcache;	/* [layer][pos][kv_row bytes] */
	float *x;	/* [n][n_embd] the residual stream of the call's tokens */
	float *xb;	/* [b][n_embd] normed input of a block */
	float *q;	/* [b][qd] */
	float *k, *v;	/* [b][kv_dim] */
	float *att;	/* (n_head * n_ctx) attention weights of one token */
	float *out;	/* [b][qd] attention output */
	float *hb, *hb2;	/* [b][n_ff] feed-forward hidden */
	float *tmp;	/* [b][maxd] a projection's output */
	float *logits;	/* (n_vocab) */
	float *rope_cs;	/* [n][n_rot/2][cos, sin] of the call's positions */
	size_t n_cap;	/* tokens x and rope_cs have room for */
	uint8_t *act;	/* [b][maxd * 4 bytes] quantized matmul inputs */
	float *side;	/* [b][maxd / 32][2] their blocks' floats for the GEMM */
	float *tiles;	/* [thread][GEMM_ROWS][maxd] dequantized weight rows */
	float *kf, *vf;	/* [n_ctx][kv_dim] one layer's cache as floats (batches) */
	float *scores;	/* [thread][ATTN_BLOCK][n_ctx] a batch's attention scores */
};

int llm_session_create(struct llm_session **out, const struct llm_model *m,
		       uint32_t n_ctx, struct pinfer_pool *pool,
		       struct pinfer_err *err)
{
	return llm_session_create_kv(out, m, n_ctx, LLM_KV_F16, pool, err);
}

int llm_session_create_kv(struct llm_session **out, const struct llm_model *m,
			  uint32_t n_ctx, enum llm_kv_type kv, struct pinfer_pool *pool,
			  struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	struct llm_session *s;
	const size_t B = LLM_BATCH;

	*out = NULL;
	if (!n_ctx || n_ctx > c->ctx_train)
		n_ctx = c->ctx_train;
	if (kv == LLM_KV_Q8_0 && c->head_dim % QK)
		return pinfer_fail(err, EINVAL, "a Q8_0 KV cache needs heads of a multiple of %d dimensions, not %" PRIu32,
				   QK, c->head_dim);
	s = calloc(1, sizeof(*s));
	if (!s)
		return pinfer_fail(err, ENOMEM, "session: out of memory");
	s->m = m;
	s->pool = pool;
	s->n_ctx = n_ctx;
	s->kv_dim = (size_t)c->n_head_kv * c->head_dim;
	s->qd = (size_t)c->n_head * c->head_dim;
	s->maxd = c->n_ff > c->n_embd ? c->n_ff : c->n_embd;
	s->maxd = s->maxd > s->qd ? s->maxd : s->qd;
	s->kv_type = kv;
	s->kv_row = kv == LLM_KV_Q8_0 ? s->kv_dim / QK * sizeof(struct block_q8_0) :
		    s->kv_dim * sizeof(fp16_t);
	s->kcache = calloc((size_t)c->n_layer * n_ctx, s->kv_row);
	s->vcache = calloc((size_t)c->n_layer * n_ctx, s->kv_row);
	s->n_cap = B;
	s->x = calloc(B * c->n_embd, 4);
	s->xb = calloc(B * c->n_embd, 4);
	s->q = calloc(B * s->qd, 4);
	s->k = calloc(B * s->kv_dim, 4);
	s->v = calloc(B * s->kv_dim, 4);
	/* a row per head (one token), then a row per thread (batches) */
	s->att = calloc(((size_t)c->n_head + (pool ? pinfer_pool_threads(pool) : 1)) * n_ctx, 4);
	s->out = calloc(B * s->qd, 4);
	s->hb = calloc(B * c->n_ff, 4);
	s->hb2 = calloc(B * c->n_ff, 4);
	s->tmp = calloc(B * s->maxd, 4);
	s->logits = calloc(c->n_vocab, 4);
	s->rope_cs = calloc(B * c->n_rot, 4);
	s->act = calloc(B * s->maxd, 4);	/* 4 bytes/element >= any 8-bit type */
	s->side = calloc(B * (s->maxd / QK + 1), 2 * sizeof(float));
	s->tiles = malloc((size_t)(pool ? pinfer_pool_threads(pool) : 1) * GEMM_ROWS *
			  s->maxd * sizeof(float));
	s->kf = malloc((size_t)n_ctx * s->kv_dim * sizeof(float));	/* touched as used */
	s->vf = malloc((size_t)n_ctx * s->kv_dim * sizeof(float));
	s->scores = malloc((size_t)(pool ? pinfer_pool_threads(pool) : 1) * ATTN_BLOCK *
			   n_ctx * sizeof(float));
	if (!s->kcache || !s->vcache || !s->x || !s->xb || !s->q || !s->k ||
	    !s->v || !s->att || !s->out || !s->hb || !s->hb2 || !s->tmp ||
	    !s->logits || !s->rope_cs || !s->act || !s->side || !s->tiles || !s->kf || !s->vf ||
	    !s->scores) {
		llm_session_free(s);
		return pinfer_fail(err, ENOMEM, "session: out of memory for a context of %" PRIu32,
				   n_ctx);
	}
	*out = s;
	return 0;
}

uint64_t llm_session_bytes(const struct llm_config *c, uint32_t n_ctx, uint32_t threads)
{
	uint64_t kvd = (uint64_t)c->n_head_kv * c->head_dim, qd = (uint64_t)c->n_head * c->head_dim;
	uint64_t maxd = c->n_ff > c->n_embd ? c->n_ff : c->n_embd;

	uint64_t n_cap = n_ctx > LLM_BATCH ? n_ctx : LLM_BATCH;	/* x, rope_cs */

	maxd = maxd > qd ? maxd : qd;
	return 2 * (uint64_t)c->n_layer * n_ctx * kvd * sizeof(fp16_t) +	/* KV */
	       n_cap * (c->n_embd + c->n_rot) * 4 +
	       32 * 4096 +	/* the allocator's rounding of its 20-odd blocks */
	       4 * (LLM_BATCH * (c->n_embd + 2 * qd + 2 * kvd + 2 * (uint64_t)c->n_ff + 2 * maxd +
				2 * (maxd / QK + 1)) +
		    (uint64_t)(threads ? threads : 1) *	/* tiles, att, scores */
			    (GEMM_ROWS * maxd + (1 + ATTN_BLOCK) * (uint64_t)n_ctx) +
		    2 * (uint64_t)n_ctx * kvd +
		    (uint64_t)c->n_head * n_ctx + c->n_vocab);
}

void llm_session_free(struct llm_session *s)
{
	if (!s)
		return;
	free(s->kcache);
	free(s->vcache);
	free(s->x);
	free(s->xb);
	free(s->q);
	free(s->k);
	free(s->v);
	free(s->att);
	free(s->out);
	free(s->hb);
	free(s->hb2);
	free(s->tmp);
	free(s->logits);
	free(s->rope_cs);
	free(s->act);
	free(s->side);
	free(s->tiles);
	free(s->kf);
	free(s->vf);
	free(s->scores);
	free(s);
}

void llm_session_set_exact(struct llm_session *s, bool exact)
{
	s->exact = exact;
}

uint32_t llm_session_pos(const struct llm_session *s)
{
	return s->pos;
}

void llm_session_reset(struct llm_session *s)
{
	s->pos = 0;
}

uint32_t llm_session_ctx(const struct llm_session *s)
{
	return s->n_ctx;
}

/* ---- the operations --------------------------------------------------------- */

static void rmsnorm(float *o, const float *x, const float *w, size_t n, float eps)
{
	double ss = 0;
	float scale;
	size_t i;

	for (i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	scale = 1.0f / sqrtf((float)(ss / n) + eps);
	for (i = 0; i < n; i++)
		o[i] = x[i] * scale * w[i];
}

struct matmul_task {
	const struct llm_tensor *w;
	const uint8_t *act;	/* nb inputs, act_stride bytes apart */
	const float *side;	/* their blocks' floats, side_stride apart (GEMM) */
	const float *in;	/* the float inputs (reference mode) */
	size_t act_stride, side_stride, nb;
	float *out;		/* [b][rows] */
	vec_dot_fn dot;		/* NULL: the reference mode */
	gemm16_fn gemm;		/* the packed rows' GEMM */
};

/*
 * Elements [i, i + n) of row @r of @w as floats, whichever layout it is in
 * (@i a multiple of the type's block).
 */
static void tensor_row(const struct llm_tensor *w, size_t r, size_t i, size_t n, float *y)
{
	const struct ggml_type_info *ti = ggml_type_get(w->type);
	const uint8_t *base = w->data;
	size_t blk = i / ti->block_elems;

	if (w->packed && r < w->rows / QR * QR)	/* group, then its block column */
		dequantize_row_repacked(w->type, base + r / QR * QR * w->row_bytes +
					blk * QR * ti->block_bytes, r % QR, y, n);
	else
		dequantize_row_ref(w->type, base + r * w->row_bytes + blk * ti->block_bytes, y, n);
}

/* Σ dequant(row r) · x, in double: the reference mode's dot product. */
static float dot_exact(const struct llm_tensor *w, size_t r, const float *x)
{
	float y[256];
	double sum = 0;
	size_t i, j, blk = ggml_type_get(w->type)->block_elems;
	size_t step = blk > 256 ? blk : 256 / blk * blk;

	for (i = 0; i < w->cols; i += step) {
		size_t n = w->cols - i < step ? w->cols - i : step;

		tensor_row(w, r, i, n, y);
		for (j = 0; j < n; j++)
			sum += (double)y[j] * x[i + j];
	}
	return (float)sum;
}

/* Rows [b, e) of the weights (in the file's layout) times every input of the batch. */
static void matmul_rows(void *arg, size_t b, size_t e, int thread)
{
	const struct matmul_task *t = arg;
	const uint8_t *row = (const uint8_t *)t->w->data + b * t->w->row_bytes;
	size_t r, k;

	(void)thread;
	for (r = b; r < e; r++, row += t->w->row_bytes)
		for (k = 0; k < t->nb; k++)
			t->out[k * t->w->rows + r] = t->dot ?
				t->dot(t->w->cols, row, t->act + k * t->act_stride) :
				dot_exact(t->w, r, t->in + k * t->w->cols);
}

/*
 * Groups [b, e) of a packed matrix's 16 rows times every input; the group
 * past the last (when rows is not a multiple of 16) is the rows left over,
 * in the file's layout.
 */
static void matmul_groups(void *arg, size_t b, size_t e, int thread)
{
	const struct matmul_task *t = arg;
	const struct llm_tensor *w = t->w;
	size_t g, full = w->rows / QR;

	for (g = b; g < e; g++) {
		if (g == full) {
			matmul_rows(arg, full * QR, w->rows, thread);
			continue;
		}
		t->gemm(w->cols, (const uint8_t *)w->data + g * QR * w->row_bytes, t->act,
			t->act_stride, t->side, t->side_stride, t->nb, t->out + g * QR, w->rows);
	}
}

struct gemm_task {
	const struct llm_tensor *w;
	const float *in;	/* nb x cols */
	size_t nb;
	float *out;		/* nb x rows */
	float *tiles;
	size_t tile_stride;	/* floats per thread's tile */
};

/* Row tiles [b, e): dequantized, then in x tile^T by sgemm. */
static void gemm_tiles(void *arg, size_t b, size_t e, int thread)
{
	const struct gemm_task *g = arg;
	const struct llm_tensor *w = g->w;
	float *tile = g->tiles + (size_t)thread * g->tile_stride;
	size_t t, r;

	for (t = b; t < e; t++) {
		size_t r0 = t * GEMM_ROWS, nr = w->rows - r0 < GEMM_ROWS ? w->rows - r0 : GEMM_ROWS;

		for (r = 0; r < nr; r++)
			dequantize_row_ref(w->type, (const uint8_t *)w->data + (r0 + r) * w->row_bytes,
					   tile + r * w->cols, w->cols);
		blas_sgemm_nt((int)g->nb, (int)nr, (int)w->cols, g->in, (int)w->cols, tile,
			      (int)w->cols, g->out + r0, (int)w->rows);
	}
}

struct quant_task {
	const float *in;	/* nb x cols */
	size_t cols;
	uint32_t wtype;
	quant_act_fn quant;
	uint8_t *act;
	size_t act_stride;
	float *side;		/* NULL: no GEMM */
	size_t side_stride;
};

/* Inputs [b, e) to 8 bits (and the GEMM's floats of their blocks). */
static void quant_inputs(void *arg, size_t b, size_t e, int thread)
{
	const struct quant_task *q = arg;
	size_t k;

	(void)thread;
	for (k = b; k < e; k++) {
		uint8_t *act = q->act + k * q->act_stride;

		q->quant(q->in + k * q->cols, act, q->cols);
		if (q->side)
			quant_act_side(q->wtype, act, q->cols, q->side + k * q->side_stride);
	}
}

/*
 * out[b] = W in[b] (+ bias) for the nb inputs of the batch (in: stride
 * cols), with the inputs quantized to 8 bits: matrices packed for the GEMM
 * (Q4_0, Q4_1, Q8_0 on AVX-512 VNNI) take every batch size through it;
 * others take large batches through OpenBLAS sgemm on tiles of dequantized
 * rows with the float inputs (when libopenblas is there), small ones
 * (generation) through the dot product kernels.
 */
static void matmul(struct llm_session *s, const struct llm_tensor *w,
		   const struct llm_tensor *bias, const float *in, size_t nb, float *out)
{
	int atype = quant_vec_dot_type(w->type);
	struct matmul_task t = {
		.w = w, .in = in, .nb = nb, .out = out, .act = (const uint8_t *)in,
		.act_stride = w->cols * sizeof(float),
		.dot = s->exact ? NULL : quant_vec_dot(w->type, NULL),
		.gemm = s->exact || !w->packed ? NULL : quant_gemm16(w->type),
	};
	size_t i, k;

	if (!t.gemm && nb >= GEMM_MIN && !s->exact && blas_available()) {
		struct gemm_task g = {
			.w = w, .in = in, .nb = nb, .out = out, .tiles = s->tiles,
			.tile_stride = GEMM_ROWS * s->maxd,
		};
		size_t n_tiles = (w->rows + GEMM_ROWS - 1) / GEMM_ROWS;

		llm_stream_pump(s->m);
		if (s->pool)
			pinfer_parallel_for(s->pool, n_tiles, 1, PINFER_DYNAMIC, gemm_tiles, &g);
		else
			gemm_tiles(&g, 0, n_tiles, 0);
		goto bias;
	}
	if (atype != GGML_TYPE_F32 && !s->exact) {
		uint64_t bytes = 0;
		struct quant_task q = {
			.in = in, .cols = w->cols, .wtype = w->type, .quant = quant_act(atype),
			.act = s->act, .side = t.gemm ? s->side : NULL,
			.side_stride = w->cols / QK * 2,
		};

		/* packed, not maxd apart: strides of 4 KiB multiples alias in L1 */
		ggml_row_bytes(atype, w->cols, &bytes);
		q.act_stride = (bytes + 63) / 64 * 64;
		if (s->pool && nb > 1)
			pinfer_parallel_for(s->pool, nb, 1, PINFER_STATIC, quant_inputs, &q);
		else
			quant_inputs(&q, 0, nb, 0);
		t.act = s->act;
		t.act_stride = q.act_stride;
		t.side = s->side;
		t.side_stride = q.side_stride;
	}
	llm_stream_pump(s->m);	/* between operations: keep the reads going */
	if (t.gemm) {
		size_t items = w->rows / QR + (w->rows % QR != 0);

		if (s->pool)
			pinfer_parallel_for(s->pool, items, 1,
					    nb > 1 ? PINFER_DYNAMIC : PINFER_STATIC, matmul_groups, &t);
		else
			matmul_groups(&t, 0, items, 0);
	} else if (s->pool) {
		pinfer_parallel_for(s->pool, w->rows, 16, PINFER_STATIC, matmul_rows, &t);
	} else {
		matmul_rows(&t, 0, w->rows, 0);
	}
bias:
	if (bias && bias->data)
		for (k = 0; k < nb; k++)
			for (i = 0; i < w->rows; i++)
				out[k * w->rows + i] += ((const float *)bias->data)[i];
}

/*
 * cos and sin of each rotated pair's angle at position @pos: the position
 * (times the linear scaling's 1/factor) times base^(-2i/n_rot), divided by
 * the model's frequency factor of pair i if it has them.
 */
static void rope_angles(const struct llm_model *m, uint32_t pos, float *cs)
{
	const struct llm_config *c = &m->cfg;
	const float *ff = m->rope_freqs.data;
	uint32_t i;

	for (i = 0; i < c->n_rot / 2; i++) {
		float theta = pos * c->rope_freq_scale * powf(c->rope_theta, -2.0f * i / c->n_rot);

		if (ff)
			theta /= ff[i];

		cs[2 * i] = cosf(theta);
		cs[2 * i + 1] = sinf(theta);
	}
}

/* Rotate each head's first n_rot dimensions by the angles @cs. */
static void rope(const struct llm_config *c, float *v, uint32_t n_heads, const float *cs)
{
	uint32_t h, i, half = c->n_rot / 2;

	for (i = 0; i < half; i++) {
		float co = cs[2 * i], sn = cs[2 * i + 1];

		for (h = 0; h < n_heads; h++) {
			float *x = v + (size_t)h * c->head_dim;
			uint32_t a = c->rope == LLM_ROPE_NORM ? 2 * i : i;
			uint32_t b = c->rope == LLM_ROPE_NORM ? 2 * i + 1 : i + half;
			float x0 = x[a], x1 = x[b];

			x[a] = x0 * co - x1 * sn;
			x[b] = x0 * sn + x1 * co;
		}
	}
}

struct attn_task {
	struct llm_session *s;
	uint32_t layer, pos;
	const float *q;
	float *out;
	const struct attn_kernels *k;	/* the fp16 cache's kernels, softmax */
};

/* q · k for a head of the Q8_0 cache: n / 32 blocks. */
static float dot_kv_q8(const float *q, const struct block_q8_0 *k, size_t n)
{
	float sum = 0;
	size_t b, i;

	for (b = 0; b < n / QK; b++, q += QK) {
		float part = 0;

		for (i = 0; i < QK; i++)
			part += q[i] * k[b].qs[i];
		sum += part * fp16_to_f32(k[b].d);
	}
	return sum;
}

/* o += p v for a head of the Q8_0 cache. */
static void axpy_kv_q8(float *o, float p, const struct block_q8_0 *v, size_t n)
{
	size_t b, i;

	for (b = 0; b < n / QK; b++, o += QK) {
		float pd = p * fp16_to_f32(v[b].d);

		for (i = 0; i < QK; i++)
			o[i] += pd * v[b].qs[i];
	}
}

/*
 * Head @h of the attention of the token at @pos (its q and out, all heads)
 * over positions 0..pos of @layer, with @att (pos + 1 floats) for scores.
 */
static void attn_one(const struct attn_task *a, uint32_t pos, const float *qt, float *outt,
		     size_t h, float *att)
{
	struct llm_session *s = a->s;
	const struct llm_config *c = &s->m->cfg;
	size_t row = s->kv_row, base = (size_t)a->layer * s->n_ctx * row;
	uint32_t group = c->n_head / c->n_head_kv, t;
	float scale = 1.0f / sqrtf((float)c->head_dim);
	bool q8 = s->kv_type == LLM_KV_Q8_0;
	const float *q = qt + h * c->head_dim;
	size_t kvo = (h / group) * (q8 ? c->head_dim / QK * sizeof(struct block_q8_0) :
					 c->head_dim * sizeof(fp16_t));
	const uint8_t *kc = s->kcache + base + kvo, *vc = s->vcache + base + kvo;
	float *o = outt + h * c->head_dim;

	for (t = 0; t <= pos; t++) {
		const void *k = kc + t * row;

		att[t] = q8 ? dot_kv_q8(q, k, c->head_dim) : a->k->dot(q, k, c->head_dim);
	}
	a->k->softmax(att, pos + 1, scale);
	memset(o, 0, c->head_dim * sizeof(float));
	for (t = 0; t <= pos; t++) {
		const void *v = vc + t * row;

		if (q8)
			axpy_kv_q8(o, att[t], v, c->head_dim);
		else
			a->k->axpy(o, att[t], v, c->head_dim);
	}
}

/* Heads [hb, he) of one token's attention; each head has its own scores. */
static void attn_heads(void *arg, size_t hb, size_t he, int thread)
{
	const struct attn_task *a = arg;
	size_t h;

	(void)thread;
	for (h = hb; h < he; h++)
		attn_one(a, a->pos, a->q, a->out, h, a->s->att + h * a->s->n_ctx);
}

/*
 * Items [ib, ie) of a batch's attention: item i is head i % n_head of
 * token i / n_head; scores in the thread's own row of s->att.
 */
static void attn_items(void *arg, size_t ib, size_t ie, int thread)
{
	const struct attn_task *a = arg;
	struct llm_session *s = a->s;
	size_t nh = s->m->cfg.n_head, i;
	float *att = s->att + (nh + (size_t)thread) * s->n_ctx;

	for (i = ib; i < ie; i++)
		attn_one(a, a->pos + (uint32_t)(i / nh), a->q + i / nh * s->qd,
			 a->out + i / nh * s->qd, i % nh, att);
}

struct attn_gemm {
	struct llm_session *s;
	uint32_t layer, pos;
	size_t nb;
	const float *q;
	float *out;
	const struct attn_kernels *k;
};

/* Positions [b, e) of the layer's K and V cache, as floats. */
static void kv_to_float(void *arg, size_t b, size_t e, int thread)
{
	const struct attn_gemm *g = arg;
	struct llm_session *s = g->s;
	uint32_t type = s->kv_type == LLM_KV_Q8_0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
	size_t base = (size_t)g->layer * s->n_ctx * s->kv_row, t;

	(void)thread;
	if (type == GGML_TYPE_F16) {	/* positions are contiguous: one run */
		g->k->to_f32((const fp16_t *)(s->kcache + base + b * s->kv_row), s->kf + b * s->kv_dim,
			     (e - b) * s->kv_dim);
		g->k->to_f32((const fp16_t *)(s->vcache + base + b * s->kv_row), s->vf + b * s->kv_dim,
			     (e - b) * s->kv_dim);
		return;
	}
	for (t = b; t < e; t++) {
		dequantize_row_ref(type, s->kcache + base + t * s->kv_row, s->kf + t * s->kv_dim,
				   s->kv_dim);
		dequantize_row_ref(type, s->vcache + base + t * s->kv_row, s->vf + t * s->kv_dim,
				   s->kv_dim);
	}
}

/*
 * Items [ib, ie): head i / blocks, tokens (i % blocks) * ATTN_BLOCK.. of
 * the batch: scores = Q K^T (sgemm), causal mask and softmax per token,
 * out = P V (sgemm).
 */
static void attn_gemm_items(void *arg, size_t ib, size_t ie, int thread)
{
	const struct attn_gemm *g = arg;
	struct llm_session *s = g->s;
	const struct llm_config *c = &s->m->cfg;
	size_t blocks = (g->nb + ATTN_BLOCK - 1) / ATTN_BLOCK, hd = c->head_dim;
	size_t group = c->n_head / c->n_head_kv, qd = s->qd, kvd = s->kv_dim, i, r, t;
	float *sc = s->scores + (size_t)thread * ATTN_BLOCK * s->n_ctx;
	float scale = 1.0f / sqrtf((float)hd);

	for (i = ib; i < ie; i++) {
		size_t h = i / blocks, b0 = i % blocks * ATTN_BLOCK;
		size_t m = g->nb - b0 < ATTN_BLOCK ? g->nb - b0 : ATTN_BLOCK;
		size_t n = g->pos + b0 + m;	/* positions the block's last token sees */

		blas_sgemm_nt((int)m, (int)n, (int)hd, g->q + b0 * qd + h * hd, (int)qd,
			      s->kf + h / group * hd, (int)kvd, sc, (int)n);
		for (r = 0; r < m; r++) {
			float *row = sc + r * n;
			size_t seen = g->pos + b0 + r + 1;

			g->k->softmax(row, seen, scale);
			for (t = seen; t < n; t++)
				row[t] = 0;
		}
		blas_sgemm_nn((int)m, (int)hd, (int)n, sc, (int)n, s->vf + h / group * hd, (int)kvd,
			      g->out + b0 * qd + h * hd, (int)qd);
	}
}

/*
 * Attention of the @nb tokens at pos.. (their q, stride qd) over the cache
 * of @layer up to each: for large batches (with OpenBLAS) as GEMMs over
 * blocks of tokens per head; else one token's heads split over the pool
 * (long contexts), or a batch's (token, head) pairs handed out to it.
 */
static void attention(struct llm_session *s, uint32_t layer, uint32_t pos, size_t nb,
		      const float *q, float *out)
{
	struct attn_task a = { .s = s, .layer = layer, .pos = pos, .q = q, .out = out,
			       .k = attn_kernels() };
	size_t b;

	if (nb >= GEMM_MIN && !s->exact && blas_available()) {
		struct attn_gemm g = { .s = s, .layer = layer, .pos = pos, .nb = nb, .q = q,
				       .out = out, .k = a.k };
		size_t items = s->m->cfg.n_head * ((nb + ATTN_BLOCK - 1) / ATTN_BLOCK);

		if (s->pool) {
			pinfer_parallel_for(s->pool, pos + nb, 64, PINFER_STATIC, kv_to_float, &g);
			pinfer_parallel_for(s->pool, items, 1, PINFER_DYNAMIC, attn_gemm_items, &g);
		} else {
			kv_to_float(&g, 0, pos + nb, 0);
			attn_gemm_items(&g, 0, items, 0);
		}
		return;
	}
	if (s->pool && nb > 1) {
		pinfer_parallel_for(s->pool, nb * s->m->cfg.n_head, 1, PINFER_DYNAMIC,
				    attn_items, &a);
		return;
	}
	for (b = 0; b < nb; b++) {
		a.pos = pos + (uint32_t)b;
		a.q = q + b * s->qd;
		a.out = out + b * s->qd;
		if (s->pool && a.pos >= 64)	/* short contexts: not worth a hand-off */
			pinfer_parallel_for(s->pool, s->m->cfg.n_head, 1, PINFER_STATIC,
					    attn_heads, &a);
		else
			attn_heads(&a, 0, s->m->cfg.n_head, 0);
	}
}

/*
 * Layer @l for the nb tokens at positions pos..pos+nb, whose residual
 * stream is @x and RoPE angles @cs.
 */
static void layer_chunk(struct llm_session *s, const struct llm_layer *ly, uint32_t l,
			uint32_t pos, size_t nb, float *x, const float *cs)
{
	const struct llm_config *c = &s->m->cfg;
	const struct attn_kernels *ak = attn_kernels();
	size_t E = c->n_embd, F = c->n_ff, kvd = s->kv_dim, qd = s->qd, b, i;

	/* attention */
	for (b = 0; b < nb; b++)
		rmsnorm(s->xb + b * E, x + b * E, ly->attn_norm.data, E, c->rms_eps);
	matmul(s, &ly->wq, &ly->bq, s->xb, nb, s->q);
	matmul(s, &ly->wk, &ly->bk, s->xb, nb, s->k);
	matmul(s, &ly->wv, &ly->bv, s->xb, nb, s->v);
	for (b = 0; b < nb; b++) {
		size_t at = ((size_t)l * s->n_ctx + pos + b) * s->kv_row;
		fp16_t *kh = (fp16_t *)(s->kcache + at), *vh = (fp16_t *)(s->vcache + at);

		rope(c, s->q + b * qd, c->n_head, cs + b * c->n_rot);
		rope(c, s->k + b * kvd, c->n_head_kv, cs + b * c->n_rot);
		if (s->kv_type == LLM_KV_Q8_0) {
			quantize_row_act_ref(GGML_TYPE_Q8_0, s->k + b * kvd, s->kcache + at, kvd);
			quantize_row_act_ref(GGML_TYPE_Q8_0, s->v + b * kvd, s->vcache + at, kvd);
			continue;
		}
		ak->to_f16(s->k + b * kvd, kh, kvd);
		ak->to_f16(s->v + b * kvd, vh, kvd);
	}
	attention(s, l, pos, nb, s->q, s->out);	/* causal: each up to itself */
	matmul(s, &ly->wo, NULL, s->out, nb, s->tmp);
	for (i = 0; i < nb * E; i++)
		x[i] += s->tmp[i];

	/* feed-forward: down(silu(gate x) * up x) */
	for (b = 0; b < nb; b++)
		rmsnorm(s->xb + b * E, x + b * E, ly->ffn_norm.data, E, c->rms_eps);
	matmul(s, &ly->w_gate, NULL, s->xb, nb, s->hb);
	matmul(s, &ly->w_up, NULL, s->xb, nb, s->hb2);
	for (i = 0; i < nb * F; i++)
		s->hb[i] = s->hb[i] / (1.0f + expf(-s->hb[i])) * s->hb2[i];
	matmul(s, &ly->w_down, NULL, s->hb, nb, s->tmp);
	for (i = 0; i < nb * E; i++)
		x[i] += s->tmp[i];
}

/* Room for @n tokens' residual stream and angles. */
static int reserve(struct llm_session *s, size_t n, struct pinfer_err *err)
{
	const struct llm_config *c = &s->m->cfg;
	float *x, *cs;

	if (n <= s->n_cap)
		return 0;
	x = realloc(s->x, n * c->n_embd * sizeof(float));
	if (x)
		s->x = x;
	cs = realloc(s->rope_cs, n * c->n_rot * sizeof(float));
	if (cs)
		s->rope_cs = cs;
	if (!x || !cs)
		return pinfer_fail(err, ENOMEM, "session: out of memory for a batch of %zu tokens", n);
	s->n_cap = n;
	return 0;
}

int llm_eval_batch(struct llm_session *s, const int32_t *tokens, size_t n,
		   const float **logits, struct pinfer_err *err)
{
	const struct llm_model *m = s->m;
	const struct llm_config *c = &m->cfg;
	size_t E = c->n_embd, i, b;
	uint32_t l;
	int ret;

	for (i = 0; i < n; i++)
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->n_vocab)
			return pinfer_fail(err, EINVAL, "token %" PRId32 " is not in the vocabulary of %" PRIu32,
					   tokens[i], c->n_vocab);
	if (!n || n > s->n_ctx - s->pos)
		return pinfer_fail(err, ENOSPC, "the context of %" PRIu32 " tokens is full", s->n_ctx);
	ret = reserve(s, n, err);
	if (ret)
		return ret;
	for (b = 0; b < n; b++) {	/* the same angles serve every layer */
		rope_angles(m, s->pos + (uint32_t)b, s->rope_cs + b * c->n_rot);
		tensor_row(&m->token_embd, (size_t)tokens[b], 0, E, s->x + b * E);
	}
	for (l = 0; l < c->n_layer; l++) {
		ret = llm_stream_acquire(m, l, s->pool, n >= GEMM_MIN, err);
		if (ret)
			return ret;	/* s->pos stays: these tokens were not fed */
		for (i = 0; i < n; i += LLM_BATCH)
			layer_chunk(s, &m->layers[l], l, s->pos + (uint32_t)i,
				    n - i < LLM_BATCH ? n - i : LLM_BATCH, s->x + i * E,
				    s->rope_cs + i * c->n_rot);
		llm_stream_release(m, l);
	}
	rmsnorm(s->xb, s->x + (n - 1) * E, m->output_norm.data, E, c->rms_eps);
	matmul(s, &m->output, NULL, s->xb, 1, s->logits);
	for (i = 0; i < c->n_vocab; i++)
		if (!isfinite(s->logits[i]))
			return pinfer_fail(err, ERANGE, "the logits at position %" PRIu32 " are not finite (logit %zu is %g): the model's weights or activations hold NaN or infinity",
					   s->pos + (uint32_t)n - 1, i, (double)s->logits[i]);
	s->pos += (uint32_t)n;
	*logits = s->logits;
	return 0;
}

int llm_eval(struct llm_session *s, int32_t token, const float **logits,
	     struct pinfer_err *err)
{
	return llm_eval_batch(s, &token, 1, logits, err);
}
