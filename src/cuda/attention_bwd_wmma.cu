// Tensor-core variant of attention_bwd.cu (same work split, same result up to
// rounding), selected with the forward's kernel (OPRM_CUDA_ATTENTION; wmma is
// the default for head_dim <= 128): the products S = Q K^T, dP = dO V^T,
// dV += P^T dO, dK += dS^T Q and dQ += dS K run as wmma 16 x 16 x 16 BF16
// products with fp32 accumulation; P and dS are rounded to BF16 for the
// second products (as the forward rounds P), the softmax statistics stay fp32.
//  - dkdv: a block takes 64 keys of one KV head (4 warps x 16 keys), walks the
//    group's query heads and every later query in tiles of 64; per warp the
//    transposed blocks S^T, dP^T (16 keys x 64 queries) go through shared
//    memory, dK and dV of its 16 keys stay in wmma accumulators (registers);
//  - dq: a block takes 64 queries of one head (4 warps x 16 queries), walks
//    the keys up to the causal limit in tiles of 64; dQ in accumulators.
// head_dim is zero-padded to a multiple of 16 in shared memory, as in
// attention_wmma.cu. Nothing of size [T, T] exists.
#include <math.h>
#include <mma.h>

#include "cuda/kernels.cuh"

using namespace nvcuda;

#define BT 64 // rows per tile (keys or queries)
#define BPAD 8
#define MAX_FRAG (128 / 16)

struct BwdSmem {
    int hdp, ldh, lds, ldp;
    size_t a, b, c, d, s, dp, p, ds, st, total;
};

// a, b, c, d: four BF16 tiles [BT][ldh]; s, dp: fp32 [BT][lds]; p, ds: BF16 [BT][ldp]; st: 2 x BT floats.
__host__ __device__ static BwdSmem bwd_layout(int hd) {
    BwdSmem L;
    L.hdp = (hd + 15) / 16 * 16;
    L.ldh = L.hdp + BPAD;
    L.lds = BT + 4;
    L.ldp = BT + BPAD;
    L.a = 0;
    L.b = L.a + (size_t)BT * L.ldh * 2;
    L.c = L.b + (size_t)BT * L.ldh * 2;
    L.d = L.c + (size_t)BT * L.ldh * 2;
    L.s = L.d + (size_t)BT * L.ldh * 2;
    L.dp = L.s + (size_t)BT * L.lds * 4;
    L.p = L.dp + (size_t)BT * L.lds * 4;
    L.ds = L.p + (size_t)BT * L.ldp * 2;
    L.st = L.ds + (size_t)BT * L.ldp * 2;
    L.total = L.st + 2 * BT * 4;
    return L;
}

// rows x hd BF16 (global row stride W) into shared (stride ld, hdp columns), zero past `valid` rows / hd.
__device__ static void load_tile(bf16 *dst, int ld, const bf16 *src, size_t W, int valid, int hd, int hdp) {
    for (int e = threadIdx.x; e < BT * hdp; e += blockDim.x) {
        int r = e / hdp, c = e % hdp;
        dst[(size_t)r * ld + c] = r < valid && c < hd ? src[(size_t)r * W + c] : __float2bfloat16(0.0f);
    }
}

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> Acc;

// out[16][BT] (fp32, ld lds) = X[16 rows of ld ldh] . Y[BT rows]^T over hdp.
__device__ static void rows_by_rowsT(float *out, int lds, const bf16 *X, const bf16 *Y, int ldh, int hdp) {
    for (int n = 0; n < BT / 16; n++) {
        Acc acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < hdp / 16; k++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
            wmma::load_matrix_sync(a, X + k * 16, ldh);
            wmma::load_matrix_sync(b, Y + (size_t)(n * 16) * ldh + k * 16, ldh);
            wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(out + n * 16, acc, lds, wmma::mem_row_major);
    }
}

// acc[hdp / 16] += P[16][BT] (BF16, ld ldp) . Z[BT][hdp] (BF16, ld ldh).
__device__ static void accumulate(Acc *acc, const bf16 *P, int ldp, const bf16 *Z, int ldh, int hdp) {
#pragma unroll
    for (int n = 0; n < MAX_FRAG; n++) {
        if (n * 16 >= hdp) break;
        for (int k = 0; k < BT / 16; k++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
            wmma::load_matrix_sync(a, P + k * 16, ldp);
            wmma::load_matrix_sync(b, Z + (size_t)(k * 16) * ldh + n * 16, ldh);
            wmma::mma_sync(acc[n], a, b, acc[n]);
        }
    }
}

// Writes acc * mul (16 rows x hd) into dst (fp32, row stride W) for rows < valid, through a scratch tile.
__device__ static void store_rows(float *dst, size_t W, const Acc *acc, float mul, float *scratch, int lds, int valid,
                                  int hd, int hdp) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int n = 0; n < MAX_FRAG; n++) {
        if (n * 16 >= hdp) break;
        wmma::store_matrix_sync(scratch, acc[n], lds, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
            int r = e / 16, c = n * 16 + e % 16;
            if (r < valid && c < hd) dst[(size_t)r * W + c] = scratch[(size_t)r * lds + e % 16] * mul;
        }
        __syncwarp();
    }
}

__global__ void attention_bwd_dkdv_wmma_kernel(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                               const float *Di, const CudaAttnKTile *ktiles, int H, int KV, int hd,
                                               float scale) {
    extern __shared__ __align__(128) unsigned char sm[];
    const BwdSmem L = bwd_layout(hd);
    bf16 *Ks = (bf16 *)(sm + L.a), *Vs = (bf16 *)(sm + L.b), *Qs = (bf16 *)(sm + L.c), *Os = (bf16 *)(sm + L.d);
    float *Ss = (float *)(sm + L.s), *Dps = (float *)(sm + L.dp), *Ls = (float *)(sm + L.st), *Ds = Ls + BT;
    bf16 *Ps = (bf16 *)(sm + L.p), *dSs = (bf16 *)(sm + L.ds);
    const CudaAttnKTile tile = ktiles[blockIdx.x];
    const int g = blockIdx.y, group = H / KV, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r0 = warp * 16;
    const size_t W = (size_t)(H + 2 * KV) * hd, Qw = (size_t)H * hd;
    const size_t kcol = (size_t)H * hd + (size_t)g * hd, vcol = kcol + (size_t)KV * hd;
    const bf16 *base = qkv + (size_t)tile.seq_row * W;
    load_tile(Ks, L.ldh, base + (size_t)tile.k_pos * W + kcol, W, tile.k_n, hd, L.hdp);
    load_tile(Vs, L.ldh, base + (size_t)tile.k_pos * W + vcol, W, tile.k_n, hd, L.hdp);
    Acc dk[MAX_FRAG], dv[MAX_FRAG];
#pragma unroll
    for (int n = 0; n < MAX_FRAG; n++) {
        wmma::fill_fragment(dk[n], 0.0f);
        wmma::fill_fragment(dv[n], 0.0f);
    }
    for (int h = g * group; h < (g + 1) * group; h++)
        for (int q0 = tile.k_pos; q0 < tile.seq_len; q0 += BT) {
            int qn = tile.seq_len - q0 < BT ? tile.seq_len - q0 : BT;
            __syncthreads(); // the previous tile is no longer read
            load_tile(Qs, L.ldh, base + (size_t)q0 * W + (size_t)h * hd, W, qn, hd, L.hdp);
            load_tile(Os, L.ldh, dout + ((size_t)tile.seq_row + q0) * Qw + (size_t)h * hd, Qw, qn, hd, L.hdp);
            for (int i = threadIdx.x; i < BT; i += blockDim.x) {
                size_t row = (size_t)tile.seq_row + q0 + i;
                Ls[i] = i < qn ? lse[row * H + h] : 0.0f;
                Ds[i] = i < qn ? Di[row * H + h] : 0.0f;
            }
            __syncthreads();
            if (r0 >= tile.k_n) continue; // this warp has no keys (warp-uniform)
            // S^T and dP^T for the warp's 16 keys x 64 queries.
            rows_by_rowsT(Ss + (size_t)r0 * L.lds, L.lds, Ks + (size_t)r0 * L.ldh, Qs, L.ldh, L.hdp);
            rows_by_rowsT(Dps + (size_t)r0 * L.lds, L.lds, Vs + (size_t)r0 * L.ldh, Os, L.ldh, L.hdp);
            __syncwarp();
            for (int e = lane; e < 16 * BT; e += 32) {
                int kr = r0 + e / BT, qi = e % BT, kpos = tile.k_pos + kr, qpos = q0 + qi;
                float p = 0.0f, ds = 0.0f;
                if (kr < tile.k_n && qi < qn && kpos <= qpos) {
                    p = __expf(Ss[(size_t)kr * L.lds + qi] * scale - Ls[qi]);
                    ds = p * (Dps[(size_t)kr * L.lds + qi] - Ds[qi]);
                }
                Ps[(size_t)kr * L.ldp + qi] = __float2bfloat16(p);
                dSs[(size_t)kr * L.ldp + qi] = __float2bfloat16(ds);
            }
            __syncwarp();
            accumulate(dv, Ps + (size_t)r0 * L.ldp, L.ldp, Os, L.ldh, L.hdp);
            accumulate(dk, dSs + (size_t)r0 * L.ldp, L.ldp, Qs, L.ldh, L.hdp);
        }
    __syncthreads(); // Ss is reused as the store scratch
    if (r0 >= tile.k_n) return;
    float *dst = dqkv + ((size_t)tile.seq_row + tile.k_pos + r0) * W;
    float *scratch = Ss + (size_t)r0 * L.lds;
    store_rows(dst + kcol, W, dk, scale, scratch, L.lds, tile.k_n - r0, hd, L.hdp);
    store_rows(dst + vcol, W, dv, 1.0f, scratch, L.lds, tile.k_n - r0, hd, L.hdp);
}

__global__ void attention_bwd_dq_wmma_kernel(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                             const float *Di, const CudaAttnTile *tiles, int H, int KV, int hd,
                                             float scale) {
    extern __shared__ __align__(128) unsigned char sm[];
    const BwdSmem L = bwd_layout(hd);
    bf16 *Qs = (bf16 *)(sm + L.a), *Os = (bf16 *)(sm + L.b), *Ks = (bf16 *)(sm + L.c), *Vs = (bf16 *)(sm + L.d);
    float *Ss = (float *)(sm + L.s), *Dps = (float *)(sm + L.dp), *Ls = (float *)(sm + L.st), *Ds = Ls + BT;
    bf16 *dSs = (bf16 *)(sm + L.ds);
    const CudaAttnTile tile = tiles[blockIdx.x];
    const int h = blockIdx.y, kh = h / (H / KV), lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r0 = warp * 16;
    const size_t W = (size_t)(H + 2 * KV) * hd, Qw = (size_t)H * hd;
    const size_t kcol = (size_t)H * hd + (size_t)kh * hd, vcol = kcol + (size_t)KV * hd;
    const bf16 *base = qkv + (size_t)tile.seq_row * W;
    load_tile(Qs, L.ldh, base + (size_t)tile.q_pos * W + (size_t)h * hd, W, tile.q_n, hd, L.hdp);
    load_tile(Os, L.ldh, dout + ((size_t)tile.seq_row + tile.q_pos) * Qw + (size_t)h * hd, Qw, tile.q_n, hd, L.hdp);
    for (int i = threadIdx.x; i < BT; i += blockDim.x) {
        size_t row = (size_t)tile.seq_row + tile.q_pos + i;
        Ls[i] = i < tile.q_n ? lse[row * H + h] : 0.0f;
        Ds[i] = i < tile.q_n ? Di[row * H + h] : 0.0f;
    }
    Acc dq[MAX_FRAG];
#pragma unroll
    for (int n = 0; n < MAX_FRAG; n++) wmma::fill_fragment(dq[n], 0.0f);
    const int n_keys = tile.q_pos + tile.q_n;
    for (int k0 = 0; k0 < n_keys; k0 += BT) {
        int kn = n_keys - k0 < BT ? n_keys - k0 : BT;
        __syncthreads();
        load_tile(Ks, L.ldh, base + (size_t)k0 * W + kcol, W, kn, hd, L.hdp);
        load_tile(Vs, L.ldh, base + (size_t)k0 * W + vcol, W, kn, hd, L.hdp);
        __syncthreads();
        if (r0 >= tile.q_n || k0 > tile.q_pos + r0 + 15) continue; // warp-uniform
        rows_by_rowsT(Ss + (size_t)r0 * L.lds, L.lds, Qs + (size_t)r0 * L.ldh, Ks, L.ldh, L.hdp);
        rows_by_rowsT(Dps + (size_t)r0 * L.lds, L.lds, Os + (size_t)r0 * L.ldh, Vs, L.ldh, L.hdp);
        __syncwarp();
        for (int e = lane; e < 16 * BT; e += 32) {
            int qr = r0 + e / BT, kj = e % BT, qpos = tile.q_pos + qr, kpos = k0 + kj;
            float ds = 0.0f;
            if (qr < tile.q_n && kj < kn && kpos <= qpos) {
                float p = __expf(Ss[(size_t)qr * L.lds + kj] * scale - Ls[qr]);
                ds = p * (Dps[(size_t)qr * L.lds + kj] - Ds[qr]);
            }
            dSs[(size_t)qr * L.ldp + kj] = __float2bfloat16(ds);
        }
        __syncwarp();
        accumulate(dq, dSs + (size_t)r0 * L.ldp, L.ldp, Ks, L.ldh, L.hdp);
    }
    __syncthreads();
    if (r0 >= tile.q_n) return;
    float *dst = dqkv + ((size_t)tile.seq_row + tile.q_pos + r0) * W + (size_t)h * hd;
    store_rows(dst, W, dq, scale, Ss + (size_t)r0 * L.lds, L.lds, tile.q_n - r0, hd, L.hdp);
}

int attention_bwd_wmma_supported(int hd) {
    return hd % 2 == 0 && hd <= 128;
}

void attention_bwd_wmma_setup(int hd) {
    int bytes = (int)bwd_layout(hd).total;
    cudaFuncSetAttribute(attention_bwd_dkdv_wmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    cudaFuncSetAttribute(attention_bwd_dq_wmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

void launch_attention_backward_dq_wmma(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                       const float *Di, const CudaAttnTile *tiles, int n_tiles, int H, int KV, int hd,
                                       cudaStream_t st) {
    attention_bwd_dq_wmma_kernel<<<dim3(n_tiles, H), 128, bwd_layout(hd).total, st>>>(dqkv, qkv, dout, lse, Di, tiles,
                                                                                      H, KV, hd,
                                                                                      1.0f / sqrtf((float)hd));
}

void launch_attention_backward_dkdv_wmma(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                         const float *Di, const CudaAttnKTile *ktiles, int n_ktiles, int H, int KV,
                                         int hd, cudaStream_t st) {
    attention_bwd_dkdv_wmma_kernel<<<dim3(n_ktiles, KV), 128, bwd_layout(hd).total, st>>>(
        dqkv, qkv, dout, lse, Di, ktiles, H, KV, hd, 1.0f / sqrtf((float)hd));
}
