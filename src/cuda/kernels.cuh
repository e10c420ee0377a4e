// The CUDA engine's kernels, one .cu file per family (llm.c style), each with
// a host launcher. Layouts are the packed ones of src/engine/cuda_plan.h:
// row-major [tokens, width], BF16 activations, fp32 residual stream and
// statistics. Only engine_cuda.cu calls these.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "engine/cuda_plan.h"
}

typedef __nv_bfloat16 bf16;

// embed.cu: x[t, :] = float(E[ids[t], :]).
void launch_embed(float *x, const bf16 *E, const int32_t *ids, int T, int D, cudaStream_t st);

// rmsnorm.cu: x[r] += y[r] (y may be NULL), then out[r] = bf16(x[r] * rstd * w).
void launch_residual_rmsnorm(float *x, const bf16 *y, const float *w, float eps, bf16 *out, int rows, int D,
                             cudaStream_t st);
// For each sequence s, row r = last[s]: v = x[r] + y[r]; h[s] = v * rstd(v) * w (fp32 out).
void launch_final_norm_last(const float *x, const bf16 *y, const int32_t *last, const float *w, float eps,
                            float *h, int nseq, int D, cudaStream_t st);

// qkv.cu: in place on qkv [T, (H + 2 KV) * hd]: + bias (if any), per-head
// RMSNorm of q and k (Qwen3, if qn), then RoPE of q and k at pos[t].
void launch_qkv_post(bf16 *qkv, const float *bias, const float *qn, const float *kn, float eps,
                     const int32_t *pos, const double *inv_freq, int T, int H, int KV, int hd, cudaStream_t st);

// attention.cu: causal attention over packed sequences, GQA; tiled with an
// online softmax (no [T, T] matrix). out [T, H * hd].
void attention_setup(int hd); // raises the dynamic shared-memory limit once
void launch_attention(bf16 *out, const bf16 *qkv, const CudaAttnTile *tiles, int n_tiles, int H, int KV, int hd,
                      cudaStream_t st);

// attention_wmma.cu: the same on tensor cores (wmma), blocks of
// CUDA_ATTN_QT_WMMA queries; head_dim <= 128 (zero-padded to a multiple of 16).
int attention_wmma_supported(int hd);
void attention_wmma_setup(int hd);
void launch_attention_wmma(bf16 *out, const bf16 *qkv, const CudaAttnTile *tiles, int n_tiles, int H, int KV, int hd,
                           cudaStream_t st);

// swiglu.cu: a[t, f] = silu(gu[t, f]) * gu[t, F + f].
void launch_swiglu(bf16 *a, const bf16 *gu, int T, int F, cudaStream_t st);

// head.cu: logits[s * nrows + k] = h[s] . W[rows[k]] (fp32).
void launch_head_rows(float *logits, const float *h, const bf16 *W, const int32_t *rows, int nseq, int nrows,
                      int D, cudaStream_t st);
