// RMSNorm backward (the CPU's rmsnorm_backward): per row, with xhat = x rstd,
// dx += rstd (dy w - xhat mean(dy w xhat)), the mean reduced over the block
// in fp32; the weight gradient sum_r dy xhat by column chunks with one atomic
// per chunk. The final norm's version works on the few last rows, with the
// pre-norm values the training forward kept and rstd recomputed from them.
#include "cuda/kernels.cuh"
#include "cuda/reduce.cuh"

#define DW_ROWS 128

__global__ void rmsnorm_bwd_kernel(float *dx, const bf16 *dy, const float *x, const float *w, const float *rstd,
                                   int D) {
    size_t r = blockIdx.x;
    const float *xr = x + r * D;
    const bf16 *dyr = dy + r * D;
    float rs = rstd[r], dot = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) dot += __bfloat162float(dyr[j]) * w[j] * xr[j] * rs;
    float mean = block_sum(dot) / D;
    for (int j = threadIdx.x; j < D; j += blockDim.x)
        dx[r * D + j] += dm_rmsnorm_dx(__bfloat162float(dyr[j]), w[j], xr[j], rs, mean);
}

__global__ void rmsnorm_dw_kernel(float *dw, const bf16 *dy, const float *x, const float *rstd, int rows, int D) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= D) return;
    int r0 = blockIdx.y * DW_ROWS, r1 = r0 + DW_ROWS < rows ? r0 + DW_ROWS : rows;
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) acc += __bfloat162float(dy[(size_t)r * D + c]) * x[(size_t)r * D + c] * rstd[r];
    atomicAdd(&dw[c], acc);
}

void launch_rmsnorm_backward(float *dx, float *dw, const bf16 *dy, const float *x, const float *w, const float *rstd,
                             int rows, int D, cudaStream_t st) {
    if (rows <= 0) return;
    if (dx) rmsnorm_bwd_kernel<<<rows, 256, 0, st>>>(dx, dy, x, w, rstd, D);
    if (dw) {
        dim3 grid((D + 255) / 256, (rows + DW_ROWS - 1) / DW_ROWS);
        rmsnorm_dw_kernel<<<grid, 256, 0, st>>>(dw, dy, x, rstd, rows, D);
    }
}

__global__ void final_norm_bwd_kernel(float *dx, float *dw, const float *dh, const float *pre, const int32_t *last,
                                      const float *w, float eps, int D) {
    int s = blockIdx.x;
    const float *v = pre + (size_t)s * D, *g = dh + (size_t)s * D;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) ss += v[j] * v[j];
    float rs = rsqrtf(block_sum(ss) / D + eps), dot = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) dot += g[j] * w[j] * v[j] * rs;
    float mean = block_sum(dot) / D;
    float *dr = dx + (size_t)last[s] * D;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        dr[j] += dm_rmsnorm_dx(g[j], w[j], v[j], rs, mean);
        if (dw) atomicAdd(&dw[j], g[j] * v[j] * rs);
    }
}

void launch_final_norm_backward(float *dx, float *dw, const float *dh, const float *pre, const int32_t *last,
                                const float *w, float eps, int nseq, int D, cudaStream_t st) {
    final_norm_bwd_kernel<<<nseq, 256, 0, st>>>(dx, dw, dh, pre, last, w, eps, D);
}
