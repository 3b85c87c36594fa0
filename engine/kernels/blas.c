// SPDX-License-Identifier: MIT
/* OpenBLAS through dlopen(): see blas.h. */
#include "blas.h"

#include <dlfcn.h>
#include <pthread.h>

/* cblas_sgemm's signature, with its enums as the ints they are */
typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
			 const float *a, int lda, const float *b, int ldb, float beta,
			 float *c, int ldc);

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

static sgemm_fn sgemm;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
	void (*threads)(int);
	void *h;

	h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;		/* the 8-bit kernels do all the work then */
	threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
	if (threads)
		threads(1);
	sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
}

bool blas_available(void)
{
	pthread_once(&once, load);
	return sgemm != NULL;
}

void blas_sgemm_nt(int m, int n, int k, const float *a, int lda, const float *b, int ldb,
		   float *c, int ldc)
{
	sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, m, n, k, 1.0f, a, lda, b, ldb,
	      0.0f, c, ldc);
}

void blas_sgemm_nn(int m, int n, int k, const float *a, int lda, const float *b, int ldb,
		   float *c, int ldc)
{
	sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, m, n, k, 1.0f, a, lda, b, ldb,
	      0.0f, c, ldc);
}
