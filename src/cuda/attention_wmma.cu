// Tensor-core variant of attention.cu (same work, same result up to rounding):
// a block takes 64 queries of one head of one sequence (4 warps x 16 rows) and
// walks 64-key tiles. Per tile, each warp: S = Q K^T for its 16 rows with
// wmma (BF16 in, fp32 accumulate) into shared memory; the online softmax on
// those rows in fp32 (scale, causal mask, running max/sum, P in BF16); its
// rows of the fp32 output accumulator in shared memory scaled by the
// correction, then O += P V with wmma. Nothing of size [T, T] exists.
// head_dim is zero-padded to a multiple of 16 in shared memory (the padding
// adds 0 to every dot product and yields output columns that are dropped), so
// any even head_dim <= 128 works (shared memory: 111 KB at 128); larger ones
// use attention.cu. Selected by the engine (OPRM_CUDA_ATTENTION).
#include <math.h>
#include <mma.h>

#include "cuda/kernels.cuh"
#include "cuda/reduce.cuh"

using namespace nvcuda;

#define WQ 64 // queries per block
#define WK 64 // keys per tile
#define WPAD 8

struct WmmaSmem {
    int hdp, ldh, lds, ldp, ldo;
    size_t q, k, v, s, p, o, stats, total;
};

__host__ __device__ static WmmaSmem wmma_layout(int hd) {
    WmmaSmem L;
    L.hdp = (hd + 15) / 16 * 16; // head_dim padded for 16 x 16 x 16 fragments
    L.ldh = L.hdp + WPAD;        // BF16 rows of Q, K, V
    L.lds = WK + 4;              // fp32 scores
    L.ldp = WK + WPAD;           // BF16 probabilities
    L.ldo = L.hdp + 4;           // fp32 output accumulator
    L.q = 0;
    L.k = L.q + (size_t)WQ * L.ldh * 2;
    L.v = L.k + (size_t)WK * L.ldh * 2;
    L.s = L.v + (size_t)WK * L.ldh * 2;
    L.p = L.s + (size_t)WQ * L.lds * 4;
    L.o = L.p + (size_t)WQ * L.ldp * 2;
    L.stats = L.o + (size_t)WQ * L.ldo * 4;
    L.total = L.stats + 3 * WQ * 4;
    return L;
}

// rows x hd BF16 from global (row stride W elements) into shared (stride ld,
// hdp columns), zero past `valid` rows and past hd columns. 16-byte copies
// when rows are 16-byte aligned (hd % 8 == 0), else one element at a time.
__device__ static void load_rows(bf16 *dst, int ld, const bf16 *src, size_t W, int rows, int valid, int hd, int hdp) {
    if (hd % 8 == 0) {
        const int vec = hdp / 8; // 16-byte chunks per padded row
        for (int e = threadIdx.x; e < rows * vec; e += blockDim.x) {
            int r = e / vec, c = (e % vec) * 8;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (r < valid && c < hd) v = *reinterpret_cast<const uint4 *>(src + (size_t)r * W + c);
            *reinterpret_cast<uint4 *>(dst + (size_t)r * ld + c) = v;
        }
        return;
    }
    for (int e = threadIdx.x; e < rows * hdp; e += blockDim.x) {
        int r = e / hdp, c = e % hdp;
        dst[(size_t)r * ld + c] = r < valid && c < hd ? src[(size_t)r * W + c] : __float2bfloat16(0.0f);
    }
}

__global__ void attention_wmma_kernel(bf16 *out, float *lse, const bf16 *qkv, const CudaAttnTile *tiles, int H, int KV, int hd,
                                      float scale) {
    extern __shared__ __align__(128) unsigned char wsm[];
    const WmmaSmem L = wmma_layout(hd);
    bf16 *Qs = (bf16 *)(wsm + L.q), *Ks = (bf16 *)(wsm + L.k), *Vs = (bf16 *)(wsm + L.v), *Ps = (bf16 *)(wsm + L.p);
    float *Ss = (float *)(wsm + L.s), *Os = (float *)(wsm + L.o), *Ms = (float *)(wsm + L.stats), *Ls = Ms + WQ,
          *Cs = Ls + WQ;
    const CudaAttnTile tile = tiles[blockIdx.x];
    const int h = blockIdx.y, kh = h / (H / KV), lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r0 = warp * 16;
    const size_t W = (size_t)(H + 2 * KV) * hd;
    const bf16 *base = qkv + (size_t)tile.seq_row * W;
    const size_t kcol = (size_t)H * hd + (size_t)kh * hd, vcol = kcol + (size_t)KV * hd;

    const int hdp = L.hdp;
    load_rows(Qs, L.ldh, base + (size_t)tile.q_pos * W + (size_t)h * hd, W, WQ, tile.q_n, hd, hdp);
    for (int e = threadIdx.x; e < WQ * L.ldo; e += blockDim.x) Os[e] = 0.0f;
    for (int e = threadIdx.x; e < WQ; e += blockDim.x) {
        Ms[e] = -INFINITY;
        Ls[e] = 0.0f;
    }
    const int n_keys = tile.q_pos + tile.q_n;
    for (int k0 = 0; k0 < n_keys; k0 += WK) {
        __syncthreads(); // the previous tile's K, V are no longer read
        int kv_valid = n_keys - k0 < WK ? n_keys - k0 : WK;
        load_rows(Ks, L.ldh, base + (size_t)k0 * W + kcol, W, WK, kv_valid, hd, hdp);
        load_rows(Vs, L.ldh, base + (size_t)k0 * W + vcol, W, WK, kv_valid, hd, hdp);
        __syncthreads();
        if (k0 > tile.q_pos + r0 + 15) continue; // every row of this warp is before the tile (warp-uniform)

        // S[r0 .. r0+16, 0 .. WK) = Q K^T
        for (int n = 0; n < WK / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int k = 0; k < hdp / 16; k++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(a, Qs + (size_t)r0 * L.ldh + k * 16, L.ldh);
                wmma::load_matrix_sync(b, Ks + (size_t)(n * 16) * L.ldh + k * 16, L.ldh);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Ss + (size_t)r0 * L.lds + n * 16, acc, L.lds, wmma::mem_row_major);
        }
        __syncwarp();
        // Online softmax, one row at a time; lane owns columns lane and lane + 32.
        for (int rr = 0; rr < 16; rr++) {
            int r = r0 + rr, qpos = tile.q_pos + r;
            float s0 = -INFINITY, s1 = -INFINITY;
            if (r < tile.q_n) {
                int c0 = k0 + lane, c1 = k0 + lane + 32;
                if (c0 <= qpos) s0 = Ss[(size_t)r * L.lds + lane] * scale;
                if (c1 <= qpos) s1 = Ss[(size_t)r * L.lds + lane + 32] * scale;
            }
            float bm = warp_max(fmaxf(s0, s1)), m_old = Ms[r];
            float m_new = fmaxf(m_old, bm);
            float p0 = 0.0f, p1 = 0.0f, c = 1.0f;
            if (m_new != -INFINITY) {
                p0 = s0 == -INFINITY ? 0.0f : __expf(s0 - m_new);
                p1 = s1 == -INFINITY ? 0.0f : __expf(s1 - m_new);
                c = m_old == -INFINITY ? 0.0f : __expf(m_old - m_new);
            }
            float bl = warp_sum(p0 + p1);
            Ps[(size_t)r * L.ldp + lane] = __float2bfloat16(p0);
            Ps[(size_t)r * L.ldp + lane + 32] = __float2bfloat16(p1);
            __syncwarp();
            if (lane == 0) {
                Ms[r] = m_new;
                Ls[r] = Ls[r] * c + bl;
                Cs[r] = c;
            }
        }
        __syncwarp();
        for (int e = lane; e < 16 * hdp; e += 32) {
            int r = r0 + e / hdp, d = e % hdp;
            Os[(size_t)r * L.ldo + d] *= Cs[r];
        }
        __syncwarp();
        // O[r0 .. r0+16, :] += P V
        for (int n = 0; n < hdp / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Os + (size_t)r0 * L.ldo + n * 16, L.ldo, wmma::mem_row_major);
            for (int k = 0; k < WK / 16; k++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ps + (size_t)r0 * L.ldp + k * 16, L.ldp);
                wmma::load_matrix_sync(b, Vs + (size_t)(k * 16) * L.ldh + n * 16, L.ldh);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Os + (size_t)r0 * L.ldo + n * 16, acc, L.ldo, wmma::mem_row_major);
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < WQ * hd; e += blockDim.x) {
        int r = e / hd, d = e % hd;
        if (r >= tile.q_n) continue;
        bf16 *o = out + (size_t)(tile.seq_row + tile.q_pos + r) * H * hd + (size_t)h * hd;
        o[d] = __float2bfloat16(Os[(size_t)r * L.ldo + d] / Ls[r]);
    }
    if (lse)
        for (int r = threadIdx.x; r < tile.q_n; r += blockDim.x)
            lse[(size_t)(tile.seq_row + tile.q_pos + r) * H + h] = Ms[r] + logf(Ls[r]);
}

int attention_wmma_supported(int hd) {
    return hd % 2 == 0 && hd <= 128;
}

void attention_wmma_setup(int hd) {
    cudaFuncSetAttribute(attention_wmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         (int)wmma_layout(hd).total);
}

void launch_attention_wmma(bf16 *out, float *lse, const bf16 *qkv, const CudaAttnTile *tiles, int n_tiles, int H, int KV, int hd,
                           cudaStream_t st) {
    dim3 grid(n_tiles, H);
    attention_wmma_kernel<<<grid, 128, wmma_layout(hd).total, st>>>(out, lse, qkv, tiles, H, KV, hd,
                                                                     1.0f / sqrtf((float)hd));
}
