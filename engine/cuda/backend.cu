// SPDX-License-Identifier: MIT
/*
 * The CUDA backend (cuda_api.h): whole llama-family layers on device 0.
 *
 * Weights are uploaded once: each matrix's file bytes are copied from the
 * runtime's region (registered with the driver, so the copy is DMA from
 * the pinned pages, with no staging buffer on the host) into a scratch
 * buffer on the device, where a kernel moves each block's quants and
 * scales apart (blocks.h: aligned 32-bit loads). Vectors go as they are.
 *
 * A call runs its layers over a batch of tokens, as the CPU's forward pass
 * does: RMSNorm; activations quantized to 8 bits per 32 (blocks.h); Q, K,
 * V as integer dot products (dp4a), one warp per weight row, up to 8
 * tokens per pass over the row; per-head q/k norms and RoPE; K and V into
 * an fp16 cache on the device; attention with an online softmax, one
 * block per token and head; output projection and residual; SwiGLU.
 * Everything is queued on one stream and the host waits once per call.
 */
#include <cublas_api.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "blocks.h"

#define CUBLAS_STR_(x) #x
#define CUBLAS_STR(x) CUBLAS_STR_(x)

#define WARP 32
#define MM_WARPS 4	/* rows (warps) per block of the matrix-vector kernels */
#define MAX_NT 8	/* tokens per pass over a weight row */
#define ATT_WARPS 4
#define ATT_CHUNK PCU_ATT_CHUNK
#define ATT_TOKENS PCU_ATT_TOKENS
#define MAX_HEAD 256	/* head_dim at most (8 elements per lane) */

static int fail(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -1;
}

#define CK(call, what)								\
	do {									\
		cudaError_t e_ = (call);					\
		if (e_ != cudaSuccess) {					\
			fail(err, en, "CUDA: %s: %s", (what), cudaGetErrorString(e_)); \
			goto out;						\
		}								\
	} while (0)

/* A matrix on the device: packed blocks, or plain rows of F16/F32. */
struct dmat {
	uint32_t type;
	uint64_t rows, cols;
	uint8_t *qs, *meta;	/* packed: [rows][blocks][qb], [rows][blocks][mb] */
	void *plain;		/* F16, F32: [rows][cols] */
	bool owned;		/* allocated for it (not a streaming slot's) */
};


struct dlayer {
	struct dmat w[PCU_N_MATS];	/* PCU_WQ..PCU_W_DOWN */
	float *attn_norm, *ffn_norm, *q_norm, *k_norm, *bq, *bk, *bv;
	const struct pcu_mat *src;	/* a streamed layer's matrices in host memory (PCU_N_MATS) */
	int stream_ix;		/* its place among the streamed layers, or -1: resident */
	bool from_drive;	/* streamed, its matrices from fetch() each time */
};

/*
 * A slot of the streaming ring: a streamed layer packed, and the layer as
 * the kernels see it (view).
 */
struct slot {
	uint8_t *packed;
	cudaEvent_t ready;	/* on the copy stream: the layer is there */
	cudaEvent_t done;	/* on the compute stream: the layer's kernels ran */
	struct dlayer view;
};

/*
 * cuBLAS, opened with dlopen() once per process, on first use (the backend
 * loads without it: batches then go through the 8-bit kernels).
 */
struct blas {
	void *lib;
	cublasStatus_t (*create)(cublasHandle_t *);
	cublasStatus_t (*destroy)(cublasHandle_t);
	cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
	cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
				  int, const void *, const void *, cudaDataType, int, const void *,
				  cudaDataType, int, const void *, void *, cudaDataType, int,
				  cublasComputeType_t, cublasGemmAlgo_t);
};

struct pcu_model {
	struct pcu_config cfg;
	const struct blas *blas;
	cublasHandle_t blas_h;	/* NULL: no cuBLAS */
	__half *wh;		/* a layer matrix dequantized to fp16, for cuBLAS */
	size_t wh_elems;	/* its room */
	uint32_t n_layers;
	struct dlayer *layers;
	struct pcu_mat *srcs;	/* [n_layers][PCU_N_MATS]: the streamed layers' host matrices */
	uint32_t n_streamed, ring;
	struct slot *slots;	/* [ring] */
	uint8_t *stage;		/* a streamed matrix's file bytes, on their way into a slot */
	int has_output;
	struct dmat output;
	float *output_norm;
	void *registered;	/* host memory registered with the driver, or NULL */
	cudaStream_t stream;	/* compute */
	cudaStream_t copy;	/* the streamed layers' copies and packing */
	int (*fetch)(void *, uint32_t, struct pcu_mat *, char *, size_t);	/* PCU_FROM_DRIVE's */
	void (*done)(void *, uint32_t);
	void *arg;
};

/*
 * A KV cache of n_blocks blocks of `block` positions, per layer: rows
 * [layer][n_blocks * block][kv_dim]; position p of a sequence whose block
 * table is tab is row tab[p / block] * block + p % block. A call's tables
 * go to the device as tab (each distinct table once) and toff (each
 * token's table's offset in tab).
 */
struct pcu_ctx {
	struct pcu_model *m;
	uint32_t n_ctx, max_batch, n_blocks, block;
	__half *kc, *vc;	/* [layer][n_blocks * block][kv_dim] */
	uint32_t *pos, *toff, *tab;	/* the call's positions, tables' offsets, tables */
	size_t tab_cap;		/* entries tab has room for */
	const uint32_t **hseen;	/* [max_batch] host: the call's distinct tables, */
	uint32_t *hlen, *hix;	/* their entries, each token's table */
	uint32_t *htoff, *htab;	/* what goes to toff and tab */
	float *x, *xb, *q, *k, *v, *out, *hb, *hb2, *tmp, *cs, *logits;
	int8_t *aq;		/* [max_batch][widest input] */
	float *ads;		/* [max_batch][widest / 32][2] */
	size_t widest;
	__half *xh;		/* [max_batch][widest] a GEMM's inputs in fp16 */
	float *part;		/* [ATT_TOKENS][n_head][chunks][head_dim + 2] attention's parts */
	bool exact;		/* this call: PCU_EXACT */
	bool invariant;		/* this call: PCU_INVARIANT */
	cublasStatus_t blas_status;	/* the first cuBLAS failure of the call */
};

/* ---- device kernels ------------------------------------------------------ */

__device__ __forceinline__ float warp_sum(float v)
{
	for (int o = WARP / 2; o > 0; o /= 2)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v)
{
	for (int o = WARP / 2; o > 0; o /= 2)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* The sum of @v over the block (blockDim.x a multiple of 32, at most 1024). */
static __device__ float block_sum(float v)
{
	__shared__ float part[32];
	int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;

	v = warp_sum(v);
	__syncthreads();
	if (!lane)
		part[w] = v;
	__syncthreads();
	v = lane < nw ? part[lane] : 0.0f;
	return warp_sum(v);
}

/* Each token's row of @x (n of @cols) RMS-normed and times @w; one block per token. */
__global__ void k_rmsnorm(const float *x, const float *w, float *out, int cols, float eps)
{
	const float *r = x + (size_t)blockIdx.x * cols;
	float *o = out + (size_t)blockIdx.x * cols, ss = 0, scale;
	int i;

	for (i = threadIdx.x; i < cols; i += blockDim.x)
		ss += r[i] * r[i];
	ss = block_sum(ss);
	scale = rsqrtf(ss / cols + eps);
	for (i = threadIdx.x; i < cols; i += blockDim.x)
		o[i] = r[i] * scale * w[i];
}

/* 8-bit activations, one warp per 32 of them: pcu_quant_block(), in parallel. */
__global__ void k_quantize(const float *x, int8_t *q, float *ds, size_t blocks)
{
	size_t b = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / WARP;
	int lane = threadIdx.x % WARP;
	float v, d, id;
	int qi;

	if (b >= blocks)
		return;
	v = x[b * PCU_QA + lane];
	d = warp_max(fabsf(v)) / 127.0f;
	id = d > 0 ? 1.0f / d : 0.0f;
	qi = (int)roundf(v * id);
	q[b * PCU_QA + lane] = (int8_t)qi;
	for (int o = WARP / 2; o > 0; o /= 2)
		qi += __shfl_xor_sync(0xffffffffu, qi, o);
	if (!lane) {
		ds[2 * b] = d;
		ds[2 * b + 1] = d * (float)qi;
	}
}

/* The file's blocks at @raw moved into the packed layout, a thread per block. */
__global__ void k_pack(uint32_t type, const uint8_t *raw, uint8_t *qs, uint8_t *meta, size_t blocks)
{
	size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	struct pcu_layout l = pcu_layout(type);

	if (b < blocks)
		pcu_pack_block(type, raw + b * l.raw, qs + b * l.qb, meta + b * l.mb);
}

/* Row @r's NT sums, each spread over the warp's lanes, (+ bias) into out[t][r]. */
template <int NT>
__device__ __forceinline__ void store_rows(const float *sum, int lane, int r, const float *bias,
					   float *out, size_t ostride)
{
	for (int t = 0; t < NT; t++) {
		float s = warp_sum(sum[t]);

		if (!lane)
			out[t * ostride + r] = s + (bias ? bias[r] : 0.0f);
	}
}

/*
 * out[t][r] = W[r] . a[t] (+ bias[r]) for NT tokens: one warp per row,
 * each lane a 32-element sub-block at a time (the weights' words loaded
 * once for all NT tokens). @aq/@ads: token t's activations at t * astride
 * (elements).
 */
template <uint32_t T, int NT>
__global__ void k_mmvq(const uint8_t *__restrict__ qs, const uint8_t *__restrict__ meta, int rows,
		       int cols, const int8_t *__restrict__ aq, const float *__restrict__ ads,
		       size_t astride, const float *__restrict__ bias, float *__restrict__ out,
		       size_t ostride)
{
	const struct pcu_layout L = pcu_layout(T);
	int r = blockIdx.x * MM_WARPS + threadIdx.x / WARP, lane = threadIdx.x % WARP;
	int nblk = cols / (int)L.elems, subs = (int)L.elems / PCU_QA, units = nblk * subs;
	float sum[NT];

	if (r >= rows)
		return;
	for (int t = 0; t < NT; t++)
		sum[t] = 0;
	for (int u = lane; u < units; u += WARP) {
		size_t blk = (size_t)r * nblk + u / subs;

		for (int t = 0; t < NT; t++)
			sum[t] += pcu_dot_sub(T, qs + blk * L.qb, meta + blk * L.mb, u % subs,
					      aq + t * astride + (size_t)u * PCU_QA,
					      ads + 2 * (t * astride / PCU_QA + u));
	}
	store_rows<NT>(sum, lane, r, bias, out, ostride);
}

/* The reference mode's k_mmvq: dequantized weights times the float activations @x. */
template <uint32_t T, int NT>
__global__ void k_mmv_exact(const uint8_t *__restrict__ qs, const uint8_t *__restrict__ meta,
			    int rows, int cols, const float *__restrict__ x, size_t xstride,
			    const float *__restrict__ bias, float *__restrict__ out, size_t ostride)
{
	const struct pcu_layout L = pcu_layout(T);
	int r = blockIdx.x * MM_WARPS + threadIdx.x / WARP, lane = threadIdx.x % WARP;
	int nblk = cols / (int)L.elems, subs = (int)L.elems / PCU_QA, units = nblk * subs;
	float sum[NT], y[PCU_QA];

	if (r >= rows)
		return;
	for (int t = 0; t < NT; t++)
		sum[t] = 0;
	for (int u = lane; u < units; u += WARP) {
		size_t blk = (size_t)r * nblk + u / subs;

		pcu_dequant_sub(T, qs + blk * L.qb, meta + blk * L.mb, u % subs, y);
		for (int t = 0; t < NT; t++) {
			const float *xt = x + t * xstride + (size_t)u * PCU_QA;

			for (int i = 0; i < PCU_QA; i++)
				sum[t] += y[i] * xt[i];
		}
	}
	store_rows<NT>(sum, lane, r, bias, out, ostride);
}

/* As k_mmvq for F16 or F32 rows, with the float activations @x. */
template <typename W, int NT>
__global__ void k_mmvf(const W *__restrict__ w, int rows, int cols, const float *__restrict__ x,
		       size_t xstride, const float *__restrict__ bias, float *__restrict__ out,
		       size_t ostride)
{
	int r = blockIdx.x * MM_WARPS + threadIdx.x / WARP, lane = threadIdx.x % WARP;
	const W *row = w + (size_t)r * cols;
	float sum[NT];

	if (r >= rows)
		return;
	for (int t = 0; t < NT; t++)
		sum[t] = 0;
	for (int i = lane; i < cols; i += WARP) {
		float wi = (float)row[i];

		for (int t = 0; t < NT; t++)
			sum[t] += wi * x[t * xstride + i];
	}
	store_rows<NT>(sum, lane, r, bias, out, ostride);
}

/* The cache row (of a layer) of position @p of token @t's sequence (struct pcu_ctx). */
__device__ __forceinline__ size_t kv_row(const uint32_t *toff, const uint32_t *tab, uint32_t block,
					 uint32_t t, uint32_t p)
{
	return (size_t)tab[toff[t] + p / block] * block + p % block;
}

/*
 * Block (t, h): head h of token t. Q heads first, then K heads, then V
 * heads: q and k RMS-normed per head when the model says (qwen3), rotated
 * (RoPE, angles @cs of the token), and K and V stored as fp16 in the cache
 * at the token's position (@pos, in its sequence's blocks). blockDim.x =
 * head_dim.
 */
__global__ void k_qkv_rope(float *q, const float *k, const float *v, const float *cs,
			   const float *qn, const float *kn, __half *kc, __half *vc,
			   struct pcu_config c, const uint32_t *pos, const uint32_t *toff,
			   const uint32_t *tab, uint32_t block, float eps)
{
	__shared__ float buf[MAX_HEAD];
	uint32_t t = blockIdx.x, h = blockIdx.y, d = threadIdx.x, hd = c.head_dim;
	uint32_t kvd = c.n_head_kv * hd, pairs = c.n_rot / 2, nq = c.n_head;
	size_t at = kv_row(toff, tab, block, t, pos[t]) * kvd;
	const float *norm = NULL, *src;
	float *dst = NULL, val;

	if (h < nq) {
		src = q + (size_t)t * nq * hd + h * hd;
		dst = (float *)src;
		norm = qn;
	} else if (h < nq + c.n_head_kv) {
		src = k + (size_t)t * kvd + (h - nq) * hd;
		norm = kn;
	} else {
		vc[at + (h - nq - c.n_head_kv) * hd + d] =
			__float2half_rn(v[(size_t)t * kvd + (h - nq - c.n_head_kv) * hd + d]);
		return;
	}
	val = src[d];
	if (norm) {
		float ss = block_sum(val * val);

		val = val * rsqrtf(ss / hd + eps) * norm[d];
	}
	buf[d] = val;
	__syncthreads();
	if (d < pairs) {	/* thread d rotates pair d */
		uint32_t a = c.rope_neox ? d : 2 * d, b = c.rope_neox ? d + pairs : 2 * d + 1;
		float co = cs[(size_t)t * c.n_rot + 2 * d], sn = cs[(size_t)t * c.n_rot + 2 * d + 1];
		float x0 = buf[a], x1 = buf[b];

		buf[a] = x0 * co - x1 * sn;	/* only this thread reads or writes a and b */
		buf[b] = x0 * sn + x1 * co;
	}
	__syncthreads();
	if (dst)
		dst[d] = buf[d];
	else
		kc[at + (h - nq) * hd + d] = __float2half_rn(buf[d]);
}

/*
 * Attention, split over the context: block (t, h, z) takes head h of token
 * t0 + t (at position pos[t0 + t] of its sequence) over the sequence's
 * positions z * ATT_CHUNK.. up to its own (causal), four warps each an online softmax
 * over every fourth position, merged into the block's running max, sum of
 * exponentials and unnormalised output, written to @part for
 * k_attn_merge. A token's chunks depend on its position alone, so its
 * result does not depend on the batch it came in.
 */
__global__ void k_attention(const float *q, const __half *kc, const __half *vc, float *part,
			    struct pcu_config c, const uint32_t *pos, const uint32_t *toff,
			    const uint32_t *tab, uint32_t block, uint32_t t0, uint32_t nz)
{
	__shared__ float wm[ATT_WARPS], wl[ATT_WARPS], wacc[ATT_WARPS][MAX_HEAD];
	uint32_t t = blockIdx.x, h = blockIdx.y, z = blockIdx.z, hd = c.head_dim, per = hd / WARP;
	uint32_t kvd = c.n_head_kv * hd, kvh = h / (c.n_head / c.n_head_kv);
	int lane = threadIdx.x % WARP, w = threadIdx.x / WARP;
	uint32_t last = pos[t0 + t], lo = z * ATT_CHUNK, hi = lo + ATT_CHUNK, p, i;
	const float *qh = q + (size_t)(t0 + t) * c.n_head * hd + h * hd;
	float qv[MAX_HEAD / WARP], acc[MAX_HEAD / WARP], m = -INFINITY, l = 0;
	float scale = rsqrtf((float)hd), *pm = part + (((size_t)t * c.n_head + h) * nz + z) * (hd + 2);

	if (lo > last)
		return;		/* past this token's position: not one of its chunks */
	hi = hi < last + 1 ? hi : last + 1;
#pragma unroll
	for (i = 0; i < MAX_HEAD / WARP; i++) {	/* fixed bounds: the arrays stay in registers */
		qv[i] = i < per ? qh[lane + WARP * i] : 0.0f;
		acc[i] = 0;
	}
	for (p = lo + w; p < hi; p += ATT_WARPS) {
		size_t row = kv_row(toff, tab, block, t0 + t, p) * kvd + kvh * hd;
		const __half *kr = kc + row, *vr = vc + row;
		float s = 0, mn, corr, e;

#pragma unroll
		for (i = 0; i < MAX_HEAD / WARP; i++)
			if (i < per)
				s += qv[i] * __half2float(kr[lane + WARP * i]);
		s = warp_sum(s) * scale;
		mn = fmaxf(m, s);
		corr = __expf(m - mn);
		e = __expf(s - mn);
		l = l * corr + e;
#pragma unroll
		for (i = 0; i < MAX_HEAD / WARP; i++)
			if (i < per)
				acc[i] = acc[i] * corr + e * __half2float(vr[lane + WARP * i]);
		m = mn;
	}
	if (!lane) {
		wm[w] = m;
		wl[w] = l;
	}
#pragma unroll
	for (i = 0; i < MAX_HEAD / WARP; i++)
		if (i < per)
			wacc[w][lane + WARP * i] = acc[i];
	__syncthreads();
	if (w == 0) {
		float M = -INFINITY, L = 0;
		int j;

		for (j = 0; j < ATT_WARPS; j++)
			if (wl[j] > 0)
				M = fmaxf(M, wm[j]);
		for (j = 0; j < ATT_WARPS; j++)
			if (wl[j] > 0)
				L += wl[j] * __expf(wm[j] - M);
		for (i = 0; i < per; i++) {
			float o = 0;

			for (j = 0; j < ATT_WARPS; j++)
				if (wl[j] > 0)
					o += wacc[j][lane + WARP * i] * __expf(wm[j] - M);
			pm[2 + lane + WARP * i] = o;
		}
		if (!lane) {
			pm[0] = M;
			pm[1] = L;
		}
	}
}

/* Block (t, h), a thread per dimension: token t0 + t's chunks of head h merged into @out. */
__global__ void k_attn_merge(const float *part, float *out, struct pcu_config c,
			     const uint32_t *pos, uint32_t t0, uint32_t nz)
{
	uint32_t t = blockIdx.x, h = blockIdx.y, d = threadIdx.x, hd = c.head_dim, z;
	uint32_t chunks = pos[t0 + t] / ATT_CHUNK + 1;
	const float *pm = part + ((size_t)t * c.n_head + h) * nz * (hd + 2);
	float M = -INFINITY, L = 0, o = 0;

	for (z = 0; z < chunks; z++)
		M = fmaxf(M, pm[z * (hd + 2)]);
	for (z = 0; z < chunks; z++) {
		float e = __expf(pm[z * (hd + 2)] - M);

		L += pm[z * (hd + 2) + 1] * e;
		o += pm[z * (hd + 2) + 2 + d] * e;
	}
	out[(size_t)(t0 + t) * c.n_head * hd + h * hd + d] = o / L;
}

/* Quantized @rows x @cols packed matrix to fp16 rows, a thread per 32 elements. */
__global__ void k_dequant_f16(uint32_t type, const uint8_t *__restrict__ qs,
			      const uint8_t *__restrict__ meta, size_t rows, size_t cols,
			      __half *__restrict__ out)
{
	const struct pcu_layout L = pcu_layout(type);
	size_t u = (size_t)blockIdx.x * blockDim.x + threadIdx.x, per = cols / PCU_QA;
	size_t r = u / per, c = u % per, subs = L.elems / PCU_QA;
	size_t blk = r * (cols / L.elems) + c / subs;
	float y[PCU_QA];

	if (u >= rows * per)
		return;
	pcu_dequant_sub(type, qs + blk * L.qb, meta + blk * L.mb, (int)(c % subs), y);
	for (int i = 0; i < PCU_QA; i++)
		out[r * cols + c * PCU_QA + i] = __float2half_rn(y[i]);
}

__global__ void k_to_half(const float *x, __half *y, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		y[i] = __float2half_rn(x[i]);
}

/* out[t][r] += bias[r] for @n tokens of @rows. */
__global__ void k_bias(float *out, const float *bias, size_t rows, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < rows * n)
		out[i] += bias[i % rows];
}

__global__ void k_swiglu(float *g, const float *u, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ void k_add(float *x, const float *y, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		x[i] += y[i];
}

/* ---- host side ------------------------------------------------------------- */

static unsigned grid(size_t n, unsigned per)
{
	return (unsigned)((n + per - 1) / per);
}

static uint64_t mat_bytes(uint32_t type, uint64_t rows, uint64_t cols)
{
	return pcu_mat_bytes(type, rows, cols);	/* a host function for the table */
}

/* Launch k_mmvq<T, NT> for a type known at run time. */
template <int NT>
static void mmvq_nt(const struct dmat *w, const float *x, const int8_t *aq, const float *ads,
		    size_t astride, const float *bias, float *out, size_t ostride, bool exact,
		    cudaStream_t st)
{
	dim3 g(grid(w->rows, MM_WARPS)), b(MM_WARPS * WARP);
	int rows = (int)w->rows, cols = (int)w->cols;

#define CASE(T)									\
	case T:									\
		if (exact)							\
			k_mmv_exact<T, NT><<<g, b, 0, st>>>(w->qs, w->meta, rows, cols, x, astride, \
							    bias, out, ostride);	\
		else								\
			k_mmvq<T, NT><<<g, b, 0, st>>>(w->qs, w->meta, rows, cols, aq, ads, astride, \
						       bias, out, ostride);		\
		break
	switch (w->type) {
	CASE(PCU_Q4_0); CASE(PCU_Q4_1); CASE(PCU_Q5_0); CASE(PCU_Q5_1); CASE(PCU_Q8_0);
	CASE(PCU_Q4_K); CASE(PCU_Q5_K); CASE(PCU_Q6_K);
	case PCU_F16:
		k_mmvf<__half, NT><<<g, b, 0, st>>>((const __half *)w->plain, rows, cols, x, astride,
						     bias, out, ostride);
		break;
	case PCU_F32:
		k_mmvf<float, NT><<<g, b, 0, st>>>((const float *)w->plain, rows, cols, x, astride,
						    bias, out, ostride);
		break;
	}
#undef CASE
}

/*
 * out = W x for a batch through cuBLAS: W dequantized into the model's fp16
 * scratch (F16 weights as they are), x to fp16, fp32 sums. In cuBLAS's
 * column-major terms, out (rows x n) = W^T' (W's rows are its columns) x.
 */
static void matmul_blas(struct pcu_ctx *c, const struct dmat *w, const float *x, const float *bias,
			uint32_t n, float *out)
{
	struct pcu_model *m = c->m;
	cudaStream_t st = m->stream;
	size_t rows = w->rows, cols = w->cols;
	const __half *a = w->type == PCU_F16 ? (const __half *)w->plain : m->wh;
	const float one = 1.0f, zero = 0.0f;
	cublasStatus_t s;

	if (w->type != PCU_F16)
		k_dequant_f16<<<grid(rows * cols / PCU_QA, 256), 256, 0, st>>>(w->type, w->qs, w->meta,
									     rows, cols, m->wh);
	k_to_half<<<grid((size_t)n * cols, 256), 256, 0, st>>>(x, c->xh, (size_t)n * cols);
	s = m->blas->gemm_ex(m->blas_h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n, (int)cols, &one,
			    a, CUDA_R_16F, (int)cols, c->xh, CUDA_R_16F, (int)cols, &zero, out,
			    CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	if (s != CUBLAS_STATUS_SUCCESS && c->blas_status == CUBLAS_STATUS_SUCCESS)
		c->blas_status = s;
	if (bias)
		k_bias<<<grid(rows * n, 256), 256, 0, st>>>(out, bias, rows, n);
}

/*
 * out[t] = W in[t] (+ bias) for @n tokens whose inputs are @x (floats,
 * [n][cols]) and, for quantized W, c->aq/c->ads (quantized from @x by
 * quantize()): a pass over W for each 8 tokens; or, for a batch of
 * PCU_GEMM_MIN tokens or more, through cuBLAS when it is there.
 */
static void matmul(struct pcu_ctx *c, const struct dmat *w, const float *x, const float *bias,
		   uint32_t n, float *out)
{
	cudaStream_t st = c->m->stream;
	bool ex = c->exact;
	size_t cols = w->cols;
	uint32_t t = 0;

	if (!ex && !c->invariant && n >= PCU_GEMM_MIN && c->m->blas_h && w->type != PCU_F32 &&
	    (w->type == PCU_F16 || w->rows * w->cols <= c->m->wh_elems)) {
		matmul_blas(c, w, x, bias, n, out);
		return;
	}

	while (t < n) {
		uint32_t nt = n - t >= 8 ? 8 : n - t >= 4 ? 4 : n - t >= 2 ? 2 : 1;
		const float *xt = x + (size_t)t * cols, *ads = c->ads + 2 * (t * cols / PCU_QA);
		const int8_t *aq = c->aq + t * cols;
		float *o = out + (size_t)t * w->rows;

		if (nt == 8)
			mmvq_nt<8>(w, xt, aq, ads, cols, bias, o, w->rows, ex, st);
		else if (nt == 4)
			mmvq_nt<4>(w, xt, aq, ads, cols, bias, o, w->rows, ex, st);
		else if (nt == 2)
			mmvq_nt<2>(w, xt, aq, ads, cols, bias, o, w->rows, ex, st);
		else
			mmvq_nt<1>(w, xt, aq, ads, cols, bias, o, w->rows, ex, st);
		t += nt;
	}
}

/* c->aq, c->ads = 8-bit @x ([n][cols]), unless in the reference mode. */
static void quantize(struct pcu_ctx *c, const float *x, uint32_t n, size_t cols)
{
	size_t blocks = n * cols / PCU_QA;

	if (c->exact)
		return;
	k_quantize<<<grid(blocks * WARP, 256), 256, 0, c->m->stream>>>(x, c->aq, c->ads, blocks);
}

/*
 * cuBLAS of the major version built against, opened on the first call, or
 * NULL; @why (may be NULL) says which path batches take.
 */
static const struct blas *blas_open(const char **why)
{
	static const char *const names[] = {
		"libcublas.so." CUBLAS_STR(CUBLAS_VER_MAJOR),
		"/usr/local/cuda/lib64/libcublas.so." CUBLAS_STR(CUBLAS_VER_MAJOR),
	};
	static struct blas b;
	static char msg[160];
	static bool tried;
	const char *env = getenv("PINFER_CUBLAS");

	if (why)
		*why = msg;
	if (tried)
		return b.lib ? &b : NULL;
	tried = true;
	if (env && !strcmp(env, "0")) {
		snprintf(msg, sizeof(msg), "the 8-bit kernels (PINFER_CUBLAS=0)");
		return NULL;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !b.lib; i++)
		b.lib = dlopen(env && *env ? env : names[i], RTLD_NOW | RTLD_LOCAL);
	if (!b.lib) {
		snprintf(msg, sizeof(msg), "the 8-bit kernels (no cuBLAS: %s)", dlerror());
		return NULL;
	}
	*(void **)&b.create = dlsym(b.lib, "cublasCreate_v2");
	*(void **)&b.destroy = dlsym(b.lib, "cublasDestroy_v2");
	*(void **)&b.set_stream = dlsym(b.lib, "cublasSetStream_v2");
	*(void **)&b.gemm_ex = dlsym(b.lib, "cublasGemmEx");
	if (!b.create || !b.destroy || !b.set_stream || !b.gemm_ex) {
		snprintf(msg, sizeof(msg), "the 8-bit kernels (cuBLAS lacks cublasGemmEx)");
		dlclose(b.lib);
		b.lib = NULL;
		return NULL;
	}
	snprintf(msg, sizeof(msg), "cuBLAS %d (fp16 weights dequantized per batch)", CUBLAS_VER_MAJOR);
	return &b;
}

static int probe(struct pcu_device *dev, char *err, size_t en)
{
	const char *why;
	struct cudaDeviceProp p;
	size_t fr = 0, tot = 0;
	int n = 0, ret = -1;

	memset(dev, 0, sizeof(*dev));
	switch (cudaGetDeviceCount(&n)) {
	case cudaSuccess:
		break;
	case cudaErrorInsufficientDriver:
	case cudaErrorNoDevice:
		cudaGetLastError();
		return fail(err, en, "no NVIDIA GPU with a driver for CUDA %d.%d on this machine (no libcuda.so.1, or no device)",
			    CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
	default:
		CK(cudaGetLastError(), "cudaGetDeviceCount");
	}
	if (!n)
		return fail(err, en, "CUDA: no device");
	CK(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
	CK(cudaSetDevice(0), "cudaSetDevice");
	CK(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
	snprintf(dev->name, sizeof(dev->name), "%s", p.name);
	dev->major = p.major;
	dev->minor = p.minor;
	dev->total = tot;
	dev->free = fr;
	if (p.major < 8)
		return fail(err, en, "CUDA: %s has compute capability %d.%d; pinfer's kernels are built for 8.0 and up",
			    p.name, p.major, p.minor);
	blas_open(&why);
	snprintf(dev->gemm, sizeof(dev->gemm), "%s", why);
	ret = 0;
out:
	return ret;
}

static void mat_free(struct dmat *w)
{
	if (w->owned) {
		cudaFree(w->qs);
		cudaFree(w->plain);
	}
}

static void model_free(struct pcu_model *m)
{
	uint32_t i;

	if (!m)
		return;
	if (m->stream)
		cudaStreamSynchronize(m->stream);
	if (m->copy)
		cudaStreamSynchronize(m->copy);
	cudaFree(m->stage);
	for (i = 0; m->slots && i < m->ring; i++) {
		cudaFree(m->slots[i].packed);
		if (m->slots[i].ready)
			cudaEventDestroy(m->slots[i].ready);
		if (m->slots[i].done)
			cudaEventDestroy(m->slots[i].done);
	}
	free(m->slots);
	free(m->srcs);
	for (i = 0; m->layers && i < m->n_layers; i++) {
		struct dlayer *d = &m->layers[i];

		for (int j = 0; j < PCU_N_MATS; j++)
			mat_free(&d->w[j]);
		cudaFree(d->attn_norm); cudaFree(d->ffn_norm); cudaFree(d->q_norm);
		cudaFree(d->k_norm); cudaFree(d->bq); cudaFree(d->bk); cudaFree(d->bv);
	}
	free(m->layers);
	if (m->has_output)
		mat_free(&m->output);
	cudaFree(m->output_norm);
	if (m->stream)
		cudaStreamDestroy(m->stream);
	if (m->copy)
		cudaStreamDestroy(m->copy);
	if (m->registered)
		cudaHostUnregister(m->registered);
	cudaFree(m->wh);
	if (m->blas_h)
		m->blas->destroy(m->blas_h);
	free(m);
}

/* A float vector of @n to the device (NULL stays NULL). */
static int upload_vec(float **out, const float *v, size_t n, cudaStream_t st, char *err, size_t en)
{
	int ret = -1;

	*out = NULL;
	if (!v)
		return 0;
	CK(cudaMalloc(out, n * sizeof(float)), "cudaMalloc");
	CK(cudaMemcpyAsync(*out, v, n * sizeof(float), cudaMemcpyHostToDevice, st), "copy a vector");
	ret = 0;
out:
	return ret;
}

/*
 * Queue matrix @s onto the device at @dst (mat_bytes() of it) on @st: F16
 * and F32 rows copied there, quantized blocks copied to @raw (room for its
 * file bytes) and packed from there into @dst.
 */
static cudaError_t stage_mat(struct dmat *d, const struct pcu_mat *s, uint8_t *raw, uint8_t *dst,
			     cudaStream_t st)
{
	struct pcu_layout l = pcu_layout(s->type);
	size_t blocks = l.elems ? s->rows * (s->cols / l.elems) : 0;
	cudaError_t e;

	d->type = s->type;
	d->rows = s->rows;
	d->cols = s->cols;
	if (s->type == PCU_F32 || s->type == PCU_F16) {
		d->plain = dst;
		return cudaMemcpyAsync(dst, s->data, mat_bytes(s->type, s->rows, s->cols),
				       cudaMemcpyHostToDevice, st);
	}
	d->qs = dst;
	d->meta = dst + blocks * l.qb;
	e = cudaMemcpyAsync(raw, s->data, blocks * l.raw, cudaMemcpyHostToDevice, st);
	if (e != cudaSuccess)
		return e;
	k_pack<<<grid(blocks, 256), 256, 0, st>>>(s->type, raw, d->qs, d->meta, blocks);
	return cudaGetLastError();
}

/* File bytes of @s (0 for F16 and F32, which need no packing). */
static uint64_t raw_bytes(const struct pcu_mat *s)
{
	return pcu_raw_bytes(s->type, s->rows, s->cols);
}

/* Matrix @s to its own device memory, packed through @scratch (room for the largest). */
static int upload_mat(struct dmat *d, const struct pcu_mat *s, uint8_t *scratch, cudaStream_t st,
		      const char *name, char *err, size_t en)
{
	uint64_t bytes = mat_bytes(s->type, s->rows, s->cols);
	uint8_t *dst = NULL;
	int ret = -1;

	memset(d, 0, sizeof(*d));
	if (!bytes)
		return fail(err, en, "%s: type %u with %llu columns has no CUDA kernel", name, s->type,
			    (unsigned long long)s->cols);
	CK(cudaMalloc(&dst, bytes), "cudaMalloc");
	d->owned = true;	/* stage_mat() sets qs or plain to dst before anything can fail */
	CK(stage_mat(d, s, scratch, dst, st), name);
	ret = 0;
out:
	return ret;
}

/*
 * Queue streamed layer @li into its slot on the copy stream, once the slot
 * is free: each matrix through the one staging buffer (the copy stream
 * runs each copy and its packing before the next copy). A layer from the
 * drive is fetched first, and given back once its copies ran.
 */
static int prefetch(struct pcu_model *m, uint32_t li, char *err, size_t en)
{
	const struct dlayer *d = &m->layers[li];
	struct slot *sl = &m->slots[d->stream_ix % m->ring];
	struct pcu_mat fetched[PCU_N_MATS];
	const struct pcu_mat *src = d->src;
	uint64_t packed = 0;
	cudaError_t e;

	if (d->from_drive) {
		if (m->fetch(m->arg, li, fetched, err, en))
			return -1;
		src = fetched;
	}
	e = cudaStreamWaitEvent(m->copy, sl->done, 0);
	sl->view = *d;
	for (int j = 0; j < PCU_N_MATS && e == cudaSuccess; j++) {
		e = stage_mat(&sl->view.w[j], &src[j], m->stage, sl->packed + packed, m->copy);
		packed += pcu_slot_room(src[j].type, src[j].rows, src[j].cols);
	}
	if (e == cudaSuccess)
		e = cudaEventRecord(sl->ready, m->copy);
	if (d->from_drive) {	/* its host pages go back to the drive's ring */
		if (e == cudaSuccess)
			e = cudaEventSynchronize(sl->ready);
		m->done(m->arg, li);
	}
	if (e != cudaSuccess)
		return fail(err, en, "CUDA: copying a streamed layer: %s", cudaGetErrorString(e));
	return 0;
}

/*
 * Device bytes of a slot for layer @s (its matrices packed, 256-aligned
 * each), and of the staging buffer for it (its largest matrix's file bytes).
 */
static void slot_bytes(const struct pcu_layer *s, uint64_t *raw, uint64_t *packed)
{
	const struct pcu_mat *ms = s->mats;

	*raw = *packed = 0;
	for (int j = 0; j < PCU_N_MATS; j++) {
		*raw = raw_bytes(&ms[j]) > *raw ? raw_bytes(&ms[j]) : *raw;
		*packed += pcu_slot_room(ms[j].type, ms[j].rows, ms[j].cols);
	}
}

static int model_create(struct pcu_model **out, const struct pcu_model_desc *dsc, char *err, size_t en)
{
	const struct pcu_config *cf = &dsc->cfg;
	size_t scratch_bytes = 0, qd = (size_t)cf->n_head * cf->head_dim;
	size_t kvd = (size_t)cf->n_head_kv * cf->head_dim;
	struct pcu_model *m = (struct pcu_model *)calloc(1, sizeof(*m));
	uint64_t slot_raw = 0, slot_packed = 0;
	uint8_t *scratch = NULL;
	uint32_t i;
	int ret = -1;

	*out = NULL;
	if (!m)
		return fail(err, en, "out of memory");
	if (cf->head_dim % WARP || cf->head_dim > MAX_HEAD || cf->n_rot > cf->head_dim ||
	    !cf->n_head_kv || cf->n_head % cf->n_head_kv) {
		fail(err, en, "CUDA: heads of %u dimensions (%u rotated), %u query and %u KV heads: the kernels need a multiple of 32 up to %d",
		     cf->head_dim, cf->n_rot, cf->n_head, cf->n_head_kv, MAX_HEAD);
		goto out;
	}
	m->cfg = *cf;
	m->n_layers = dsc->n_layers;
	m->fetch = dsc->fetch;
	m->done = dsc->done;
	m->arg = dsc->arg;
	m->layers = (struct dlayer *)calloc(dsc->n_layers ? dsc->n_layers : 1, sizeof(*m->layers));
	m->srcs = (struct pcu_mat *)calloc((size_t)(dsc->n_layers ? dsc->n_layers : 1) * PCU_N_MATS,
					   sizeof(*m->srcs));
	if (!m->layers || !m->srcs) {
		fail(err, en, "out of memory");
		goto out;
	}
	CK(cudaSetDevice(0), "cudaSetDevice");
	CK(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking), "cudaStreamCreate");
	/* a failed registration only makes the copies slower (staged by the driver) */
	if (dsc->host_bytes &&
	    (cudaHostRegister(dsc->host_base, dsc->host_bytes, cudaHostRegisterReadOnly) == cudaSuccess ||
	     cudaHostRegister(dsc->host_base, dsc->host_bytes, cudaHostRegisterDefault) == cudaSuccess))
		m->registered = dsc->host_base;
	cudaGetLastError();
	for (i = 0; i < dsc->n_layers; i++) {
		const struct pcu_layer *s = &dsc->layers[i];
		const struct pcu_mat *ms = s->mats;
		uint64_t r, pk;

		m->layers[i].stream_ix = -1;
		if (s->streamed == PCU_DRIVE_ONCE && (!dsc->fetch || !dsc->done)) {
			fail(err, en, "CUDA: GPU layer %u is read from the drive, and there is no fetch()",
			     i);
			goto out;
		}
		if (s->streamed == PCU_FROM_HOST || s->streamed == PCU_FROM_DRIVE) {
			slot_bytes(s, &r, &pk);
			slot_raw = r > slot_raw ? r : slot_raw;
			slot_packed = pk > slot_packed ? pk : slot_packed;
			memcpy(&m->srcs[(size_t)i * PCU_N_MATS], ms, PCU_N_MATS * sizeof(*ms));
			m->layers[i].src = &m->srcs[(size_t)i * PCU_N_MATS];
			m->layers[i].stream_ix = (int)m->n_streamed++;
			m->layers[i].from_drive = s->streamed == PCU_FROM_DRIVE;
			if (m->layers[i].from_drive && (!dsc->fetch || !dsc->done)) {
				fail(err, en, "CUDA: GPU layer %u is read from the drive, and there is no fetch()",
				     i);
				goto out;
			}
			continue;
		}
		for (int j = 0; j < PCU_N_MATS; j++)
			if (raw_bytes(&ms[j]) > scratch_bytes)
				scratch_bytes = raw_bytes(&ms[j]);
	}
	if (dsc->output && raw_bytes(dsc->output) > scratch_bytes)
		scratch_bytes = raw_bytes(dsc->output);
	if (scratch_bytes)
		CK(cudaMalloc(&scratch, scratch_bytes), "cudaMalloc (the upload's scratch)");
	for (i = 0; i < dsc->n_layers; i++) {
		static const char *const names[PCU_N_MATS] = { "attn_q", "attn_k", "attn_v", "attn_output",
							   "ffn_gate", "ffn_up", "ffn_down" };
		const struct pcu_layer *s = &dsc->layers[i];
		const struct pcu_mat *src = s->mats;
		struct pcu_mat fetched[PCU_N_MATS];
		struct dlayer *d = &m->layers[i];
		cudaStream_t st = m->stream;
		int bad = 0;

		if (d->stream_ix >= 0)	/* through the ring at each call */
			src = NULL;
		if (s->streamed == PCU_DRIVE_ONCE) {	/* read from the drive now, uploaded once */
			if (m->fetch(m->arg, i, fetched, err, en))
				goto out;
			src = fetched;
		}
		for (int j = 0; j < PCU_N_MATS && src && !bad; j++)
			bad = upload_mat(&d->w[j], &src[j], scratch, st, names[j], err, en);
		if (s->streamed == PCU_DRIVE_ONCE) {	/* its host pages back once copied */
			cudaError_t e = cudaStreamSynchronize(st);

			m->done(m->arg, i);
			if (!bad && e != cudaSuccess)
				bad = fail(err, en, "CUDA: uploading GPU layer %u: %s", i,
					   cudaGetErrorString(e));
		}
		if (bad)
			goto out;
		if (upload_vec(&d->attn_norm, s->attn_norm, cf->n_embd, st, err, en) ||
		    upload_vec(&d->ffn_norm, s->ffn_norm, cf->n_embd, st, err, en) ||
		    upload_vec(&d->q_norm, s->q_norm, cf->head_dim, st, err, en) ||
		    upload_vec(&d->k_norm, s->k_norm, cf->head_dim, st, err, en) ||
		    upload_vec(&d->bq, s->bq, qd, st, err, en) ||
		    upload_vec(&d->bk, s->bk, kvd, st, err, en) ||
		    upload_vec(&d->bv, s->bv, kvd, st, err, en))
			goto out;
	}
	if (dsc->output) {
		m->has_output = 1;
		if (upload_mat(&m->output, dsc->output, scratch, m->stream, "output", err, en) ||
		    upload_vec(&m->output_norm, dsc->output_norm, cf->n_embd, m->stream, err, en))
			goto out;
	}
	for (i = 0; i < dsc->n_layers; i++)
		for (int j = 0; j < PCU_N_MATS; j++) {
			const struct pcu_mat *s = &dsc->layers[i].mats[j];

			if (pcu_layout(s->type).elems && s->rows * s->cols > m->wh_elems)
				m->wh_elems = s->rows * s->cols;
		}
	m->blas = blas_open(NULL);	/* a failure: without it, as if it were not there */
	if (m->blas && m->blas->create(&m->blas_h) != CUBLAS_STATUS_SUCCESS) {
		m->blas_h = NULL;
	} else if (m->blas && m->blas->set_stream(m->blas_h, m->stream) != CUBLAS_STATUS_SUCCESS) {
		m->blas->destroy(m->blas_h);
		m->blas_h = NULL;
	}
	if (m->blas_h && m->wh_elems)
		CK(cudaMalloc(&m->wh, m->wh_elems * 2), "cudaMalloc (the fp16 weights for cuBLAS)");
	if (m->n_streamed) {
		m->ring = dsc->ring < 2 ? 2 : dsc->ring;
		m->slots = (struct slot *)calloc(m->ring, sizeof(*m->slots));
		if (!m->slots) {
			fail(err, en, "out of memory");
			goto out;
		}
		CK(cudaStreamCreateWithFlags(&m->copy, cudaStreamNonBlocking), "cudaStreamCreate");
		CK(cudaMalloc(&m->stage, slot_raw + 1), "cudaMalloc (the streaming ring)");
		for (i = 0; i < m->ring; i++) {
			struct slot *sl = &m->slots[i];

			CK(cudaMalloc(&sl->packed, slot_packed + 1), "cudaMalloc (the streaming ring)");
			CK(cudaEventCreateWithFlags(&sl->ready, cudaEventDisableTiming), "cudaEventCreate");
			CK(cudaEventCreateWithFlags(&sl->done, cudaEventDisableTiming), "cudaEventCreate");
		}
	}
	CK(cudaStreamSynchronize(m->stream), "uploading the weights");
	ret = 0;
out:
	if (scratch) {
		cudaStreamSynchronize(m->stream);
		cudaFree(scratch);
	}
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
	cudaFree(c->kc); cudaFree(c->vc); cudaFree(c->x); cudaFree(c->xb); cudaFree(c->q);
	cudaFree(c->k); cudaFree(c->v); cudaFree(c->out); cudaFree(c->hb); cudaFree(c->hb2);
	cudaFree(c->tmp); cudaFree(c->cs); cudaFree(c->logits); cudaFree(c->aq); cudaFree(c->ads);
	cudaFree(c->xh); cudaFree(c->part); cudaFree(c->pos); cudaFree(c->toff); cudaFree(c->tab);
	free(c->hseen); free(c->hlen); free(c->hix); free(c->htoff); free(c->htab);
	free(c);
}

static int ctx_create(struct pcu_ctx **out, struct pcu_model *m, uint32_t n_ctx,
		      uint32_t n_blocks, uint32_t block, uint32_t max_batch, char *err, size_t en)
{
	const struct pcu_config *f = &m->cfg;
	struct pcu_ctx *c = (struct pcu_ctx *)calloc(1, sizeof(*c));
	uint64_t b[PCU_N_BUFS];
	int ret = -1;

	*out = NULL;
	if (!c)
		return fail(err, en, "out of memory");
	if (!n_ctx || !n_blocks || !block || !max_batch) {
		free(c);
		return fail(err, en, "CUDA: a context of %u positions in %u blocks of %u, batches of %u",
			    n_ctx, n_blocks, block, max_batch);
	}
	pcu_ctx_bytes(f, m->n_layers, n_ctx, n_blocks, block, max_batch, m->has_output, b);
	c->m = m;
	c->n_ctx = n_ctx;
	c->n_blocks = n_blocks;
	c->block = block;
	c->max_batch = max_batch;
	c->widest = b[PCU_BUF_AQ] / max_batch;
	c->tab_cap = b[PCU_BUF_TAB] / 4;
	c->hseen = (const uint32_t **)calloc(max_batch, sizeof(*c->hseen));
	c->hlen = (uint32_t *)calloc(max_batch, sizeof(uint32_t));
	c->hix = (uint32_t *)calloc(max_batch, sizeof(uint32_t));
	c->htoff = (uint32_t *)calloc(max_batch, sizeof(uint32_t));
	c->htab = (uint32_t *)calloc(c->tab_cap, sizeof(uint32_t));
	if (!c->hseen || !c->hlen || !c->hix || !c->htoff || !c->htab) {
		fail(err, en, "out of memory");
		goto out;
	}
	CK(cudaMalloc(&c->pos, b[PCU_BUF_POS]), "cudaMalloc");
	CK(cudaMalloc(&c->toff, b[PCU_BUF_TOFF]), "cudaMalloc");
	CK(cudaMalloc(&c->tab, b[PCU_BUF_TAB]), "cudaMalloc");
	CK(cudaMalloc(&c->kc, b[PCU_BUF_KC]), "cudaMalloc (the KV cache)");
	CK(cudaMalloc(&c->vc, b[PCU_BUF_VC]), "cudaMalloc (the KV cache)");
	CK(cudaMalloc(&c->x, b[PCU_BUF_X]), "cudaMalloc");
	CK(cudaMalloc(&c->xb, b[PCU_BUF_XB]), "cudaMalloc");
	CK(cudaMalloc(&c->q, b[PCU_BUF_Q]), "cudaMalloc");
	CK(cudaMalloc(&c->k, b[PCU_BUF_K]), "cudaMalloc");
	CK(cudaMalloc(&c->v, b[PCU_BUF_V]), "cudaMalloc");
	CK(cudaMalloc(&c->out, b[PCU_BUF_OUT]), "cudaMalloc");
	CK(cudaMalloc(&c->hb, b[PCU_BUF_HB]), "cudaMalloc");
	CK(cudaMalloc(&c->hb2, b[PCU_BUF_HB2]), "cudaMalloc");
	CK(cudaMalloc(&c->tmp, b[PCU_BUF_TMP]), "cudaMalloc");
	CK(cudaMalloc(&c->cs, b[PCU_BUF_CS]), "cudaMalloc");
	CK(cudaMalloc(&c->aq, b[PCU_BUF_AQ]), "cudaMalloc");
	CK(cudaMalloc(&c->ads, b[PCU_BUF_ADS]), "cudaMalloc");
	if (m->blas_h)
		CK(cudaMalloc(&c->xh, b[PCU_BUF_XH]), "cudaMalloc");
	CK(cudaMalloc(&c->part, b[PCU_BUF_PART]), "cudaMalloc (attention's parts)");
	if (m->has_output)
		CK(cudaMalloc(&c->logits, b[PCU_BUF_LOGITS]), "cudaMalloc (the logits)");
	ret = 0;
out:
	if (ret)
		ctx_free(c);
	else
		*out = c;
	return ret;
}

/*
 * Layer @li (its weights @d) over @n tokens at positions @pos (host; on the
 * device with their tables: put_tables()) whose residual stream is c->x.
 */
static void layer(struct pcu_ctx *c, const struct dlayer *d, uint32_t li, uint32_t n,
		  const uint32_t *pos)
{
	const struct pcu_model *m = c->m;
	const struct pcu_config *f = &m->cfg;
	size_t E = f->n_embd, F = f->n_ff, qd = (size_t)f->n_head * f->head_dim;
	size_t kvd = (size_t)f->n_head_kv * f->head_dim;
	size_t at = (size_t)li * c->n_blocks * c->block * kvd;
	cudaStream_t st = m->stream;

	k_rmsnorm<<<n, 256, 0, st>>>(c->x, d->attn_norm, c->xb, (int)E, f->rms_eps);
	quantize(c, c->xb, n, E);
	matmul(c, &d->w[PCU_WQ], c->xb, d->bq, n, c->q);
	matmul(c, &d->w[PCU_WK], c->xb, d->bk, n, c->k);
	matmul(c, &d->w[PCU_WV], c->xb, d->bv, n, c->v);
	k_qkv_rope<<<dim3(n, f->n_head + 2 * f->n_head_kv), f->head_dim, 0, st>>>(
		c->q, c->k, c->v, c->cs, d->q_norm, d->k_norm, c->kc + at, c->vc + at, *f, c->pos,
		c->toff, c->tab, c->block, f->rms_eps);
	for (uint32_t t0 = 0; t0 < n; t0 += ATT_TOKENS) {
		uint32_t nt = n - t0 < ATT_TOKENS ? n - t0 : ATT_TOKENS, nz = 0;

		for (uint32_t t = t0; t < t0 + nt; t++)	/* the most chunks of a token */
			nz = pos[t] / ATT_CHUNK + 1 > nz ? pos[t] / ATT_CHUNK + 1 : nz;
		k_attention<<<dim3(nt, f->n_head, nz), ATT_WARPS * WARP, 0, st>>>(
			c->q, c->kc + at, c->vc + at, c->part, *f, c->pos, c->toff, c->tab, c->block,
			t0, nz);
		k_attn_merge<<<dim3(nt, f->n_head), f->head_dim, 0, st>>>(c->part, c->out, *f, c->pos,
									  t0, nz);
	}
	quantize(c, c->out, n, qd);
	matmul(c, &d->w[PCU_WO], c->out, NULL, n, c->tmp);
	k_add<<<grid(n * E, 256), 256, 0, st>>>(c->x, c->tmp, n * E);

	k_rmsnorm<<<n, 256, 0, st>>>(c->x, d->ffn_norm, c->xb, (int)E, f->rms_eps);
	quantize(c, c->xb, n, E);
	matmul(c, &d->w[PCU_W_GATE], c->xb, NULL, n, c->hb);
	matmul(c, &d->w[PCU_W_UP], c->xb, NULL, n, c->hb2);
	k_swiglu<<<grid(n * F, 256), 256, 0, st>>>(c->hb, c->hb2, n * F);
	quantize(c, c->hb, n, F);
	matmul(c, &d->w[PCU_W_DOWN], c->hb, NULL, n, c->tmp);
	k_add<<<grid(n * E, 256), 256, 0, st>>>(c->x, c->tmp, n * E);
}

/*
 * The end of a call whose kernels are queued: any launch's or cuBLAS's
 * error, else @bytes of the result @dev copied back to @host once they ran.
 */
static int finish(struct pcu_ctx *c, void *host, const void *dev, size_t bytes, const char *what,
		  char *err, size_t en)
{
	int ret = -1;

	CK(cudaGetLastError(), what);
	if (c->blas_status != CUBLAS_STATUS_SUCCESS)
		return fail(err, en, "cuBLAS: cublasGemmEx failed (status %d)", (int)c->blas_status);
	CK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->m->stream), "copying back");
	CK(cudaStreamSynchronize(c->m->stream), what);
	ret = 0;
out:
	return ret;
}

/*
 * The call's @n tokens' positions @pos and block tables @tabs to the
 * device: each distinct table once, its entries up to its last token's
 * block, and each token its table's offset; an error for a position past
 * the context or a block past the cache.
 */
static int put_tables(struct pcu_ctx *c, uint32_t n, const uint32_t *pos,
		      const uint32_t *const *tabs, char *err, size_t en)
{
	cudaStream_t st = c->m->stream;
	uint32_t t, d, nd = 0, used = 0, i;
	int ret = -1;

	for (t = 0; t < n; t++) {
		if (pos[t] >= c->n_ctx)
			return fail(err, en, "CUDA: a token at position %u: past the context of %u",
				    pos[t], c->n_ctx);
		for (d = 0; d < nd && c->hseen[d] != tabs[t]; d++)
			;
		if (d == nd) {
			c->hseen[nd] = tabs[t];
			c->hlen[nd++] = 0;
		}
		c->hlen[d] = pos[t] / c->block + 1 > c->hlen[d] ? pos[t] / c->block + 1 : c->hlen[d];
		c->hix[t] = d;
	}
	/* the tables one after another in tab (at most max_batch of n_ctx / block + 1: tab_cap) */
	for (d = 0; d < nd; used += c->hlen[d++]) {
		for (i = 0; i < c->hlen[d]; i++) {
			if (c->hseen[d][i] >= c->n_blocks)
				return fail(err, en, "CUDA: block %u in a sequence's table: past the cache's %u blocks",
					    c->hseen[d][i], c->n_blocks);
			c->htab[used + i] = c->hseen[d][i];
		}
		for (t = 0; t < n; t++)
			if (c->hix[t] == d)
				c->htoff[t] = used;
	}
	CK(cudaMemcpyAsync(c->pos, pos, n * 4, cudaMemcpyHostToDevice, st), "copy the positions");
	CK(cudaMemcpyAsync(c->toff, c->htoff, n * 4, cudaMemcpyHostToDevice, st), "copy the tables");
	CK(cudaMemcpyAsync(c->tab, c->htab, (size_t)used * 4, cudaMemcpyHostToDevice, st),
	   "copy the tables");
	ret = 0;
out:
	return ret;
}

static int layers(struct pcu_ctx *c, float *x, uint32_t n, const uint32_t *pos,
		  const uint32_t *const *tabs, const float *rope_cs, uint32_t flags, char *err,
		  size_t en)
{
	const struct pcu_config *f = &c->m->cfg;
	cudaStream_t st = c->m->stream;
	size_t E = f->n_embd;
	uint32_t li, nx, ahead;
	int ret = -1;

	if (!n || n > c->max_batch)
		return fail(err, en, "CUDA: %u tokens: not 1 to the batch of %u", n, c->max_batch);
	c->exact = flags & PCU_EXACT;
	c->invariant = flags & PCU_INVARIANT;
	c->blas_status = CUBLAS_STATUS_SUCCESS;
	if (put_tables(c, n, pos, tabs, err, en))
		return -1;
	CK(cudaMemcpyAsync(c->x, x, n * E * 4, cudaMemcpyHostToDevice, st), "copy the activations");
	CK(cudaMemcpyAsync(c->cs, rope_cs, (size_t)n * f->n_rot * 4, cudaMemcpyHostToDevice, st),
	   "copy the RoPE angles");
	/*
	 * Streamed layers go through the ring: the copy stream fills a slot
	 * once the compute stream is done with its last layer, up to ring
	 * layers ahead; the compute stream waits for the slot's layer.
	 */
	for (li = 0, ahead = 0; li < c->m->n_layers && ahead < c->m->ring; li++)
		if (c->m->layers[li].stream_ix >= 0 && ahead++ < c->m->ring &&
		    prefetch(c->m, li, err, en))
			return -1;
	for (li = 0; li < c->m->n_layers; li++) {
		const struct dlayer *d = &c->m->layers[li];
		struct slot *sl;

		if (d->stream_ix < 0) {
			layer(c, d, li, n, pos);
			continue;
		}
		sl = &c->m->slots[d->stream_ix % c->m->ring];
		CK(cudaStreamWaitEvent(st, sl->ready, 0), "waiting for a streamed layer");
		layer(c, &sl->view, li, n, pos);
		CK(cudaEventRecord(sl->done, st), "cudaEventRecord");
		for (nx = li + 1; nx < c->m->n_layers; nx++)	/* the layer ring places later */
			if (c->m->layers[nx].stream_ix == d->stream_ix + (int)c->m->ring) {
				if (prefetch(c->m, nx, err, en))
					return -1;
				break;
			}
	}
	return finish(c, x, c->x, n * E * 4, "running the layers", err, en);
out:
	return ret;
}

static int logits(struct pcu_ctx *c, const float *x, uint32_t k, float *lg, uint32_t flags,
		  char *err, size_t en)
{
	const struct pcu_model *m = c->m;
	size_t E = m->cfg.n_embd, V = m->cfg.n_vocab;
	cudaStream_t st = m->stream;
	int ret = -1;

	if (!m->has_output || k > PCU_LOGIT_ROWS || k > c->max_batch)
		return fail(err, en, "CUDA: %u rows of logits: no output layer on the GPU, or more than %u",
			    k, PCU_LOGIT_ROWS);
	c->exact = flags & PCU_EXACT;
	c->invariant = flags & PCU_INVARIANT;
	c->blas_status = CUBLAS_STATUS_SUCCESS;
	CK(cudaMemcpyAsync(c->x, x, k * E * 4, cudaMemcpyHostToDevice, st), "copy the activations");
	k_rmsnorm<<<k, 256, 0, st>>>(c->x, m->output_norm, c->xb, (int)E, m->cfg.rms_eps);
	quantize(c, c->xb, k, E);
	matmul(c, &m->output, c->xb, NULL, k, c->logits);
	return finish(c, lg, c->logits, k * V * 4, "running the output layer", err, en);
out:
	return ret;
}

static const struct pcu_api api = {
	PCU_ABI, probe, mat_bytes, model_create, model_free, ctx_create, ctx_free, layers, logits,
};

extern "C" __attribute__((visibility("default"))) const struct pcu_api *pinfer_cuda_api(void)
{
	return &api;
}
