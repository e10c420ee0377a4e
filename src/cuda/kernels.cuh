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
#include "engine/devmath.h"

typedef __nv_bfloat16 bf16;

// embed.cu: x[t, :] = float(E[ids[t], :]).
void launch_embed(float *x, const bf16 *E, const int32_t *ids, int T, int D, cudaStream_t st);

// rmsnorm.cu: x[r] += y[r] (y may be NULL), then out[r] = bf16(x[r] * rstd * w).
void launch_residual_rmsnorm(float *x, const bf16 *y, const float *w, float eps, bf16 *out, int rows, int D,
                             cudaStream_t st);
// For each sequence s, row r = last[s]: v = x[r] + y[r]; h[s] = v * rstd(v) * w (fp32 out);
// pre[s] = v when pre is not NULL (training keeps it for the backward).
void launch_final_norm_last(const float *x, const bf16 *y, const int32_t *last, const float *w, float eps,
                            float *h, float *pre, int nseq, int D, cudaStream_t st);
// Training forward (rmsnorm.cu): out = x + float(y) over n values (the residual
// add kept apart from the norm, so each layer's input stays saved), and
// RMSNorm with the row's rstd kept.
void launch_add_residual(float *out, const float *x, const bf16 *y, size_t n, cudaStream_t st);
void launch_rmsnorm_fwd(bf16 *out, float *rstd, const float *x, const float *w, float eps, int rows, int D,
                        cudaStream_t st);

// qkv.cu: in place on qkv [T, (H + 2 KV) * hd]: + bias (if any), per-head
// RMSNorm of q and k (Qwen3, if qn), then RoPE of q and k at pos[t].
// in may differ from qkv (training keeps the GEMM's raw output for the backward).
void launch_qkv_post(bf16 *qkv, const bf16 *in, const float *bias, const float *qn, const float *kn, float eps,
                     const int32_t *pos, const double *inv_freq, int T, int H, int KV, int hd, cudaStream_t st);

// attention.cu: causal attention over packed sequences, GQA; tiled with an
// online softmax (no [T, T] matrix). out [T, H * hd].
void attention_setup(int hd); // raises the dynamic shared-memory limit once
// lse [T, H] (may be NULL): each score row's log-sum-exp (of the scaled
// scores), kept by the training forward for the backward.
void launch_attention(bf16 *out, float *lse, const bf16 *qkv, const CudaAttnTile *tiles, int n_tiles, int H, int KV,
                      int hd, cudaStream_t st);

// attention_wmma.cu: the same on tensor cores (wmma), blocks of
// CUDA_ATTN_QT_WMMA queries; head_dim <= 128 (zero-padded to a multiple of 16).
int attention_wmma_supported(int hd);
void attention_wmma_setup(int hd);
void launch_attention_wmma(bf16 *out, float *lse, const bf16 *qkv, const CudaAttnTile *tiles, int n_tiles, int H, int KV, int hd,
                           cudaStream_t st);

// swiglu.cu: a[t, f] = silu(gu[t, f]) * gu[t, F + f].
void launch_swiglu(bf16 *a, const bf16 *gu, int T, int F, cudaStream_t st);

// head.cu: logits[s * nrows + k] = h[s] . W[rows[k]] (fp32).
void launch_head_rows(float *logits, const float *h, const bf16 *W, const int32_t *rows, int nseq, int nrows,
                      int D, cudaStream_t st);

// ---- Backward (training). Gradients of activations: fp32 for the residual
// stream and dq/dk/dv, BF16 where they feed a GEMM; parameter gradients fp32,
// ACCUMULATED (+=) like the CPU's backward. ----

// cast.cu: dst = bf16(src) over n values.
void launch_to_bf16(bf16 *dst, const float *src, size_t n, cudaStream_t st);
// colsum.cu: out[c % fold] += sum_r in[r * ld + c] for c < cols (bias and
// norm-weight gradients; fold = cols for a plain column sum).
void launch_colsum(float *out, const float *in, int rows, int cols, int ld, int fold, cudaStream_t st);

// rmsnorm_bwd.cu: with xhat = x * rstd (row r):
// dx[r] += rstd * (dy w - xhat mean(dy w xhat)); dw += sum_r dy xhat.
void launch_rmsnorm_backward(float *dx, float *dw, const bf16 *dy, const float *x, const float *w, const float *rstd,
                             int rows, int D, cudaStream_t st);
// The final norm at the last rows: dx[last[s]] += norm backward of dh[s] at
// pre[s]; dw += sum_s dh[s] xhat[s] (rows of dx not last stay as they are).
void launch_final_norm_backward(float *dx, float *dw, const float *dh, const float *pre, const int32_t *last,
                                const float *w, float eps, int nseq, int D, cudaStream_t st);

// head.cu: dh[s] = sum_k dlogits[s, k] W[rows[k]]; dW[rows[k]] += sum_s dlogits[s, k] h[s] (dW may be NULL).
void launch_head_rows_backward(float *dh, float *dW, const float *dlogits, const float *h, const bf16 *W,
                               const int32_t *rows, int nseq, int nrows, int D, cudaStream_t st);

// qkv_bwd.cu: the backward of launch_qkv_post, one warp per (token, head).
// d [T, W] fp32 in: dL/d(output of qkv_post) (RoPE'd q, k; v); out, in place:
// dL/d(GEMM output + bias). draw = bf16 of the same (the GEMM's input).
// raw: the GEMM output the forward read. prod (Qwen3, [T, (H + KV) hd], NULL
// without q/k norm): dL/d(normed) * xhat, for the norm weights' column sums.
void launch_qkv_post_backward(float *d, bf16 *draw, float *prod, const bf16 *raw, const float *bias, const float *qn,
                              const float *kn, float eps, const int32_t *pos, const double *inv_freq, int T, int H,
                              int KV, int hd, cudaStream_t st);

// swiglu.cu: dgu[t, f] = dL/dgate, dgu[t, F + f] = dL/dup from da.
void launch_swiglu_backward(bf16 *dgu, const bf16 *da, const bf16 *gu, int T, int F, cudaStream_t st);

// attention_bwd.cu, flash-style: P is recomputed tile by tile from the saved
// log-sum-exp, never stored. rowdot: Di[t, h] = dO[t, h] . O[t, h]. dq: one
// block per query tile (CudaAttnTile) and head, writes dq into the q columns
// of dqkv [T, W] (fp32). dkdv: one block per key tile (CudaAttnKTile) and KV
// head, loops over the group's query heads and every later query: dk, dv of
// its keys summed over the group, written (not added) to the k, v columns.
void launch_attention_rowdot(float *Di, const bf16 *dout, const bf16 *out, int T, int H, int hd, cudaStream_t st);
void attention_backward_setup(int hd);
void launch_attention_backward_dq(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse, const float *Di,
                                  const CudaAttnTile *tiles, int n_tiles, int H, int KV, int hd, cudaStream_t st);
void launch_attention_backward_dkdv(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                    const float *Di, const CudaAttnKTile *ktiles, int n_ktiles, int H, int KV, int hd,
                                    cudaStream_t st);

// attention_bwd_wmma.cu: the same two on tensor cores (wmma), head_dim <= 128;
// dq over the forward's 64-query work list, dkdv over 64-key tiles
// (CUDA_ATTN_KT_BWD_WMMA). Chosen with the forward's kernel.
int attention_bwd_wmma_supported(int hd);
void attention_bwd_wmma_setup(int hd);
void launch_attention_backward_dq_wmma(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                       const float *Di, const CudaAttnTile *tiles, int n_tiles, int H, int KV, int hd,
                                       cudaStream_t st);
void launch_attention_backward_dkdv_wmma(float *dqkv, const bf16 *qkv, const bf16 *dout, const float *lse,
                                         const float *Di, const CudaAttnKTile *ktiles, int n_ktiles, int H, int KV,
                                         int hd, cudaStream_t st);

// embed.cu: dE[ids[t]] += dx[t] (atomics: ids repeat).
void launch_embed_backward(float *dE, const float *dx, const int32_t *ids, int T, int D, cudaStream_t st);

// adamw.cu: dm_adamw_update on n elements, g scaled by grad_scale first, g
// zeroed after; copy (may be NULL) receives bf16(p), the matmuls' weights.
void launch_adamw(float *p, float *g, float *m, float *v, bf16 *copy, size_t n, float grad_scale, float decay_mul,
                  DmAdamW k, cudaStream_t st);
// *out += sum g^2 (double; out on the device).
void launch_sqnorm(double *out, const float *g, size_t n, cudaStream_t st);
