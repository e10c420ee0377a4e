/* Causal multi-head attention with grouped KV heads over packed sequences.
 *
 * Queries are processed in blocks of ATTN_BLOCK rows; a block only multiplies
 * against the keys up to its last row, so the masked upper triangle is (mostly)
 * never computed. Forward keeps only the log-sum-exp of each score row; backward
 * recomputes the probabilities from it (flash-attention style), so memory grows
 * with tokens x heads, not tokens^2 x heads.
 *
 * Parallel over (sequence, query head) with OpenMP; the GEMMs inside run on one
 * OpenBLAS thread each (OpenBLAS does not spawn threads inside an OpenMP
 * parallel region), so the two threading layers never nest. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/fastexp.h"
#include "model/layers.h"

size_t attention_scratch_floats(int max_len) { return (size_t)2 * ATTN_BLOCK * (size_t)max_len; }

/* Scores of the queries at positions [i0, i1) (rows of qb, stride qs) against
 * keys [0, i1), softmax with the causal mask, into p (row stride i1). Forward
 * fills lb[r * lse_stride] with each row's log-sum-exp; backward (use_lse)
 * rebuilds the probabilities from it. The exp loops are vectorised
 * (fast_expf); normalising after the P.V product instead (hd multiplies per
 * row instead of i1) was tried and dropped: it moved the result by ~20 ulp
 * between query blockings, past test_batching_independence's 1e-6. */
static void block_probs(float *p, float *lb, const float *qb, const float *kh, int qs, int ks, int hd,
                        int i0, int i1, int lse_stride, float scale, int use_lse) {
    int nb = i1 - i0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, i1, hd, scale, qb, qs, kh, ks, 0.0f, p, i1);
    for (int r = 0; r < nb; r++) {
        int i = i0 + r;
        float *restrict row = p + (size_t)r * i1;
        if (use_lse) {
            float l = lb[(size_t)r * lse_stride];
            #pragma omp simd
            for (int j = 0; j <= i; j++) row[j] = fast_expf(row[j] - l);
        } else {
            float mx = row[0];
            #pragma omp simd reduction(max : mx)
            for (int j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
            #pragma omp simd
            for (int j = 0; j <= i; j++) row[j] = fast_expf(row[j] - mx);
            double sum = 0;
            #pragma omp simd reduction(+ : sum)
            for (int j = 0; j <= i; j++) sum += row[j];
            float inv = (float)(1.0 / sum);
            #pragma omp simd
            for (int j = 0; j <= i; j++) row[j] *= inv;
            lb[(size_t)r * lse_stride] = mx + (float)log(sum);
        }
        for (int j = i + 1; j < i1; j++) row[j] = 0.0f;
    }
}

void attention_forward(float *out, float *lse, const AttnScratch *scratch, const float *q, const float *k,
                       const float *v, const int32_t *off, const int32_t *len, const int32_t *q_off,
                       const int32_t *q_len, int nseq, int n_heads, int n_kv, int hd) {
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    if (!q_off) q_off = off, q_len = len;
    size_t work = 0;
    for (int s = 0; s < nseq; s++) work += (size_t)q_len[s] * len[s] * n_heads * hd;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(scratch->threads) if (work > OMP_MIN_WORK)
    for (int task = 0; task < nseq * n_heads; task++) {
        int s = task / n_heads, h = task % n_heads, g = h / group, T = len[s], first = T - q_len[s];
        /* Query row r of this sequence is position first + r. */
        const float *qh = q + (size_t)q_off[s] * qs + (size_t)h * hd;
        const float *kh = k + (size_t)off[s] * ks + (size_t)g * hd;
        const float *vh = v + (size_t)off[s] * ks + (size_t)g * hd;
        float *oh = out + (size_t)q_off[s] * qs + (size_t)h * hd;
        float *lh = lse + (size_t)q_off[s] * n_heads + h;
        float *p = scratch->buf + (size_t)omp_get_thread_num() * scratch->per_thread;
        for (int i0 = first; i0 < T; i0 += ATTN_BLOCK) {
            int i1 = i0 + ATTN_BLOCK < T ? i0 + ATTN_BLOCK : T;
            size_t r0 = (size_t)(i0 - first);
            block_probs(p, lh + r0 * n_heads, qh + r0 * qs, kh, qs, ks, hd, i0, i1, n_heads, scale, 0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i1 - i0, hd, i1, 1.0f, p, i1, vh, ks, 0.0f,
                        oh + r0 * qs, qs);
        }
    }
}

void attention_backward(float *dq, float *dk, float *dv, float *dk_heads, float *dv_heads,
                        const AttnScratch *scratch, const float *dout, const float *lse, const float *q,
                        const float *k, const float *v, const int32_t *off, const int32_t *len,
                        const int32_t *q_off, const int32_t *q_len, int nseq, int n_heads, int n_kv, int hd) {
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    if (!q_off) q_off = off, q_len = len;
    size_t work = 0;
    for (int s = 0; s < nseq; s++) work += (size_t)q_len[s] * len[s] * n_heads * hd;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(scratch->threads) if (work > OMP_MIN_WORK)
    for (int task = 0; task < nseq * n_heads; task++) {
        int s = task / n_heads, h = task % n_heads, g = h / group, T = len[s], first = T - q_len[s];
        size_t qo = (size_t)q_off[s] * qs + (size_t)h * hd, ko = (size_t)off[s] * ks + (size_t)g * hd,
               kho = (size_t)off[s] * qs + (size_t)h * hd;
        const float *qh = q + qo, *kh = k + ko, *vh = v + ko, *doh = dout + qo;
        const float *lh = lse + (size_t)q_off[s] * n_heads + h;
        float *p = scratch->buf + (size_t)omp_get_thread_num() * scratch->per_thread, *ds = p + (size_t)ATTN_BLOCK * T;
        for (int i = 0; i < T; i++) {
            memset(dk_heads + kho + (size_t)i * qs, 0, sizeof(float) * hd);
            memset(dv_heads + kho + (size_t)i * qs, 0, sizeof(float) * hd);
        }
        for (int i0 = first; i0 < T; i0 += ATTN_BLOCK) {
            int i1 = i0 + ATTN_BLOCK < T ? i0 + ATTN_BLOCK : T, nb = i1 - i0;
            size_t r0 = (size_t)(i0 - first);
            block_probs(p, (float *)lh + r0 * n_heads, qh + r0 * qs, kh, qs, ks, hd, i0, i1, n_heads, scale, 1);
            /* dP = dO . V^T, then dS = P * (dP - rowsum(P * dP)) on the causal part. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, i1, hd, 1.0f, doh + r0 * qs, qs, vh, ks, 0.0f,
                        ds, i1);
            for (int r = 0; r < nb; r++) {
                int i = i0 + r;
                const float *restrict pr = p + (size_t)r * i1;
                float *restrict dr = ds + (size_t)r * i1;
                double dot = 0;
                #pragma omp simd reduction(+ : dot)
                for (int j = 0; j <= i; j++) dot += (double)pr[j] * dr[j];
                float d = (float)dot;
                #pragma omp simd
                for (int j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - d);
                for (int j = i + 1; j < i1; j++) dr[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, i1, scale, ds, i1, kh, ks, 0.0f,
                        dq + qo + r0 * qs, qs);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1, hd, nb, scale, ds, i1, qh + r0 * qs, qs, 1.0f,
                        dk_heads + kho, qs);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1, hd, nb, 1.0f, p, i1, doh + r0 * qs, qs, 1.0f,
                        dv_heads + kho, qs);
        }
    }
    /* Sum the query heads of each group into their shared KV head. */
    int rows = off[nseq - 1] + len[nseq - 1];
    #pragma omp parallel for schedule(static) if ((size_t)rows * qs > OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        for (int g = 0; g < n_kv; g++) {
            float *dkr = dk + (size_t)r * ks + (size_t)g * hd, *dvr = dv + (size_t)r * ks + (size_t)g * hd;
            memset(dkr, 0, sizeof(float) * hd);
            memset(dvr, 0, sizeof(float) * hd);
            for (int h = g * group; h < (g + 1) * group; h++) {
                const float *a = dk_heads + (size_t)r * qs + (size_t)h * hd, *b = dv_heads + (size_t)r * qs + (size_t)h * hd;
                for (int i = 0; i < hd; i++) {
                    dkr[i] += a[i];
                    dvr[i] += b[i];
                }
            }
        }
    }
}
