// SPDX-License-Identifier: MIT
/*
 * Matrix products of a layer's weights with a batch of activations, by
 * four paths: the integer GEMM on packed rows (the quantized types on
 * AVX-512 VNNI or AVX2, every batch size), OpenBLAS sgemm on tiles
 * of dequantized rows (large batches of the other types), the 8-bit dot
 * product kernels (small batches of the other types, and rows of streamed
 * layers, which are packed only for large batches), and the reference
 * mode's float dot products in double.
 */
#include "session.h"

#include "format/ggml_types.h"
#include "kernels/blas.h"
#include "kernels/quant.h"
#include "placement.h"
#include "tensor.h"

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

/* Σ dequant(row r) · x, in double: the reference mode's dot product. */
static float dot_exact(const struct llm_tensor *w, size_t r, const float *x)
{
	float y[256];
	double sum = 0;
	size_t i, j, blk = ggml_type_get(w->type)->block_elems;
	size_t step = blk > 256 ? blk : 256 / blk * blk;

	for (i = 0; i < w->cols; i += step) {
		size_t n = w->cols - i < step ? w->cols - i : step;

		llm_tensor_row(w, r, i, n, y);
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
	size_t g, full = w->rows / PACK_ROWS;

	for (g = b; g < e; g++) {
		if (g == full) {
			matmul_rows(arg, full * PACK_ROWS, w->rows, thread);
			continue;
		}
		t->gemm(w->cols, (const uint8_t *)w->data + g * PACK_ROWS * w->row_bytes, t->act,
			t->act_stride, t->side, t->side_stride, t->nb, t->out + g * PACK_ROWS, w->rows);
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
 * @nb inputs to 8 bits for @w's type, into s->act (and the GEMM's floats
 * of their blocks into s->side when @gemm), strides into @t.
 */
static void quantize_inputs(struct llm_session *s, const struct llm_tensor *w, const float *in,
			    size_t nb, bool gemm, struct matmul_task *t)
{
	int atype = quant_vec_dot_type(w->type);
	uint64_t bytes = 0;
	struct quant_task q = {
		.in = in, .cols = w->cols, .wtype = w->type, .quant = quant_act(atype),
		.act = s->act, .side = gemm ? s->side : NULL, .side_stride = w->cols / QK * 2,
	};

	/* packed, not maxd apart: strides of 4 KiB multiples alias in L1 */
	ggml_row_bytes(atype, w->cols, &bytes);
	q.act_stride = (bytes + 63) / 64 * 64;
	llm_per_token(s, nb, quant_inputs, &q);
	t->act = s->act;
	t->act_stride = q.act_stride;
	t->side = s->side;
	t->side_stride = q.side_stride;
}

static void add_bias(const struct llm_tensor *w, const struct llm_tensor *bias, size_t nb,
		     float *out)
{
	size_t i, k;

	if (bias && bias->data)
		for (k = 0; k < nb; k++)
			for (i = 0; i < w->rows; i++)
				out[k * w->rows + i] += ((const float *)bias->data)[i];
}

static size_t groups_of(const struct llm_tensor *w)
{
	return w->rows / PACK_ROWS + (w->rows % PACK_ROWS != 0);
}

/*
 * How a packed product's groups are handed out: one at a time for batches;
 * for one input (generation), each thread streams its own contiguous
 * share, a quarter of what is left at a time, and a thread done with its
 * share takes the back half of the largest one left (PINFER_STEAL). Runs
 * handed out from a shared counter instead (4 a thread) left a thread
 * idle for half a run at the end of each product, on average a sixteenth
 * of it (perf: 5-8% of generation in the pool's wait), and more, shorter
 * runs each paid their prefetchers' ramp (quant_simd.h, prefetch_share):
 * 8 a thread gave 2-5% less, 16 10% less. A thread that lost its CPU for
 * a while has its share taken in halves, so it holds nobody up.
 */
static void run_groups(struct llm_session *s, size_t items, size_t nb, pinfer_for_fn fn, void *arg)
{
	if (!s->pool) {
		fn(arg, 0, items, 0);
		return;
	}
	pinfer_parallel_for(s->pool, items, 1, nb == 1 ? PINFER_STEAL : PINFER_DYNAMIC, fn, arg);
}

/* One product, by whichever path suits it (llm_matmuls()). */
static void matmul_one(struct llm_session *s, const struct llm_tensor *w,
		       const struct llm_tensor *bias, const float *in, size_t nb, float *out)
{
	int atype = quant_vec_dot_type(w->type);
	struct matmul_task t = {
		.w = w, .in = in, .nb = nb, .out = out, .act = (const uint8_t *)in,
		.act_stride = w->cols * sizeof(float),
		.dot = s->exact ? NULL : quant_vec_dot(w->type, NULL),
		.gemm = s->exact || !w->packed ? NULL : quant_gemm16(w->type),
	};

	if (!t.gemm && nb >= GEMM_MIN && !s->exact && !s->invariant && blas_available()) {
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
		add_bias(w, bias, nb, out);
		return;
	}
	if (atype != GGML_TYPE_F32 && !s->exact)
		quantize_inputs(s, w, in, nb, t.gemm != NULL, &t);
	llm_stream_pump(s->m);	/* between operations: keep the reads going */
	if (t.gemm)
		run_groups(s, groups_of(w), nb, matmul_groups, &t);
	else if (s->pool)
		pinfer_parallel_for(s->pool, w->rows, 16, PINFER_STATIC, matmul_rows, &t);
	else
		matmul_rows(&t, 0, w->rows, 0);
	add_bias(w, bias, nb, out);
}

/* Several packed products of the same input: their groups end to end. */
struct fused_task {
	struct matmul_task t[LLM_MATMULS_MAX];
	size_t start[LLM_MATMULS_MAX + 1];	/* each product's first item */
	size_t n;
};

static void fused_groups(void *arg, size_t b, size_t e, int thread)
{
	const struct fused_task *f = arg;
	size_t i;

	for (i = 0; i < f->n; i++) {
		size_t lo = b > f->start[i] ? b : f->start[i];
		size_t hi = e < f->start[i + 1] ? e : f->start[i + 1];

		if (lo < hi)
			matmul_groups((void *)&f->t[i], lo - f->start[i], hi - f->start[i], thread);
	}
}

/* Whether llm_matmuls() runs @n > 1 products as one task (below). */
static bool fusable(const struct llm_session *s, const struct llm_mm *ops, size_t n)
{
	const struct llm_tensor *w0 = ops[0].w;
	bool fuse = n > 1 && !s->exact && w0->packed && quant_gemm16(w0->type);
	size_t i;

	for (i = 1; i < n && fuse; i++)
		fuse = ops[i].w->packed && ops[i].w->type == w0->type && ops[i].w->cols == w0->cols;
	return fuse;
}

/*
 * The products of @n (at most LLM_MATMULS_MAX) matrices with the same @nb
 * inputs @in, with the inputs quantized to 8 bits: matrices packed for the
 * GEMM (quant_repackable() types where quant_gemm16() has a kernel) take
 * every batch size through it, and when all @n are packed and of one type
 * the inputs are quantized once and their groups handed out as one task
 * (one hand-off to the pool, one wait) — each row's result the same bits
 * either way. Others take large batches through OpenBLAS sgemm on tiles of
 * dequantized rows with the float inputs (when libopenblas is there), small
 * ones (generation) through the dot product kernels.
 */
void llm_matmuls(struct llm_session *s, const struct llm_mm *ops, size_t n, const float *in,
		 size_t nb)
{
	const struct llm_tensor *w0 = ops[0].w;
	struct fused_task f = { .n = n };
	size_t i;

	if (!fusable(s, ops, n)) {
		for (i = 0; i < n; i++)
			matmul_one(s, ops[i].w, ops[i].bias, in, nb, ops[i].out);
		return;
	}
	for (i = 0; i < n; i++) {
		f.t[i] = (struct matmul_task){
			.w = ops[i].w, .in = in, .nb = nb, .out = ops[i].out,
			.dot = quant_vec_dot(w0->type, NULL), .gemm = quant_gemm16(w0->type),
		};
		f.start[i + 1] = f.start[i] + groups_of(ops[i].w);
	}
	quantize_inputs(s, w0, in, nb, true, &f.t[0]);
	for (i = 1; i < n; i++) {
		f.t[i].act = f.t[0].act, f.t[i].act_stride = f.t[0].act_stride;
		f.t[i].side = f.t[0].side, f.t[i].side_stride = f.t[0].side_stride;
	}
	llm_stream_pump(s->m);
	run_groups(s, f.start[n], nb, fused_groups, &f);
	for (i = 0; i < n; i++)
		add_bias(ops[i].w, ops[i].bias, nb, ops[i].out);
}

void llm_matmul(struct llm_session *s, const struct llm_tensor *w,
		const struct llm_tensor *bias, const float *in, size_t nb, float *out)
{
	struct llm_mm op = { w, bias, out };

	llm_matmuls(s, &op, 1, in, nb);
}

/*
 * Reading ahead. A generated token's products stream their weights from
 * memory; between two of them the caller alone works (norms, RoPE,
 * attention at short contexts, SwiGLU, quantizing the inputs) while the
 * other threads wait, and nothing streams. So the caller lends them the
 * next products (pinfer_pool_lend): each reads, a line at a time, the
 * front of the share of groups that PINFER_STEAL will first hand it
 * (run_groups), up to AHEAD_BYTES (well within a core's L2), until the
 * caller takes the pool back for its next task; then its first groups come
 * from its cache. Only packed matrices, whose groups the GEMM hands out.
 */
#define AHEAD_BYTES (1u << 20)

/* Read the lines of [@p, @p + @bytes); false when recalled first. */
static bool read_lines(const struct pinfer_pool *pool, const uint8_t *p, size_t bytes)
{
	size_t off;

	for (off = 0; off < bytes; off += 64) {
		if (!(off & 4095) && pinfer_pool_recalled(pool))
			return false;
		(void)*(const volatile uint8_t *)(p + off);
	}
	return true;
}

static void ahead_task(void *arg, int thread, int n_threads)
{
	const struct llm_ahead *a = arg;
	size_t total = a->start[a->n], b = total * thread / n_threads;
	size_t e = total * (thread + 1) / n_threads, left = AHEAD_BYTES, i;

	for (i = 0; i < a->n && left; i++) {
		const struct llm_tensor *w = a->w[i];
		size_t lo = b > a->start[i] ? b : a->start[i], hi = e < a->start[i + 1] ? e : a->start[i + 1];
		size_t r0 = (lo - a->start[i]) * PACK_ROWS, r1 = (hi - a->start[i]) * PACK_ROWS;
		size_t bytes;

		if (lo >= hi)
			continue;
		r1 = r1 < w->rows ? r1 : w->rows;
		bytes = (r1 - r0) * w->row_bytes < left ? (r1 - r0) * w->row_bytes : left;
		if (!read_lines(a->pool, (const uint8_t *)w->data + r0 * w->row_bytes, bytes))
			return;
		left -= bytes;
	}
}

void llm_matmul_ahead(struct llm_session *s, const struct llm_mm *ops, size_t n)
{
	struct llm_ahead *a = &s->ahead;
	size_t i;

	if (!s->pool || s->exact || !ops[0].w->packed || !quant_gemm16(ops[0].w->type))
		return;
	if (!fusable(s, ops, n))
		n = 1;		/* they run one after the other: the first's groups */
	pinfer_pool_reclaim(s->pool);	/* before *a changes under a lent task */
	a->pool = s->pool;
	a->n = n;
	a->start[0] = 0;
	for (i = 0; i < n; i++) {
		a->w[i] = ops[i].w;
		a->start[i + 1] = a->start[i] + groups_of(ops[i].w);
	}
	pinfer_pool_lend(s->pool, ahead_task, a);
}
