// The optimizer on the device (llm.c's arrangement): fp32 master weights,
// gradients and moments; one pass per tensor applies the clip factor, the
// AdamW update of devmath.h (the same float operations as src/train/adamw.c;
// this file is compiled with --fmad=false so nvcc does not fuse them
// differently), clears the gradient and refreshes the BF16 copy the matmuls
// read. The gradient sum of squares is taken in double.
#include "cuda/kernels.cuh"

__global__ void adamw_kernel(float *p, float *g, float *m, float *v, bf16 *copy, size_t n, float grad_scale,
                             float decay_mul, DmAdamW k) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float pi = p[i], mi = m[i], vi = v[i], gi = g[i];
    if (grad_scale != 1.0f) gi *= grad_scale;
    dm_adamw_update(&pi, &mi, &vi, gi, decay_mul, &k);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    g[i] = 0.0f;
    if (copy) copy[i] = __float2bfloat16(pi);
}

void launch_adamw(float *p, float *g, float *m, float *v, bf16 *copy, size_t n, float grad_scale, float decay_mul,
                  DmAdamW k, cudaStream_t st) {
    if (n) adamw_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(p, g, m, v, copy, n, grad_scale, decay_mul, k);
}

__global__ void sqnorm_kernel(double *out, const float *g, size_t n) {
    __shared__ double part[32];
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc += (double)g[i] * g[i];
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) part[w] = acc;
    __syncthreads();
    if (w == 0) {
        acc = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) atomicAdd(out, acc);
    }
}

void launch_sqnorm(double *out, const float *g, size_t n, cudaStream_t st) {
    if (!n) return;
    size_t blocks = (n + 255) / 256;
    if (blocks > 4096) blocks = 4096;
    sqnorm_kernel<<<(unsigned)blocks, 256, 0, st>>>(out, g, n);
}
