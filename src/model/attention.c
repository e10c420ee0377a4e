/* Causal multi-head attention with grouped KV heads over packed sequences.
 * Parallel over (sequence, query head) with OpenMP; the small GEMMs inside run
 * on one OpenBLAS thread each (OpenBLAS does not spawn threads inside an
 * OpenMP parallel region), so the two threading layers never nest. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "model/layers.h"

void attention_forward(float *out, float *p, const float *q, const float *k, const float *v, const int32_t *off,
                       const int32_t *len, const size_t *p_off, int nseq, int n_heads, int n_kv, int hd) {
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < nseq * n_heads; task++) {
        int s = task / n_heads, h = task % n_heads, g = h / group, T = len[s];
        const float *qh = q + (size_t)off[s] * qs + (size_t)h * hd;
        const float *kh = k + (size_t)off[s] * ks + (size_t)g * hd;
        const float *vh = v + (size_t)off[s] * ks + (size_t)g * hd;
        float *ph = p + p_off[s] + (size_t)h * T * T;
        /* The full T x T product wastes the masked half but keeps one GEMM call. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, qh, qs, kh, ks, 0.0f, ph, T);
        for (int i = 0; i < T; i++) {
            float *row = ph + (size_t)i * T, mx = row[0];
            for (int j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
            double sum = 0;
            for (int j = 0; j <= i; j++) {
                row[j] = expf(row[j] - mx);
                sum += row[j];
            }
            float inv = (float)(1.0 / sum);
            for (int j = 0; j <= i; j++) row[j] *= inv;
            for (int j = i + 1; j < T; j++) row[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, ph, T, vh, ks, 0.0f,
                    out + (size_t)off[s] * qs + (size_t)h * hd, qs);
    }
}

void attention_backward(float *dq, float *dk, float *dv, float *ds, float *dk_heads, float *dv_heads,
                        const float *dout, const float *p, const float *q, const float *k, const float *v,
                        const int32_t *off, const int32_t *len, const size_t *p_off, int nseq, int n_heads,
                        int n_kv, int hd) {
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < nseq * n_heads; task++) {
        int s = task / n_heads, h = task % n_heads, g = h / group, T = len[s];
        size_t qo = (size_t)off[s] * qs + (size_t)h * hd, ko = (size_t)off[s] * ks + (size_t)g * hd;
        const float *ph = p + p_off[s] + (size_t)h * T * T;
        float *dsh = ds + p_off[s] + (size_t)h * T * T;
        /* dP = dO . V^T, then the softmax backward row by row (causal part only). */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dout + qo, qs, v + ko, ks, 0.0f, dsh, T);
        for (int i = 0; i < T; i++) {
            const float *pr = ph + (size_t)i * T;
            float *dr = dsh + (size_t)i * T;
            double dot = 0;
            for (int j = 0; j <= i; j++) dot += (double)pr[j] * dr[j];
            float d = (float)dot;
            for (int j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - d);
            for (int j = i + 1; j < T; j++) dr[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, dsh, T, k + ko, ks, 0.0f, dq + qo, qs);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, dsh, T, q + qo, qs, 0.0f, dk_heads + qo,
                    qs);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, ph, T, dout + qo, qs, 0.0f,
                    dv_heads + qo, qs);
    }
    /* Sum the query heads of each group into their shared KV head. */
    int rows = off[nseq - 1] + len[nseq - 1];
    #pragma omp parallel for schedule(static)
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
