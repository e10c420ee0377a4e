// Backward of qkv_post (qkv.cu), one warp per (token, head), lane i holding
// the pairs (i, i + hd/2) as in the forward: the inverse RoPE rotation (same
// angle, taken in double), then for Qwen3 the per-head RMSNorm backward with
// the rstd recomputed from the GEMM's raw output (+ bias). The result is
// dL/d(GEMM output + bias): kept in fp32 in place (the bias gradient's column
// sum reads it) and as BF16 for the input-gradient and weight-gradient GEMMs.
#include "cuda/kernels.cuh"
#include "cuda/reduce.cuh"

#define QKV_PAIRS (CUDA_MAX_HEAD_DIM / 2 / 32)

__global__ void qkv_post_bwd_kernel(float *d, bf16 *draw, float *prod, const bf16 *raw, const float *bias,
                                    const float *qn, const float *kn, float eps, const int32_t *pos,
                                    const double *inv_freq, int H, int KV, int hd) {
    int t = blockIdx.x, lane = threadIdx.x & 31;
    int head = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int nh = H + 2 * KV;
    if (head >= nh) return;
    int is_v = head >= H + KV, half = hd / 2;
    size_t W = (size_t)nh * hd, col = (size_t)head * hd;
    float *dv = d + (size_t)t * W + col;
    bf16 *dr = draw + (size_t)t * W + col;
    const bf16 *rv = raw + (size_t)t * W + col;
    const float *nw = is_v ? NULL : head < H ? qn : kn;
    float ga[QKV_PAIRS], gb[QKV_PAIRS], xa[QKV_PAIRS], xb[QKV_PAIRS], ss = 0.0f;
    for (int k = 0; k < QKV_PAIRS; k++) {
        int i = lane + 32 * k;
        ga[k] = gb[k] = xa[k] = xb[k] = 0.0f;
        if (i >= half) continue;
        ga[k] = dv[i];
        gb[k] = dv[i + half];
        if (!is_v) {
            double s, c;
            sincos((double)pos[t] * inv_freq[i], &s, &c);
            dm_rope_rotate(&ga[k], &gb[k], (float)c, (float)s, -1.0f);
        }
        if (nw) {
            xa[k] = __bfloat162float(rv[i]);
            xb[k] = __bfloat162float(rv[i + half]);
            if (bias) {
                xa[k] += bias[col + i];
                xb[k] += bias[col + i + half];
            }
            ss += xa[k] * xa[k] + xb[k] * xb[k];
        }
    }
    if (nw) { // warp-uniform
        float rs = rsqrtf(warp_sum(ss) / hd + eps), dot = 0.0f;
        for (int k = 0; k < QKV_PAIRS; k++) {
            int i = lane + 32 * k;
            if (i < half) dot += ga[k] * nw[i] * xa[k] * rs + gb[k] * nw[i + half] * xb[k] * rs;
        }
        float mean = warp_sum(dot) / hd;
        float *pr = prod + (size_t)t * (H + KV) * hd + (size_t)head * hd;
        for (int k = 0; k < QKV_PAIRS; k++) {
            int i = lane + 32 * k;
            if (i >= half) break;
            pr[i] = ga[k] * xa[k] * rs;
            pr[i + half] = gb[k] * xb[k] * rs;
            ga[k] = dm_rmsnorm_dx(ga[k], nw[i], xa[k], rs, mean);
            gb[k] = dm_rmsnorm_dx(gb[k], nw[i + half], xb[k], rs, mean);
        }
    }
    for (int k = 0; k < QKV_PAIRS; k++) {
        int i = lane + 32 * k;
        if (i >= half) break;
        dv[i] = ga[k];
        dv[i + half] = gb[k];
        dr[i] = __float2bfloat16(ga[k]);
        dr[i + half] = __float2bfloat16(gb[k]);
    }
}

void launch_qkv_post_backward(float *d, bf16 *draw, float *prod, const bf16 *raw, const float *bias, const float *qn,
                              const float *kn, float eps, const int32_t *pos, const double *inv_freq, int T, int H,
                              int KV, int hd, cudaStream_t st) {
    const int warps = 4;
    dim3 grid(T, (H + 2 * KV + warps - 1) / warps);
    qkv_post_bwd_kernel<<<grid, 32 * warps, 0, st>>>(d, draw, prod, raw, bias, qn, kn, eps, pos, inv_freq, H, KV, hd);
}
