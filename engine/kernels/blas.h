/* SPDX-License-Identifier: MIT */
/*
 * OpenBLAS's sgemm for prompt processing, loaded at first use with
 * dlopen(), so that the engine runs (with its 8-bit kernels only) where
 * libopenblas.so.0 is missing, static binaries included. OpenBLAS runs
 * single-threaded: the engine's pool splits the work. Its kernels are the
 * ones it picks for this CPU, or those OPENBLAS_CORETYPE names.
 */
#ifndef PINFER_BLAS_H
#define PINFER_BLAS_H

#include <stdbool.h>

/* True once libopenblas.so.0 is loaded (the first call loads it). */
bool blas_available(void);

/* C (m x n, row stride ldc) = A (m x k, lda) * B^T (B: n x k, ldb). */
void blas_sgemm_nt(int m, int n, int k, const float *a, int lda, const float *b, int ldb,
		   float *c, int ldc);

/* C (m x n, ldc) = A (m x k, lda) * B (k x n, ldb). */
void blas_sgemm_nn(int m, int n, int k, const float *a, int lda, const float *b, int ldb,
		   float *c, int ldc);

#endif
