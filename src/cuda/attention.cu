// Causal self-attention over packed variable-length sequences with GQA,
// flash-style: a block takes CUDA_ATTN_QT queries of one head of one sequence
// (a CudaAttnTile) and walks its keys in shared-memory tiles of CUDA_ATTN_KT,
// keeping a running max and sum per query (online softmax), so no [T, T]
// score matrix exists anywhere. Scores, softmax statistics and the output
// accumulator are fp32; inputs and output BF16.
//
// Work split: 4 warps, each owning QT/4 queries. For a key tile, lane j scores
// key j against the warp's query (q from shared memory, broadcast; K rows
// padded by one float so the 32 lanes hit 32 banks), the warp reduces max and
// sum with shuffles, then each lane accumulates its slice of head_dim
// (d = lane + 32 i) over the tile's 32 keys with p_j broadcast by shuffle.
// This is a CUDA-core kernel: the tensor-core version (or cuDNN's fused SDPA)
// is the next step, to be chosen by measurement on a GPU (docs/engine.md).
#include <math.h>

#include "cuda/kernels.cuh"
#include "cuda/reduce.cuh"
#include "engine/devmath.h"

#define ATT_WARPS 4
#define ATT_QPW (CUDA_ATTN_QT / ATT_WARPS)
#define ATT_DPL (CUDA_MAX_HEAD_DIM / 32)

static size_t attn_smem(int hd) {
    return sizeof(float) * ((size_t)CUDA_ATTN_KT * (hd + 1) + (size_t)CUDA_ATTN_KT * hd + (size_t)CUDA_ATTN_QT * hd);
}

__global__ void attention_kernel(bf16 *out, float *lse, const bf16 *qkv, const CudaAttnTile *tiles, int H, int KV, int hd,
                                 float scale) {
    extern __shared__ float smem[];
    float *Ks = smem;                                  // [KT][hd + 1]
    float *Vs = Ks + CUDA_ATTN_KT * (hd + 1);          // [KT][hd]
    float *Qs = Vs + CUDA_ATTN_KT * hd;                // [QT][hd]
    const CudaAttnTile tile = tiles[blockIdx.x];
    const int h = blockIdx.y, kh = h / (H / KV);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t W = (size_t)(H + 2 * KV) * hd;
    const bf16 *base = qkv + (size_t)tile.seq_row * W;
    const size_t qcol = (size_t)h * hd, kcol = (size_t)H * hd + (size_t)kh * hd, vcol = kcol + (size_t)KV * hd;

    for (int e = threadIdx.x; e < CUDA_ATTN_QT * hd; e += blockDim.x) {
        int qi = e / hd, d = e % hd;
        Qs[e] = qi < tile.q_n ? __bfloat162float(base[(size_t)(tile.q_pos + qi) * W + qcol + d]) * scale : 0.0f;
    }
    float m[ATT_QPW], l[ATT_QPW], acc[ATT_QPW][ATT_DPL];
    for (int j = 0; j < ATT_QPW; j++) {
        m[j] = -INFINITY;
        l[j] = 0.0f;
        for (int i = 0; i < ATT_DPL; i++) acc[j][i] = 0.0f;
    }
    const int n_keys = tile.q_pos + tile.q_n; // causal: the tile's last query sees keys [0, n_keys)
    for (int k0 = 0; k0 < n_keys; k0 += CUDA_ATTN_KT) {
        __syncthreads();
        for (int e = threadIdx.x; e < CUDA_ATTN_KT * hd; e += blockDim.x) {
            int kj = e / hd, d = e % hd, key = k0 + kj;
            float kv = 0.0f, vv = 0.0f;
            if (key < n_keys) {
                kv = __bfloat162float(base[(size_t)key * W + kcol + d]);
                vv = __bfloat162float(base[(size_t)key * W + vcol + d]);
            }
            Ks[kj * (hd + 1) + d] = kv;
            Vs[kj * hd + d] = vv; // zero past the end: p = 0 there, and 0 * 0 stays 0
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < ATT_QPW; j++) {
            int qi = warp * ATT_QPW + j;
            if (qi >= tile.q_n) break;
            int qpos = tile.q_pos + qi, key = k0 + lane;
            if (k0 > qpos) continue; // the whole tile is in this query's future (warp-uniform)
            float s = -INFINITY;
            if (key <= qpos) {
                const float *q = Qs + qi * hd, *k = Ks + lane * (hd + 1);
                float dot = 0.0f;
                for (int d = 0; d < hd; d++) dot += q[d] * k[d];
                s = dot;
            }
            float bm = warp_max(s);
            float p = s == -INFINITY ? 0.0f : __expf(s - bm);
            float bl = warp_sum(p);
            float c = dm_online_softmax_merge(&m[j], &l[j], bm, bl);
            // p was taken against bm; rescale it to the merged max.
            float pb = __expf(bm - m[j]);
#pragma unroll
            for (int i = 0; i < ATT_DPL; i++) acc[j][i] *= c;
            for (int kk = 0; kk < CUDA_ATTN_KT; kk++) {
                float pk = __shfl_sync(0xffffffffu, p, kk) * pb;
                const float *vr = Vs + kk * hd;
#pragma unroll
                for (int i = 0; i < ATT_DPL; i++) {
                    int d = lane + 32 * i;
                    if (d < hd) acc[j][i] += pk * vr[d];
                }
            }
        }
    }
    for (int j = 0; j < ATT_QPW; j++) {
        int qi = warp * ATT_QPW + j;
        if (qi >= tile.q_n) break;
        float inv = 1.0f / l[j];
        if (lse && lane == 0) lse[(size_t)(tile.seq_row + tile.q_pos + qi) * H + h] = m[j] + logf(l[j]);
        bf16 *o = out + (size_t)(tile.seq_row + tile.q_pos + qi) * H * hd + (size_t)h * hd;
        for (int i = 0; i < ATT_DPL; i++) {
            int d = lane + 32 * i;
            if (d < hd) o[d] = __float2bfloat16(acc[j][i] * inv);
        }
    }
}

void attention_setup(int hd) {
    cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)attn_smem(hd));
}

void launch_attention(bf16 *out, float *lse, const bf16 *qkv, const CudaAttnTile *tiles, int n_tiles, int H, int KV,
                      int hd, cudaStream_t st) {
    dim3 grid(n_tiles, H);
    attention_kernel<<<grid, 32 * ATT_WARPS, attn_smem(hd), st>>>(out, lse, qkv, tiles, H, KV, hd, 1.0f / sqrtf((float)hd));
}
