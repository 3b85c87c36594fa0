/* SPDX-License-Identifier: MIT */
/*
 * The contract between the engine and the CUDA backend, a shared library
 * (build/libpinfer-cuda.so, built by `make cuda` from engine/cuda/) that
 * the engine opens with dlopen() only when a run asks for GPU layers
 * (engine/model/gpu.c). Plain C on both sides; the library exports one
 * function, pinfer_cuda_api(), that returns its table of operations.
 *
 * The backend knows nothing of GGUF or of the engine's structures: it gets
 * a model's shape, each GPU layer's matrices as host pointers to their
 * file bytes (GGUF blocks, in the runtime's pinned region), and runs
 * whole layers (and the output layer) on the device over a batch of
 * tokens: the residual stream goes in and comes back, the KV cache of its
 * layers stays on the device.
 */
#ifndef PINFER_CUDA_API_H
#define PINFER_CUDA_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PCU_ABI 4

/* A weight matrix: @rows rows of @cols elements of ggml @type, in host memory. */
struct pcu_mat {
	uint32_t type;
	uint64_t rows, cols;
	const void *data;
	size_t row_bytes;
};

/* A layer's matrices, in the order of pcu_layer's mats[] and of fetch()'s. */
enum { PCU_WQ, PCU_WK, PCU_WV, PCU_WO, PCU_W_GATE, PCU_W_UP, PCU_W_DOWN, PCU_N_MATS };

/* One layer: matrices, and float vectors (NULL when the model has none). */
struct pcu_layer {
	struct pcu_mat mats[PCU_N_MATS];
	const float *attn_norm, *ffn_norm;	/* n_embd */
	const float *q_norm, *k_norm;		/* head_dim (qwen3), or NULL */
	const float *bq, *bk, *bv;		/* q_dim, kv_dim, kv_dim (qwen2), or NULL */
	uint32_t streamed;	/* enum pcu_streamed */
};

/* Where a layer's matrices are. */
enum pcu_streamed {
	PCU_RESIDENT,		/* on the device, uploaded once */
	PCU_FROM_HOST,		/* in host memory (data), copied to the device's ring of
				   slots each time they are used */
	PCU_FROM_DRIVE,		/* likewise, but read from the drive each time: their
				   host pointers come from fetch() (data unused) */
	PCU_DRIVE_ONCE,		/* on the device, uploaded once, in model_create(),
				   from fetch()'s host pointers (data unused): read
				   from the drive once, at load */
};

struct pcu_config {
	uint32_t n_embd, n_ff, n_head, n_head_kv, head_dim, n_rot, n_vocab;
	uint32_t rope_neox;	/* pairs (i, i + n_rot/2); 0: (2i, 2i+1) */
	float rms_eps;
};

struct pcu_model_desc {
	struct pcu_config cfg;
	uint32_t n_layers;		/* the GPU's layers, in order */
	const struct pcu_layer *layers;
	const struct pcu_mat *output;	/* NULL: the output layer stays on the CPU */
	const float *output_norm;	/* n_embd, with output */
	void *host_base;		/* the region the matrices are in, to register */
	size_t host_bytes;		/* with the driver (0: none) */
	uint32_t ring;			/* slots for the streamed layers (at least 2) */
	/*
	 * Layers PCU_FROM_DRIVE and PCU_DRIVE_ONCE: before GPU layer @layer
	 * (its index among the GPU's) is copied, fetch() reads it and gives
	 * its matrices, as pcu_layer's mats[], their host pointers in the
	 * region and valid until done(), which comes once the copies from
	 * them have finished. Called in layer order, each fetch() followed by
	 * its done() before the next: PCU_DRIVE_ONCE's within model_create(),
	 * PCU_FROM_DRIVE's within each layers() call, from the thread that
	 * calls it. An error from fetch() (@err, @n) ends the call with it.
	 */
	int (*fetch)(void *arg, uint32_t layer, struct pcu_mat mats[PCU_N_MATS], char *err,
		     size_t n);
	void (*done)(void *arg, uint32_t layer);
	void *arg;
};

struct pcu_device {
	char name[256];
	int major, minor;		/* compute capability */
	uint64_t total, free;		/* bytes of device memory */
	char gemm[160];			/* what batches of PCU_GEMM_MIN tokens or more go
					   through: "cuBLAS ...", or why the kernels do */
};

/*
 * Batches of at least this many tokens multiply through cuBLAS (fp16
 * weights dequantized on the fly, fp32 sums) when the library is there;
 * smaller ones, and every batch without it, through the 8-bit kernels.
 */
#define PCU_GEMM_MIN 32

/*
 * Attention is split over the context in chunks of PCU_ATT_CHUNK positions
 * (a block each), PCU_ATT_TOKENS tokens per launch; their parts are merged
 * by a second kernel, from a scratch buffer of PCU_ATT_TOKENS * n_head *
 * (n_ctx / PCU_ATT_CHUNK + 1) * (head_dim + 2) floats.
 */
#define PCU_ATT_CHUNK 128
#define PCU_ATT_TOKENS 32

/* Rows of logits one logits() call gives at most (its buffer's). */
#define PCU_LOGIT_ROWS 32


struct pcu_model;
struct pcu_ctx;

/*
 * A context's device buffers and their bytes, as ctx_create() allocates
 * them (xh only with cuBLAS, logits only with the output layer) and the
 * engine's plan counts them (all of them). pos, toff and tab hold a call's
 * tokens' positions and block tables (layers()).
 */
enum pcu_buf {
	PCU_BUF_KC, PCU_BUF_VC, PCU_BUF_X, PCU_BUF_XB, PCU_BUF_Q, PCU_BUF_K, PCU_BUF_V,
	PCU_BUF_OUT, PCU_BUF_HB, PCU_BUF_HB2, PCU_BUF_TMP, PCU_BUF_CS, PCU_BUF_AQ, PCU_BUF_ADS,
	PCU_BUF_XH, PCU_BUF_PART, PCU_BUF_LOGITS, PCU_BUF_POS, PCU_BUF_TOFF, PCU_BUF_TAB,
	PCU_N_BUFS,
};

/*
 * The bytes of each buffer of a context of @layers layers whose KV cache
 * is @n_blocks blocks of @block positions, for sequences of at most
 * @n_ctx positions and batches of @max_batch tokens (@output: with the
 * output layer's logits).
 */
static inline void pcu_ctx_bytes(const struct pcu_config *f, uint32_t layers, uint32_t n_ctx,
				 uint32_t n_blocks, uint32_t block, uint32_t max_batch, int output,
				 uint64_t b[PCU_N_BUFS])
{
	uint64_t E = f->n_embd, qd = (uint64_t)f->n_head * f->head_dim, F = f->n_ff;
	uint64_t kvd = (uint64_t)f->n_head_kv * f->head_dim, B = max_batch;
	uint64_t wide = E > qd ? E : qd;

	wide = wide > F ? wide : F;
	b[PCU_BUF_KC] = b[PCU_BUF_VC] = 2 * (uint64_t)layers * n_blocks * block * kvd + 1;	/* fp16 */
	b[PCU_BUF_X] = b[PCU_BUF_TMP] = B * E * 4;
	b[PCU_BUF_XB] = B * wide * 4;
	b[PCU_BUF_Q] = b[PCU_BUF_OUT] = B * qd * 4;
	b[PCU_BUF_K] = b[PCU_BUF_V] = B * kvd * 4;
	b[PCU_BUF_HB] = b[PCU_BUF_HB2] = B * F * 4;
	b[PCU_BUF_CS] = B * f->n_rot * 4 + 4;
	b[PCU_BUF_AQ] = B * wide;
	b[PCU_BUF_ADS] = B * wide / 32 * 8;
	b[PCU_BUF_XH] = B * wide * 2;
	b[PCU_BUF_PART] = 4 * (uint64_t)PCU_ATT_TOKENS * f->n_head * (n_ctx / PCU_ATT_CHUNK + 1) *
			  (f->head_dim + 2);
	b[PCU_BUF_LOGITS] = output ? PCU_LOGIT_ROWS * 4 * (uint64_t)f->n_vocab : 0;
	b[PCU_BUF_POS] = b[PCU_BUF_TOFF] = B * 4;
	b[PCU_BUF_TAB] = B * (n_ctx / block + 1) * 4;	/* each token's table, at most */
}

/*
 * The reference mode: float activations times the dequantized weights
 * (the engine's llm_session_set_exact()) instead of 8-bit integer products.
 */
#define PCU_EXACT 1u

/*
 * Every token's results independent of the batch it came in (the server's
 * calls, llm_eval_seqs()): no cuBLAS, whose fp16 products differ from the
 * 8-bit kernels', for any batch.
 */
#define PCU_INVARIANT 2u

/* Every operation returns 0, or -1 with a message in @err (@n bytes). */
struct pcu_api {
	uint32_t abi;		/* PCU_ABI */
	/* Device 0, or why there is none (no driver, no device). */
	int (*probe)(struct pcu_device *dev, char *err, size_t n);
	/* Device bytes the backend needs for a matrix of @type (0: no kernel for it). */
	uint64_t (*mat_bytes)(uint32_t type, uint64_t rows, uint64_t cols);
	/* Upload the layers (and the output) to device 0. */
	int (*model_create)(struct pcu_model **out, const struct pcu_model_desc *d, char *err,
			    size_t n);
	void (*model_free)(struct pcu_model *m);
	/*
	 * A KV cache of @n_blocks blocks of @block positions of every layer,
	 * for sequences of at most @n_ctx positions, and buffers for
	 * @max_batch tokens. One sequence's own cache is one block of n_ctx;
	 * a server's, the blocks its sequences share (pinfer serve).
	 */
	int (*ctx_create)(struct pcu_ctx **out, struct pcu_model *m, uint32_t n_ctx,
			  uint32_t n_blocks, uint32_t block, uint32_t max_batch, char *err,
			  size_t n);
	void (*ctx_free)(struct pcu_ctx *c);
	/*
	 * The model's layers over @n (<= max_batch) tokens: @x ([n][n_embd],
	 * host) in and out. Token t is at position @pos[t] (< n_ctx) of the
	 * sequence whose block table is @tabs[t] (position p is in block
	 * tabs[t][p / block], each < n_blocks); its K and V go there, and it
	 * attends to its sequence's positions up to its own, those of the
	 * call's earlier tokens included. A sequence's tokens in a call are
	 * at consecutive positions, in order; sequences may share blocks they
	 * only read (a prefix). @rope_cs ([n][n_rot]: cos, sin of each pair's
	 * angle, as the CPU computes them). @flags: PCU_EXACT, PCU_INVARIANT.
	 */
	int (*layers)(struct pcu_ctx *c, float *x, uint32_t n, const uint32_t *pos,
		      const uint32_t *const *tabs, const float *rope_cs, uint32_t flags, char *err,
		      size_t en);
	/*
	 * The final norm and output layer of @k (<= PCU_LOGIT_ROWS) residual
	 * rows @x ([k][n_embd]) into @logits. @flags as layers()'.
	 */
	int (*logits)(struct pcu_ctx *c, const float *x, uint32_t k, float *logits, uint32_t flags,
		      char *err, size_t en);
};

typedef const struct pcu_api *(*pcu_api_fn)(void);

#define PCU_API_SYMBOL "pinfer_cuda_api"

#ifdef __cplusplus
}
#endif

#endif
