#include <stdio.h>
#include <string.h>

#include "cuda/gemm.cuh"

extern "C" {
#include "engine/cuda_debug.h"
}

cublasStatus_t gemm_init(Gemm *g, void *workspace, size_t workspace_size) {
    g->n_cache = g->next = 0;
    g->workspace = workspace;
    g->workspace_size = workspace_size;
    return cublasLtCreate(&g->lt);
}

void gemm_free(Gemm *g) {
    if (g->lt) cublasLtDestroy(g->lt);
    g->lt = NULL;
}

#define LT_TRY(x)                                   \
    do {                                            \
        st = (x);                                   \
        if (st != CUBLAS_STATUS_SUCCESS) goto done; \
    } while (0)

cublasStatus_t gemm_bf16(Gemm *g, bf16 *C, const bf16 *A, const bf16 *W, int T, int N, int K, cudaStream_t stream) {
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t lw = NULL, la = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
    const float one = 1.0f, zero = 0.0f;
    cublasLtMatmulHeuristicResult_t heur;
    const cublasLtMatmulAlgo_t *algo = NULL;
    int found = 0;
    LT_TRY(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr));
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt));
    LT_TRY(cublasLtMatrixLayoutCreate(&lw, CUDA_R_16BF, K, N, K));
    LT_TRY(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, T, K));
    LT_TRY(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, T, N));
    for (int i = 0; i < g->n_cache; i++)
        if (g->cache[i].T == T && g->cache[i].N == N && g->cache[i].K == K && g->cache[i].key[0] == 0)
            algo = &g->cache[i].algo;
    if (!algo) {
        LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->workspace_size,
                                                    sizeof g->workspace_size));
        LT_TRY(cublasLtMatmulAlgoGetHeuristic(g->lt, op, lw, la, lc, lc, pref, 1, &heur, &found));
        if (found == 0) {
            st = CUBLAS_STATUS_NOT_SUPPORTED;
            goto done;
        }
        GemmAlgo *slot = &g->cache[g->next];
        g->next = (g->next + 1) % GEMM_CACHE;
        if (g->n_cache < GEMM_CACHE) g->n_cache++;
        slot->T = T;
        slot->N = N;
        slot->K = K;
        memset(slot->key, 0, sizeof slot->key);
        slot->algo = heur.algo;
        algo = &slot->algo;
    }
    LT_TRY(cublasLtMatmul(g->lt, op, &one, W, lw, A, la, &zero, C, lc, C, lc, algo, g->workspace,
                          g->workspace_size, stream));
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lw) cublasLtMatrixLayoutDestroy(lw);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt
// gets B's storage first (op T when tb), then A's (op T when ta), m = N,
// n = M. A row-major [r, c] buffer with leading dimension ld is a
// column-major [c, r] one with the same ld.
// The fallback where cuBLASLt has no algorithm for a layout (it should not
// happen; a slow result beats a failed step): one thread per element of C,
// fp32 accumulation, the same operand conventions as gemm_ex. Rows stride by
// gridDim.y (at most 65535, CUDA's limit on grid y), so any M is covered.
__global__ void gemm_naive_kernel(int ta, int tb, int M, int N, int K, float alpha, const bf16 *A, int lda,
                                  const bf16 *B, int ldb, float beta, void *C, int c_f32, int ldc) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    for (int i = blockIdx.y; i < M; i += gridDim.y) {
        float acc = 0.0f;
        for (int p = 0; p < K; p++) {
            float a = __bfloat162float(ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]);
            float b = __bfloat162float(tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]);
            acc += a * b;
        }
        size_t o = (size_t)i * ldc + j;
        if (c_f32) {
            float *c = (float *)C;
            c[o] = alpha * acc + (beta != 0.0f ? beta * c[o] : 0.0f);
        } else {
            bf16 *c = (bf16 *)C;
            c[o] = __float2bfloat16(alpha * acc + (beta != 0.0f ? beta * __bfloat162float(c[o]) : 0.0f));
        }
    }
}

static dim3 gemm_naive_grid(int M, int N) {
    CudaGrid2 g = cuda_naive_gemm_grid(M, N, 128);
    return dim3((unsigned)g.x, (unsigned)g.y);
}

static cublasStatus_t gemm_naive(int ta, int tb, int M, int N, int K, float alpha, const bf16 *A, int lda,
                                 const bf16 *B, int ldb, float beta, void *C, int c_f32, int ldc, cudaStream_t st) {
    static int told;
    if (!told) {
        told = 1;
        fprintf(stderr, "oprm: cuBLASLt has no algorithm for a %dx%dx%d product (ld %d/%d/%d); using a slow "
                        "fallback kernel for such products\n", M, N, K, lda, ldb, ldc);
    }
    // An error an earlier kernel left is not this product's: launch nothing and
    // leave it pending (not cleared), so the caller's report (fail_lt) names it
    // as pending and OPRM_CUDA_SYNC=1's checks attribute it to its kernel.
    if (cudaPeekAtLastError() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    gemm_naive_kernel<<<gemm_naive_grid(M, N), 128, 0, st>>>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, c_f32,
                                                             ldc);
    return cudaPeekAtLastError() == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

// Largest power of two (<= 256) dividing a pointer: sub-blocks of the fused
// matrices (the k columns of q|k|v, LoRA's rank-r buffers) are less aligned
// than cuBLASLt's default assumption of 256 bytes, so the heuristic is told.
static uint32_t ptr_align(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a)) a >>= 1;
    return a;
}

cublasStatus_t gemm_ex(Gemm *g, int ta, int tb, int M, int N, int K, float alpha, const bf16 *A, int lda,
                       const bf16 *B, int ldb, float beta, void *C, int c_f32, int ldc, cudaStream_t stream) {
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t lb = NULL, la = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t ct = c_f32 ? CUDA_R_32F : CUDA_R_16BF;
    cublasLtMatmulHeuristicResult_t heur;
    const cublasLtMatmulAlgo_t *algo = NULL;
    int found = 0;
    uint32_t al_a = ptr_align(B), al_b = ptr_align(A), al_c = ptr_align(C); // cuBLAS's A is our B
    int key[8] = {1 + (int)(al_a << 1 | al_b << 10 | al_c << 19), ta, tb, lda, ldb, ldc, c_f32, beta != 0.0f};
    if (M <= 0 || N <= 0) return CUBLAS_STATUS_SUCCESS;
    CudaLtCall L; // the mapping, tested on the host (tests/test_cuda_train_ref.c)
    cuda_gemm_map(ta, tb, M, N, K, lda, ldb, ldc, &L);
    opb = L.op1 ? CUBLAS_OP_T : CUBLAS_OP_N;
    opa = L.op2 ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT_TRY(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof opb));
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof opa));
    LT_TRY(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, L.rows1, L.cols1, L.ld1));
    LT_TRY(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, L.rows2, L.cols2, L.ld2));
    LT_TRY(cublasLtMatrixLayoutCreate(&lc, ct, L.rowsc, L.colsc, L.ldc));
    for (int i = 0; i < g->n_cache; i++)
        if (g->cache[i].T == M && g->cache[i].N == N && g->cache[i].K == K &&
            !memcmp(g->cache[i].key, key, sizeof key))
            algo = &g->cache[i].algo;
    if (!algo) {
        LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->workspace_size,
                                                    sizeof g->workspace_size));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
        st = cublasLtMatmulAlgoGetHeuristic(g->lt, op, lb, la, lc, lc, pref, 1, &heur, &found);
        if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
            st = gemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, c_f32, ldc, stream);
            goto done;
        }
        GemmAlgo *slot = &g->cache[g->next];
        g->next = (g->next + 1) % GEMM_CACHE;
        if (g->n_cache < GEMM_CACHE) g->n_cache++;
        slot->T = M;
        slot->N = N;
        slot->K = K;
        memcpy(slot->key, key, sizeof key);
        slot->algo = heur.algo;
        algo = &slot->algo;
    }
    LT_TRY(cublasLtMatmul(g->lt, op, &alpha, B, lb, A, la, &beta, C, lc, C, lc, algo, g->workspace,
                          g->workspace_size, stream));
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}
