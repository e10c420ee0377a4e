// cuBLASLt GEMMs of the engine: C[T, N] = A[T, K] . W[N, K]^T, BF16 in and
// out, fp32 accumulation. Row-major on our side is column-major transposed on
// cuBLAS's: C^T (N x T) = op_T(W as K x N) . A^T (K x T).
#pragma once

#include <cublasLt.h>

#include "cuda/kernels.cuh"

// The heuristic's choice per shape is kept (a forward asks for the same four
// shapes in every layer; asking cuBLASLt each time costs tens of microseconds).
#define GEMM_CACHE 64
typedef struct {
    int T, N, K;
    int key[8]; // gemm_ex: transposes, leading dimensions, C type, beta (0 for gemm_bf16)
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

// The general form, row-major on our side (training: dX = dY W, dW += dY^T X,
// LoRA's rank-r products, sub-blocks of the fused matrices through ld):
//   C[M, N] (ldc) = alpha * op(A)[M, K] * op(B)[K, N] + beta * C
// op(A) = A (stored [M, K], lda) or A^T (stored [K, M]) when ta; the same for
// B. A and B are BF16; C is BF16 (c_f32 = 0) or fp32 (c_f32 = 1: gradients
// accumulated in fp32 with beta = 1). fp32 accumulation always.
cublasStatus_t gemm_ex(Gemm *g, int ta, int tb, int M, int N, int K, float alpha, const bf16 *A, int lda,
                       const bf16 *B, int ldb, float beta, void *C, int c_f32, int ldc, cudaStream_t st);
