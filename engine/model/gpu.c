// SPDX-License-Identifier: MIT
/*
 * GPU layers (gpu.h): the placement, the CUDA backend opened with dlopen(),
 * and the hand-offs between the CPU's forward pass and the GPU's layers.
 */
#include "gpu.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda/blocks.h"
#include "cuda/cuda_api.h"
#include "format/gguf.h"
#include "format/ggml_types.h"
#include "placement.h"
#include "session.h"

struct llm_gpu {
	void *lib;
	const struct pcu_api *api;
	struct pcu_model *pm;
	struct pcu_device dev;
	/* while model_create() uploads the layers read once: how to read them */
	const struct llm_layout *lay;
	struct pinfer_loader *loader;
	pinfer_progress_fn progress;	/* and the bytes of them read, of all */
	void *progress_arg;
	uint64_t once_done, once_total;
};

/* Device bytes of @t (0: no kernel for its type). */
static uint64_t mat_bytes(const struct llm_tensor *t)
{
	return pcu_mat_bytes(t->type, t->rows, t->cols);
}

static const char *tensor_name(const struct llm_model *m, const struct llm_tensor *t, char *buf,
			       size_t n)
{
	uint64_t i;

	for (i = 0; i < m->gguf->n_tensors; i++)
		if (m->gguf->tensors[i].offset == t->file_off && t->bytes) {
			snprintf(buf, n, "%.*s", (int)m->gguf->tensors[i].name.len,
				 m->gguf->tensors[i].name.ptr);
			return buf;
		}
	return "a tensor";
}

/* The backend's view of @c's shapes. */
static struct pcu_config pcu_cfg(const struct llm_config *c)
{
	return (struct pcu_config){
		.n_embd = c->n_embd, .n_ff = c->n_ff, .n_head = c->n_head, .n_head_kv = c->n_head_kv,
		.head_dim = c->head_dim, .n_rot = c->n_rot, .n_vocab = c->n_vocab,
		.rope_neox = c->rope == LLM_ROPE_NEOX, .rms_eps = c->rms_eps,
	};
}

/*
 * The device bytes of a session: every buffer the backend's ctx_create() may
 * allocate, for one sequence's own cache of @n_ctx, or (@seqs > 0) a
 * server's of @seqs such in blocks.
 */
static uint64_t session_bytes(const struct llm_config *c, uint32_t layers, uint32_t n_ctx,
			      uint32_t seqs, bool output)
{
	struct pcu_config f = pcu_cfg(c);
	uint32_t block = seqs ? LLM_KV_BLOCK : n_ctx;
	uint32_t n_blocks = seqs ? seqs * ((n_ctx + LLM_KV_BLOCK - 1) / LLM_KV_BLOCK) : 1;
	uint64_t b[PCU_N_BUFS], sum = 0;
	int i;

	pcu_ctx_bytes(&f, layers, n_ctx, n_blocks, block, LLM_BATCH, output, b);
	for (i = 0; i < PCU_N_BUFS; i++)
		sum += b[i];
	return sum;
}

#define GPU_RING 2	/* slots for streamed layers: one in use, one filling */

/*
 * Layer @l's device bytes: its matrices packed (@mats), its vectors
 * (@vecs), a streaming slot's room for it (@slot: each matrix packed,
 * 256-aligned, as the backend allocates them) and the staging buffer's
 * (@stage: its largest matrix's file bytes).
 */
static void layer_bytes(const struct llm_model *m, uint32_t l, uint64_t *mats, uint64_t *vecs,
			uint64_t *slot, uint64_t *stage)
{
	const struct llm_layer *ly = &m->layers[l];
	const struct llm_tensor *vs[] = { &ly->attn_norm, &ly->ffn_norm, &ly->q_norm, &ly->k_norm,
					  &ly->bq, &ly->bk, &ly->bv };
	unsigned i;

	*mats = *vecs = *slot = *stage = 0;
	for (i = 0; i < LLM_DENSE_MATS; i++) {
		const struct llm_tensor *t = llm_layer_cmat(ly, i);
		uint64_t raw = pcu_raw_bytes(t->type, t->rows, t->cols);

		*mats += mat_bytes(t);
		*slot += pcu_slot_room(t->type, t->rows, t->cols);
		*stage = raw > *stage ? raw : *stage;
	}
	for (i = 0; i < sizeof(vs) / sizeof(vs[0]); i++)
		*vecs += vs[i]->bytes ? vs[i]->cols * 4 : 0;
}

/*
 * The fp16 copy of one quantized matrix that batches multiply through
 * cuBLAS (the largest of layers @first..), allocated whenever cuBLAS may be
 * there.
 */
static uint64_t gemm_bytes(const struct llm_model *m, uint32_t first)
{
	uint64_t most = 0;
	uint32_t l;
	unsigned i;

	for (l = first; l < m->cfg.n_layer; l++)
		for (i = 0; i < LLM_DENSE_MATS; i++) {
			const struct llm_tensor *t = llm_layer_cmat(&m->layers[l], i);

			if (pcu_layout(t->type).elems && t->rows * t->cols * 2 > most)
				most = t->rows * t->cols * 2;
		}
	return most;
}

/*
 * Every GPU layer resident: the @drive last ones, which the host's budget
 * streams from the drive, are read from it once, at load, and the host
 * streams only the layers before them.
 */
static int keep_all(struct llm_plan *p, const struct llm_layout *layout, uint32_t drive)
{
	p->gpu_once = drive;
	p->streamed = llm_layout_streamed(p, layout);
	return 0;
}

/*
 * Fit the plan's GPU part into @limit bytes of device memory (0: no
 * limit): everything resident if it fits; else without the output layer
 * if that fits; else (the output layer still on the CPU) the last layers
 * streamed through a ring of slots, as few as fit. An error when not even
 * the ring fits. @layout: the host's plan's.
 */
static int fit(struct llm_plan *p, const struct llm_model *m, const struct llm_layout *layout,
	       uint64_t limit, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	uint32_t first = c->n_layer - p->gpu_layers, l, k, drive = 0;
	uint64_t out = mat_bytes(&m->output) + 4 * (uint64_t)c->n_embd, mats, vecs, slot, stage;
	uint64_t lay = 0, vec = 0, fixed, ring;

	if (p->ring && p->n_resident < c->n_layer)	/* the budget streams these from the drive */
		drive = c->n_layer - (p->n_resident > first ? p->n_resident : first);
	p->gpu_mem = limit;
	p->gpu_streamed = p->gpu_ring = p->gpu_drive = p->gpu_once = 0;
	p->gpu_slot = p->gpu_stream_bytes = ring = 0;
	p->streamed = llm_layout_streamed(p, layout);
	vec = gemm_bytes(m, first);	/* counted with the vectors: resident, whatever streams */
	for (l = first; l < c->n_layer; l++) {
		layer_bytes(m, l, &mats, &vecs, &slot, &stage);
		lay += mats;
		vec += vecs;
		p->gpu_slot = slot > p->gpu_slot ? slot : p->gpu_slot;
		ring = stage > ring ? stage : ring;
	}
	ring += GPU_RING * p->gpu_slot;	/* the slots and the staging buffer */
	p->gpu_output = mat_bytes(&m->output) && m->output_norm.type == GGML_TYPE_F32;
	p->gpu_session = session_bytes(c, p->gpu_layers, p->n_ctx, p->gpu_seqs, p->gpu_output);
	p->gpu_weights = lay + vec + (p->gpu_output ? out : 0);
	if (!limit || p->gpu_weights + p->gpu_session <= limit)
		return keep_all(p, layout, drive);
	if (p->gpu_output &&
	    lay + vec + session_bytes(c, p->gpu_layers, p->n_ctx, p->gpu_seqs, false) <= limit) {
		p->gpu_output = false;
		p->gpu_session = session_bytes(c, p->gpu_layers, p->n_ctx, p->gpu_seqs, false);
		p->gpu_weights = lay + vec;
		return keep_all(p, layout, drive);
	}
	/*
	 * Stream the last layers, the output layer on the CPU (its bytes would
	 * make more layers stream, and a streamed layer costs a copy per call):
	 * keep the first k resident, the most that fit beside the ring (never
	 * all: they would have fitted without it). Those of them the host's
	 * budget streams are read from the drive once, at load; the host's
	 * ring cycles over the rest of its streamed layers (llm_streams()).
	 */
	p->gpu_output = false;
	p->gpu_session = session_bytes(c, p->gpu_layers, p->n_ctx, p->gpu_seqs, false);
	fixed = vec + p->gpu_session + ring;
	if (limit && fixed > limit)
		return pinfer_fail(err, ENOMEM, "-ngl %" PRIu32 ": %.1f MiB of GPU memory hold not even the KV cache, buffers, norms and a ring of %d slots of %.1f MiB for streamed layers (%.1f MiB); lower -ngl or --ctx, or raise --gpu-mem",
				   p->gpu_layers, limit / 1048576.0, GPU_RING, p->gpu_slot / 1048576.0,
				   fixed / 1048576.0);
	for (k = 0, lay = 0; k < p->gpu_layers; k++) {
		layer_bytes(m, first + k, &mats, &vecs, &slot, &stage);
		if (limit && fixed + lay + mats > limit)
			break;
		lay += mats;
	}
	p->gpu_once = drive && first + k > c->n_layer - drive ? first + k - (c->n_layer - drive) : 0;
	p->gpu_drive = drive - p->gpu_once;
	p->gpu_streamed = p->gpu_layers - k;
	p->streamed = llm_layout_streamed(p, layout);
	p->gpu_ring = GPU_RING;
	p->gpu_weights = lay + vec + ring;
	for (l = first + k; l < c->n_layer; l++) {
		layer_bytes(m, l, &mats, &vecs, &slot, &stage);
		p->gpu_stream_bytes += mats;
	}
	return 0;
}

/*
 * The host's ring: no more slots than the layers it streams at every pass,
 * and one, to stage the reads at load, when the GPU keeps all of those it
 * streams. The budget's other slots would be pinned and never used.
 */
static void host_ring(struct llm_plan *p)
{
	uint32_t k = llm_streamed_layers(p, NULL, 0);

	if (!p->ring)
		return;
	k = k < p->ring ? k : p->ring;
	k = k ? k : 1;
	p->region -= (uint64_t)(p->ring - k) * p->slot;
	p->ring = k;
}

int llm_gpu_plan(struct llm_plan *p, const struct llm_model *m, const struct llm_layout *lay,
		 const struct llm_load_opts *o, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	uint32_t ngl = o->gpu_layers, first, l;
	char name[96];
	int ret;

	p->gpu_layers = ngl < c->n_layer ? ngl : c->n_layer;
	p->gpu_seqs = o->gpu_seqs;
	p->gpu_drive = p->gpu_once = 0;
	p->gpu_output = false;
	p->gpu_weights = p->gpu_session = p->gpu_mem = 0;
	p->gpu_streamed = p->gpu_ring = 0;
	if (!ngl)
		return 0;
	if (c->n_expert)
		return pinfer_fail(err, ENOTSUP, "-ngl: mixture-of-experts layers do not run on the GPU yet (this model has %" PRIu32 " experts per layer)",
				   c->n_expert);
	first = c->n_layer - p->gpu_layers;
	for (l = first; l < c->n_layer; l++) {
		const struct llm_layer *ly = &m->layers[l];
		const struct llm_tensor *vecs[] = { &ly->attn_norm, &ly->ffn_norm, &ly->q_norm,
						    &ly->k_norm, &ly->bq, &ly->bk, &ly->bv };
		unsigned i;

		for (i = 0; i < LLM_DENSE_MATS; i++) {
			const struct llm_tensor *t = llm_layer_cmat(ly, i);

			if (!mat_bytes(t))
				return pinfer_fail(err, ENOTSUP, "-ngl: %s is %s, which has no GPU kernel (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, F32 have)",
						   tensor_name(m, t, name, sizeof(name)),
						   ggml_type_name(t->type));
		}
		for (i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++)
			if (vecs[i]->bytes && vecs[i]->type != GGML_TYPE_F32)
				return pinfer_fail(err, ENOTSUP, "-ngl: %s is %s; the GPU takes F32 vectors",
						   tensor_name(m, vecs[i], name, sizeof(name)),
						   ggml_type_name(vecs[i]->type));
	}
	ret = fit(p, m, lay, o->gpu_mem, err);
	if (!ret)
		host_ring(p);
	return ret;
}

/* Open the backend: $PINFER_CUDA_LIB, or libpinfer-cuda.so beside this program, or on the path. */
static int open_lib(void **lib, const struct pcu_api **api, struct pinfer_err *err)
{
	const char *env = getenv("PINFER_CUDA_LIB");
	char exe[PATH_MAX - 32], path[PATH_MAX];	/* room for the name after it */
	const size_t n = sizeof(path);
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	pcu_api_fn fn;

	*lib = NULL;
	if (env && *env) {
		snprintf(path, n, "%s", env);
	} else if (len > 0) {
		exe[len] = 0;
		*strrchr(exe, '/') = 0;
		snprintf(path, n, "%s/libpinfer-cuda.so", exe);
		if (access(path, F_OK))
			snprintf(path, n, "libpinfer-cuda.so");
	} else {
		snprintf(path, n, "libpinfer-cuda.so");
	}
	*lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!*lib)
		return pinfer_fail(err, ENOENT, "no CUDA backend: %s (build it with `make cuda`; it needs the CUDA toolkit's nvcc)",
				   dlerror());
	*(void **)&fn = dlsym(*lib, PCU_API_SYMBOL);
	*api = fn ? fn() : NULL;
	if (!*api || (*api)->abi != PCU_ABI) {
		dlclose(*lib);
		*lib = NULL;
		return pinfer_fail(err, EINVAL, "%s: not a CUDA backend of this pinfer (ABI %u wanted)",
				   path, PCU_ABI);
	}
	return 0;
}

int llm_gpu_probe(struct pcu_device *dev, struct pinfer_err *err)
{
	const struct pcu_api *api;
	char msg[256];
	void *lib;
	int ret = open_lib(&lib, &api, err);

	if (ret)
		return ret;
	ret = api->probe(dev, msg, sizeof(msg)) ? pinfer_fail(err, ENODEV, "%s", msg) : 0;
	dlclose(lib);
	return ret;
}

static struct pcu_mat pcu_mat(const struct llm_tensor *t)
{
	return (struct pcu_mat){ .type = t->type, .rows = t->rows, .cols = t->cols, .data = t->data,
				 .row_bytes = t->row_bytes };
}

/* @ly's matrices as the backend takes them: pcu_layer's mats[], or fetch()'s. */
static void pcu_mats(const struct llm_layer *ly, struct pcu_mat mats[PCU_N_MATS])
{
	_Static_assert((int)LLM_DENSE_MATS == (int)PCU_N_MATS, "the same seven matrices");
	unsigned i;

	for (i = 0; i < LLM_DENSE_MATS; i++)
		mats[i] = pcu_mat(llm_layer_cmat(ly, i));
}

static const float *vec(const struct llm_tensor *t)
{
	return t->bytes ? t->data : NULL;
}

#define MIB 1048576.0

/*
 * Layer @l, which the budget streams from the drive, read once for the GPU
 * (at load, before the stream starts): into the ring's first slot, its
 * matrices pointed there in the file's layout.
 */
static int read_once(struct llm_model *m, uint32_t l, struct pinfer_err *err)
{
	const struct llm_layout *lay = m->gpu->lay;
	struct pinfer_range rg = llm_layout_read(lay, m->gguf->file_size, l, lay->resident);
	struct llm_gpu *g = m->gpu;
	int ret = pinfer_load(g->loader, &rg, 1, err);

	if (ret)
		return ret;
	llm_layer_point(&m->layers[l], (uint8_t *)pinfer_region_ptr(m->region) + lay->resident,
			rg.file_off, true);
	g->once_done += rg.len;
	if (g->progress)
		g->progress(g->once_done, g->once_total, g->progress_arg);
	return 0;
}

/*
 * The backend's fetch() and done() for a GPU layer the budget streams from
 * the drive: at load, a layer the GPU keeps is read once (read_once());
 * else the host's ring reads it (llm_stream_acquire(), in the file's
 * layout, never packed for the CPU) and gets it back once copied.
 */
static int gpu_fetch(void *arg, uint32_t i, struct pcu_mat *mats, char *msg, size_t n)
{
	struct llm_model *m = arg;
	uint32_t l = m->cfg.n_layer - m->plan.gpu_layers + i;
	struct pinfer_err e = { 0 };
	int ret = m->gpu->loader ? read_once(m, l, &e) : llm_stream_acquire(m, l, NULL, false, &e);

	if (ret) {
		snprintf(msg, n, "reading layer %" PRIu32 " for the GPU: %s", l, e.msg);
		return -1;
	}
	pcu_mats(&m->layers[l], mats);
	return 0;
}

static void gpu_done(void *arg, uint32_t i)
{
	struct llm_model *m = arg;
	uint32_t l = m->cfg.n_layer - m->plan.gpu_layers + i;
	unsigned k;

	if (!m->gpu->loader) {
		llm_stream_release(m, l);
		return;
	}
	for (k = 0; k < LLM_DENSE_MATS; k++)	/* the slot is the stream's from now on */
		llm_layer_mat(&m->layers[l], k)->data = NULL;
}

int llm_gpu_open(struct llm_model *m, uint64_t *limit, struct pinfer_err *err)
{
	struct llm_gpu *g = calloc(1, sizeof(*g));
	char msg[512];
	int ret;

	if (!g)
		return pinfer_fail(err, ENOMEM, "out of memory");
	m->gpu = g;
	ret = open_lib(&g->lib, &g->api, err);
	if (ret)
		return ret;
	if (g->api->probe(&g->dev, msg, sizeof(msg)))
		return pinfer_fail(err, ENODEV, "-ngl %" PRIu32 ": %s", m->plan.gpu_layers, msg);
	*limit = g->dev.free / 20 * 19;	/* less 5%: fragmentation */
	return 0;
}

int llm_gpu_start(struct llm_model *m, const struct llm_layout *lay, struct pinfer_loader *l,
		  pinfer_progress_fn progress, void *arg, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	struct llm_plan *p = &m->plan;
	uint32_t first = c->n_layer - p->gpu_layers, i;
	struct pcu_model_desc d = { 0 };
	struct llm_gpu *g = m->gpu;
	struct pcu_layer *ls = NULL;
	struct pcu_mat out;
	char msg[512];
	int ret;

	if (!p->gpu_layers)
		return 0;
	ls = calloc(p->gpu_layers, sizeof(*ls));
	if (!ls)
		return pinfer_fail(err, ENOMEM, "out of memory");
	for (i = 0; i < p->gpu_layers; i++) {
		const struct llm_layer *y = &m->layers[first + i];

		ls[i] = (struct pcu_layer){
			.attn_norm = vec(&y->attn_norm), .ffn_norm = vec(&y->ffn_norm),
			.q_norm = vec(&y->q_norm), .k_norm = vec(&y->k_norm),
			.bq = vec(&y->bq), .bk = vec(&y->bk), .bv = vec(&y->bv),
			.streamed = i >= p->gpu_layers - p->gpu_drive - p->gpu_once &&
				    i < p->gpu_layers - p->gpu_drive ? PCU_DRIVE_ONCE :
				    i < p->gpu_layers - p->gpu_streamed ? PCU_RESIDENT :
				    i < p->gpu_layers - p->gpu_drive ? PCU_FROM_HOST : PCU_FROM_DRIVE,
		};
		pcu_mats(y, ls[i].mats);
	}
	out = pcu_mat(&m->output);
	d = (struct pcu_model_desc){
		.cfg = pcu_cfg(c),
		.n_layers = p->gpu_layers, .layers = ls,
		.output = p->gpu_output ? &out : NULL,
		.output_norm = p->gpu_output ? m->output_norm.data : NULL,
		.host_base = pinfer_region_ptr(m->region), .host_bytes = p->region,
		.ring = p->gpu_ring, .fetch = gpu_fetch, .done = gpu_done, .arg = m,
	};
	g->lay = lay;
	g->loader = p->gpu_once ? l : NULL;
	g->progress = progress;
	g->progress_arg = arg;
	for (i = 0; i < p->gpu_layers; i++)
		if (ls[i].streamed == PCU_DRIVE_ONCE)
			g->once_total += llm_layout_read(lay, m->gguf->file_size, first + i, 0).len;
	ret = g->api->model_create(&g->pm, &d, msg, sizeof(msg));
	g->lay = NULL;
	g->loader = NULL;
	g->progress = NULL;
	free(ls);
	return ret ? pinfer_fail(err, EIO, "-ngl %" PRIu32 ": %s", p->gpu_layers, msg) : 0;
}

void llm_gpu_free(struct llm_gpu *g)
{
	if (!g)
		return;
	if (g->pm)
		g->api->model_free(g->pm);
	if (g->lib)
		dlclose(g->lib);
	free(g);
}

const char *llm_gpu_name(const struct llm_model *m)
{
	return m->gpu ? m->gpu->dev.name : "none";
}

bool llm_gpu_layer(const struct llm_model *m, uint32_t l)
{
	return l >= m->cfg.n_layer - m->plan.gpu_layers;
}

int llm_gpu_session(struct llm_session *s, uint32_t n_blocks, struct pinfer_err *err)
{
	const struct llm_gpu *g = s->m->gpu;
	char msg[256];

	if (!g || !g->pm)
		return 0;
	if (g->api->ctx_create(&s->gpu, g->pm, s->n_ctx, n_blocks, s->kv_block, LLM_BATCH, msg,
			       sizeof(msg)))
		return pinfer_fail(err, ENOMEM, "session on the GPU: %s", msg);
	return 0;
}

void llm_gpu_session_free(struct llm_session *s)
{
	if (s->gpu)
		s->m->gpu->api->ctx_free(s->gpu);
	s->gpu = NULL;
}

int llm_gpu_layers(struct llm_session *s, size_t n, struct pinfer_err *err)
{
	const struct llm_gpu *g = s->m->gpu;
	const struct llm_config *c = &s->m->cfg;
	char msg[256];
	size_t i, nb;

	for (i = 0; i < n; i += nb) {
		nb = n - i < LLM_BATCH ? n - i : LLM_BATCH;
		if (g->api->layers(s->gpu, s->x + i * c->n_embd, (uint32_t)nb, s->tpos + i,
				   s->ttab + i, s->rope_cs + i * c->n_rot,
				   (s->exact ? PCU_EXACT : 0) | (s->invariant ? PCU_INVARIANT : 0),
				   msg, sizeof(msg)))
			return pinfer_fail(err, EIO, "GPU layers: %s", msg);
	}
	return 0;
}

int llm_gpu_logits(struct llm_session *s, const float *x, size_t k, float *logits,
		   struct pinfer_err *err)
{
	const struct llm_gpu *g = s->m->gpu;
	size_t E = s->m->cfg.n_embd, V = s->m->cfg.n_vocab, i, nb;
	char msg[256];

	for (i = 0; i < k; i += nb) {
		nb = k - i < PCU_LOGIT_ROWS ? k - i : PCU_LOGIT_ROWS;
		if (g->api->logits(s->gpu, x + i * E, (uint32_t)nb, logits + i * V,
				   (s->exact ? PCU_EXACT : 0) | (s->invariant ? PCU_INVARIANT : 0),
				   msg, sizeof(msg)))
			return pinfer_fail(err, EIO, "GPU output layer: %s", msg);
	}
	return 0;
}
