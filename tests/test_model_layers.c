/* Each layer kernel's backward against central finite differences of its
 * forward, on random inputs. The loss is sum_i r_i * out_i with fixed random r,
 * accumulated in double; the analytic gradient is the layer backward with dy = r. */
#include <stdint.h>

#include "model/layers.h"
#include "test.h"

static uint64_t rng = 88172645463325252ULL;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}
static float *rand_vec(size_t n, float scale) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = scale * frand();
    return v;
}

typedef double (*LossFn)(void *ctx);

static double dot_loss(const float *y, const float *r, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * r[i];
    return s;
}

/* Compares grad[i] with (L(x+h) - L(x-h)) / 2h for every entry of x. */
static double worst_fd = 0;
static void fd_check(const char *what, float *x, const float *grad, size_t n, LossFn loss, void *ctx) {
    const float h = 1e-2f;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2.0 * h), err = fabs(grad[i] - fd);
        worst_fd = fmax(worst_fd, err / (1e-2 + fabs(fd)));
        if (err > 2e-3 + 1e-2 * fabs(fd)) {
            if (bad++ < 3) fprintf(stderr, "%s[%zu]: analytic %.6g, finite difference %.6g\n", what, i, grad[i], fd);
        }
    }
    CHECK(bad == 0);
}

/* ---- rmsnorm ---- */
typedef struct {
    int rows, dim;
    float *x, *w, *y, *rstd, *r;
} NormCtx;
static double norm_loss(void *c) {
    NormCtx *k = c;
    rmsnorm_forward(k->y, k->rstd, k->x, k->w, k->rows, k->dim, 1e-5);
    return dot_loss(k->y, k->r, (size_t)k->rows * k->dim);
}
static void test_rmsnorm(void) {
    NormCtx k = {3, 16, rand_vec(48, 2), rand_vec(16, 1), rand_vec(48, 0), rand_vec(3, 0), rand_vec(48, 1)};
    float *dx = calloc(48, 4), *dw = calloc(16, 4);
    norm_loss(&k);
    rmsnorm_backward(dx, dw, k.r, k.x, k.w, k.rstd, 3, 16);
    fd_check("rmsnorm dx", k.x, dx, 48, norm_loss, &k);
    fd_check("rmsnorm dw", k.w, dw, 16, norm_loss, &k);
    /* Backward accumulates: a second call doubles the gradient. */
    float first = dx[5];
    rmsnorm_backward(dx, dw, k.r, k.x, k.w, k.rstd, 3, 16);
    CHECK_NEAR(dx[5], 2 * first, 1e-6, 1e-6);
    free(k.x), free(k.w), free(k.y), free(k.rstd), free(k.r), free(dx), free(dw);
}

/* ---- rope ---- */
typedef struct {
    float *x, *y, *r, *cos_t, *sin_t;
    int32_t pos[5];
} RopeCtx;
static double rope_loss(void *c) {
    RopeCtx *k = c;
    memcpy(k->y, k->x, 5 * 16 * sizeof(float));
    rope_forward(k->y, 5, 2, 8, k->pos, k->cos_t, k->sin_t);
    return dot_loss(k->y, k->r, 80);
}
static void test_rope(void) {
    RopeCtx k = {rand_vec(80, 1), rand_vec(80, 0), rand_vec(80, 1), malloc(100 * 4 * 4), malloc(100 * 4 * 4), {0, 1, 2, 57, 99}};
    rope_tables(k.cos_t, k.sin_t, 100, 8, 10000.0, 0, 0, 0, 0);
    /* Against a direct evaluation of HF's formula: position 57, pair i = 1. */
    double f = 1.0 / pow(10000.0, 2.0 / 8);
    memcpy(k.y, k.x, 80 * 4);
    rope_forward(k.y, 5, 2, 8, k.pos, k.cos_t, k.sin_t);
    const float *x3 = k.x + 3 * 16 + 8; /* row 3, head 1 */
    CHECK_NEAR(k.y[3 * 16 + 8 + 1], x3[1] * cos(57 * f) - x3[5] * sin(57 * f), 1e-5, 0);
    CHECK_NEAR(k.y[3 * 16 + 8 + 5], x3[5] * cos(57 * f) + x3[1] * sin(57 * f), 1e-5, 0);
    CHECK_NEAR(k.y[0], k.x[0], 0, 0); /* position 0 is the identity */
    float *dx = malloc(80 * 4);
    memcpy(dx, k.r, 80 * 4);
    rope_backward(dx, 5, 2, 8, k.pos, k.cos_t, k.sin_t);
    fd_check("rope dx", k.x, dx, 80, rope_loss, &k);
    /* Llama-3 scaling: lowest frequency divided by the factor, highest kept. */
    float c8[4 * 2], s8[4 * 2];
    rope_tables(c8, s8, 2, 8, 10000.0, 8.0, 1.0, 4.0, 32);
    CHECK_NEAR(c8[4 + 0], cos(1.0), 1e-6, 0);                               /* wavelen 6.3 < 8: kept */
    CHECK_NEAR(c8[4 + 3], cos(1.0 / pow(10000.0, 6.0 / 8) / 8.0), 1e-6, 0); /* wavelen 6283 > 32: / 8 */
    free(k.x), free(k.y), free(k.r), free(k.cos_t), free(k.sin_t), free(dx);
}

/* ---- attention ---- */
enum { A_N = 6, A_H = 4, A_KV = 2, A_HD = 4 };
typedef struct {
    float *q, *k, *v, *out, *lse, *r;
    int32_t off[2], len[2];
    AttnScratch sc;
} AttnCtx;
static double attn_loss(void *c) {
    AttnCtx *a = c;
    attention_forward(a->out, a->lse, &a->sc, a->q, a->k, a->v, a->off, a->len, NULL, NULL, 2, A_H, A_KV, A_HD);
    return dot_loss(a->out, a->r, A_N * A_H * A_HD);
}
static void test_attention(void) {
    AttnCtx a = {rand_vec(A_N * A_H * A_HD, 1.5), rand_vec(A_N * A_KV * A_HD, 1.5), rand_vec(A_N * A_KV * A_HD, 1),
                 rand_vec(A_N * A_H * A_HD, 0), rand_vec(A_N * A_H, 0), rand_vec(A_N * A_H * A_HD, 1),
                 {0, 1}, {1, 5}, {NULL, attention_scratch_floats(5), 2}};
    a.sc.buf = calloc(2 * a.sc.per_thread, sizeof(float));
    attn_loss(&a);
    /* A sequence of length 1 attends to itself only: output = its v. */
    for (int h = 0; h < A_H; h++)
        for (int i = 0; i < A_HD; i++) CHECK_NEAR(a.out[h * A_HD + i], a.v[(h / 2) * A_HD + i], 1e-6, 0);
    float *dq = calloc(A_N * A_H * A_HD, 4), *dk = calloc(A_N * A_KV * A_HD, 4), *dv = calloc(A_N * A_KV * A_HD, 4),
          *dkh = calloc(A_N * A_H * A_HD, 4), *dvh = calloc(A_N * A_H * A_HD, 4);
    attention_backward(dq, dk, dv, dkh, dvh, &a.sc, a.r, a.lse, a.q, a.k, a.v, a.off, a.len, NULL, NULL, 2, A_H, A_KV, A_HD);
    fd_check("attention dq", a.q, dq, A_N * A_H * A_HD, attn_loss, &a);
    fd_check("attention dk", a.k, dk, A_N * A_KV * A_HD, attn_loss, &a);
    fd_check("attention dv", a.v, dv, A_N * A_KV * A_HD, attn_loss, &a);
    free(a.q), free(a.k), free(a.v), free(a.out), free(a.lse), free(a.r), free(a.sc.buf);
    free(dq), free(dk), free(dv), free(dkh), free(dvh);
}

/* Long sequences cross the query-block boundaries (64, 128): forward against a
 * direct double-precision evaluation, backward spot-checked by finite differences. */
static void test_attention_long(void) {
    enum { T = 150, H = 2, KV = 1, HD = 8 };
    float *q = rand_vec(T * H * HD, 1.5), *k = rand_vec(T * KV * HD, 1.5), *v = rand_vec(T * KV * HD, 1),
          *out = calloc(T * H * HD, 4), *lse = calloc(T * H, 4), *r = rand_vec(T * H * HD, 1);
    int32_t off[1] = {0}, len[1] = {T};
    AttnScratch sc = {NULL, attention_scratch_floats(T), 2};
    sc.buf = calloc(2 * sc.per_thread, sizeof(float));
    attention_forward(out, lse, &sc, q, k, v, off, len, NULL, NULL, 1, H, KV, HD);
    double worst = 0;
    for (int i = 0; i < T; i += 7)
        for (int h = 0; h < H; h++) {
            double s[T], mx = -1e300, z = 0;
            for (int j = 0; j <= i; j++) {
                s[j] = 0;
                for (int d = 0; d < HD; d++) s[j] += (double)q[(i * H + h) * HD + d] * k[j * HD + d];
                s[j] /= sqrt((double)HD);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= i; j++) z += exp(s[j] - mx);
            for (int d = 0; d < HD; d++) {
                double o = 0;
                for (int j = 0; j <= i; j++) o += exp(s[j] - mx) / z * v[j * HD + d];
                worst = fmax(worst, fabs(o - out[(i * H + h) * HD + d]));
            }
        }
    CHECK(worst < 1e-5);
    float *dq = calloc(T * H * HD, 4), *dk = calloc(T * HD, 4), *dv = calloc(T * HD, 4), *dkh = calloc(T * H * HD, 4),
          *dvh = calloc(T * H * HD, 4);
    attention_backward(dq, dk, dv, dkh, dvh, &sc, r, lse, q, k, v, off, len, NULL, NULL, 1, H, KV, HD);
    int idx[] = {0, 5, 63 * 8 + 1, 64 * 8 + 2, 100 * 8 + 7, 129 * 8, 149 * 8 + 3};
    int bad = 0;
    for (int t = 0; t < 3; t++) {
        float *x = t == 0 ? q : t == 1 ? k : v, *g = t == 0 ? dq : t == 1 ? dk : dv;
        for (size_t n = 0; n < sizeof idx / sizeof idx[0]; n++) {
            int i = idx[n];
            float x0 = x[i], hh = 1e-2f;
            x[i] = x0 + hh;
            attention_forward(out, lse, &sc, q, k, v, off, len, NULL, NULL, 1, H, KV, HD);
            double lp = dot_loss(out, r, T * H * HD);
            x[i] = x0 - hh;
            attention_forward(out, lse, &sc, q, k, v, off, len, NULL, NULL, 1, H, KV, HD);
            double lm = dot_loss(out, r, T * H * HD);
            x[i] = x0;
            double fd = (lp - lm) / (2 * hh);
            if (fabs(g[i] - fd) > 2e-3 + 1e-2 * fabs(fd)) {
                bad++;
                fprintf(stderr, "long attention grad %d[%d]: %g vs fd %g\n", t, i, g[i], fd);
            }
        }
    }
    CHECK(bad == 0);
    free(q), free(k), free(v), free(out), free(lse), free(r), free(sc.buf);
    free(dq), free(dk), free(dv), free(dkh), free(dvh);
}

/* ---- swiglu ---- */
typedef struct {
    float *g, *u, *a, *r;
} SwiCtx;
static double swi_loss(void *c) {
    SwiCtx *s = c;
    swiglu_forward(s->a, s->g, s->u, 40);
    return dot_loss(s->a, s->r, 40);
}
static void test_swiglu(void) {
    SwiCtx s = {rand_vec(40, 4), rand_vec(40, 2), rand_vec(40, 0), rand_vec(40, 1)};
    swi_loss(&s);
    CHECK_NEAR(s.a[0], s.g[0] / (1 + exp(-s.g[0])) * s.u[0], 1e-6, 1e-6);
    float *dg = malloc(160), *du = malloc(160);
    swiglu_backward(dg, du, s.r, s.g, s.u, 40);
    fd_check("swiglu dg", s.g, dg, 40, swi_loss, &s);
    fd_check("swiglu du", s.u, du, 40, swi_loss, &s);
    free(s.g), free(s.u), free(s.a), free(s.r), free(dg), free(du);
}

/* ---- linear ---- */
typedef struct {
    float *x, *w, *b, *y, *r;
} LinCtx;
static double lin_loss(void *c) {
    LinCtx *l = c;
    linear_forward(l->y, l->x, l->w, l->b, 4, 6, 5);
    return dot_loss(l->y, l->r, 20);
}
static void test_linear(void) {
    LinCtx l = {rand_vec(24, 1), rand_vec(30, 1), rand_vec(5, 1), rand_vec(20, 0), rand_vec(20, 1)};
    lin_loss(&l);
    double y12 = l.b[2];
    for (int i = 0; i < 6; i++) y12 += (double)l.x[6 + i] * l.w[2 * 6 + i];
    CHECK_NEAR(l.y[5 + 2], y12, 1e-5, 0);
    float *dx = calloc(24, 4), *dw = calloc(30, 4), *db = calloc(5, 4);
    linear_backward(dx, dw, db, l.r, l.x, l.w, 4, 6, 5);
    fd_check("linear dx", l.x, dx, 24, lin_loss, &l);
    fd_check("linear dw", l.w, dw, 30, lin_loss, &l);
    fd_check("linear db", l.b, db, 5, lin_loss, &l);
    free(l.x), free(l.w), free(l.b), free(l.y), free(l.r), free(dx), free(dw), free(db);
}

int main(void) {
    RUN(test_rmsnorm);
    RUN(test_rope);
    RUN(test_attention);
    RUN(test_attention_long);
    RUN(test_swiglu);
    RUN(test_linear);
    fprintf(stderr, "worst finite-difference error |a - fd| / (0.01 + |fd|): %.3g\n", worst_fd);
    return test_summary();
}
