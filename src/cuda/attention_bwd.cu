// Causal varlen GQA attention backward, flash-style (FlashAttention-2's
// split): the forward kept each score row's log-sum-exp (lse, scaled scores);
// here P = exp(scale q.k - lse) is recomputed tile by tile and never stored,
// with Di = dO . O per row (rowdot) standing in for rowsum(P * dP):
//   dS = P (dP - Di), dP = dO V^T;  dQ = scale dS K;  dK = scale dS^T Q;  dV = P^T dO.
// Two kernels, so that no two blocks write the same gradient row:
//  - dq: a block takes CUDA_ATTN_QT queries of one head (the forward's work
//    list) and walks their keys in shared-memory tiles of CUDA_ATTN_KT; 4
//    warps own 4 queries each, lane j scores key j, the warp then
//    accumulates dq over the tile's keys with dS broadcast by shuffle (lane
//    owns d = lane + 32 i), as attention.cu does for the output;
//  - dkdv: a block takes CUDA_ATTN_KT_BWD keys of one KV head (CudaAttnKTile)
//    and walks every later query of every query head of its group in chunks
//    of BQ rows in shared memory; 4 warps own 4 keys each, their k and v rows
//    in registers (lane owns d = lane + 32 i), dot products reduced over the
//    warp; dK and dV of a KV group are summed over its query heads inside the
//    block, so GQA needs no atomics and no per-head partials.
// fp32 throughout (inputs BF16, gradients written fp32 into dqkv [T, W]).
#include <math.h>

#include "cuda/kernels.cuh"
#include "cuda/reduce.cuh"

#define BW 4                        // warps per block
#define DQ_QPW (CUDA_ATTN_QT / BW)  // queries per warp (dq)
#define KV_KPW (CUDA_ATTN_KT_BWD / BW) // keys per warp (dkdv)
#define BQ 16                       // query rows per shared-memory chunk (dkdv)
#define DPL (CUDA_MAX_HEAD_DIM / 32)

__global__ void attention_rowdot_kernel(float *Di, const bf16 *dout, const bf16 *out, int H, int hd) {
    int t = blockIdx.x, lane = threadIdx.x & 31;
    for (int h = threadIdx.x >> 5; h < H; h += blockDim.x >> 5) {
        const bf16 *a = dout + ((size_t)t * H + h) * hd, *b = out + ((size_t)t * H + h) * hd;
        float acc = 0.0f;
        for (int d = lane; d < hd; d += 32) acc += __bfloat162float(a[d]) * __bfloat162float(b[d]);
        acc = warp_sum(acc);
        if (lane == 0) Di[(size_t)t * H + h] = acc;
    }
}

void launch_attention_rowdot(float *Di, const bf16 *dout, const bf16 *out, int T, int H, int hd, cudaStream_t st) {
    if (T > 0) attention_rowdot_kernel<<<T, 128, 0, st>>>(Di, dout, out, H, hd);
}

static size_t dq_smem(int hd) {
    return sizeof(float) * (2 * (size_t)CUDA_ATTN_KT * (hd + 1) + 2 * (size_t)CUDA_ATTN_QT * hd);
}
static size_t dkdv_smem(int hd) {
    return sizeof(float) * (2 * (size_t)BQ * hd + 2 * BQ);
}

__global__ void attention_bwd_dq_kernel(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                        const float *Di, const CudaAttnTile *tiles, int H, int KV, int hd,
                                        float scale) {
    extern __shared__ float smem[];
    float *Ks = smem;                           // [KT][hd + 1]
    float *Vs = Ks + CUDA_ATTN_KT * (hd + 1);   // [KT][hd + 1]
    float *Qs = Vs + CUDA_ATTN_KT * (hd + 1);   // [QT][hd]
    float *Os = Qs + CUDA_ATTN_QT * hd;         // [QT][hd]: dO
    const CudaAttnTile tile = tiles[blockIdx.x];
    const int h = blockIdx.y, kh = h / (H / KV), lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t W = (size_t)(H + 2 * KV) * hd, Qw = (size_t)H * hd;
    const bf16 *base = qkv + (size_t)tile.seq_row * W;
    const size_t kcol = (size_t)H * hd + (size_t)kh * hd, vcol = kcol + (size_t)KV * hd;
    for (int e = threadIdx.x; e < CUDA_ATTN_QT * hd; e += blockDim.x) {
        int qi = e / hd, d = e % hd;
        size_t row = (size_t)tile.seq_row + tile.q_pos + qi;
        bool ok = qi < tile.q_n;
        Qs[e] = ok ? __bfloat162float(qkv[row * W + (size_t)h * hd + d]) : 0.0f;
        Os[e] = ok ? __bfloat162float(dout[row * Qw + (size_t)h * hd + d]) : 0.0f;
    }
    float L[DQ_QPW], Dd[DQ_QPW], acc[DQ_QPW][DPL];
#pragma unroll
    for (int j = 0; j < DQ_QPW; j++) {
        int qi = warp * DQ_QPW + j;
        size_t row = (size_t)tile.seq_row + tile.q_pos + qi;
        L[j] = qi < tile.q_n ? lse[row * H + h] : 0.0f;
        Dd[j] = qi < tile.q_n ? Di[row * H + h] : 0.0f;
        for (int i = 0; i < DPL; i++) acc[j][i] = 0.0f;
    }
    const int n_keys = tile.q_pos + tile.q_n;
    for (int k0 = 0; k0 < n_keys; k0 += CUDA_ATTN_KT) {
        __syncthreads();
        for (int e = threadIdx.x; e < CUDA_ATTN_KT * hd; e += blockDim.x) {
            int kj = e / hd, d = e % hd, key = k0 + kj;
            bool ok = key < n_keys;
            Ks[kj * (hd + 1) + d] = ok ? __bfloat162float(base[(size_t)key * W + kcol + d]) : 0.0f;
            Vs[kj * (hd + 1) + d] = ok ? __bfloat162float(base[(size_t)key * W + vcol + d]) : 0.0f;
        }
        __syncthreads();
#pragma unroll // constant indices: the accumulators stay in registers
        for (int j = 0; j < DQ_QPW; j++) {
            int qi = warp * DQ_QPW + j;
            if (qi >= tile.q_n) break;
            int qpos = tile.q_pos + qi, key = k0 + lane;
            if (k0 > qpos) continue; // warp-uniform
            float ds = 0.0f;
            if (key <= qpos) {
                const float *q = Qs + qi * hd, *o = Os + qi * hd, *k = Ks + lane * (hd + 1), *v = Vs + lane * (hd + 1);
                float s = 0.0f, dp = 0.0f;
                for (int d = 0; d < hd; d++) {
                    s += q[d] * k[d];
                    dp += o[d] * v[d];
                }
                float p = __expf(s * scale - L[j]);
                ds = p * (dp - Dd[j]);
            }
            for (int kk = 0; kk < CUDA_ATTN_KT; kk++) {
                float dk = __shfl_sync(0xffffffffu, ds, kk);
                const float *kr = Ks + kk * (hd + 1);
#pragma unroll
                for (int i = 0; i < DPL; i++) {
                    int d = lane + 32 * i;
                    if (d < hd) acc[j][i] += dk * kr[d];
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < DQ_QPW; j++) {
        int qi = warp * DQ_QPW + j;
        if (qi >= tile.q_n) break;
        float *dq = dqkv + ((size_t)tile.seq_row + tile.q_pos + qi) * W + (size_t)h * hd;
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            if (d < hd) dq[d] = acc[j][i] * scale;
        }
    }
}

__global__ void attention_bwd_dkdv_kernel(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                          const float *Di, const CudaAttnKTile *ktiles, int H, int KV, int hd,
                                          float scale) {
    extern __shared__ float smem[];
    float *Qs = smem;          // [BQ][hd]
    float *Os = Qs + BQ * hd;  // [BQ][hd]: dO
    float *Ls = Os + BQ * hd;  // [BQ]
    float *Ds = Ls + BQ;       // [BQ]
    const CudaAttnKTile tile = ktiles[blockIdx.x];
    const int g = blockIdx.y, group = H / KV, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t W = (size_t)(H + 2 * KV) * hd, Qw = (size_t)H * hd;
    const size_t kcol = (size_t)H * hd + (size_t)g * hd, vcol = kcol + (size_t)KV * hd;
    float kr[KV_KPW][DPL], vr[KV_KPW][DPL], dk[KV_KPW][DPL], dv[KV_KPW][DPL];
#pragma unroll
    for (int jj = 0; jj < KV_KPW; jj++) {
        int kj = warp * KV_KPW + jj;
        size_t row = (size_t)tile.seq_row + tile.k_pos + kj;
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            bool ok = kj < tile.k_n && d < hd;
            kr[jj][i] = ok ? __bfloat162float(qkv[row * W + kcol + d]) : 0.0f;
            vr[jj][i] = ok ? __bfloat162float(qkv[row * W + vcol + d]) : 0.0f;
            dk[jj][i] = dv[jj][i] = 0.0f;
        }
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int q0 = tile.k_pos; q0 < tile.seq_len; q0 += BQ) {
            int qn = tile.seq_len - q0 < BQ ? tile.seq_len - q0 : BQ;
            __syncthreads(); // the previous chunk is no longer read
            for (int e = threadIdx.x; e < BQ * hd; e += blockDim.x) {
                int qi = e / hd, d = e % hd;
                size_t row = (size_t)tile.seq_row + q0 + qi;
                bool ok = qi < qn;
                Qs[e] = ok ? __bfloat162float(qkv[row * W + (size_t)h * hd + d]) : 0.0f;
                Os[e] = ok ? __bfloat162float(dout[row * Qw + (size_t)h * hd + d]) : 0.0f;
            }
            for (int qi = threadIdx.x; qi < BQ; qi += blockDim.x) {
                size_t row = (size_t)tile.seq_row + q0 + qi;
                Ls[qi] = qi < qn ? lse[row * H + h] : 0.0f;
                Ds[qi] = qi < qn ? Di[row * H + h] : 0.0f;
            }
            __syncthreads();
            for (int qi = 0; qi < qn; qi++) {
                int qpos = q0 + qi;
                const float *q = Qs + qi * hd, *o = Os + qi * hd;
#pragma unroll // constant indices: k, v and the accumulators stay in registers
                for (int jj = 0; jj < KV_KPW; jj++) {
                    int kj = warp * KV_KPW + jj, kpos = tile.k_pos + kj;
                    if (kj >= tile.k_n || kpos > qpos) break; // warp-uniform; later keys are later still
                    float s = 0.0f, dp = 0.0f;
#pragma unroll
                    for (int i = 0; i < DPL; i++) {
                        int d = lane + 32 * i;
                        if (d < hd) {
                            s += q[d] * kr[jj][i];
                            dp += o[d] * vr[jj][i];
                        }
                    }
                    s = warp_sum(s);
                    dp = warp_sum(dp);
                    float p = __expf(s * scale - Ls[qi]), ds = p * (dp - Ds[qi]);
#pragma unroll
                    for (int i = 0; i < DPL; i++) {
                        int d = lane + 32 * i;
                        if (d < hd) {
                            dv[jj][i] += p * o[d];
                            dk[jj][i] += ds * q[d];
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int jj = 0; jj < KV_KPW; jj++) {
        int kj = warp * KV_KPW + jj;
        if (kj >= tile.k_n) break;
        size_t row = (size_t)tile.seq_row + tile.k_pos + kj;
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            if (d < hd) {
                dqkv[row * W + kcol + d] = dk[jj][i] * scale;
                dqkv[row * W + vcol + d] = dv[jj][i];
            }
        }
    }
}

void attention_backward_setup(int hd) {
    cudaFuncSetAttribute(attention_bwd_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dq_smem(hd));
    cudaFuncSetAttribute(attention_bwd_dkdv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dkdv_smem(hd));
}

void launch_attention_backward_dq(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse, const float *Di,
                                  const CudaAttnTile *tiles, int n_tiles, int H, int KV, int hd, cudaStream_t st) {
    dim3 grid(n_tiles, H);
    attention_bwd_dq_kernel<<<grid, 32 * BW, dq_smem(hd), st>>>(dqkv, qkv, dout, lse, Di, tiles, H, KV, hd,
                                                                 1.0f / sqrtf((float)hd));
}

void launch_attention_backward_dkdv(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                    const float *Di, const CudaAttnKTile *ktiles, int n_ktiles, int H, int KV, int hd,
                                    cudaStream_t st) {
    dim3 grid(n_ktiles, KV);
    attention_bwd_dkdv_kernel<<<grid, 32 * BW, dkdv_smem(hd), st>>>(dqkv, qkv, dout, lse, Di, ktiles, H, KV, hd,
                                                                     1.0f / sqrtf((float)hd));
}
