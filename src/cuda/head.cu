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

// Backward of the head rows: dh (one block per sequence) and, when the head is
// trainable, the rows' weight gradient (one thread per (row, column), summing
// over the sequences; atomics in case rows repeat).
__global__ void head_rows_dh_kernel(float *dh, const float *dlogits, const bf16 *W, const int32_t *rows, int nrows,
                                    int D) {
    int s = blockIdx.x;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < nrows; k++) acc += dlogits[s * nrows + k] * __bfloat162float(W[(size_t)rows[k] * D + j]);
        dh[(size_t)s * D + j] = acc;
    }
}

__global__ void head_rows_dw_kernel(float *dW, const float *dlogits, const float *h, const int32_t *rows, int nseq,
                                    int nrows, int D) {
    int k = blockIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D) return;
    float acc = 0.0f;
    for (int s = 0; s < nseq; s++) acc += dlogits[s * nrows + k] * h[(size_t)s * D + j];
    atomicAdd(&dW[(size_t)rows[k] * D + j], acc);
}

void launch_head_rows_backward(float *dh, float *dW, const float *dlogits, const float *h, const bf16 *W,
                               const int32_t *rows, int nseq, int nrows, int D, cudaStream_t st) {
    head_rows_dh_kernel<<<nseq, 256, 0, st>>>(dh, dlogits, W, rows, nrows, D);
    if (dW) head_rows_dw_kernel<<<dim3((D + 255) / 256, nrows), 256, 0, st>>>(dW, dlogits, h, rows, nseq, nrows, D);
}
