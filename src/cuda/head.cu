// The few LM-head rows a head reads (the nine digit rows), in fp32, for the
// last position of each sequence only.
#include "cuda/kernels.cuh"
#include "cuda/reduce.cuh"

__global__ void head_rows_kernel(float *logits, const float *h, const bf16 *W, const int32_t *rows, int nrows, int D) {
    int s = blockIdx.x / nrows, k = blockIdx.x % nrows;
    const float *hs = h + (size_t)s * D;
    const bf16 *w = W + (size_t)rows[k] * D;
    float acc = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) acc += hs[j] * __bfloat162float(w[j]);
    acc = block_sum(acc);
    if (threadIdx.x == 0) logits[blockIdx.x] = acc;
}

void launch_head_rows(float *logits, const float *h, const bf16 *W, const int32_t *rows, int nseq, int nrows,
                      int D, cudaStream_t st) {
    head_rows_kernel<<<nseq * nrows, 256, 0, st>>>(logits, h, W, rows, nrows, D);
}
