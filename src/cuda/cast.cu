// fp32 -> BF16 copies (the residual stream's gradient before a GEMM).
#include "cuda/kernels.cuh"

__global__ void to_bf16_kernel(bf16 *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16(src[i]);
}

void launch_to_bf16(bf16 *dst, const float *src, size_t n, cudaStream_t st) {
    if (n) to_bf16_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(dst, src, n);
}
