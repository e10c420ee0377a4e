// RMSNorm fused with the residual add: statistics in fp32 on the fp32 stream.
#include "cuda/kernels.cuh"
#include "cuda/reduce.cuh"

__global__ void residual_rmsnorm_kernel(float *x, const bf16 *y, const float *w, float eps, bf16 *out, int D) {
    size_t r = blockIdx.x;
    float *xr = x + r * D;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        float v = xr[j];
        if (y) {
            v += __bfloat162float(y[r * D + j]);
            xr[j] = v;
        }
        ss += v * v;
    }
    float rstd = rsqrtf(block_sum(ss) / D + eps);
    for (int j = threadIdx.x; j < D; j += blockDim.x) out[r * D + j] = __float2bfloat16(xr[j] * rstd * w[j]);
}

__global__ void final_norm_last_kernel(const float *x, const bf16 *y, const int32_t *last, const float *w, float eps,
                                       float *h, float *pre, int D) {
    int s = blockIdx.x;
    size_t r = (size_t)last[s];
    float *hs = h + (size_t)s * D;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        float v = x[r * D + j] + __bfloat162float(y[r * D + j]);
        hs[j] = v;
        if (pre) pre[(size_t)s * D + j] = v;
        ss += v * v;
    }
    float rstd = rsqrtf(block_sum(ss) / D + eps);
    for (int j = threadIdx.x; j < D; j += blockDim.x) hs[j] = hs[j] * rstd * w[j];
}

void launch_residual_rmsnorm(float *x, const bf16 *y, const float *w, float eps, bf16 *out, int rows, int D,
                             cudaStream_t st) {
    residual_rmsnorm_kernel<<<rows, 256, 0, st>>>(x, y, w, eps, out, D);
}

void launch_final_norm_last(const float *x, const bf16 *y, const int32_t *last, const float *w, float eps,
                            float *h, float *pre, int nseq, int D, cudaStream_t st) {
    final_norm_last_kernel<<<nseq, 256, 0, st>>>(x, y, last, w, eps, h, pre, D);
}

__global__ void add_residual_kernel(float *out, const float *x, const bf16 *y, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] + __bfloat162float(y[i]);
}

__global__ void rmsnorm_fwd_kernel(bf16 *out, float *rstd, const float *x, const float *w, float eps, int D) {
    size_t r = blockIdx.x;
    const float *xr = x + r * D;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) ss += xr[j] * xr[j];
    float rs = rsqrtf(block_sum(ss) / D + eps);
    if (threadIdx.x == 0) rstd[r] = rs;
    for (int j = threadIdx.x; j < D; j += blockDim.x) out[r * D + j] = __float2bfloat16(xr[j] * rs * w[j]);
}

void launch_add_residual(float *out, const float *x, const bf16 *y, size_t n, cudaStream_t st) {
    add_residual_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(out, x, y, n);
}

void launch_rmsnorm_fwd(bf16 *out, float *rstd, const float *x, const float *w, float eps, int rows, int D,
                        cudaStream_t st) {
    rmsnorm_fwd_kernel<<<rows, 256, 0, st>>>(out, rstd, x, w, eps, D);
}
