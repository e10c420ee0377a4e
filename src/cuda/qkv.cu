// After the fused QKV GEMM: bias, Qwen3 per-head q/k RMSNorm, RoPE (HF
// rotate-half, Llama-3 scaling folded into inv_freq). One warp per (token,
// head); lane i holds the pairs (i, i + hd/2), so the rotation needs no
// exchange. The angle is taken in double, as on the CPU.
#include "cuda/kernels.cuh"
#include "cuda/reduce.cuh"

#define QKV_PAIRS (CUDA_MAX_HEAD_DIM / 2 / 32)

__global__ void qkv_post_kernel(bf16 *qkv, const bf16 *in, const float *bias, const float *qn, const float *kn, float eps,
                                const int32_t *pos, const double *inv_freq, int H, int KV, int hd) {
    int t = blockIdx.x, lane = threadIdx.x & 31;
    int head = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int nh = H + 2 * KV;
    if (head >= nh) return;
    int is_v = head >= H + KV, half = hd / 2;
    size_t W = (size_t)nh * hd, col = (size_t)head * hd;
    bf16 *v = qkv + (size_t)t * W + col;
    const bf16 *vin = in + (size_t)t * W + col;
    float a[QKV_PAIRS], b[QKV_PAIRS], ss = 0.0f;
    for (int k = 0; k < QKV_PAIRS; k++) {
        int i = lane + 32 * k;
        a[k] = b[k] = 0.0f;
        if (i < half) {
            a[k] = __bfloat162float(vin[i]);
            b[k] = __bfloat162float(vin[i + half]);
            if (bias) {
                a[k] += bias[col + i];
                b[k] += bias[col + i + half];
            }
            ss += a[k] * a[k] + b[k] * b[k];
        }
    }
    const float *nw = head < H ? qn : kn;
    float rstd = 1.0f;
    if (!is_v && nw) rstd = rsqrtf(warp_sum(ss) / hd + eps);
    for (int k = 0; k < QKV_PAIRS; k++) {
        int i = lane + 32 * k;
        if (i >= half) break;
        float x = a[k], y = b[k];
        if (!is_v) {
            if (nw) {
                x *= rstd * nw[i];
                y *= rstd * nw[i + half];
            }
            double s, c;
            sincos((double)pos[t] * inv_freq[i], &s, &c);
            float cf = (float)c, sf = (float)s;
            float x2 = x * cf - y * sf, y2 = y * cf + x * sf;
            x = x2;
            y = y2;
        }
        v[i] = __float2bfloat16(x);
        v[i + half] = __float2bfloat16(y);
    }
}

void launch_qkv_post(bf16 *qkv, const bf16 *in, const float *bias, const float *qn, const float *kn, float eps,
                     const int32_t *pos, const double *inv_freq, int T, int H, int KV, int hd, cudaStream_t st) {
    const int warps = 4;
    dim3 grid(T, (H + 2 * KV + warps - 1) / warps);
    qkv_post_kernel<<<grid, 32 * warps, 0, st>>>(qkv, in, bias, qn, kn, eps, pos, inv_freq, H, KV, hd);
}
