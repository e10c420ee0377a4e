/* The CUDA engine's debug mode and launch geometry, host side
 * (src/engine/cuda_debug.c): what OPRM_CUDA_SYNC accepts, the message that
 * names a failing kernel, and the naive GEMM fallback's grid (grid y is
 * capped at CUDA's 65535; the kernel strides rows by it). */
#include "engine/cuda_debug.h"
#include "test.h"

static void test_sync_mode_parse(void) {
    char msg[128] = "";
    CHECK(cuda_sync_mode_parse(NULL, msg, sizeof msg) == 0);
    CHECK(cuda_sync_mode_parse("", msg, sizeof msg) == 0);
    CHECK(cuda_sync_mode_parse("0", msg, sizeof msg) == 0);
    CHECK(cuda_sync_mode_parse("1", msg, sizeof msg) == 1);
    CHECK(msg[0] == 0); /* nothing written for an accepted value */
    CHECK(cuda_sync_mode_parse("yes", msg, sizeof msg) == -1);
    CHECK(strcmp(msg, "OPRM_CUDA_SYNC must be 0 or 1, got 'yes'") == 0);
    CHECK(cuda_sync_mode_parse("2", msg, sizeof msg) == -1);
}

static void test_format(void) {
    char b[512];
    CudaDbgSite s = {3, 2048, 896, 14, 2, 64};
    cuda_dbg_format(b, sizeof b, "attention_backward_dq_wmma", &s, "src/cuda/train_cuda.cu", 312,
                    "an illegal memory access was encountered [cudaErrorIllegalAddress]");
    CHECK(strcmp(b, "attention_backward_dq_wmma (layer 3, T=2048, D=896, H=14, KV=2, hd=64; train_cuda.cu:312): an "
                    "illegal memory access was encountered [cudaErrorIllegalAddress]") == 0);
    /* Outside a layer, before a batch, without a file. */
    CudaDbgSite o = {-1, -1, 32, 4, 2, 8};
    cuda_dbg_format(b, sizeof b, "to_bf16", &o, NULL, 0, "cuBLASLt status 7");
    CHECK(strcmp(b, "to_bf16 (D=32, H=4, KV=2, hd=8): cuBLASLt status 7") == 0);
    /* Layer 0 is a layer; a file without a directory stays as it is. */
    CudaDbgSite z = {0, 5, 32, 4, 2, 8};
    cuda_dbg_format(b, sizeof b, "embed", &z, "engine_cuda.cu", 7, "e");
    CHECK(strcmp(b, "embed (layer 0, T=5, D=32, H=4, KV=2, hd=8; engine_cuda.cu:7): e") == 0);
    /* A short buffer truncates, terminated. */
    char t[16];
    cuda_dbg_format(t, sizeof t, "attention_wmma", &s, NULL, 0, "x");
    CHECK(strlen(t) == 15 && strncmp(t, "attention_wmma ", 15) == 0);
}

static void test_naive_grid(void) {
    CudaGrid2 g = cuda_naive_gemm_grid(10, 300, 128);
    CHECK(g.x == 3 && g.y == 10);
    g = cuda_naive_gemm_grid(65535, 128, 128);
    CHECK(g.x == 1 && g.y == 65535);
    /* Above the limit (the bug: grid y = M fails for M > 65535, e.g. dW of a 152k vocabulary). */
    g = cuda_naive_gemm_grid(152064, 896, 128);
    CHECK(g.x == 7 && g.y == 65535);
    /* Every row i < M is visited once by the stride loop: rows y, y + gy, ... */
    int M = 200000, gy = cuda_naive_gemm_grid(M, 1, 128).y;
    long visited = 0;
    for (int y = 0; y < gy; y++)
        for (int i = y; i < M; i += gy) visited++;
    CHECK(visited == M);
    g = cuda_naive_gemm_grid(0, 0, 128);
    CHECK(g.x == 1 && g.y == 1);
}

int main(void) {
    RUN(test_sync_mode_parse);
    RUN(test_format);
    RUN(test_naive_grid);
    return test_summary();
}
