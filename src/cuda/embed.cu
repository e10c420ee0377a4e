#include "cuda/kernels.cuh"

__global__ void embed_kernel(float *x, const bf16 *E, const int32_t *ids, int D) {
    int t = blockIdx.x;
    const bf16 *row = E + (size_t)ids[t] * D;
    float *dst = x + (size_t)t * D;
    for (int j = threadIdx.x; j < D; j += blockDim.x) dst[j] = __bfloat162float(row[j]);
}

void launch_embed(float *x, const bf16 *E, const int32_t *ids, int T, int D, cudaStream_t st) {
    embed_kernel<<<T, 256, 0, st>>>(x, E, ids, D);
}

// Embedding backward (full fine-tuning): scatter-add of the residual stream's
// gradient at layer 0 into the rows of the ids (atomics: ids repeat).
__global__ void embed_bwd_kernel(float *dE, const float *dx, const int32_t *ids, int D) {
    int t = blockIdx.x;
    float *row = dE + (size_t)ids[t] * D;
    const float *src = dx + (size_t)t * D;
    for (int j = threadIdx.x; j < D; j += blockDim.x) atomicAdd(&row[j], src[j]);
}

void launch_embed_backward(float *dE, const float *dx, const int32_t *ids, int T, int D, cudaStream_t st) {
    if (T > 0) embed_bwd_kernel<<<T, 256, 0, st>>>(dE, dx, ids, D);
}
