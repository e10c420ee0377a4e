#include "cuda/kernels.cuh"

#include "engine/devmath.h"

__global__ void swiglu_kernel(bf16 *a, const bf16 *gu, int F, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t t = i / F, f = i % F;
    float g = __bfloat162float(gu[t * 2 * F + f]), u = __bfloat162float(gu[t * 2 * F + F + f]);
    a[i] = __float2bfloat16(dm_swiglu(g, u));
}

void launch_swiglu(bf16 *a, const bf16 *gu, int T, int F, cudaStream_t st) {
    size_t n = (size_t)T * F;
    swiglu_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(a, gu, F, n);
}

__global__ void swiglu_bwd_kernel(bf16 *dgu, const bf16 *da, const bf16 *gu, int F, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t t = i / F, f = i % F;
    float g = __bfloat162float(gu[t * 2 * F + f]), u = __bfloat162float(gu[t * 2 * F + F + f]), dg, du;
    dm_swiglu_backward(g, u, __bfloat162float(da[i]), &dg, &du);
    dgu[t * 2 * F + f] = __float2bfloat16(dg);
    dgu[t * 2 * F + F + f] = __float2bfloat16(du);
}

void launch_swiglu_backward(bf16 *dgu, const bf16 *da, const bf16 *gu, int T, int F, cudaStream_t st) {
    size_t n = (size_t)T * F;
    if (n) swiglu_bwd_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(dgu, da, gu, F, n);
}
