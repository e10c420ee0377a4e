/* Causal multi-head attention with grouped KV heads over packed sequences.
 *
 * Queries are processed in blocks of ATTN_BLOCK rows; a block only multiplies
 * against the keys up to its last row, so the masked upper triangle is (mostly)
 * never computed. Forward keeps only the log-sum-exp of each score row; backward
 * recomputes the probabilities from it (flash-attention style), so memory grows
 * with tokens x heads, not tokens^2 x heads.
 *
 * Prompt-prefix sharing (AttnUnits): a unit's keys may be a shared prefix's
 * rows followed by its own rows, anywhere in the packed batch. Every product
 * against the keys is then two GEMMs, one per key segment, writing the two
 * column ranges of the same score block, so the softmax sees one row exactly
 * as if the keys were contiguous. A unit without a prefix runs the very same
 * single GEMMs as before.
 *
 * Parallel over (unit, query head) with OpenMP (backward: over (cluster, query
 * head), a cluster being the units that write the same prefix rows); the
 * GEMMs inside run on one OpenBLAS thread each (OpenBLAS does not spawn
 * threads inside an OpenMP parallel region), so the two threading layers
 * never nest. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/bf16_gemm.h"
#include "model/fastexp.h"
#include "model/layers.h"

size_t attention_scratch_floats(int max_len) { return (size_t)2 * ATTN_BLOCK * (size_t)max_len; }

/* c[nb, i1] (row stride i1) = alpha * a[nb, hd] . keys^T, the keys [0, i1) being
 * the P rows of kp then the i1 - P rows of ko (both of stride ks). */
static void scores_2seg(float *c, float alpha, const float *a, int as, const float *kp, const float *ko, int ks,
                        int P, int nb, int i1, int hd) {
    if (P > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, P, hd, alpha, a, as, kp, ks, 0.0f, c, i1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, i1 - P, hd, alpha, a, as, ko, ks, 0.0f, c + P, i1);
}

/* y[nb, hd] (stride ys) = alpha * w[nb, i1] . values, values as in scores_2seg;
 * beta 0 overwrites y, 1 adds. */
static void mix_2seg(float *y, int ys, float alpha, const float *w, const float *vp, const float *vo, int vs, int P,
                     int nb, int i1, int hd, float beta) {
    if (P > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, P, alpha, w, i1, vp, vs, beta, y, ys);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, i1 - P, alpha, w + P, i1, vo, vs, beta, y, ys);
}

/* dkey rows += alpha * w[nb, i1]^T . x[nb, hd], keys as in scores_2seg. */
static void outer_2seg(float *dp, float *dk, int ds_, float alpha, const float *w, const float *x, int xs, int P,
                       int nb, int i1, int hd) {
    if (P > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, hd, nb, alpha, w, i1, x, xs, 1.0f, dp, ds_);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1 - P, hd, nb, alpha, w + P, i1, x, xs, 1.0f, dk, ds_);
}

/* Scores of the queries at positions [i0, i1) (rows of qb, stride qs) against
 * keys [0, i1) (the P prefix rows kp, then the unit's own rows kh), softmax
 * with the causal mask, into p (row stride i1). Forward fills
 * lb[r * lse_stride] with each row's log-sum-exp; backward (use_lse) rebuilds
 * the probabilities from it. The exp loops are vectorised (fast_expf);
 * normalising after the P.V product instead (hd multiplies per row instead of
 * i1) was tried and dropped: it moved the result by ~20 ulp between query
 * blockings, past test_batching_independence's 1e-6. */
static void block_probs(float *p, float *lb, const float *qb, const float *kp, const float *kh, int P, int qs, int ks,
                        int hd, int i0, int i1, int lse_stride, float scale, int use_lse) {
    int nb = i1 - i0;
    scores_2seg(p, scale, qb, qs, kp, kh, ks, P, nb, i1, hd);
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

static int unit_pre_len(const AttnUnits *u, int s) { return u->pre_len ? u->pre_len[s] : 0; }
static int unit_pre_off(const AttnUnits *u, int s) { return u->pre_len ? u->pre_off[s] : 0; }
static int unit_q_off(const AttnUnits *u, int s) { return u->q_off ? u->q_off[s] : u->off[s]; }
static int unit_q_len(const AttnUnits *u, int s) { return u->q_off ? u->q_len[s] : u->len[s]; }

static size_t units_work(const AttnUnits *u, int n_heads, int hd) {
    size_t work = 0;
    for (int s = 0; s < u->n; s++)
        work += (size_t)unit_q_len(u, s) * (size_t)(unit_pre_len(u, s) + u->len[s]) * n_heads * hd;
    return work;
}

void attention_forward_units(float *out, float *lse, const AttnScratch *scratch, const float *q, const float *k,
                             const float *v, const AttnUnits *u, int n_heads, int n_kv, int hd) {
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    size_t work = units_work(u, n_heads, hd);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(scratch->threads) if (work > OMP_MIN_WORK)
    for (int task = 0; task < u->n * n_heads; task++) {
        int s = task / n_heads, h = task % n_heads, g = h / group, P = unit_pre_len(u, s), T = P + u->len[s],
            first = T - unit_q_len(u, s), qoff = unit_q_off(u, s);
        /* Query row r of this unit is position first + r (first >= P). */
        const float *qh = q + (size_t)qoff * qs + (size_t)h * hd;
        const float *kh = k + (size_t)u->off[s] * ks + (size_t)g * hd;
        const float *vh = v + (size_t)u->off[s] * ks + (size_t)g * hd;
        const float *kp = k + (size_t)unit_pre_off(u, s) * ks + (size_t)g * hd;
        const float *vp = v + (size_t)unit_pre_off(u, s) * ks + (size_t)g * hd;
        float *oh = out + (size_t)qoff * qs + (size_t)h * hd;
        float *lh = lse + (size_t)qoff * n_heads + h;
        float *p = scratch->buf + (size_t)omp_get_thread_num() * scratch->per_thread;
        for (int i0 = first; i0 < T; i0 += ATTN_BLOCK) {
            int i1 = i0 + ATTN_BLOCK < T ? i0 + ATTN_BLOCK : T;
            size_t r0 = (size_t)(i0 - first);
            block_probs(p, lh + r0 * n_heads, qh + r0 * qs, kp, kh, P, qs, ks, hd, i0, i1, n_heads, scale, 0);
            mix_2seg(oh + r0 * qs, qs, 1.0f, p, vp, vh, ks, P, i1 - i0, i1, hd, 0.0f);
        }
    }
}

/* ---- BF16 forward (scoring with BF16 compute) ----
 * One task per (unit, KV group): the group's keys and values are rounded to
 * bf16 and packed once, and the query heads sharing them are stacked into one
 * product per query block (group x 64 rows instead of 64), so both products
 * run in the BF16 kernel at a useful size. Scores and softmax stay fp32; the
 * probabilities are rounded to bf16 for the product with V. */

static size_t up16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t attention_bf16_scratch_floats(int max_len, int group, int hd) {
    size_t M = (size_t)group * ATTN_BLOCK, T = (size_t)max_len;
    size_t nptr = (M > T ? M : T) * (sizeof(void *) / sizeof(float) + 1);
    return up16(M * T) + up16(M * hd) + up16(T * hd) + up16(nptr) +
           up16((bf16_packed_b_elems(max_len, hd) + 1) / 2) + up16((bf16_packed_b_elems(hd, max_len) + 1) / 2) +
           up16((bf16_packed_a_elems((int)M, hd) + 1) / 2) + up16((bf16_packed_a_elems((int)M, max_len) + 1) / 2);
}

void attention_forward_units_bf16(float *out, float *lse, const AttnScratch *scratch, const float *q, const float *k,
                                  const float *v, const AttnUnits *u, int n_heads, int n_kv, int hd) {
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    size_t work = units_work(u, n_heads, hd);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(scratch->threads) if (work > OMP_MIN_WORK)
    for (int task = 0; task < u->n * n_kv; task++) {
        int s = task / n_kv, g = task % n_kv, P = unit_pre_len(u, s), T = P + u->len[s],
            first = T - unit_q_len(u, s), qoff = unit_q_off(u, s), pre = unit_pre_off(u, s);
        size_t Mmax = (size_t)group * ATTN_BLOCK, Tz = (size_t)T;
        float *base = scratch->buf + (size_t)omp_get_thread_num() * scratch->per_thread;
        float *sc = base, *o = sc + up16(Mmax * Tz), *vg = o + up16(Mmax * hd);
        const float **ptr = (const float **)(vg + up16(Tz * hd));
        size_t nptr = (Mmax > Tz ? Mmax : Tz) * (sizeof(void *) / sizeof(float) + 1);
        uint16_t *kb = (uint16_t *)((float *)ptr + up16(nptr));
        uint16_t *vb = (uint16_t *)((float *)kb + up16((bf16_packed_b_elems(T, hd) + 1) / 2));
        uint16_t *qa = (uint16_t *)((float *)vb + up16((bf16_packed_b_elems(hd, T) + 1) / 2));
        uint16_t *pa = (uint16_t *)((float *)qa + up16((bf16_packed_a_elems((int)Mmax, hd) + 1) / 2));
        /* K^T: column j is key j's head-g slice (the prefix rows first). */
        for (int j = 0; j < T; j++)
            ptr[j] = k + (size_t)(j < P ? pre + j : u->off[s] + j - P) * ks + (size_t)g * hd;
        bf16_pack_b_rows(kb, T, hd, ptr);
        const float *vsrc = v + (size_t)u->off[s] * ks + (size_t)g * hd;
        ptrdiff_t vrs = ks;
        if (P > 0) { /* two segments: gather them into one [T, hd] block */
            for (int j = 0; j < T; j++)
                memcpy(vg + (size_t)j * hd, v + (size_t)(j < P ? pre + j : u->off[s] + j - P) * ks + (size_t)g * hd,
                       sizeof(float) * hd);
            vsrc = vg;
            vrs = hd;
        }
        bf16_pack_b(vb, hd, T, (GemmOp){vsrc, 0, vrs, 1});
        for (int i0 = first; i0 < T; i0 += ATTN_BLOCK) {
            int i1 = i0 + ATTN_BLOCK < T ? i0 + ATTN_BLOCK : T, nb = i1 - i0, M = group * nb;
            size_t r0 = (size_t)(i0 - first);
            /* Stacked row R: head g * group + R / nb, query position i0 + R % nb. */
            for (int R = 0; R < M; R++)
                ptr[R] = q + (qoff + r0 + (size_t)(R % nb)) * qs + (size_t)(g * group + R / nb) * hd;
            bf16_pack_a_rows(qa, M, hd, ptr);
            bf16_gemm_packed(M, i1, hd, qa, hd, kb, hd, 0.0f, sc, i1);
            for (int R = 0; R < M; R++) {
                int r = R % nb, i = i0 + r;
                float *restrict row = sc + (size_t)R * i1;
                float mx = row[0];
                #pragma omp simd reduction(max : mx)
                for (int j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
                #pragma omp simd
                for (int j = 0; j <= i; j++) row[j] = fast_expf((row[j] - mx) * scale);
                double sum = 0;
                #pragma omp simd reduction(+ : sum)
                for (int j = 0; j <= i; j++) sum += row[j];
                float inv = (float)(1.0 / sum);
                #pragma omp simd
                for (int j = 0; j <= i; j++) row[j] *= inv;
                for (int j = i + 1; j < i1; j++) row[j] = 0.0f;
                lse[(qoff + r0 + (size_t)r) * n_heads + (size_t)(g * group + R / nb)] = mx * scale + (float)log(sum);
            }
            bf16_pack_a(pa, M, i1, (GemmOp){sc, 0, i1, 1});
            bf16_gemm_packed(M, hd, i1, pa, i1, vb, T, 0.0f, o, hd);
            for (int R = 0; R < M; R++)
                memcpy(out + (qoff + r0 + (size_t)(R % nb)) * qs + (size_t)(g * group + R / nb) * hd, o + (size_t)R * hd,
                       sizeof(float) * hd);
        }
    }
}

void attention_backward_units(float *dq, float *dk, float *dv, float *dk_heads, float *dv_heads,
                              const AttnScratch *scratch, const float *dout, const float *lse, const float *q,
                              const float *k, const float *v, const AttnUnits *u, int n_rows, int n_heads, int n_kv,
                              int hd) {
    int qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    int nclus = u->clus ? u->n_clus : u->n;
    size_t work = units_work(u, n_heads, hd);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(scratch->threads) if (work > OMP_MIN_WORK)
    for (int task = 0; task < nclus * n_heads; task++) {
        int c = task / n_heads, h = task % n_heads, g = h / group;
        int s0 = u->clus ? u->clus[c] : c, s1 = u->clus ? u->clus[c + 1] : c + 1;
        float *p = scratch->buf + (size_t)omp_get_thread_num() * scratch->per_thread;
        /* The cluster's key rows (own and prefix) start from zero; its units then
         * add into them, the prefix rows summing every continuation's share. */
        for (int s = s0; s < s1; s++) {
            int segs[2][2] = {{u->off[s], u->len[s]}, {unit_pre_off(u, s), unit_pre_len(u, s)}};
            for (int e = 0; e < 2; e++)
                for (int i = 0; i < segs[e][1]; i++) {
                    size_t o = (size_t)(segs[e][0] + i) * qs + (size_t)h * hd;
                    memset(dk_heads + o, 0, sizeof(float) * hd);
                    memset(dv_heads + o, 0, sizeof(float) * hd);
                }
        }
        for (int s = s0; s < s1; s++) {
            int P = unit_pre_len(u, s), T = P + u->len[s], first = T - unit_q_len(u, s), qoff = unit_q_off(u, s);
            size_t qo = (size_t)qoff * qs + (size_t)h * hd, ko = (size_t)u->off[s] * ks + (size_t)g * hd,
                   kpo = (size_t)unit_pre_off(u, s) * ks + (size_t)g * hd,
                   kho = (size_t)u->off[s] * qs + (size_t)h * hd,
                   khp = (size_t)unit_pre_off(u, s) * qs + (size_t)h * hd;
            const float *qh = q + qo, *kh = k + ko, *vh = v + ko, *kp = k + kpo, *vp = v + kpo, *doh = dout + qo;
            const float *lh = lse + (size_t)qoff * n_heads + h;
            float *ds = p + (size_t)ATTN_BLOCK * T;
            for (int i0 = first; i0 < T; i0 += ATTN_BLOCK) {
                int i1 = i0 + ATTN_BLOCK < T ? i0 + ATTN_BLOCK : T, nb = i1 - i0;
                size_t r0 = (size_t)(i0 - first);
                block_probs(p, (float *)lh + r0 * n_heads, qh + r0 * qs, kp, kh, P, qs, ks, hd, i0, i1, n_heads,
                            scale, 1);
                /* dP = dO . V^T, then dS = P * (dP - rowsum(P * dP)) on the causal part. */
                scores_2seg(ds, 1.0f, doh + r0 * qs, qs, vp, vh, ks, P, nb, i1, hd);
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
                mix_2seg(dq + qo + r0 * qs, qs, scale, ds, kp, kh, ks, P, nb, i1, hd, 0.0f);
                outer_2seg(dk_heads + khp, dk_heads + kho, qs, scale, ds, qh + r0 * qs, qs, P, nb, i1, hd);
                outer_2seg(dv_heads + khp, dv_heads + kho, qs, 1.0f, p, doh + r0 * qs, qs, P, nb, i1, hd);
            }
        }
    }
    /* Sum the query heads of each group into their shared KV head. */
    int rows = n_rows;
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

void attention_forward(float *out, float *lse, const AttnScratch *scratch, const float *q, const float *k,
                       const float *v, const int32_t *off, const int32_t *len, const int32_t *q_off,
                       const int32_t *q_len, int nseq, int n_heads, int n_kv, int hd) {
    AttnUnits u = {.n = nseq, .off = off, .len = len, .q_off = q_off, .q_len = q_len};
    attention_forward_units(out, lse, scratch, q, k, v, &u, n_heads, n_kv, hd);
}

void attention_backward(float *dq, float *dk, float *dv, float *dk_heads, float *dv_heads,
                        const AttnScratch *scratch, const float *dout, const float *lse, const float *q,
                        const float *k, const float *v, const int32_t *off, const int32_t *len,
                        const int32_t *q_off, const int32_t *q_len, int nseq, int n_heads, int n_kv, int hd) {
    AttnUnits u = {.n = nseq, .off = off, .len = len, .q_off = q_off, .q_len = q_len};
    attention_backward_units(dq, dk, dv, dk_heads, dv_heads, scratch, dout, lse, q, k, v, &u,
                             off[nseq - 1] + len[nseq - 1], n_heads, n_kv, hd);
}
