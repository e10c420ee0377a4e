// cuBLASLt GEMMs of the engine: C[T, N] = A[T, K] . W[N, K]^T, BF16 in and
// out, fp32 accumulation. Row-major on our side is column-major transposed on
// cuBLAS's: C^T (N x T) = op_T(W as K x N) . A^T (K x T).
#pragma once

#include <cublasLt.h>

#include "cuda/kernels.cuh"

typedef struct {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_size;
} Gemm;

cublasStatus_t gemm_init(Gemm *g, void *workspace, size_t workspace_size);
void gemm_free(Gemm *g);
cublasStatus_t gemm_bf16(Gemm *g, bf16 *C, const bf16 *A, const bf16 *W, int T, int N, int K, cudaStream_t st);
