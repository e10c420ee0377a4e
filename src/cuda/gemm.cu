#include "cuda/gemm.cuh"

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
        if (g->cache[i].T == T && g->cache[i].N == N && g->cache[i].K == K) algo = &g->cache[i].algo;
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
