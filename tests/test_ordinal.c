/* Tests of the ordinal distribution, the pair loss and RgFT (spec §1-§3). */
#include <math.h>
#include <string.h>

#include "ordinal/ordinal.h"
#include "ordinal/rgft.h"
#include "ordinal_testutil.h"
#include "test.h"

#define K OPRM_LEVELS
#define GRAD_TOL 1e-6 /* relative error of analytic vs finite-difference gradients */
#define FD_STEP 1e-3

/* ---- loss wrappers over a flat parameter vector x = [z_c(9), z_r(9)] ---- */

typedef struct {
    const double *w_c, *w_r; /* NULL: plain pair loss */
} PairCtx;

static double pair_loss_at(const double *x, void *vctx) {
    PairCtx *ctx = vctx;
    double loss = NAN;
    OprmError err;
    int rc = ctx->w_c || ctx->w_r ? rgft_pair_loss(x, ctx->w_c, x + K, ctx->w_r, &loss, NULL, NULL, &err)
                                  : ordinal_pair_loss(x, x + K, &loss, NULL, NULL, &err);
    return rc == 0 ? loss : NAN;
}

static double point_loss_at(const double *x, void *vctx) {
    double loss = NAN;
    OprmError err;
    return rgft_point_loss(x, (const double *)vctx, &loss, NULL, &err) == 0 ? loss : NAN;
}

static const double ONES[K] = {1, 1, 1, 1, 1, 1, 1, 1, 1};

/* How many gradient checks were limit checks (exact gradient 0) vs FD comparisons. */
static int n_limit_checks = 0, n_fd_checks = 0;
static double worst_fd_error = 0.0;

/* At +-1e4 logits the exact gradient can be 0 (e.g. all chosen mass strictly above all
 * rejected mass): then there is no scale for a relative error, and the check is of the
 * limit instead: analytic and FD both ~0. Otherwise the relative error. */
static double limit_or_rel_error(const double *g, const double *fd, int n) {
    double gmax = 0.0, fdmax = 0.0;
    for (int i = 0; i < n; i++) {
        gmax = fmax(gmax, fabs(g[i]));
        fdmax = fmax(fdmax, fabs(fd[i]));
    }
    if (gmax < 1e-12) {
        n_limit_checks++;
        return fdmax < 1e-9 ? 0.0 : INFINITY;
    }
    n_fd_checks++;
    double e = grad_rel_error(g, fd, n);
    if (!(e <= worst_fd_error)) worst_fd_error = e;
    return e;
}

/* Analytic gradient of the (weighted) pair loss vs finite differences; returns the relative error. */
static double pair_grad_error(const double zc[K], const double *w_c, const double zr[K], const double *w_r) {
    double x[2 * K], g[2 * K], fd[2 * K], loss;
    memcpy(x, zc, sizeof(double) * K);
    memcpy(x + K, zr, sizeof(double) * K);
    OprmError err;
    int rc = (w_c || w_r) ? rgft_pair_loss(zc, w_c ? w_c : ONES, zr, w_r ? w_r : ONES, &loss, g, g + K, &err)
                          : ordinal_pair_loss(zc, zr, &loss, g, g + K, &err);
    if (rc != 0 || !isfinite(loss)) return INFINITY;
    PairCtx ctx = {w_c, w_r};
    fd_gradient(pair_loss_at, &ctx, x, 2 * K, FD_STEP, fd);
    return limit_or_rel_error(g, fd, 2 * K);
}

static double point_grad_error(const double z[K], const double w[K]) {
    double x[K], g[K], fd[K], loss;
    memcpy(x, z, sizeof x);
    OprmError err;
    if (rgft_point_loss(z, w, &loss, g, &err) != 0 || !isfinite(loss)) return INFINITY;
    fd_gradient(point_loss_at, (void *)w, x, K, FD_STEP, fd);
    return limit_or_rel_error(g, fd, K);
}

/* Logit families the gradient tests sweep. */
enum { FAM_RANDOM, FAM_PEAKED, FAM_FLAT, FAM_EXTREME, FAM_COUNT };
static const char *FAM_NAME[FAM_COUNT] = {"random", "peaked", "flat", "extreme"};

static void make_logits(int fam, TestRng *rng, double z[K]) {
    switch (fam) {
    case FAM_RANDOM:
        for (int k = 0; k < K; k++) z[k] = 2.0 * rng_normal(rng);
        break;
    case FAM_PEAKED: {
        int top = (int)(rng_uniform(rng) * K);
        for (int k = 0; k < K; k++) z[k] = 0.5 * rng_normal(rng) + (k == top ? 8.0 : 0.0);
        break;
    }
    case FAM_FLAT:
        for (int k = 0; k < K; k++) z[k] = 1e-3 * rng_normal(rng);
        break;
    case FAM_EXTREME: {
        /* +-1e4 logits with two or three levels at the top, so the distribution is
         * (numerically) spread over a few levels and the gradient is well-conditioned. */
        for (int k = 0; k < K; k++) z[k] = -1e4;
        int n_top = 2 + (int)(rng_uniform(rng) * 2);
        for (int t = 0; t < n_top; t++) z[(int)(rng_uniform(rng) * K)] = 1e4 + rng_normal(rng);
        break;
    }
    }
}

static void test_dist_basics(void) {
    OprmError err;
    double z[K] = {0.3, -1.2, 2.0, 0.0, 0.5, 1.1, -3.0, 0.7, 0.2};
    OrdinalDist d;
    CHECK(ordinal_dist_from_logits(z, &d, &err) == 0);
    /* Reference softmax computed independently (no max subtraction needed here). */
    double norm = 0.0;
    for (int k = 0; k < K; k++) norm += exp(z[k]);
    for (int k = 0; k < K; k++) {
        CHECK_NEAR(d.p[k], exp(z[k]) / norm, 0, 1e-14);
        CHECK_NEAR(d.logp[k], z[k] - log(norm), 1e-14, 0);
    }
    CHECK(ordinal_cdf(&d, 0) == 0.0 && ordinal_cdf(&d, 9) == 1.0);
    double run = 0.0;
    for (int k = 1; k <= K; k++) {
        run += exp(z[k - 1]) / norm;
        CHECK_NEAR(ordinal_cdf(&d, k), run, 1e-15, 0);
        CHECK_NEAR(ordinal_survival(&d, k), 1.0 - run, 1e-15, 0);
    }
    CHECK(ordinal_survival(&d, 0) == 1.0 && ordinal_survival(&d, 9) == 0.0);

    /* Float entry point gives the same distribution as the double one. */
    float zf[K];
    double zd[K];
    for (int k = 0; k < K; k++) zd[k] = (double)(zf[k] = (float)z[k]);
    OrdinalDist df, dd;
    CHECK(ordinal_dist_from_logits_f(zf, &df, &err) == 0);
    CHECK(ordinal_dist_from_logits(zd, &dd, &err) == 0);
    CHECK(memcmp(&df, &dd, sizeof df) == 0);

    /* Shift invariance with huge logits: the max is subtracted. */
    double zs[K];
    for (int k = 0; k < K; k++) zs[k] = z[k] + 1e6;
    OrdinalDist ds;
    CHECK(ordinal_dist_from_logits(zs, &ds, &err) == 0);
    for (int k = 0; k < K; k++) CHECK_NEAR(ds.p[k], d.p[k], 1e-9, 0);

    /* Logits of opposite huge magnitude: log p stays finite, p underflows cleanly. */
    double zx[K] = {1e300, -1e300, 0, 0, 0, 0, 0, 0, -1e308};
    OrdinalDist dx;
    CHECK(ordinal_dist_from_logits(zx, &dx, &err) == 0);
    CHECK(dx.p[0] == 1.0 && dx.p[1] == 0.0);
    for (int k = 0; k < K; k++) CHECK(isfinite(dx.logp[k]));
}

static void test_hand_values(void) {
    OprmError err;
    OrdinalDist c, r;
    PairProbs pp;
    double zero[K] = {0};
    /* Uniform vs uniform: 81 equally likely cells, 36 with i > j, 9 ties, 36 with i < j:
     * P(c>r) = 36/81 = 4/9, P(tie) = 9/81 = 1/9, P(r>c) = 4/9, loss = log(9/4). */
    CHECK(ordinal_dist_from_logits(zero, &c, &err) == 0);
    CHECK(ordinal_dist_from_logits(zero, &r, &err) == 0);
    ordinal_pair_probs(&c, &r, &pp);
    CHECK_NEAR(pp.win, 36.0 / 81, 1e-15, 0);
    CHECK_NEAR(pp.tie, 9.0 / 81, 1e-15, 0);
    CHECK_NEAR(pp.loss, 36.0 / 81, 1e-15, 0);
    CHECK_NEAR(pp.log_win, log(4.0 / 9), 1e-15, 0);
    double loss, gc[K], gr[K];
    CHECK(ordinal_pair_loss(zero, zero, &loss, gc, gr, &err) == 0);
    CHECK_NEAR(loss, log(9.0 / 4), 1e-15, 0);
    /* Gradient: q_c(m) = p_c(m) F_r(m-1)/P = (1/9)((m-1)/9)/(4/9) = (m-1)/36, so
     * dL/dz_c(m) = 1/9 - (m-1)/36 = (5-m)/36; q_r(m) = (1/9)((9-m)/9)/(4/9) = (9-m)/36,
     * so dL/dz_r(m) = 1/9 - (9-m)/36 = (m-5)/36. */
    for (int m = 1; m <= K; m++) {
        CHECK_NEAR(gc[m - 1], (5.0 - m) / 36, 1e-15, 0);
        CHECK_NEAR(gr[m - 1], (m - 5.0) / 36, 1e-15, 0);
    }

    /* Two-level distributions. Chosen: logits 0 at level 2, log 3 at level 6, -1e4 elsewhere
     * -> p_c(2) = 1/4, p_c(6) = 3/4 (others exp(-1e4) = 0). Rejected: logit 0 at levels 4
     * and 6 -> p_r(4) = p_r(6) = 1/2.
     * P(c>r) = p_c(6) p_r(4) = 3/8; P(tie) = p_c(6) p_r(6) = 3/8; P(r>c) = p_c(2) = 1/4.
     * loss = log(8/3).
     * q_c(6) = (3/4)(F_r(5) = 1/2)/(3/8) = 1, q_c(2) = 0 -> grad_c(2) = 1/4, grad_c(6) = -1/4.
     * q_r(4) = (1/2)(S_c(4) = 3/4)/(3/8) = 1, q_r(6) = 0 -> grad_r(4) = -1/2, grad_r(6) = 1/2. */
    double zc[K], zr[K];
    for (int k = 0; k < K; k++) zc[k] = zr[k] = -1e4;
    zc[1] = 0.0;
    zc[5] = log(3.0);
    zr[3] = zr[5] = 0.0;
    CHECK(ordinal_dist_from_logits(zc, &c, &err) == 0);
    CHECK(ordinal_dist_from_logits(zr, &r, &err) == 0);
    ordinal_pair_probs(&c, &r, &pp);
    CHECK_NEAR(pp.win, 3.0 / 8, 1e-15, 0);
    CHECK_NEAR(pp.tie, 3.0 / 8, 1e-15, 0);
    CHECK_NEAR(pp.loss, 1.0 / 4, 1e-15, 0);
    CHECK(ordinal_pair_loss(zc, zr, &loss, gc, gr, &err) == 0);
    CHECK_NEAR(loss, log(8.0 / 3), 1e-15, 0);
    double want_gc[K] = {0, 0.25, 0, 0, 0, -0.25, 0, 0, 0};
    double want_gr[K] = {0, 0, 0, -0.5, 0, 0.5, 0, 0, 0};
    for (int k = 0; k < K; k++) {
        CHECK_NEAR(gc[k], want_gc[k], 1e-15, 0);
        CHECK_NEAR(gr[k], want_gr[k], 1e-15, 0);
    }
}

static void test_identities(void) {
    TestRng rng = {12345};
    OprmError err;
    for (int trial = 0; trial < 200; trial++) {
        double zc[K], zr[K];
        make_logits(trial % FAM_COUNT, &rng, zc);
        make_logits((trial / FAM_COUNT) % FAM_COUNT, &rng, zr);
        OrdinalDist c, r;
        CHECK(ordinal_dist_from_logits(zc, &c, &err) == 0);
        CHECK(ordinal_dist_from_logits(zr, &r, &err) == 0);
        PairProbs cr, rc;
        ordinal_pair_probs(&c, &r, &cr);
        ordinal_pair_probs(&r, &c, &rc);
        CHECK_NEAR(cr.win + cr.tie + cr.loss, 1.0, 1e-14, 0);
        CHECK_NEAR(rc.win, cr.loss, 1e-15, 1e-13);
        CHECK_NEAR(rc.loss, cr.win, 1e-15, 1e-13);
        CHECK_NEAR(rc.tie, cr.tie, 1e-15, 1e-13);
        /* P(c>r) by the CDF form sum_k p_c(k) F_r(k-1) of spec §2. */
        double by_cdf = 0.0;
        for (int k = 1; k <= K; k++) by_cdf += c.p[k - 1] * ordinal_cdf(&r, k - 1);
        CHECK_NEAR(cr.win, by_cdf, 1e-15, 1e-13);
        /* The loss equals -log P(c>r) wherever P(c>r) is representable. */
        double loss, gc[K], gr[K];
        CHECK(ordinal_pair_loss(zc, zr, &loss, gc, gr, &err) == 0);
        CHECK(loss == -cr.log_win);
        if (cr.win > 1e-300) CHECK_NEAR(loss, -log(cr.win), 1e-12, 1e-12);
        /* Gradients are prior minus posterior: each sums to 0 and lies in [-1, 1]. */
        double sc = 0.0, sr = 0.0;
        for (int k = 0; k < K; k++) {
            sc += gc[k];
            sr += gr[k];
            CHECK(gc[k] >= -1.0 && gc[k] <= 1.0 && gr[k] >= -1.0 && gr[k] <= 1.0);
        }
        /* 1e-10: at +-1e4 logits each q carries ~1e-11 relative rounding (see the wrong-pair test). */
        CHECK_NEAR(sc, 0.0, 1e-10, 0);
        CHECK_NEAR(sr, 0.0, 1e-10, 0);

        /* RgFT with both sides unlabelled is exactly the pair loss (bitwise). */
        OprmLabel none = {OPRM_LABEL_NONE, 0};
        RgftConfig cfg = rgft_default_config();
        double w[K], lw, gwc[K], gwr[K];
        CHECK(rgft_landscape(&none, &cfg, w, &err) == 0);
        CHECK(rgft_pair_loss(zc, w, zr, w, &lw, gwc, gwr, &err) == 0);
        CHECK(lw == loss);
        CHECK(memcmp(gwc, gc, sizeof gc) == 0 && memcmp(gwr, gr, sizeof gr) == 0);
    }
}

static void test_pair_gradients(void) {
    TestRng rng = {777};
    for (int fc = 0; fc < FAM_COUNT; fc++) {
        for (int fr = 0; fr < FAM_COUNT; fr++) {
            double worst = 0.0;
            for (int trial = 0; trial < 6; trial++) {
                double zc[K], zr[K];
                make_logits(fc, &rng, zc);
                make_logits(fr, &rng, zr);
                double e = pair_grad_error(zc, NULL, zr, NULL);
                if (!(e <= worst)) worst = e;
            }
            if (!(worst < GRAD_TOL))
                fprintf(stderr, "pair gradient chosen=%s rejected=%s: rel err %.3g\n", FAM_NAME[fc], FAM_NAME[fr], worst);
            CHECK(worst < GRAD_TOL);
        }
    }
}

static void test_wrong_pair_extreme(void) {
    /* Chosen: all mass on level 1; rejected: all mass on level 9 (logits +-1e4).
     * log p_c(1) = 0 and log p_c(i>1) = -2e4 (to rounding); same for r mirrored. Every one of
     * the 36 cells i > j has i >= 2 and j <= 8, so each is -4e4: loss = 4e4 - log 36.
     * q_c(m) is proportional to the number of cells with i = m, m - 1 -> q_c(m) = (m-1)/36,
     * grad_c(1) = 1 - 0 = 1 and grad_c(m) = -(m-1)/36 for m >= 2.
     * q_r(m) is proportional to the number of cells with j = m, 9 - m -> q_r(m) = (9-m)/36,
     * grad_r(m) = -(9-m)/36 for m <= 8 and grad_r(9) = 1 - 0 = 1.
     * Tolerance 1e-11 relative: the log-space exponents are ~4e4 in size, so their rounding
     * (ulp(2e4) = 3.6e-12) bounds the relative accuracy of q at ~1e-11. */
    double zc[K], zr[K], loss, gc[K], gr[K];
    OprmError err;
    for (int k = 0; k < K; k++) zc[k] = zr[k] = -1e4;
    zc[0] = 1e4;
    zr[8] = 1e4;
    CHECK(ordinal_pair_loss(zc, zr, &loss, gc, gr, &err) == 0);
    CHECK(isfinite(loss));
    CHECK_NEAR(loss, 4e4 - log(36.0), 0, 1e-15);
    for (int m = 1; m <= K; m++) {
        CHECK(isfinite(gc[m - 1]) && isfinite(gr[m - 1]));
        CHECK_NEAR(gc[m - 1], m == 1 ? 1.0 : -(m - 1.0) / 36, 0, 1e-11);
        CHECK_NEAR(gr[m - 1], m == 9 ? 1.0 : -(9.0 - m) / 36, 0, 1e-11);
    }
    CHECK(pair_grad_error(zc, NULL, zr, NULL) < GRAD_TOL);

    /* The same under RgFT (chosen labelled good, rejected bad): still large and finite. */
    OprmLabel good = {OPRM_LABEL_GOOD, 0}, bad = {OPRM_LABEL_BAD, 0};
    RgftConfig cfg = rgft_default_config();
    double wc[K], wr[K];
    CHECK(rgft_landscape(&good, &cfg, wc, &err) == 0);
    CHECK(rgft_landscape(&bad, &cfg, wr, &err) == 0);
    CHECK(rgft_pair_loss(zc, wc, zr, wr, &loss, gc, gr, &err) == 0);
    CHECK(isfinite(loss) && loss > 4e4 - log(36.0));
    for (int k = 0; k < K; k++) CHECK(isfinite(gc[k]) && isfinite(gr[k]));
    CHECK(pair_grad_error(zc, wc, zr, wr) < GRAD_TOL);

    /* The right way round (chosen on 9, rejected on 1): P(c>r) = 1 - O(e^-2e4), so the loss
     * and the gradient are 0 in double (the exact limit). */
    CHECK(ordinal_pair_loss(zr, zc, &loss, gc, gr, &err) == 0);
    CHECK(fabs(loss) <= 1e-300);
    for (int k = 0; k < K; k++) CHECK(fabs(gc[k]) <= 1e-300 && fabs(gr[k]) <= 1e-300);

    /* Same level for both at +-1e4: P(c>r) ~ e^-2e4 p-mass; loss finite, gradient FD-checked. */
    double zs[K];
    for (int k = 0; k < K; k++) zs[k] = -1e4;
    zs[4] = 1e4;
    CHECK(ordinal_pair_loss(zs, zs, &loss, gc, gr, &err) == 0);
    CHECK(isfinite(loss) && loss > 1e4);
    CHECK(pair_grad_error(zs, NULL, zs, NULL) < GRAD_TOL);
}

static void test_nonfinite(void) {
    double good[K] = {0}, bad[K] = {0};
    double loss = 123.0, gc[K], gr[K];
    OprmError err;
    const double vals[3] = {NAN, INFINITY, -INFINITY};
    for (int v = 0; v < 3; v++) {
        for (int k = 0; k < K; k++) bad[k] = 0.0;
        bad[3] = vals[v];
        OrdinalDist d;
        memset(&err, 0, sizeof err);
        CHECK(ordinal_dist_from_logits(bad, &d, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "level 4");
        CHECK_STR_CONTAINS(err.msg, "not finite");
        CHECK(ordinal_pair_loss(good, bad, &loss, gc, gr, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "rejected");
        CHECK(ordinal_pair_loss(bad, good, &loss, gc, gr, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "chosen");
        CHECK(rgft_pair_loss(bad, ONES, good, ONES, &loss, gc, gr, &err) == -1);
        CHECK(rgft_point_loss(bad, ONES, &loss, gc, &err) == -1);
        CHECK(loss == 123.0); /* untouched on error */
        /* Bad weights are errors too. */
        double w[K] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        w[2] = vals[v];
        CHECK(rgft_pair_loss(good, w, good, ONES, &loss, gc, gr, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "level 3");
        CHECK(rgft_point_loss(good, w, &loss, gc, &err) == -1);
    }
    double wz[K] = {1, 1, 0, 1, 1, 1, 1, 1, 1};
    CHECK(rgft_pair_loss(good, ONES, good, wz, &loss, gc, gr, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "> 0");
}

static void test_labels_and_landscape(void) {
    OprmError err;
    OprmLabel l;
    CHECK(rgft_parse_label("good", &l, &err) == 0 && l.kind == OPRM_LABEL_GOOD && rgft_label_centre(&l) == 8);
    CHECK(rgft_parse_label("normal", &l, &err) == 0 && rgft_label_centre(&l) == 5);
    CHECK(rgft_parse_label("bad", &l, &err) == 0 && rgft_label_centre(&l) == 2);
    CHECK(rgft_parse_label("7", &l, &err) == 0 && l.kind == OPRM_LABEL_RATING && rgft_label_centre(&l) == 7);
    CHECK(rgft_parse_label("", &l, &err) == 0 && l.kind == OPRM_LABEL_NONE && rgft_label_centre(&l) == 0);
    CHECK(rgft_parse_label(NULL, &l, &err) == 0 && l.kind == OPRM_LABEL_NONE);
    CHECK(rgft_parse_label("10", &l, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "\"10\"");
    CHECK(rgft_parse_label("0", &l, &err) == -1);
    CHECK(rgft_parse_label("excellent", &l, &err) == -1);
    RgftMode mode;
    CHECK(rgft_parse_mode("hard", &mode, &err) == 0 && mode == RGFT_HARD);
    CHECK(rgft_parse_mode("triangle", &mode, &err) == 0 && mode == RGFT_TRIANGLE);
    CHECK(rgft_parse_mode("soft", &mode, &err) == -1);

    RgftConfig cfg = rgft_default_config();
    CHECK(cfg.mode == RGFT_TRIANGLE && cfg.halfwidth == 3.0 && cfg.floor == 0.01);
    double w[K];
    /* good, H = 3, eps = 0.01: w(k) = max(0.01, 1 - |k-8|/3):
     * k<=5 -> 0.01 (k=5 gives exactly 0), k=6 -> 1/3, 7 -> 2/3, 8 -> 1, 9 -> 2/3. */
    OprmLabel good = {OPRM_LABEL_GOOD, 0};
    CHECK(rgft_landscape(&good, &cfg, w, &err) == 0);
    double want_good[K] = {0.01, 0.01, 0.01, 0.01, 0.01, 1.0 / 3, 2.0 / 3, 1.0, 2.0 / 3};
    for (int k = 0; k < K; k++) CHECK_NEAR(w[k], want_good[k], 1e-15, 0);
    /* rating 1, H = 2: 1, 1/2, then 0 -> floor. */
    OprmLabel r1 = {OPRM_LABEL_RATING, 1};
    RgftConfig c2 = {RGFT_TRIANGLE, 2.0, 0.05};
    CHECK(rgft_landscape(&r1, &c2, w, &err) == 0);
    double want_r1[K] = {1.0, 0.5, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05};
    for (int k = 0; k < K; k++) CHECK_NEAR(w[k], want_r1[k], 1e-15, 0);
    /* hard: 1 on the region, eps elsewhere. bad -> {1,2,3}; rating 9 -> {8,9}; rating 4 -> {3,4,5}. */
    RgftConfig hard = {RGFT_HARD, 3.0, 0.01};
    OprmLabel bad = {OPRM_LABEL_BAD, 0}, r9 = {OPRM_LABEL_RATING, 9}, r4 = {OPRM_LABEL_RATING, 4};
    CHECK(rgft_landscape(&bad, &hard, w, &err) == 0);
    for (int k = 1; k <= K; k++) CHECK(w[k - 1] == (k <= 3 ? 1.0 : 0.01));
    CHECK(rgft_landscape(&r9, &hard, w, &err) == 0);
    for (int k = 1; k <= K; k++) CHECK(w[k - 1] == (k >= 8 ? 1.0 : 0.01));
    CHECK(rgft_landscape(&r4, &hard, w, &err) == 0);
    for (int k = 1; k <= K; k++) CHECK(w[k - 1] == (k >= 3 && k <= 5 ? 1.0 : 0.01));
    int lo, hi;
    CHECK(rgft_label_region(&good, &lo, &hi) == 0 && lo == 7 && hi == 9);
    CHECK(rgft_label_region(&r1, &lo, &hi) == 0 && lo == 1 && hi == 2);
    /* Unlabelled: w == 1 in both modes. */
    OprmLabel none = {OPRM_LABEL_NONE, 0};
    CHECK(rgft_landscape(&none, &hard, w, &err) == 0);
    for (int k = 0; k < K; k++) CHECK(w[k] == 1.0);
    /* Invalid settings. */
    OprmLabel r12 = {OPRM_LABEL_RATING, 12};
    CHECK(rgft_landscape(&r12, &cfg, w, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "12");
    RgftConfig zero_floor = {RGFT_TRIANGLE, 3.0, 0.0}, zero_h = {RGFT_TRIANGLE, 0.0, 0.01};
    CHECK(rgft_landscape(&good, &zero_floor, w, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "floor");
    CHECK(rgft_landscape(&good, &zero_h, w, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "half-width");

    /* Contradiction: chosen labelled strictly worse than rejected. */
    OprmLabel r3 = {OPRM_LABEL_RATING, 3}, r8 = {OPRM_LABEL_RATING, 8};
    CHECK(rgft_labels_contradict(&bad, &good) == 1);
    CHECK(rgft_labels_contradict(&good, &bad) == 0);
    OprmLabel r6 = {OPRM_LABEL_RATING, 6}, normal = {OPRM_LABEL_NORMAL, 0};
    CHECK(rgft_labels_contradict(&bad, &r3) == 0);  /* 3 lies in bad {1,2,3}: overlap */
    CHECK(rgft_labels_contradict(&bad, &r4) == 1);  /* {1,2,3} below {4} */
    CHECK(rgft_labels_contradict(&r3, &bad) == 0);
    CHECK(rgft_labels_contradict(&r3, &r4) == 1);   /* ratings: strictly lower */
    CHECK(rgft_labels_contradict(&r4, &r4) == 0);
    CHECK(rgft_labels_contradict(&normal, &r6) == 0); /* 6 lies in normal: overlap (was skipped by centre) */
    CHECK(rgft_labels_contradict(&r6, &good) == 1);   /* {6} below {7,8,9} */
    CHECK(rgft_labels_contradict(&good, &r8) == 0); /* equal centres: not a contradiction */
    CHECK(rgft_labels_contradict(&none, &good) == 0);
    CHECK(rgft_labels_contradict(&bad, &none) == 0);
}

static void test_rgft_hand_values(void) {
    OprmError err;
    RgftConfig cfg = rgft_default_config();
    double zero[K] = {0}, w[K], loss;
    /* Uniform chosen labelled good, uniform rejected unlabelled:
     * P_w = sum_{i>j} w_c(i)/9 * 1/9 = (1/81) sum_i w_c(i) (i-1)
     *     = (1/81)[0.01(0+1+2+3+4) + (1/3)5 + (2/3)6 + 1*7 + (2/3)8] = (1/81)(0.1 + 5/3 + 4 + 7 + 16/3)
     *     = 18.1/81, loss = -log(18.1/81). */
    OprmLabel good = {OPRM_LABEL_GOOD, 0}, bad = {OPRM_LABEL_BAD, 0};
    CHECK(rgft_landscape(&good, &cfg, w, &err) == 0);
    CHECK(rgft_pair_loss(zero, w, zero, ONES, &loss, NULL, NULL, &err) == 0);
    CHECK_NEAR(loss, -log(18.1 / 81), 1e-14, 0);
    /* Point-wise, uniform p, label bad: w = (2/3, 1, 2/3, 1/3, 0.01 x 5),
     * sum w p = (8/3 + 0.05)/9, loss = -log((8/3 + 0.05)/9).
     * grad(m) = p(m) - w(m)p(m)/sum = 1/9 - w(m)/(8/3 + 0.05). */
    CHECK(rgft_landscape(&bad, &cfg, w, &err) == 0);
    double g[K];
    CHECK(rgft_point_loss(zero, w, &loss, g, &err) == 0);
    CHECK_NEAR(loss, -log((8.0 / 3 + 0.05) / 9), 1e-14, 0);
    double wb[K] = {2.0 / 3, 1, 2.0 / 3, 1.0 / 3, 0.01, 0.01, 0.01, 0.01, 0.01};
    for (int k = 0; k < K; k++) CHECK_NEAR(g[k], 1.0 / 9 - wb[k] / (8.0 / 3 + 0.05), 1e-15, 0);
    /* Point-wise with w == 1 is -log 1 = 0 with zero gradient. */
    CHECK(rgft_point_loss(zero, ONES, &loss, g, &err) == 0);
    CHECK(fabs(loss) < 1e-15);
    for (int k = 0; k < K; k++) CHECK(fabs(g[k]) < 1e-15);
}

static void test_rgft_gradients(void) {
    TestRng rng = {4242};
    OprmError err;
    RgftConfig tri = rgft_default_config();
    RgftConfig hard = {RGFT_HARD, 3.0, 0.01};
    RgftConfig narrow = {RGFT_TRIANGLE, 1.5, 0.001};
    const RgftConfig *cfgs[3] = {&tri, &hard, &narrow};
    const char *labels[] = {"", "good", "normal", "bad", "1", "4", "9"};
    int n_labels = (int)(sizeof labels / sizeof labels[0]);
    int checked = 0;
    for (int ci = 0; ci < 3; ci++) {
        for (int lc = 0; lc < n_labels; lc++) {
            for (int lr = 0; lr < n_labels; lr += 2) {
                OprmLabel a, b;
                CHECK(rgft_parse_label(labels[lc], &a, &err) == 0);
                CHECK(rgft_parse_label(labels[lr], &b, &err) == 0);
                double wc[K], wr[K];
                CHECK(rgft_landscape(&a, cfgs[ci], wc, &err) == 0);
                CHECK(rgft_landscape(&b, cfgs[ci], wr, &err) == 0);
                int fam = (ci * n_labels + lc + lr) % FAM_COUNT;
                double zc[K], zr[K];
                make_logits(fam, &rng, zc);
                make_logits((fam + 1) % FAM_COUNT, &rng, zr);
                double e = pair_grad_error(zc, wc, zr, wr);
                if (!(e < GRAD_TOL))
                    fprintf(stderr, "rgft pair gradient cfg=%d labels=%s/%s fam=%s: rel err %.3g\n", ci, labels[lc],
                            labels[lr], FAM_NAME[fam], e);
                CHECK(e < GRAD_TOL);
                /* Point-wise loss on the chosen side, every family. */
                for (int f = 0; f < FAM_COUNT; f++) {
                    double z[K];
                    make_logits(f, &rng, z);
                    if (a.kind == OPRM_LABEL_NONE) continue; /* loss and gradient are identically 0 */
                    double ep = point_grad_error(z, wc);
                    if (!(ep < GRAD_TOL))
                        fprintf(stderr, "rgft point gradient label=%s fam=%s: rel err %.3g\n", labels[lc], FAM_NAME[f], ep);
                    CHECK(ep < GRAD_TOL);
                    checked++;
                }
            }
        }
    }
    CHECK(checked > 100);
    /* Most gradient checks are real FD comparisons, not limit checks. */
    fprintf(stderr, "gradient checks: %d against FD (worst relative error %.2e), %d of the zero limit\n",
            n_fd_checks, worst_fd_error, n_limit_checks);
    CHECK(n_fd_checks > 5 * n_limit_checks);

    /* Extreme point-wise case with a known answer: logits +-1e4, mass split 1/2-1/2 between
     * levels 1 and 8, label good (w(1) = 0.01, w(8) = 1): sum w p = 0.505, loss = -log 0.505,
     * grad(1) = 0.5 - 0.005/0.505, grad(8) = 0.5 - 0.5/0.505. */
    double z[K], w[K], loss, g[K];
    for (int k = 0; k < K; k++) z[k] = -1e4;
    z[0] = z[7] = 1e4;
    OprmLabel good = {OPRM_LABEL_GOOD, 0};
    CHECK(rgft_landscape(&good, &tri, w, &err) == 0);
    CHECK(rgft_point_loss(z, w, &loss, g, &err) == 0);
    CHECK_NEAR(loss, -log(0.505), 1e-15, 0);
    CHECK_NEAR(g[0], 0.5 - 0.005 / 0.505, 1e-15, 0);
    CHECK_NEAR(g[7], 0.5 - 0.5 / 0.505, 1e-15, 0);
    CHECK(point_grad_error(z, w) < GRAD_TOL);
}

int main(void) {
    RUN(test_dist_basics);
    RUN(test_hand_values);
    RUN(test_identities);
    RUN(test_pair_gradients);
    RUN(test_wrong_pair_extreme);
    RUN(test_nonfinite);
    RUN(test_labels_and_landscape);
    RUN(test_rgft_hand_values);
    RUN(test_rgft_gradients);
    return test_summary();
}
