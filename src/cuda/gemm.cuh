// cuBLASLt GEMMs of the engine: C[T, N] = A[T, K] . W[N, K]^T, BF16 in and
// out, fp32 accumulation. Row-major on our side is column-major transposed on
// cuBLAS's: C^T (N x T) = op_T(W as K x N) . A^T (K x T).
#pragma once

#include <cublasLt.h>

#include "cuda/kernels.cuh"

// The heuristic's choice per shape is kept (a forward asks for the same four
// shapes in every layer; asking cuBLASLt each time costs tens of microseconds).
#define GEMM_CACHE 16
typedef struct {
    int T, N, K;
    cublasLtMatmulAlgo_t algo;
} GemmAlgo;

typedef struct {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_size;
    GemmAlgo cache[GEMM_CACHE];
    int n_cache, next;
} Gemm;

cublasStatus_t gemm_init(Gemm *g, void *workspace, size_t workspace_size);
void gemm_free(Gemm *g);
cublasStatus_t gemm_bf16(Gemm *g, bf16 *C, const bf16 *A, const bf16 *W, int T, int N, int K, cudaStream_t st);
