// SPDX-License-Identifier: MIT
/*
 * The CUDA backend's contract (engine/cuda/cuda_api.h) carried out on the
 * CPU: build/tests/libpinfer-cuda-emul.so, for testing the engine's side of
 * -ngl on machines without a GPU (tests/e2e/test_gpu.py loads it through
 * $PINFER_CUDA_LIB). It tests what the engine does: the placement at load,
 * the weights it hands over and keeps in its region, the hand-offs of the
 * residual stream, positions, angles and logits, the streamed layers, the
 * sessions, every error a backend can return. It does not test
 * engine/cuda/backend.cu's kernels, which only a GPU runs
 * (tests/gpu/run.sh).
 *
 * It computes as the backend does, from the same block arithmetic
 * (blocks.h): weights packed into the device layout, activations quantized
 * per 32, each row's sub-blocks summed by 32 "lanes" and reduced as a
 * warp's butterfly does, an fp16 KV cache, the reference mode's float
 * products. Where the backend allocates device memory the emulation
 * allocates host memory, from an emulated device of $PINFER_EMUL_MEM bytes
 * (default 8 GiB), and refuses past it as cudaMalloc would; each device
 * buffer is a copy, so the engine's host bytes are read only where the
 * backend reads them (a streamed layer's at every call).
 *
 * More than the backend, it checks the contract: every matrix must lie in
 * the region handed over for registration, and the calls' sizes within
 * what was created.
 *
 * $PINFER_EMUL_FAIL=OP:N makes the N-th call (from 1) of OP (model_create,
 * ctx_create, layers or logits) fail, as a device error would; OP fill
 * fails the N-th copy of a streamed layer into its slot, after its fetch()
 * and done(): a layers() call failing part way through.
 * $PINFER_EMUL_LOG=FILE: at model_free, the layers fetched from the drive
 * and the most device bytes held at once ("fetches N peak BYTES"),
 * appended to FILE.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/blocks.h"
#include "cuda/cuda_api.h"

#define LANES 32
#define MAX_HEAD 256

typedef _Float16 half;

/* ---- the emulated device's memory ----------------------------------------- */

static uint64_t dev_total, dev_used, dev_peak;

static uint64_t env_bytes(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : dflt;
}

/* The emulated device's bytes: $PINFER_EMUL_MEM, or 8 GiB. */
static uint64_t device_total(void)
{
	if (!dev_total)
		dev_total = env_bytes("PINFER_EMUL_MEM", 8ull << 30);
	return dev_total;
}

/* @n bytes of device memory (zeroed), or NULL past the device's total. */
static void *dalloc(uint64_t n)
{
	uint64_t *p;

	if (dev_used + n > device_total())
		return NULL;
	p = calloc(1, n + 16);
	if (!p)
		return NULL;
	p[0] = n;
	dev_used += n;
	dev_peak = dev_used > dev_peak ? dev_used : dev_peak;
	return p + 2;
}

static void dfree(void *q)
{
	uint64_t *p = q;

	if (!p)
		return;
	dev_used -= p[-2];
	free(p - 2);
}

static int fail(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -1;
}

#define DALLOC(p, n, what)							\
	do {									\
		uint64_t n_ = (n);						\
		(p) = dalloc(n_);						\
		if (!(p)) {							\
			fail(err, en, "CUDA (emulated): cudaMalloc (%s) of %" PRIu64 " bytes: out of memory (%" PRIu64 " of %" PRIu64 " in use)", \
			     (what), n_, dev_used, dev_total);			\
			goto out;						\
		}								\
	} while (0)

/*
 * -1, with the message in @err, when $PINFER_EMUL_FAIL names this, the
 * @count-th call of @op; else 0.
 */
static int injected(const char *op, unsigned *count, char *err, size_t en)
{
	const char *v = getenv("PINFER_EMUL_FAIL");
	size_t n = strlen(op);

	++*count;
	if (!v || strncmp(v, op, n) || v[n] != ':' || strtoul(v + n + 1, NULL, 10) != *count)
		return 0;
	return fail(err, en, "CUDA (emulated): %s: an error injected by PINFER_EMUL_FAIL", op);
}

static unsigned n_model_create, n_ctx_create, n_layers_calls, n_logits_calls, n_fills;
static unsigned n_fetches;	/* fetch() calls that succeeded */

/* ---- structures, as the backend's ------------------------------------------ */

struct emat {
	uint32_t type;
	uint64_t rows, cols;
	uint8_t *qs, *meta;	/* packed */
	void *plain;		/* F16, F32 */
	bool owned;
};

struct elayer {
	struct emat w[PCU_N_MATS];	/* PCU_WQ..PCU_W_DOWN */
	float *attn_norm, *ffn_norm, *q_norm, *k_norm, *bq, *bk, *bv;
	const struct pcu_mat *src;	/* streamed: its host matrices */
	int stream_ix;
	bool from_drive;	/* its matrices from fetch() each time */
};

struct pcu_model {
	struct pcu_config cfg;
	uint32_t n_layers, n_streamed, ring;
	struct elayer *layers;
	struct pcu_mat *srcs;
	uint8_t **slots, *stage;
	struct elayer *views;	/* [ring]: a slot's layer */
	uint64_t slot_packed;
	int has_output;
	struct emat output;
	float *output_norm;
	const uint8_t *host_base;	/* the region handed over */
	size_t host_bytes;
	int (*fetch)(void *, uint32_t, struct pcu_mat *, char *, size_t);
	void (*done)(void *, uint32_t);
	void *arg;
};

struct pcu_ctx {
	struct pcu_model *m;
	uint32_t n_ctx, max_batch, n_blocks, block;
	const uint32_t *pos, *const *tabs;	/* this call's */
	half *kc, *vc;		/* [layer][n_blocks * block][kv_dim] */
	float *x, *xb, *q, *k, *v, *out, *hb, *hb2, *tmp, *cs, *logits, *ads, *part;
	void *dpos, *dtoff, *dtab;
	int8_t *aq;
	bool exact;
};

/* ---- arithmetic ------------------------------------------------------------ */

static void rmsnorm(const float *x, const float *w, float *o, size_t cols, float eps)
{
	float ss = 0, scale;
	size_t i;

	for (i = 0; i < cols; i++)
		ss += x[i] * x[i];
	scale = 1.0f / sqrtf(ss / (float)cols + eps);
	for (i = 0; i < cols; i++)
		o[i] = x[i] * scale * w[i];
}

static void quantize(struct pcu_ctx *c, const float *x, uint32_t n, size_t cols)
{
	size_t b;

	if (c->exact)
		return;
	for (b = 0; b < n * cols / PCU_QA; b++)
		pcu_quant_block(x + b * PCU_QA, c->aq + b * PCU_QA, c->ads + 2 * b);
}

/* A warp's butterfly sum of 32 lanes, as lane 0 ends with it. */
static float lane_sum(float *v)
{
	int o, l;

	for (o = LANES / 2; o > 0; o /= 2)
		for (l = 0; l < o; l++)
			v[l] += v[l + o];
	return v[0];
}

/* Row @r of @w times token @t's inputs (floats @x, or c->aq/ads), as a warp sums it. */
static float row_dot(const struct pcu_ctx *c, const struct emat *w, uint64_t r, const float *x,
		     uint32_t t)
{
	const struct pcu_layout L = pcu_layout(w->type);
	float lane[LANES] = { 0 }, y[PCU_QA];
	uint64_t cols = w->cols, u, i;

	if (!L.elems) {	/* F16, F32 rows */
		for (i = 0; i < cols; i++) {
			float wi = w->type == PCU_F16 ? (float)((const half *)w->plain)[r * cols + i] :
							((const float *)w->plain)[r * cols + i];

			lane[i % LANES] += wi * x[t * cols + i];
		}
		return lane_sum(lane);
	}
	for (u = 0; u < cols / PCU_QA; u++) {
		uint64_t subs = L.elems / PCU_QA, blk = r * (cols / L.elems) + u / subs;
		const uint8_t *qs = w->qs + blk * L.qb, *meta = w->meta + blk * L.mb;

		if (c->exact) {
			pcu_dequant_sub(w->type, qs, meta, (int)(u % subs), y);
			for (i = 0; i < PCU_QA; i++)
				lane[u % LANES] += y[i] * x[t * cols + u * PCU_QA + i];
		} else {
			lane[u % LANES] += pcu_dot_sub(w->type, qs, meta, (int)(u % subs),
						       c->aq + t * cols + u * PCU_QA,
						       c->ads + 2 * (t * cols / PCU_QA + u));
		}
	}
	return lane_sum(lane);
}

/* out[t][r] = W in[t] (+ bias) for @n tokens (inputs @x, quantized by quantize()). */
static void matmul(struct pcu_ctx *c, const struct emat *w, const float *x, const float *bias,
		   uint32_t n, float *out)
{
	uint64_t r;
	uint32_t t;

	for (t = 0; t < n; t++)
		for (r = 0; r < w->rows; r++)
			out[t * w->rows + r] = row_dot(c, w, r, x, t) + (bias ? bias[r] : 0.0f);
}

/* The cache row of position @p of token @t's sequence. */
static size_t kv_row(const struct pcu_ctx *c, uint32_t t, uint32_t p)
{
	return (size_t)c->tabs[t][p / c->block] * c->block + p % c->block;
}

/* Token @t's Q, K and V heads: q/k norms, RoPE, K and V into the cache at its position. */
static void qkv_rope(struct pcu_ctx *c, const struct elayer *d, half *kc, half *vc, uint32_t t)
{
	size_t row = kv_row(c, t, c->pos[t]);
	const struct pcu_config *f = &c->m->cfg;
	uint32_t hd = f->head_dim, kvd = f->n_head_kv * hd, pairs = f->n_rot / 2, h, i;
	const float *cs = c->cs + (size_t)t * f->n_rot;
	float buf[MAX_HEAD];

	for (h = 0; h < f->n_head + f->n_head_kv; h++) {
		bool isq = h < f->n_head;
		float *src = isq ? c->q + ((size_t)t * f->n_head + h) * hd :
				   c->k + (size_t)t * kvd + (h - f->n_head) * hd;
		const float *norm = isq ? d->q_norm : d->k_norm;

		memcpy(buf, src, hd * sizeof(float));
		if (norm) {
			float ss = 0;

			for (i = 0; i < hd; i++)
				ss += buf[i] * buf[i];
			for (i = 0; i < hd; i++)
				buf[i] = buf[i] / sqrtf(ss / (float)hd + f->rms_eps) * norm[i];
		}
		for (i = 0; i < pairs; i++) {
			uint32_t a = f->rope_neox ? i : 2 * i, b = f->rope_neox ? i + pairs : 2 * i + 1;
			float x0 = buf[a], x1 = buf[b];

			buf[a] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
			buf[b] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
		}
		if (isq)
			memcpy(src, buf, hd * sizeof(float));
		else
			for (i = 0; i < hd; i++)
				kc[row * kvd + (h - f->n_head) * hd + i] = (half)buf[i];
	}
	for (i = 0; i < kvd; i++)
		vc[row * kvd + i] = (half)c->v[(size_t)t * kvd + i];
}

/* Token @t attends to its sequence's positions up to its own, head by head, into c->out. */
static void attention(struct pcu_ctx *c, const half *kc, const half *vc, uint32_t t)
{
	uint32_t pos = c->pos[t];
	const struct pcu_config *f = &c->m->cfg;
	uint32_t hd = f->head_dim, kvd = f->n_head_kv * hd, h, p, i;
	float *sc = c->part, scale = 1.0f / sqrtf((float)hd);

	for (h = 0; h < f->n_head; h++) {
		const float *q = c->q + ((size_t)t * f->n_head + h) * hd;
		float *o = c->out + ((size_t)t * f->n_head + h) * hd, mx = -INFINITY, l = 0;
		uint32_t kvh = h / (f->n_head / f->n_head_kv);

		for (p = 0; p <= pos; p++) {
			const half *kr = kc + kv_row(c, t, p) * kvd + kvh * hd;
			float s = 0;

			for (i = 0; i < hd; i++)
				s += q[i] * (float)kr[i];
			sc[p] = s * scale;
			mx = sc[p] > mx ? sc[p] : mx;
		}
		memset(o, 0, hd * sizeof(float));
		for (p = 0; p <= pos; p++) {
			const half *vr = vc + kv_row(c, t, p) * kvd + kvh * hd;
			float e = expf(sc[p] - mx);

			l += e;
			for (i = 0; i < hd; i++)
				o[i] += e * (float)vr[i];
		}
		for (i = 0; i < hd; i++)
			o[i] /= l;
	}
}

/* Layer @li (weights @d) over the call's @n tokens, residual stream c->x. */
static void layer(struct pcu_ctx *c, const struct elayer *d, uint32_t li, uint32_t n)
{
	const struct pcu_config *f = &c->m->cfg;
	size_t E = f->n_embd, F = f->n_ff, qd = (size_t)f->n_head * f->head_dim;
	size_t kvd = (size_t)f->n_head_kv * f->head_dim, i;
	size_t at = (size_t)li * c->n_blocks * c->block * kvd;
	const struct emat *w = d->w;
	uint32_t t;

	for (t = 0; t < n; t++)
		rmsnorm(c->x + t * E, d->attn_norm, c->xb + t * E, E, f->rms_eps);
	quantize(c, c->xb, n, E);
	matmul(c, &w[PCU_WQ], c->xb, d->bq, n, c->q);
	matmul(c, &w[PCU_WK], c->xb, d->bk, n, c->k);
	matmul(c, &w[PCU_WV], c->xb, d->bv, n, c->v);
	for (t = 0; t < n; t++)
		qkv_rope(c, d, c->kc + at, c->vc + at, t);
	for (t = 0; t < n; t++)
		attention(c, c->kc + at, c->vc + at, t);
	quantize(c, c->out, n, qd);
	matmul(c, &w[PCU_WO], c->out, NULL, n, c->tmp);
	for (i = 0; i < n * E; i++)
		c->x[i] += c->tmp[i];

	for (t = 0; t < n; t++)
		rmsnorm(c->x + t * E, d->ffn_norm, c->xb + t * E, E, f->rms_eps);
	quantize(c, c->xb, n, E);
	matmul(c, &w[PCU_W_GATE], c->xb, NULL, n, c->hb);
	matmul(c, &w[PCU_W_UP], c->xb, NULL, n, c->hb2);
	for (i = 0; i < n * F; i++)
		c->hb[i] = c->hb[i] / (1.0f + expf(-c->hb[i])) * c->hb2[i];
	quantize(c, c->hb, n, F);
	matmul(c, &w[PCU_W_DOWN], c->hb, NULL, n, c->tmp);
	for (i = 0; i < n * E; i++)
		c->x[i] += c->tmp[i];
}

/* ---- the operations -------------------------------------------------------- */

static int probe(struct pcu_device *dev, char *err, size_t en)
{
	(void)err;
	(void)en;
	memset(dev, 0, sizeof(*dev));
	snprintf(dev->name, sizeof(dev->name), "CPU emulation of the CUDA backend (tests/gpu/emul.c)");
	dev->major = 9;
	dev->minor = 0;
	dev->total = device_total();
	dev->free = dev->total - dev_used;
	snprintf(dev->gemm, sizeof(dev->gemm), "the 8-bit kernels (an emulation: no cuBLAS)");
	return 0;
}

static uint64_t mat_bytes(uint32_t type, uint64_t rows, uint64_t cols)
{
	return pcu_mat_bytes(type, rows, cols);
}

/* Matrix @s's bytes (from the host) packed at @dst, as stage_mat() and k_pack do. */
static void stage_mat(struct emat *d, const struct pcu_mat *s, uint8_t *raw, uint8_t *dst)
{
	const struct pcu_layout l = pcu_layout(s->type);
	uint64_t blocks = l.elems ? s->rows * (s->cols / l.elems) : 0, b;

	d->type = s->type;
	d->rows = s->rows;
	d->cols = s->cols;
	if (!l.elems) {
		d->plain = dst;
		memcpy(dst, s->data, mat_bytes(s->type, s->rows, s->cols));
		return;
	}
	d->qs = dst;
	d->meta = dst + blocks * l.qb;
	memcpy(raw, s->data, blocks * l.raw);
	for (b = 0; b < blocks; b++)
		pcu_pack_block(s->type, raw + b * l.raw, d->qs + b * l.qb, d->meta + b * l.mb);
}

static void mat_free(struct emat *w)
{
	if (w->owned)
		dfree(w->qs ? (void *)w->qs : w->plain);
	w->owned = false;
}

static void model_free(struct pcu_model *m)
{
	const char *log = getenv("PINFER_EMUL_LOG");
	uint32_t i;

	if (!m)
		return;
	for (i = 0; m->slots && i < m->ring; i++)
		dfree(m->slots[i]);
	free(m->slots);
	free(m->views);
	dfree(m->stage);
	for (i = 0; m->layers && i < m->n_layers; i++) {
		struct elayer *d = &m->layers[i];
		int j;

		for (j = 0; j < PCU_N_MATS; j++)
			mat_free(&d->w[j]);
		dfree(d->attn_norm); dfree(d->ffn_norm); dfree(d->q_norm); dfree(d->k_norm);
		dfree(d->bq); dfree(d->bk); dfree(d->bv);
	}
	free(m->layers);
	free(m->srcs);
	mat_free(&m->output);
	dfree(m->output_norm);
	free(m);
	if (log && *log) {
		FILE *f = fopen(log, "a");

		if (f) {
			fprintf(f, "fetches %u peak %" PRIu64 "\n", n_fetches, dev_peak);
			fclose(f);
		}
	}
}

static int upload_vec(float **out, const float *v, size_t n, char *err, size_t en)
{
	*out = NULL;
	if (!v)
		return 0;
	DALLOC(*out, n * sizeof(float), "a vector");
	memcpy(*out, v, n * sizeof(float));
	return 0;
out:
	return -1;
}

static uint64_t raw_bytes(const struct pcu_mat *s)
{
	return pcu_raw_bytes(s->type, s->rows, s->cols);
}

/* The contract: a matrix's bytes lie in the region given for registration (@lo, @n). */
static int in_region(const void *lo_, size_t n, const struct pcu_mat *s, const char *what,
		     uint32_t li, char *err, size_t en)
{
	const uint8_t *lo = lo_, *p = s->data;
	uint64_t bytes = raw_bytes(s) ? raw_bytes(s) : mat_bytes(s->type, s->rows, s->cols);

	if (!n || (p >= lo && bytes <= n && (uint64_t)(p - lo) <= n - bytes))
		return 0;
	return fail(err, en, "CUDA (emulated): %s of GPU layer %u (%" PRIu64 " bytes at %p) is not in the region handed over for registration (%zu bytes at %p)",
		    what, li, bytes, s->data, n, lo_);
}

static int upload_mat(struct emat *d, const struct pcu_mat *s, uint8_t *scratch, const char *name,
		      char *err, size_t en)
{
	uint64_t bytes = mat_bytes(s->type, s->rows, s->cols);
	uint8_t *dst;

	memset(d, 0, sizeof(*d));
	if (!bytes)
		return fail(err, en, "%s: type %u with %" PRIu64 " columns has no CUDA kernel", name,
			    s->type, s->cols);
	DALLOC(dst, bytes, name);
	d->owned = true;
	stage_mat(d, s, scratch, dst);
	return 0;
out:
	return -1;
}

static int model_create(struct pcu_model **out, const struct pcu_model_desc *dsc, char *err, size_t en)
{
	static const char *const names[PCU_N_MATS] = { "attn_q", "attn_k", "attn_v", "attn_output",
						   "ffn_gate", "ffn_up", "ffn_down" };
	const struct pcu_config *cf = &dsc->cfg;
	size_t qd = (size_t)cf->n_head * cf->head_dim, kvd = (size_t)cf->n_head_kv * cf->head_dim;
	struct pcu_model *m = calloc(1, sizeof(*m));
	uint64_t scratch_bytes = 0, slot_raw = 0;
	uint8_t *scratch = NULL;
	uint32_t i, j;
	int ret = -1;

	*out = NULL;
	if (!m)
		return fail(err, en, "out of memory");
	if (injected("model_create", &n_model_create, err, en))
		goto out;
	if (cf->head_dim % LANES || cf->head_dim > MAX_HEAD || cf->n_rot > cf->head_dim ||
	    !cf->n_head_kv || cf->n_head % cf->n_head_kv) {
		fail(err, en, "CUDA: heads of %u dimensions (%u rotated), %u query and %u KV heads: the kernels need a multiple of 32 up to %d",
		     cf->head_dim, cf->n_rot, cf->n_head, cf->n_head_kv, MAX_HEAD);
		goto out;
	}
	m->cfg = *cf;
	m->n_layers = dsc->n_layers;
	m->host_base = dsc->host_base;
	m->host_bytes = dsc->host_bytes;
	m->fetch = dsc->fetch;
	m->done = dsc->done;
	m->arg = dsc->arg;
	m->layers = calloc(dsc->n_layers + 1, sizeof(*m->layers));
	m->srcs = calloc((size_t)(dsc->n_layers + 1) * PCU_N_MATS, sizeof(*m->srcs));
	if (!m->layers || !m->srcs) {
		fail(err, en, "out of memory");
		goto out;
	}
	for (i = 0; i < dsc->n_layers; i++) {
		const struct pcu_layer *s = &dsc->layers[i];
		uint64_t packed = 0;

		bool ringed = s->streamed == PCU_FROM_HOST || s->streamed == PCU_FROM_DRIVE;
		bool drive = s->streamed == PCU_FROM_DRIVE || s->streamed == PCU_DRIVE_ONCE;

		m->layers[i].stream_ix = -1;
		if (drive && (!dsc->fetch || !dsc->done)) {
			fail(err, en, "CUDA: GPU layer %u is read from the drive, and there is no fetch()",
			     i);
			goto out;
		}
		for (j = 0; j < PCU_N_MATS; j++) {
			const struct pcu_mat *ms = &s->mats[j];

			if (!drive && in_region(dsc->host_base, dsc->host_bytes, ms, names[j], i, err, en))
				goto out;
			if (ringed) {
				slot_raw = raw_bytes(ms) > slot_raw ? raw_bytes(ms) : slot_raw;
				packed += pcu_slot_room(ms->type, ms->rows, ms->cols);
			} else if (raw_bytes(ms) > scratch_bytes) {
				scratch_bytes = raw_bytes(ms);
			}
		}
		if (ringed) {
			m->slot_packed = packed > m->slot_packed ? packed : m->slot_packed;
			memcpy(&m->srcs[(size_t)i * PCU_N_MATS], s->mats, sizeof(s->mats));
			m->layers[i].src = &m->srcs[(size_t)i * PCU_N_MATS];
			m->layers[i].stream_ix = (int)m->n_streamed++;
			m->layers[i].from_drive = drive;
		}
	}
	if (dsc->output && raw_bytes(dsc->output) > scratch_bytes)
		scratch_bytes = raw_bytes(dsc->output);
	if (scratch_bytes)
		DALLOC(scratch, scratch_bytes, "the upload's scratch");
	for (i = 0; i < dsc->n_layers; i++) {
		const struct pcu_layer *s = &dsc->layers[i];
		struct elayer *d = &m->layers[i];
		const struct pcu_mat *src = d->stream_ix >= 0 ? NULL : s->mats;	/* ring: at each call */
		struct pcu_mat fetched[PCU_N_MATS];
		int bad = 0;

		if (s->streamed == PCU_DRIVE_ONCE) {	/* read from the drive now, uploaded once */
			if (m->fetch(m->arg, i, fetched, err, en))
				goto out;
			n_fetches++;
			src = fetched;
			for (j = 0; j < PCU_N_MATS && !bad; j++)
				bad = in_region(m->host_base, m->host_bytes, &src[j], names[j], i, err,
						en);
		}
		for (j = 0; j < PCU_N_MATS && src && !bad; j++)
			bad = upload_mat(&d->w[j], &src[j], scratch, names[j], err, en);
		if (s->streamed == PCU_DRIVE_ONCE)
			m->done(m->arg, i);
		if (bad)
			goto out;
		if (upload_vec(&d->attn_norm, s->attn_norm, cf->n_embd, err, en) ||
		    upload_vec(&d->ffn_norm, s->ffn_norm, cf->n_embd, err, en) ||
		    upload_vec(&d->q_norm, s->q_norm, cf->head_dim, err, en) ||
		    upload_vec(&d->k_norm, s->k_norm, cf->head_dim, err, en) ||
		    upload_vec(&d->bq, s->bq, qd, err, en) ||
		    upload_vec(&d->bk, s->bk, kvd, err, en) ||
		    upload_vec(&d->bv, s->bv, kvd, err, en))
			goto out;
	}
	if (dsc->output) {
		m->has_output = 1;
		if (upload_mat(&m->output, dsc->output, scratch, "output", err, en) ||
		    upload_vec(&m->output_norm, dsc->output_norm, cf->n_embd, err, en))
			goto out;
	}
	if (m->n_streamed) {
		m->ring = dsc->ring < 2 ? 2 : dsc->ring;
		m->slots = calloc(m->ring, sizeof(*m->slots));
		m->views = calloc(m->ring, sizeof(*m->views));
		if (!m->slots || !m->views) {
			fail(err, en, "out of memory");
			goto out;
		}
		DALLOC(m->stage, slot_raw + 1, "the streaming ring");
		for (i = 0; i < m->ring; i++)
			DALLOC(m->slots[i], m->slot_packed + 1, "the streaming ring");
	}
	ret = 0;
out:
	dfree(scratch);
	if (ret)
		model_free(m);
	else
		*out = m;
	return ret;
}

static void ctx_free(struct pcu_ctx *c)
{
	if (!c)
		return;
	dfree(c->kc); dfree(c->vc); dfree(c->x); dfree(c->xb); dfree(c->q); dfree(c->k);
	dfree(c->v); dfree(c->out); dfree(c->hb); dfree(c->hb2); dfree(c->tmp); dfree(c->cs);
	dfree(c->logits); dfree(c->aq); dfree(c->ads); dfree(c->part);
	dfree(c->dpos); dfree(c->dtoff); dfree(c->dtab);
	free(c);
}

static int ctx_create(struct pcu_ctx **out, struct pcu_model *m, uint32_t n_ctx,
		      uint32_t n_blocks, uint32_t block, uint32_t max_batch, char *err, size_t en)
{
	struct pcu_ctx *c = calloc(1, sizeof(*c));
	uint64_t b[PCU_N_BUFS];
	int ret = -1;

	*out = NULL;
	if (!c)
		return fail(err, en, "out of memory");
	if (injected("ctx_create", &n_ctx_create, err, en))
		goto out;
	if (!n_ctx || !n_blocks || !block || !max_batch) {
		fail(err, en, "CUDA: a context of %u positions in %u blocks of %u, batches of %u",
		     n_ctx, n_blocks, block, max_batch);
		goto out;
	}
	pcu_ctx_bytes(&m->cfg, m->n_layers, n_ctx, n_blocks, block, max_batch, m->has_output, b);
	c->m = m;
	c->n_ctx = n_ctx;
	c->n_blocks = n_blocks;
	c->block = block;
	c->max_batch = max_batch;
	DALLOC(c->kc, b[PCU_BUF_KC], "the KV cache");
	DALLOC(c->vc, b[PCU_BUF_VC], "the KV cache");
	DALLOC(c->x, b[PCU_BUF_X], "x");
	DALLOC(c->xb, b[PCU_BUF_XB], "xb");
	DALLOC(c->q, b[PCU_BUF_Q], "q");
	DALLOC(c->k, b[PCU_BUF_K], "k");
	DALLOC(c->v, b[PCU_BUF_V], "v");
	DALLOC(c->out, b[PCU_BUF_OUT], "out");
	DALLOC(c->hb, b[PCU_BUF_HB], "hb");
	DALLOC(c->hb2, b[PCU_BUF_HB2], "hb2");
	DALLOC(c->tmp, b[PCU_BUF_TMP], "tmp");
	DALLOC(c->cs, b[PCU_BUF_CS], "cs");
	DALLOC(c->aq, b[PCU_BUF_AQ], "aq");
	DALLOC(c->ads, b[PCU_BUF_ADS], "ads");
	DALLOC(c->dpos, b[PCU_BUF_POS], "pos");	/* the backend's tables: counted, not used */
	DALLOC(c->dtoff, b[PCU_BUF_TOFF], "toff");
	DALLOC(c->dtab, b[PCU_BUF_TAB], "tab");
	/* attention's parts: here a row of scores (at least as many floats) */
	DALLOC(c->part, b[PCU_BUF_PART] > 4ull * n_ctx ? b[PCU_BUF_PART] : 4ull * n_ctx,
	       "attention's parts");
	if (m->has_output)
		DALLOC(c->logits, b[PCU_BUF_LOGITS], "the logits");
	ret = 0;
out:
	if (ret)
		ctx_free(c);
	else
		*out = c;
	return ret;
}

/*
 * Streamed layer @li into its slot: its matrices from the host (fetched
 * from the drive first, and given back after), packed (prefetch()); NULL
 * and @err when fetching fails or breaks the contract.
 */
static const struct elayer *fill_slot(struct pcu_model *m, uint32_t li, char *err, size_t en)
{
	static const char *const names[PCU_N_MATS] = { "attn_q", "attn_k", "attn_v", "attn_output",
						   "ffn_gate", "ffn_up", "ffn_down" };
	const struct elayer *d = &m->layers[li];
	uint32_t s = (uint32_t)d->stream_ix % m->ring;
	struct elayer *v = &m->views[s];
	struct pcu_mat fetched[PCU_N_MATS];
	const struct pcu_mat *src = d->src;
	uint64_t packed = 0;
	int j, bad = 0;

	if (d->from_drive) {
		if (m->fetch(m->arg, li, fetched, err, en))
			return NULL;
		n_fetches++;
		src = fetched;
		for (j = 0; j < PCU_N_MATS && !bad; j++)
			bad = in_region(m->host_base, m->host_bytes, &src[j], names[j], li, err, en);
	}
	*v = *d;
	for (j = 0; j < PCU_N_MATS && !bad; j++) {
		const struct pcu_mat *ms = &src[j];

		memset(&v->w[j], 0, sizeof(v->w[j]));
		stage_mat(&v->w[j], ms, m->stage, m->slots[s] + packed);
		packed += pcu_slot_room(ms->type, ms->rows, ms->cols);
	}
	if (d->from_drive)
		m->done(m->arg, li);
	if (!bad && injected("fill", &n_fills, err, en))
		bad = -1;	/* as a failed copy: the layer fetched and given back, the call failed */
	return bad ? NULL : v;
}

static int layers(struct pcu_ctx *c, float *x, uint32_t n, const uint32_t *pos,
		  const uint32_t *const *tabs, const float *rope_cs, uint32_t flags, char *err,
		  size_t en)
{
	const struct pcu_config *f = &c->m->cfg;
	uint32_t li, t, i;

	if (!n || n > c->max_batch)
		return fail(err, en, "CUDA: %u tokens: not 1 to the batch of %u", n, c->max_batch);
	for (t = 0; t < n; t++) {	/* as put_tables() */
		if (pos[t] >= c->n_ctx)
			return fail(err, en, "CUDA: a token at position %u: past the context of %u",
				    pos[t], c->n_ctx);
		for (i = 0; i <= pos[t] / c->block; i++)
			if (tabs[t][i] >= c->n_blocks)
				return fail(err, en, "CUDA: block %u in a sequence's table: past the cache's %u blocks",
					    tabs[t][i], c->n_blocks);
	}
	c->pos = pos;
	c->tabs = tabs;
	if (injected("layers", &n_layers_calls, err, en))
		return -1;
	c->exact = flags & PCU_EXACT;
	memcpy(c->x, x, (size_t)n * f->n_embd * 4);
	memcpy(c->cs, rope_cs, (size_t)n * f->n_rot * 4);
	for (li = 0; li < c->m->n_layers; li++) {
		const struct elayer *d = &c->m->layers[li];

		if (d->stream_ix >= 0 && !(d = fill_slot(c->m, li, err, en)))
			return -1;
		layer(c, d, li, n);
	}
	memcpy(x, c->x, (size_t)n * f->n_embd * 4);
	return 0;
}

static int logits(struct pcu_ctx *c, const float *x, uint32_t k, float *lg, uint32_t flags,
		  char *err, size_t en)
{
	const struct pcu_model *m = c->m;
	size_t E = m->cfg.n_embd, V = m->cfg.n_vocab;
	uint32_t t;

	if (!m->has_output || k > PCU_LOGIT_ROWS || k > c->max_batch)
		return fail(err, en, "CUDA: %u rows of logits: no output layer on the GPU, or more than %u",
			    k, PCU_LOGIT_ROWS);
	if (injected("logits", &n_logits_calls, err, en))
		return -1;
	c->exact = flags & PCU_EXACT;
	memcpy(c->x, x, k * E * 4);
	for (t = 0; t < k; t++)
		rmsnorm(c->x + t * E, m->output_norm, c->xb + t * E, E, m->cfg.rms_eps);
	quantize(c, c->xb, k, E);
	matmul(c, &m->output, c->xb, NULL, k, c->logits);
	memcpy(lg, c->logits, k * V * 4);
	return 0;
}

static const struct pcu_api api = {
	PCU_ABI, probe, mat_bytes, model_create, model_free, ctx_create, ctx_free, layers, logits,
};

__attribute__((visibility("default"))) const struct pcu_api *pinfer_cuda_api(void)
{
	return &api;
}
