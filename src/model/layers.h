/* The engine's layer kernels, one forward and one backward per layer type
 * (llm.c style). Activations are row-major [rows, dim]; a batch is packed, so
 * "rows" counts the tokens of all its sequences. Backward functions ADD into
 * the gradients they are given (input and parameter gradients alike), so the
 * caller zeroes what must start from zero.
 * Threading: GEMMs go through OpenBLAS; everything else here uses OpenMP and
 * never calls a threaded BLAS from inside a parallel region except where the
 * region itself is the only parallelism (attention: OpenBLAS then runs one
 * thread per call). */
#ifndef OPRM_MODEL_LAYERS_H
#define OPRM_MODEL_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* Loops over fewer elements than this run on one thread: starting a team costs
 * more than it saves, and far more on a busy machine where a descheduled
 * team member stalls the others at the barrier. */
#define OMP_MIN_WORK 32768

/* y[rows, out] = x[rows, in] . W[out, in]^T (+ b[out]). */
void linear_forward(float *y, const float *x, const float *w, const float *b, int rows, int in, int out);
/* dx[rows, in] += dy . W (skipped if dx NULL); dW[out, in] += dy^T . x; db[out] += sum_rows dy (if db). */
void linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int rows,
                     int in, int out);

/* The same two in BF16 compute (bf16_gemm.h; the caller checked a backend is
 * there): the weight is w (fp32, rounded per call) or wb (BF16 bits), the
 * other stays NULL. accumulate: y += x W^T (b unused). dx_add: dx += instead
 * of dx =. dW (fp32) accumulates the product of the rounded dy and x. */
/* y[r, o] = b[o] for every row (nothing when b is NULL). */
void linear_bias_fill(float *y, const float *b, int rows, int out);
void linear_forward_bf16(float *y, const float *x, const float *w, const uint16_t *wb, const float *b, int rows,
                         int in, int out, int accumulate);
void linear_backward_bf16(float *dx, int dx_add, float *dw, const float *dy, const float *x, const float *w,
                          const uint16_t *wb, int rows, int in, int out);

/* y = x / sqrt(mean(x^2) + eps) * w per row; rstd[rows] keeps 1/sqrt(...) for backward. */
void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int rows, int dim, double eps);
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                      int rows, int dim);

/* Rotary tables for positions [0, max_len): cos/sin[pos * hd/2 + i] of angle
 * pos * inv_freq[i] (Llama-3 scaling applied when factor > 0). */
void rope_tables(float *cos_t, float *sin_t, int max_len, int head_dim, double theta, double factor,
                 double low_freq_factor, double high_freq_factor, int original_max_pos);
/* In place on x[rows, n_heads * hd], HF rotate-half layout; pos[r] is the
 * position of row r inside its sequence. backward applies the inverse rotation. */
void rope_forward(float *x, int rows, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                  const float *sin_t);
void rope_backward(float *dx, int rows, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                   const float *sin_t);

/* Causal self-attention over packed sequences: keys/values of sequence s are
 * rows off[s] .. off[s]+len[s] of k, v ([rows, KV*hd]). Its queries are its LAST
 * q_len[s] positions, at rows q_off[s] .. of q, out ([qrows, H*hd]) and lse
 * ([qrows, H], the log-sum-exp of each score row, kept for backward); q_off =
 * q_len = NULL means every position (q_off = off, q_len = len). The last layer
 * of the model asks for one query per sequence. The kernels run on at most
 * scratch->threads OpenMP threads, each with its own slice of per_thread >=
 * attention_scratch_floats(longest sequence) floats. */
#define ATTN_BLOCK 64
typedef struct {
    float *buf;
    size_t per_thread;
    int threads;
} AttnScratch;
size_t attention_scratch_floats(int max_len);
void attention_forward(float *out, float *lse, const AttnScratch *scratch, const float *q, const float *k,
                       const float *v, const int32_t *off, const int32_t *len, const int32_t *q_off,
                       const int32_t *q_len, int nseq, int n_heads, int n_kv, int hd);
/* dq, dk, dv are OVERWRITTEN. dk_heads, dv_heads: scratch [rows, H*hd] each
 * (per-query-head partials summed into the shared KV heads afterwards, so no
 * two threads write the same memory). */
void attention_backward(float *dq, float *dk, float *dv, float *dk_heads, float *dv_heads,
                        const AttnScratch *scratch, const float *dout, const float *lse, const float *q,
                        const float *k, const float *v, const int32_t *off, const int32_t *len,
                        const int32_t *q_off, const int32_t *q_len, int nseq, int n_heads, int n_kv, int hd);

/* The general form (prompt-prefix sharing): unit s's keys are the pre_len[s]
 * rows of a shared prefix at pre_off[s] (pre_len NULL: none) followed by its
 * own len[s] rows at off[s]; its positions run 0 .. pre_len + len - 1. Its
 * queries are its LAST q_len[s] positions (q_len <= len: queries are own rows
 * only), at rows q_off[s] (q_off NULL: every own row). Backward runs the units
 * [clus[c], clus[c+1]) of each cluster in one task (clus NULL: one unit each):
 * every unit that reads the same prefix rows must sit in one cluster, as their
 * key and value gradients sum into those rows. n_rows: rows of k, v, dk, dv. */
typedef struct {
    int n;
    const int32_t *off, *len;
    const int32_t *pre_off, *pre_len;
    const int32_t *q_off, *q_len;
    int n_clus;
    const int32_t *clus;
} AttnUnits;
void attention_forward_units(float *out, float *lse, const AttnScratch *scratch, const float *q, const float *k,
                             const float *v, const AttnUnits *u, int n_heads, int n_kv, int hd);
/* Forward in BF16 compute (inference only; needs bf16_gemm_backend() ==
 * BF16_OPRM): q . k^T and p . v in the BF16 kernel with fp32 accumulation,
 * softmax in fp32; same outputs (out, lse) as attention_forward_units within
 * bf16 rounding. Its scratch needs per_thread >=
 * attention_bf16_scratch_floats(longest unit, n_heads / n_kv, hd). */
size_t attention_bf16_scratch_floats(int max_len, int group, int hd);
void attention_forward_units_bf16(float *out, float *lse, const AttnScratch *scratch, const float *q, const float *k,
                                  const float *v, const AttnUnits *u, int n_heads, int n_kv, int hd);
void attention_backward_units(float *dq, float *dk, float *dv, float *dk_heads, float *dv_heads,
                              const AttnScratch *scratch, const float *dout, const float *lse, const float *q,
                              const float *k, const float *v, const AttnUnits *u, int n_rows, int n_heads, int n_kv,
                              int hd);

/* a = silu(g) * u elementwise over n values; backward writes (overwrites) dg, du. */
void swiglu_forward(float *a, const float *g, const float *u, size_t n);
void swiglu_backward(float *dg, float *du, const float *da, const float *g, const float *u, size_t n);

#endif
