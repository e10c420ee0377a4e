/* Forward and backward of the whole model over a packed batch, and the heads.
 *
 * The output is the final hidden state at the LAST position of each sequence,
 * so the last layer only needs keys and values for every position: its
 * queries, attention output, o_proj, residual and MLP run on one row per
 * sequence ("query rows"). Every other layer runs on all rows.
 *
 * Memory: one arena for activations (grown when a batch needs more, never
 * shrunk, so no allocation per step once sized), one for backward scratch. In
 * training mode each layer keeps its activations; otherwise one set is reused
 * by every layer. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/bf16_gemm.h"
#include "model/layers.h"
#include "model/model.h"
#include "model/model_internal.h"

static void ensure_rope(Model *m, int len) {
    if (len <= m->rope_len) return;
    int n = len < 256 ? 256 : len;
    if (n < 2 * m->rope_len) n = 2 * m->rope_len;
    const ModelConfig *c = &m->cfg;
    size_t half = (size_t)c->head_dim / 2;
    free(m->rope_cos);
    free(m->rope_sin);
    m->rope_cos = xmalloc(sizeof(float) * half * (size_t)n);
    m->rope_sin = xmalloc(sizeof(float) * half * (size_t)n);
    rope_tables(m->rope_cos, m->rope_sin, n, c->head_dim, c->rope_theta, c->rope_factor, c->rope_low_freq_factor,
                c->rope_high_freq_factor, c->rope_original_max_pos);
    m->rope_len = n;
}

/* Carves the arena; with base NULL only counts floats. */
static size_t carve(Model *m, float *base, int N, int nseq, size_t attn_scratch, int train) {
    const ModelConfig *c = &m->cfg;
    size_t D = (size_t)c->hidden, Hq = (size_t)c->n_heads * c->head_dim, Hk = (size_t)c->n_kv_heads * c->head_dim,
           F = (size_t)c->ffn, n = (size_t)N;
    size_t off = 0;
#define TAKE(ptr, count)                             \
    do {                                             \
        if (base) (ptr) = base + off;                \
        off += ((size_t)(count) + 15) & ~(size_t)15; \
    } while (0)
    int nl = train ? c->n_layers : 1;
    float *dummy;
    for (int l = 0; l < nl; l++) {
        LayerActs *a = base ? &m->acts[l] : NULL;
        /* Query-side sizes: one row per sequence in the last layer (when training;
         * the shared scoring set must fit every layer). */
        size_t nq = train && l == c->n_layers - 1 ? (size_t)nseq : n;
#define A(f) (*(base ? &a->f : &dummy))
        TAKE(A(rstd1), n);
        if (c->qk_norm) {
            TAKE(A(q_raw), nq * Hq);
            TAKE(A(k_raw), n * Hk);
            TAKE(A(rstd_q), nq * c->n_heads);
            TAKE(A(rstd_k), n * c->n_kv_heads);
        }
        TAKE(A(q), nq * Hq);
        TAKE(A(k), n * Hk);
        TAKE(A(v), n * Hk);
        TAKE(A(lse), nq * c->n_heads);
        TAKE(A(att), nq * Hq);
        TAKE(A(x_mid), nq * D);
        TAKE(A(rstd2), nq);
        TAKE(A(g), nq * F);
        TAKE(A(u), nq * F);
#undef A
    }
    /* Normed layer inputs and the SwiGLU output are cheap to recompute, so one
     * copy serves every layer (backward recomputes them). */
    TAKE(m->h_buf, n * D);
    TAKE(m->hq_buf, (size_t)nseq * D);
    TAKE(m->a_buf, n * F);
    TAKE(m->attn.buf, attn_scratch);
    /* Residual stream: every layer's input when training, one otherwise. */
    int nres = train ? c->n_layers : 1;
    for (int r = 0; r < nres; r++) {
        float *x = NULL;
        TAKE(x, n * D);
        if (base && train) m->acts[r].x_in = x;
        if (base && !train) m->res[r] = x;
    }
    TAKE(m->x_last, (size_t)nseq * D);
    TAKE(m->rstd_last, (size_t)nseq);
    TAKE(m->rstd_tmp, n);
#undef TAKE
    (void)dummy;
    return off;
}

/* Bias of slot s (q, k, v only) and the gradients of its weight and bias;
 * NULL where absent or frozen. */
static const float *slot_bias(const LayerWeights *w, int s) {
    return s == SLOT_Q ? w->bq : s == SLOT_K ? w->bk : s == SLOT_V ? w->bv : NULL;
}
static float *slot_weight_grad(LayerWeights *g, int s) {
    float *p[N_SLOTS] = {g->wq, g->wk, g->wv, g->wo, g->gate, g->up, g->down};
    return p[s];
}
static float *slot_bias_grad(LayerWeights *g, int s) {
    return s == SLOT_Q ? g->bq : s == SLOT_K ? g->bk : s == SLOT_V ? g->bv : NULL;
}
static const LoraPair *lora_of(const Model *m, int l, int s) {
    if (!m->lora || !m->lora[l * N_SLOTS + s].a) return NULL;
    return &m->lora[l * N_SLOTS + s];
}

static void ensure_lora_tmp(Model *m, int rows) {
    size_t need = (size_t)2 * rows * m->lora_rank;
    if (m->lora_rank <= 0 || need <= m->lora_tmp_cap) return;
    free(m->lora_tmp);
    m->lora_tmp = xmalloc(need * sizeof(float));
    m->lora_tmp_cap = need;
}

/* y[rows, out] = x W^T (+ b) + (alpha/r) (x A^T) B^T for slot s of layer l;
 * accumulate: y += instead (no bias there). */
static void lin_fwd(Model *m, int l, int s, float *y, const float *x, int rows, int accumulate) {
    int in, out;
    slot_dims(&m->cfg, s, &in, &out);
    if (m->bf16_packed) {
        if (!accumulate) linear_bias_fill(y, slot_bias(&m->w[l], s), rows, out);
        Bf16Seg seg = {m->wb[l].m[s], out, out, y, accumulate || slot_bias(&m->w[l], s) ? 1.0f : 0.0f};
        bf16_gemm_multi(rows, in, (GemmOp){x, 0, in, 1}, 1, &seg);
    } else if (m->bf16) {
        const float *wf;
        const uint16_t *wb;
        layer_weight_raw(m, l, s, &wf, &wb);
        linear_forward_bf16(y, x, wf, wb, slot_bias(&m->w[l], s), rows, in, out, accumulate);
    } else if (accumulate) {
        const float *w = layer_weight(m, l, s);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
    } else {
        linear_forward(y, x, layer_weight(m, l, s), slot_bias(&m->w[l], s), rows, in, out);
    }
    const LoraPair *lp = lora_of(m, l, s);
    if (lp) {
        int r = m->lora_rank;
        float *xa = m->lora_tmp;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, r, in, 1.0f, x, in, lp->a, in, 0.0f, xa, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, r, (float)(m->lora_alpha / r), xa, r, lp->b, r,
                    1.0f, y, out);
    }
}

/* With packed BF16 weights: the slots s[0..n) of layer l read the same x
 * [rows, in] (q|k|v, gate|up), so x is packed once for all of them;
 * y[i] = x W_i^T + b_i. */
static void lin_fwd_packed(Model *m, int l, const int *s, float *const *y, int n, const float *x, int rows) {
    Bf16Seg seg[BF16_MAX_SEGS];
    int in = 0;
    for (int i = 0; i < n; i++) {
        int out;
        slot_dims(&m->cfg, s[i], &in, &out);
        const float *b = slot_bias(&m->w[l], s[i]);
        linear_bias_fill(y[i], b, rows, out);
        seg[i] = (Bf16Seg){m->wb[l].m[s[i]], out, out, y[i], b ? 1.0f : 0.0f};
    }
    bf16_gemm_multi(rows, in, (GemmOp){x, 0, in, 1}, n, seg);
}

/* Backward of lin_fwd from dy [rows, out] with the layer input x: dW, db and
 * the adapter gradients where trainable, and dx [rows, in] (= or +=, dx_add)
 * through both paths unless dx is NULL. */
static void lin_bwd(Model *m, int l, int s, float *dx, int dx_add, const float *dy, const float *x, int rows) {
    int in, out;
    slot_dims(&m->cfg, s, &in, &out);
    LayerWeights *g = &m->gw[l];
    if (m->bf16) {
        const float *wf;
        const uint16_t *wb;
        layer_weight_raw(m, l, s, &wf, &wb);
        linear_backward_bf16(dx, dx_add, slot_weight_grad(g, s), dy, x, wf, wb, rows, in, out);
        linear_backward(NULL, NULL, slot_bias_grad(g, s), dy, x, NULL, rows, in, out);
    } else if (dx) {
        const float *w = layer_weight(m, l, s);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in, out, 1.0f, dy, out, w, in,
                    dx_add ? 1.0f : 0.0f, dx, in);
    }
    if (!m->bf16) linear_backward(NULL, slot_weight_grad(g, s), slot_bias_grad(g, s), dy, x, NULL, rows, in, out);
    const LoraPair *lp = lora_of(m, l, s);
    if (lp) {
        int r = m->lora_rank;
        float scale = (float)(m->lora_alpha / r), *xa = m->lora_tmp, *dxa = m->lora_tmp + (size_t)rows * r;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, r, in, 1.0f, x, in, lp->a, in, 0.0f, xa, r);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, rows, scale, dy, out, xa, r, 1.0f, lp->db, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, r, out, scale, dy, out, lp->b, r, 0.0f, dxa, r);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, rows, 1.0f, dxa, r, x, in, 1.0f, lp->da, in);
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in, r, 1.0f, dxa, r, lp->a, in, 1.0f, dx, in);
    }
}

/* Row id of the embedding into dst[D]. */
static void embed_row(const Model *m, int id, float *dst) {
    size_t D = (size_t)m->cfg.hidden;
    if (m->embed) memcpy(dst, m->embed + (size_t)id * D, sizeof(float) * D);
    else
        for (size_t j = 0; j < D; j++) dst[j] = bf16_to_f32(m->embed_bf16[(size_t)id * D + j]);
}

/* dst[s] = src[last row of sequence s], rows of width d. */
static void gather_last(float *dst, const float *src, const Model *m, int d) {
    for (int s = 0; s < m->nseq; s++)
        memcpy(dst + (size_t)s * d, src + (size_t)m->last_row[s] * d, sizeof(float) * (size_t)d);
}

int model_forward(Model *m, const SeqBatch *b, int train, float *h_last, OprmError *err) {
    const ModelConfig *c = &m->cfg;
    if (b->nseq <= 0) return oprm_fail(err, "model_forward: empty batch");
    long total = 0;
    int maxT = 0;
    for (int s = 0; s < b->nseq; s++) {
        if (b->lens[s] <= 0) return oprm_fail(err, "model_forward: sequence %d has length %d", s, b->lens[s]);
        total += b->lens[s];
        if (b->lens[s] > maxT) maxT = b->lens[s];
    }
    if (total > 0x7fffffff) return oprm_fail(err, "model_forward: batch too large");
    int N = (int)total, nseq = b->nseq;
    for (int i = 0; i < N; i++)
        if (b->ids[i] < 0 || b->ids[i] >= c->vocab)
            return oprm_fail(err, "model_forward: token id %d at position %d is outside the vocabulary [0, %d)",
                             b->ids[i], i, c->vocab);

    /* Index buffers, the layout (prefix sharing), and arena. */
    if (N > m->ibuf_cap) {
        free(m->ids);
        free(m->pos);
        m->ids = xmalloc(sizeof(int32_t) * (size_t)N);
        m->pos = xmalloc(sizeof(int32_t) * (size_t)N);
        m->ibuf_cap = N;
    }
    N = model_plan_batch(m, b);
    if (!m->acts) m->acts = xcalloc((size_t)c->n_layers, sizeof *m->acts);
    m->n_rows = N;
    m->nseq = nseq;
    /* Scoring with BF16 compute runs attention's products in the BF16 kernel too. */
    int bf16_attn = m->bf16 && !train && bf16_gemm_backend() == BF16_OPRM;
    m->attn.per_thread = attention_scratch_floats(maxT);
    if (bf16_attn) {
        size_t need_bf16 = attention_bf16_scratch_floats(maxT, c->n_heads / c->n_kv_heads, c->head_dim);
        if (need_bf16 > m->attn.per_thread) m->attn.per_thread = need_bf16;
    }
    m->attn.threads = omp_get_max_threads();
    size_t attn_scratch = (size_t)m->attn.threads * m->attn.per_thread;
    size_t need = carve(m, NULL, N, nseq, attn_scratch, train);
    if (need > m->arena_cap) {
        free(m->arena);
        m->arena = xmalloc(sizeof(float) * need);
        m->arena_cap = need;
    }
    carve(m, m->arena, N, nseq, attn_scratch, train);
    ensure_rope(m, maxT);
    m->trained = 0;
    if (!train) model_bf16_prepack(m); /* no-op unless inference-only with BF16 compute */

    int D = c->hidden, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, F = c->ffn;
    float *x0 = train ? m->acts[0].x_in : m->res[0];
    #pragma omp parallel for schedule(static) if ((size_t)N * D > OMP_MIN_WORK)
    for (int i = 0; i < N; i++) embed_row(m, m->ids[i], x0 + (size_t)i * D);
    ensure_lora_tmp(m, N);

    for (int l = 0; l < c->n_layers; l++) {
        int last = l == c->n_layers - 1;
        LayerActs *a = &m->acts[train ? l : 0];
        const LayerWeights *w = &m->w[l];
        /* Scoring keeps one residual stream and adds each branch onto it in place
         * (no layer input is needed again); training keeps every layer's. */
        float *x_in = train ? a->x_in : m->res[0];
        float *x_out = last ? m->x_last : train ? m->acts[l + 1].x_in : m->res[0];
        float *x_mid = train || last ? a->x_mid : x_in;
        int Nq = last ? nseq : N; /* query rows */
        const int32_t *qpos = last ? m->last_pos : m->pos;

        rmsnorm_forward(m->h_buf, a->rstd1, x_in, w->norm1, N, D, c->rms_eps);
        float *hq = m->h_buf;
        if (last) {
            gather_last(m->hq_buf, m->h_buf, m, D);
            hq = m->hq_buf;
        }
        float *q = c->qk_norm ? a->q_raw : a->q, *k = c->qk_norm ? a->k_raw : a->k;
        if (m->bf16_packed) { /* the last layer's queries read other rows: q on its own there */
            int qkv[3] = {SLOT_K, SLOT_V, SLOT_Q};
            float *out3[3] = {k, a->v, q};
            lin_fwd_packed(m, l, qkv, out3, last ? 2 : 3, m->h_buf, N);
            if (last) lin_fwd(m, l, SLOT_Q, q, hq, Nq, 0);
        } else {
            lin_fwd(m, l, SLOT_Q, q, hq, Nq, 0);
            lin_fwd(m, l, SLOT_K, k, m->h_buf, N, 0);
            lin_fwd(m, l, SLOT_V, a->v, m->h_buf, N, 0);
        }
        if (c->qk_norm) {
            rmsnorm_forward(a->q, a->rstd_q, a->q_raw, w->q_norm, Nq * H, hd, c->rms_eps);
            rmsnorm_forward(a->k, a->rstd_k, a->k_raw, w->k_norm, N * KV, hd, c->rms_eps);
        }
        rope_forward(a->q, Nq, H, hd, qpos, m->rope_cos, m->rope_sin);
        rope_forward(a->k, N, KV, hd, m->pos, m->rope_cos, m->rope_sin);
        (bf16_attn ? attention_forward_units_bf16 : attention_forward_units)(
            a->att, a->lse, &m->attn, a->q, a->k, a->v, last ? &m->units_last : &m->units, H, KV, hd);
        /* x_mid = x_in + att . Wo^T (the GEMM accumulates onto the copy). */
        if (last) gather_last(x_mid, x_in, m, D);
        else if (x_mid != x_in) memcpy(x_mid, x_in, sizeof(float) * (size_t)N * D);
        lin_fwd(m, l, SLOT_O, x_mid, a->att, Nq, 1);

        rmsnorm_forward(m->h_buf, a->rstd2, x_mid, w->norm2, Nq, D, c->rms_eps);
        if (m->bf16_packed) {
            int gu[2] = {SLOT_GATE, SLOT_UP};
            float *out2[2] = {a->g, a->u};
            lin_fwd_packed(m, l, gu, out2, 2, m->h_buf, Nq);
        } else {
            lin_fwd(m, l, SLOT_GATE, a->g, m->h_buf, Nq, 0);
            lin_fwd(m, l, SLOT_UP, a->u, m->h_buf, Nq, 0);
        }
        swiglu_forward(m->a_buf, a->g, a->u, (size_t)Nq * F);
        if (x_out != x_mid) memcpy(x_out, x_mid, sizeof(float) * (size_t)Nq * D);
        lin_fwd(m, l, SLOT_DOWN, x_out, m->a_buf, Nq, 1);
    }
    rmsnorm_forward(h_last, m->rstd_last, m->x_last, m->final_norm, nseq, D, c->rms_eps);
    m->trained = train != 0;
    return 0;
}

int model_backward(Model *m, const float *dh_last, OprmError *err) {
    if (m->inference_only) return oprm_fail(err, "model_backward: the model was loaded for inference only");
    if (!m->trained) return oprm_fail(err, "model_backward: no training forward to go back through");
    const ModelConfig *c = &m->cfg;
    int N = m->n_rows, nseq = m->nseq;
    int D = c->hidden, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, Hq = H * hd, Hk = KV * hd, F = c->ffn;
    size_t n = (size_t)N;
    size_t sizes[] = {n * D, n * D, n * D, n * Hq, n * Hk, n * Hk, n * Hq, n * Hq, n * Hq, n * F, n * F, n * F,
                      c->qk_norm ? n * Hq : 0, c->qk_norm ? n * Hk : 0, (size_t)nseq * D};
    enum { DX, DXQ, DH, DQ, DK, DV, DKH, DVH, DATT, DG, DU, DA, DQR, DKR, DHQ, NB };
    size_t need = 0, offs[NB];
    for (int i = 0; i < NB; i++) {
        offs[i] = need;
        need += (sizes[i] + 15) & ~(size_t)15;
    }
    if (need > m->bwd_cap) {
        free(m->bwd);
        m->bwd = xmalloc(sizeof(float) * need);
        m->bwd_cap = need;
    }
    float *dx = m->bwd + offs[DX], *dxq = m->bwd + offs[DXQ], *dh = m->bwd + offs[DH], *dq = m->bwd + offs[DQ],
          *dk = m->bwd + offs[DK], *dv = m->bwd + offs[DV], *dkh = m->bwd + offs[DKH], *dvh = m->bwd + offs[DVH],
          *datt = m->bwd + offs[DATT], *dg = m->bwd + offs[DG], *du = m->bwd + offs[DU], *da = m->bwd + offs[DA],
          *dqr = m->bwd + offs[DQR], *dkr = m->bwd + offs[DKR], *dhq = m->bwd + offs[DHQ];
    ensure_lora_tmp(m, N);

    /* The loss enters at the last row of each sequence only: the last layer's
     * query rows. */
    memset(dxq, 0, sizeof(float) * (size_t)nseq * D);
    rmsnorm_backward(dxq, m->d_final_norm, dh_last, m->x_last, m->final_norm, m->rstd_last, nseq, D);

    for (int l = c->n_layers - 1; l >= 0; l--) {
        int last = l == c->n_layers - 1, Nq = last ? nseq : N;
        size_t nq = (size_t)Nq;
        const int32_t *qpos = last ? m->last_pos : m->pos;
        const LayerActs *a = &m->acts[l];
        const LayerWeights *w = &m->w[l];
        LayerWeights *g = &m->gw[l];
        /* With a frozen embedding nothing needs dL/d(input of layer 0). */
        int need_dx = l > 0 || m->d_embed;
        /* Query-side gradient dL/dx_out: the last layer's few rows, else all rows. */
        float *dxo = last ? dxq : dx;

        /* MLP: x_out = x_mid + down(swiglu(gate(h2), up(h2))). h2 and the SwiGLU
         * output are recomputed (dg doubles as the latter's buffer). */
        float *h = m->h_buf, *rstd_tmp = m->rstd_tmp;
        rmsnorm_forward(h, rstd_tmp, a->x_mid, w->norm2, Nq, D, c->rms_eps);
        swiglu_forward(dg, a->g, a->u, nq * F);
        lin_bwd(m, l, SLOT_DOWN, da, 0, dxo, dg, Nq);
        swiglu_backward(dg, du, da, a->g, a->u, nq * F);
        lin_bwd(m, l, SLOT_GATE, dh, 0, dg, h, Nq);
        lin_bwd(m, l, SLOT_UP, dh, 1, du, h, Nq);
        rmsnorm_backward(dxo, g->norm2, dh, a->x_mid, w->norm2, a->rstd2, Nq, D); /* now dL/dx_mid */

        /* Attention: x_mid = x_in + o(att). */
        lin_bwd(m, l, SLOT_O, datt, 0, dxo, a->att, Nq);
        attention_backward_units(dq, dk, dv, dkh, dvh, &m->attn, datt, a->lse, a->q, a->k, a->v,
                                 last ? &m->units_last : &m->units, N, H, KV, hd);
        rope_backward(dq, Nq, H, hd, qpos, m->rope_cos, m->rope_sin);
        rope_backward(dk, N, KV, hd, m->pos, m->rope_cos, m->rope_sin);
        float *dq_in = dq, *dk_in = dk;
        if (c->qk_norm) {
            memset(dqr, 0, sizeof(float) * nq * Hq);
            memset(dkr, 0, sizeof(float) * n * Hk);
            rmsnorm_backward(dqr, g->q_norm, dq, a->q_raw, w->q_norm, a->rstd_q, Nq * H, hd);
            rmsnorm_backward(dkr, g->k_norm, dk, a->k_raw, w->k_norm, a->rstd_k, N * KV, hd);
            dq_in = dqr;
            dk_in = dkr;
        }
        /* dL/dx_in: the residual path (query rows only) plus the input norm's share. */
        rmsnorm_forward(h, rstd_tmp, a->x_in, w->norm1, N, D, c->rms_eps);
        float *dhx = need_dx ? dh : NULL;
        if (last) {
            float *hq = m->hq_buf;
            gather_last(hq, h, m, D);
            /* The queries exist at the last rows only: their dx lands there. */
            lin_bwd(m, l, SLOT_K, dhx, 0, dk_in, h, N);
            lin_bwd(m, l, SLOT_Q, need_dx ? dhq : NULL, 0, dq_in, hq, Nq);
            for (int s = 0; need_dx && s < nseq; s++) {
                float *dst = dh + (size_t)m->last_row[s] * D;
                const float *src = dhq + (size_t)s * D;
                for (int j = 0; j < D; j++) dst[j] += src[j];
            }
        } else {
            lin_bwd(m, l, SLOT_Q, dhx, 0, dq_in, h, N);
            lin_bwd(m, l, SLOT_K, dhx, 1, dk_in, h, N);
        }
        lin_bwd(m, l, SLOT_V, dhx, 1, dv, h, N);
        if (!need_dx) continue;
        if (last) {
            memset(dx, 0, sizeof(float) * n * D);
            for (int s = 0; s < nseq; s++)
                memcpy(dx + (size_t)m->last_row[s] * D, dxq + (size_t)s * D, sizeof(float) * D);
        }
        rmsnorm_backward(dx, g->norm1, dh, a->x_in, w->norm1, a->rstd1, N, D); /* dx is now dL/dx_in */
    }
    /* Embedding rows (serial: ids repeat). */
    for (int i = 0; m->d_embed && i < N; i++) {
        float *ge = m->d_embed + (size_t)m->ids[i] * D;
        const float *d = dx + (size_t)i * D;
        for (int j = 0; j < D; j++) ge[j] += d[j];
    }
    return 0;
}

void model_head_rows_forward(const Model *m, const float *h_last, int nseq, const int32_t *rows, int nrows,
                             float *logits) {
    int D = m->cfg.hidden;
    for (int s = 0; s < nseq; s++)
        for (int k = 0; k < nrows; k++) {
            const float *h = h_last + (size_t)s * D;
            double acc = 0;
            if (m->lm_head) {
                const float *w = m->lm_head + (size_t)rows[k] * D;
                for (int j = 0; j < D; j++) acc += (double)h[j] * w[j];
            } else {
                const uint16_t *w = m->lm_head_bf16 + (size_t)rows[k] * D;
                for (int j = 0; j < D; j++) acc += (double)h[j] * bf16_to_f32(w[j]);
            }
            logits[s * nrows + k] = (float)acc;
        }
}

void model_head_rows_backward(Model *m, const float *h_last, int nseq, const int32_t *rows, int nrows,
                              const float *dlogits, float *dh_last) {
    int D = m->cfg.hidden;
    for (int s = 0; s < nseq; s++)
        for (int k = 0; k < nrows; k++) {
            float dl = dlogits[s * nrows + k];
            const float *h = h_last + (size_t)s * D;
            float *dh = dh_last + (size_t)s * D;
            if (m->d_lm_head) {
                float *gw = m->d_lm_head + (size_t)rows[k] * D;
                for (int j = 0; j < D; j++) gw[j] += dl * h[j];
            }
            if (m->lm_head) {
                const float *w = m->lm_head + (size_t)rows[k] * D;
                for (int j = 0; j < D; j++) dh[j] += dl * w[j];
            } else {
                const uint16_t *w = m->lm_head_bf16 + (size_t)rows[k] * D;
                for (int j = 0; j < D; j++) dh[j] += dl * bf16_to_f32(w[j]);
            }
        }
}

void model_logits_full(const Model *m, const float *h, float *logits) {
    if (!m->lm_head) {
        int D = m->cfg.hidden;
        #pragma omp parallel for schedule(static) if ((size_t)m->cfg.vocab * D > OMP_MIN_WORK)
        for (int v = 0; v < m->cfg.vocab; v++) {
            const uint16_t *w = m->lm_head_bf16 + (size_t)v * D;
            float acc = 0;
            for (int j = 0; j < D; j++) acc += h[j] * bf16_to_f32(w[j]);
            logits[v] = acc;
        }
        return;
    }
    cblas_sgemv(CblasRowMajor, CblasNoTrans, m->cfg.vocab, m->cfg.hidden, 1.0f, m->lm_head, m->cfg.hidden, h, 1, 0.0f,
                logits, 1);
}
