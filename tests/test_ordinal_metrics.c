/* Tests of score statistics, bimodality, benchmark metrics, Best-of-N and
 * Bradley-Terry (spec §4, §5). */
#include <math.h>
#include <string.h>

#include "ordinal/metrics.h"
#include "ordinal/ordinal.h"
#include "ordinal_testutil.h"
#include "test.h"

#define K OPRM_LEVELS

/* Distribution whose p equals the given probabilities (logits = log p; 0 -> -1e4). */
static OrdinalDist dist_of(const double p[K]) {
    double z[K];
    for (int k = 0; k < K; k++) z[k] = p[k] > 0 ? log(p[k]) : -1e4;
    OrdinalDist d;
    OprmError err;
    if (ordinal_dist_from_logits(z, &d, &err) != 0) memset(&d, 0, sizeof d);
    return d;
}

static void random_dist(TestRng *rng, double scale, OrdinalDist *d) {
    double z[K];
    for (int k = 0; k < K; k++) z[k] = scale * rng_normal(rng);
    OprmError err;
    if (ordinal_dist_from_logits(z, d, &err) != 0) memset(d, 0, sizeof *d);
}

static void test_stats(void) {
    ScoreStats s;
    /* Uniform: mu = 5, sigma^2 = (9^2 - 1)/12 = 20/3, entropy log 9, mode 1 (lowest of ties).
     * Bimodality: only level 9 is a peak (1/9 >= 0.1, >= left, > the edge), so 0. */
    double u[K];
    for (int k = 0; k < K; k++) u[k] = 1.0 / 9;
    OrdinalDist d = dist_of(u);
    ordinal_stats(&d, &s);
    CHECK_NEAR(s.mean, 5.0, 1e-14, 0);
    CHECK_NEAR(s.var, 20.0 / 3, 1e-13, 0);
    CHECK_NEAR(s.std, sqrt(20.0 / 3), 1e-13, 0);
    CHECK_NEAR(s.entropy, log(9.0), 1e-14, 0);
    CHECK(s.mode == 1);
    CHECK(s.bimodality == 0.0 && s.bimodal == 0);

    /* Two levels: p(2) = 1/4, p(6) = 3/4. mu = 2/4 + 18/4 = 5; sigma^2 = (1/4)9 + (3/4)1 = 3;
     * entropy = -(1/4 log 1/4 + 3/4 log 3/4); mode 6; peaks at 2 and 6 with zeros between:
     * bimodality = min(1/4, 3/4) - 0 = 1/4 -> bimodal. */
    double two[K] = {0, 0.25, 0, 0, 0, 0.75, 0, 0, 0};
    d = dist_of(two);
    ordinal_stats(&d, &s);
    CHECK_NEAR(s.mean, 5.0, 1e-14, 0);
    CHECK_NEAR(s.var, 3.0, 1e-13, 0);
    CHECK_NEAR(s.entropy, -(0.25 * log(0.25) + 0.75 * log(0.75)), 1e-14, 0);
    CHECK(s.mode == 6);
    CHECK_NEAR(s.bimodality, 0.25, 1e-14, 0);
    CHECK(s.bimodal == 1);

    /* Point mass on 9 (logits +-1e4): mu = 9, sigma = 0, entropy 0. */
    double z[K];
    for (int k = 0; k < K; k++) z[k] = -1e4;
    z[8] = 1e4;
    OprmError err;
    CHECK(ordinal_dist_from_logits(z, &d, &err) == 0);
    ordinal_stats(&d, &s);
    CHECK(s.mean == 9.0 && s.var == 0.0 && s.std == 0.0 && s.mode == 9);
    CHECK(fabs(s.entropy) < 1e-300);

    /* Against a direct computation on random distributions: var = E[k^2] - mu^2. */
    TestRng rng = {99};
    for (int t = 0; t < 50; t++) {
        random_dist(&rng, 1.5, &d);
        ordinal_stats(&d, &s);
        double m1 = 0, m2 = 0;
        for (int k = 1; k <= K; k++) {
            m1 += k * d.p[k - 1];
            m2 += (double)k * k * d.p[k - 1];
        }
        CHECK_NEAR(s.mean, m1, 1e-14, 1e-14);
        CHECK_NEAR(s.var, m2 - m1 * m1, 1e-12, 0);
        CHECK(s.bimodal == (s.bimodality >= 0.05));
    }
}

static void test_bimodality(void) {
    /* Unimodal bell: one peak (level 5) -> 0. */
    double bell[K] = {0.02, 0.05, 0.1, 0.2, 0.26, 0.2, 0.1, 0.05, 0.02};
    CHECK(ordinal_bimodality(bell) == 0.0);
    /* Monotone increasing: only level 9 is a peak -> 0. */
    double inc[K] = {0.01, 0.02, 0.03, 0.05, 0.09, 0.1, 0.15, 0.25, 0.3};
    CHECK(ordinal_bimodality(inc) == 0.0);
    /* A second local maximum below 0.1 is not a peak: level 4 (0.09) -> 0. */
    double small[K] = {0.5, 0.09, 0.08, 0.09, 0.08, 0.08, 0.08, 0.0, 0.0};
    CHECK(ordinal_bimodality(small) == 0.0);
    /* Two peaks: level 1 (0.3, left edge lower, > 0.1) and level 6 (0.2 >= 0.1, > 0.15);
     * lowest level strictly between: min(0.1, 0.05, 0.05, 0.1) = 0.05;
     * bimodality = min(0.3, 0.2) - 0.05 = 0.15. */
    double two[K] = {0.3, 0.1, 0.05, 0.05, 0.1, 0.2, 0.15, 0.04, 0.01};
    CHECK_NEAR(ordinal_bimodality(two), 0.15, 1e-15, 0);
    OrdinalDist d = dist_of(two);
    ScoreStats s;
    ordinal_stats(&d, &s);
    CHECK_NEAR(s.bimodality, 0.15, 1e-14, 0);
    CHECK(s.bimodal == 1);
    /* Peaks at both edges: level 1 (0.4) and level 9 (0.3, right edge lower); valley 0:
     * 0.3 - 0 = 0.3. */
    double edges[K] = {0.4, 0.1, 0.05, 0.05, 0.0, 0.0, 0.05, 0.05, 0.3};
    CHECK_NEAR(ordinal_bimodality(edges), 0.3, 1e-15, 0);
    /* Three peaks (1: 0.25, 3: 0.2, 6: 0.3): the two highest are 6 and 1; the valley between
     * them is min(0.05, 0.2, 0.05, 0.05) = 0.05 -> min(0.25, 0.3) - 0.05 = 0.2. */
    double three[K] = {0.25, 0.05, 0.2, 0.05, 0.05, 0.3, 0.05, 0.05, 0.0};
    CHECK_NEAR(ordinal_bimodality(three), 0.2, 1e-15, 0);
    /* Plateaus: levels 1-2 at 0.3 give one peak at level 2 (level 1 is not > its right
     * neighbour); levels 7-8 at 0.1 give one peak at level 8. Valley min over 3..7 = 0.05:
     * min(0.3, 0.1) - 0.05 = 0.05 (exactly at the threshold). */
    double plateau[K] = {0.3, 0.3, 0.05, 0.05, 0.05, 0.05, 0.1, 0.1, 0.0};
    CHECK_NEAR(ordinal_bimodality(plateau), 0.05, 1e-15, 0);
    /* A plateau that is the only high region stays unimodal: 0. */
    double flat_top[K] = {0.05, 0.05, 0.2, 0.2, 0.2, 0.2, 0.05, 0.05, 0.0};
    CHECK(ordinal_bimodality(flat_top) == 0.0);
    /* Equal-height peaks rank the lower level first (project choice): peaks 1, 3, 5, 7 all at
     * 0.2 -> a = 1, b = 3, valley p(2) = 0.05 -> 0.15 (choosing 5 and 7 would give 0.2 - 0.1). */
    double ties[K] = {0.2, 0.05, 0.2, 0.05, 0.2, 0.1, 0.2, 0.0, 0.0};
    CHECK_NEAR(ordinal_bimodality(ties), 0.15, 1e-15, 0);
    /* Peak at level 9 and an interior one: 4 (0.35) and 9 (0.2), valley min(0.1,0.05,0.05,0.1) =
     * 0.05 -> 0.15. Below-threshold example: peaks 0.12 and 0.5 with valley 0.09 -> 0.03. */
    double right[K] = {0.05, 0.05, 0.1, 0.35, 0.1, 0.05, 0.05, 0.05, 0.2};
    CHECK_NEAR(ordinal_bimodality(right), 0.15, 1e-15, 0);
    double weak[K] = {0.5, 0.09, 0.09, 0.12, 0.1, 0.1, 0.0, 0.0, 0.0};
    CHECK_NEAR(ordinal_bimodality(weak), 0.03, 1e-15, 0);
    d = dist_of(weak);
    ordinal_stats(&d, &s);
    CHECK(s.bimodal == 0);
}

static void test_accuracy_and_ece(void) {
    OprmError err;
    double acc = -1;
    /* Pairs: 5>4 right, 6=6 tie (wrong), 4<5 wrong, 7>3 right -> 2/4. */
    double mc[4] = {5, 6, 4, 7}, mr[4] = {4, 6, 5, 3};
    CHECK(metric_accuracy_by_mean(mc, mr, 4, &acc, &err) == 0);
    CHECK(acc == 0.5);
    double pw[3] = {0.6, 0.4, 0.3}, pl[3] = {0.3, 0.4, 0.5};
    CHECK(metric_accuracy_by_prob(pw, pl, 3, &acc, &err) == 0);
    CHECK_NEAR(acc, 1.0 / 3, 1e-15, 0);
    CHECK(metric_accuracy_by_mean(mc, mr, 0, &acc, &err) == -1);
    double bad[2] = {1, NAN};
    CHECK(metric_accuracy_by_mean(mc, bad, 2, &acc, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "mean_rejected[1]");

    /* Generic ECE, 10 bins: confidences 0.05 -> bin 0, 0.15 -> bin 1, 0.95 and 1.0 -> bin 9.
     * bin 0: |0.05 - 0| = 0.05 (1 sample); bin 1: |0.15 - 1| = 0.85 (1);
     * bin 9: |0.975 - 1| = 0.025 (2). ECE = (0.05 + 0.85 + 2*0.025)/4 = 0.95/4 = 0.2375. */
    double conf[4] = {0.05, 0.15, 0.95, 1.0}, out[4] = {0, 1, 1, 1};
    double ece = -1;
    CHECK(metric_ece(conf, out, 4, 10, &ece, &err) == 0);
    CHECK_NEAR(ece, 0.2375, 1e-15, 0);
    /* Bin edges: 0.1 belongs to bin 1 = [0.1, 0.2) together with 0.19:
     * |mean(0.1, 0.19) - mean(1, 0)| = |0.145 - 0.5| = 0.355 (0.545 if 0.1 fell in bin 0). */
    double c2[2] = {0.1, 0.19}, o2[2] = {1, 0};
    CHECK(metric_ece(c2, o2, 2, 10, &ece, &err) == 0);
    CHECK_NEAR(ece, 0.355, 1e-15, 0);
    double c3[1] = {1.5};
    CHECK(metric_ece(c3, o2, 1, 10, &ece, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "confidence[0]");

    /* Pair ECE: outcome 1 for every pair; P(c>r) = 0.9, 0.6, 0.3 land in bins 9, 6, 3:
     * (0.1 + 0.4 + 0.7)/3 = 0.4 = 1 - mean P(c>r). */
    double pwin[3] = {0.9, 0.6, 0.3};
    CHECK(metric_pair_ece(pwin, 3, &ece, &err) == 0);
    CHECK_NEAR(ece, 0.4, 1e-15, 0);
    /* Symmetric: samples (0.9,1), (0.05,0), (0.6,1), (0.3,0) in bins 9, 0, 6, 3:
     * (0.1 + 0.05 + 0.4 + 0.3)/4 = 0.2125. */
    double sw[2] = {0.9, 0.6}, sl[2] = {0.05, 0.3};
    CHECK(metric_pair_ece_symmetric(sw, sl, 2, &ece, &err) == 0);
    CHECK_NEAR(ece, 0.2125, 1e-15, 0);
    /* Two pairs sharing a bin pool their averages: (0.65,1),(0.35,0),(0.62,1),(0.33,0) ->
     * bin 6: |0.635 - 1| = 0.365 x2, bin 3: |0.34 - 0| = 0.34 x2 -> (0.73 + 0.68)/4 = 0.3525. */
    double sw2[2] = {0.65, 0.62}, sl2[2] = {0.35, 0.33};
    CHECK(metric_pair_ece_symmetric(sw2, sl2, 2, &ece, &err) == 0);
    CHECK_NEAR(ece, 0.3525, 1e-15, 0);

    /* Audit: 0.3 + max(0.1, 0.2) = 0.5. */
    CHECK_NEAR(audit_suspicion(0.3, 0.1, 0.2), 0.5, 1e-15, 0);
    CHECK_NEAR(audit_suspicion(0.3, 0.25, 0.0), 0.55, 1e-15, 0);
}

static void test_bon_choose(void) {
    OprmError err;
    size_t best = 99;
    double mean[3] = {5, 6, 6}, std[3] = {0, 2, 0.5};
    /* lambda 0: 5, 6, 6 -> tie between 1 and 2 -> lowest index 1. */
    CHECK(bon_choose(mean, std, 3, 0.0, &best, &err) == 0 && best == 1);
    /* lambda 1: 5, 4, 5.5 -> 2. lambda 10: 5, -14, 1 -> 0. */
    CHECK(bon_choose(mean, std, 3, 1.0, &best, &err) == 0 && best == 2);
    CHECK(bon_choose(mean, std, 3, 10.0, &best, &err) == 0 && best == 0);
    CHECK(bon_choose(mean, std, 3, -1.0, &best, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "lambda");
    CHECK(bon_choose(mean, std, 0, 0.0, &best, &err) == -1);
}

/* Brute force over all 9^n outcomes: P(i strictly best) and P(tie at the top). */
static void brute_best(const OrdinalDist *d, int n, double *p_best, double *p_tie) {
    int idx[8] = {0};
    for (int i = 0; i < n; i++) p_best[i] = 0.0;
    *p_tie = 0.0;
    for (;;) {
        double prob = 1.0;
        int top = -1, count = 0, who = -1;
        for (int i = 0; i < n; i++) {
            prob *= d[i].p[idx[i]];
            if (idx[i] > top) {
                top = idx[i];
                count = 1;
                who = i;
            } else if (idx[i] == top) {
                count++;
            }
        }
        if (count == 1) p_best[who] += prob;
        else *p_tie += prob;
        int j = 0;
        while (j < n && ++idx[j] == K) idx[j++] = 0;
        if (j == n) break;
    }
}

static void test_bon_prob_best(void) {
    OprmError err;
    /* Hand: two uniform candidates: P(1 best) = P(2 best) = 36/81, P(tie at top) = 9/81. */
    double u[K];
    for (int k = 0; k < K; k++) u[k] = 1.0 / 9;
    OrdinalDist two[2] = {dist_of(u), dist_of(u)};
    double pb[8], tie;
    CHECK(bon_prob_best(two, 2, pb, &tie, &err) == 0);
    CHECK_NEAR(pb[0], 36.0 / 81, 1e-15, 0);
    CHECK_NEAR(pb[1], 36.0 / 81, 1e-15, 0);
    CHECK_NEAR(tie, 9.0 / 81, 1e-15, 0);
    /* Hand: A = {2: 1/4, 6: 3/4}, B = {4: 1/2, 6: 1/2}, C = point mass on 1.
     * A best: A=6 and B=4 -> 3/4 * 1/2 = 3/8. B best: B=4 needs A<4 (A=2): 1/2 * 1/4 = 1/8;
     * B=6 needs A<6: 1/2 * 1/4 = 1/8 -> 1/4. C never best. Tie at top: A=B=6 -> 3/8.
     * 3/8 + 1/4 + 0 + 3/8 = 1. */
    double pa[K] = {0, 0.25, 0, 0, 0, 0.75, 0, 0, 0}, pbb[K] = {0, 0, 0, 0.5, 0, 0.5, 0, 0, 0};
    double pc[K] = {1, 0, 0, 0, 0, 0, 0, 0, 0};
    OrdinalDist abc[3] = {dist_of(pa), dist_of(pbb), dist_of(pc)};
    CHECK(bon_prob_best(abc, 3, pb, &tie, &err) == 0);
    CHECK_NEAR(pb[0], 3.0 / 8, 1e-15, 0);
    CHECK_NEAR(pb[1], 1.0 / 4, 1e-15, 0);
    CHECK(fabs(pb[2]) < 1e-300);
    CHECK_NEAR(tie, 3.0 / 8, 1e-15, 0);
    /* A single candidate is always strictly best. */
    CHECK(bon_prob_best(abc, 1, pb, &tie, &err) == 0);
    CHECK_NEAR(pb[0], 1.0, 1e-15, 0);
    CHECK(fabs(tie) < 1e-15);
    CHECK(bon_prob_best(abc, 0, pb, &tie, &err) == -1);

    /* Exact agreement with brute-force enumeration, and the identity sum = 1 - P(tie). */
    TestRng rng = {2024};
    for (int t = 0; t < 20; t++) {
        int n = 2 + t % 3; /* 2..4 candidates: at most 9^4 outcomes */
        OrdinalDist d[4];
        for (int i = 0; i < n; i++) random_dist(&rng, t % 2 ? 3.0 : 0.7, &d[i]);
        double ref[4], ref_tie;
        brute_best(d, n, ref, &ref_tie);
        CHECK(bon_prob_best(d, (size_t)n, pb, &tie, &err) == 0);
        double sum = 0.0;
        for (int i = 0; i < n; i++) {
            CHECK_NEAR(pb[i], ref[i], 1e-14, 1e-12);
            sum += pb[i];
        }
        CHECK_NEAR(tie, ref_tie, 1e-14, 1e-12);
        CHECK_NEAR(sum, 1.0 - tie, 1e-14, 0);
    }
}

/* Level drawn from d by inverting its CDF. */
static int sample_level(const OrdinalDist *d, TestRng *rng) {
    double u = rng_uniform(rng);
    for (int k = 0; k < K - 1; k++)
        if (u < d->cdf[k]) return k;
    return K - 1;
}

static void test_bon_monte_carlo(void) {
    OprmError err;
    TestRng rng = {31337};
    enum { N = 5, SAMPLES = 200000 };
    OrdinalDist d[N];
    for (int i = 0; i < N; i++) random_dist(&rng, 1.0 + 0.5 * i, &d[i]);
    double pb[N], tie;
    CHECK(bon_prob_best(d, N, pb, &tie, &err) == 0);
    long wins[N] = {0}, ties = 0;
    for (int s = 0; s < SAMPLES; s++) {
        int top = -1, count = 0, who = -1;
        for (int i = 0; i < N; i++) {
            int l = sample_level(&d[i], &rng);
            if (l > top) {
                top = l;
                count = 1;
                who = i;
            } else if (l == top) {
                count++;
            }
        }
        if (count == 1) wins[who]++;
        else ties++;
    }
    /* Each exact probability lies within 3 standard errors sqrt(p(1-p)/n) of its estimate. */
    for (int i = 0; i < N; i++) {
        double se = sqrt(pb[i] * (1 - pb[i]) / SAMPLES);
        CHECK(fabs((double)wins[i] / SAMPLES - pb[i]) <= 3 * se);
    }
    double se_tie = sqrt(tie * (1 - tie) / SAMPLES);
    CHECK(fabs((double)ties / SAMPLES - tie) <= 3 * se_tie);
    CHECK(tie > 0.01); /* the configuration really has ties, so the check means something */
}

static double bt_loss_at(const double *x, void *ctx) {
    double loss = NAN;
    OprmError err;
    return bt_loss(x[0], x[1], &loss, NULL, NULL, &err) == 0 ? loss : NAN;
}

static void test_bradley_terry(void) {
    OprmError err;
    double loss, gc, gr;
    /* Equal rewards: -log sigmoid(0) = log 2; gradients -1/2 and +1/2. */
    CHECK(bt_loss(1.5, 1.5, &loss, &gc, &gr, &err) == 0);
    CHECK_NEAR(loss, log(2.0), 1e-15, 0);
    CHECK_NEAR(gc, -0.5, 1e-15, 0);
    CHECK_NEAR(gr, 0.5, 1e-15, 0);
    /* Margin log 3: sigmoid = 3/4, loss = log(4/3), dL/dr_c = -(1 - 3/4) = -1/4. */
    CHECK(bt_loss(log(3.0), 0.0, &loss, &gc, &gr, &err) == 0);
    CHECK_NEAR(loss, log(4.0 / 3), 1e-15, 0);
    CHECK_NEAR(gc, -0.25, 1e-15, 0);
    CHECK_NEAR(gr, 0.25, 1e-15, 0);
    /* Extremes: margin -1e4 -> loss 1e4 (finite), gradients -1/+1; margin +1e4 -> 0, 0. */
    CHECK(bt_loss(-5e3, 5e3, &loss, &gc, &gr, &err) == 0);
    CHECK(loss == 1e4 && gc == -1.0 && gr == 1.0);
    CHECK(bt_loss(5e3, -5e3, &loss, &gc, &gr, &err) == 0);
    CHECK(loss == 0.0 && gc == 0.0 && gr == 0.0);
    /* Overflowing margin stays finite. */
    CHECK(bt_loss(-1e308, 1e308, &loss, &gc, &gr, &err) == 0);
    CHECK(loss == 1e300); /* margin clamped to -1e300 */
    CHECK(isfinite(gc) && isfinite(gr));
    /* Non-finite rewards are errors. */
    CHECK(bt_loss(NAN, 0.0, &loss, &gc, &gr, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "chosen");
    CHECK(bt_loss(0.0, INFINITY, &loss, &gc, &gr, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "rejected");
    /* Gradient vs finite differences over a range of margins, including |d| = 30. */
    TestRng rng = {5};
    double worst = 0.0;
    for (int t = 0; t < 40; t++) {
        double x[2] = {3 * rng_normal(&rng), 3 * rng_normal(&rng)};
        if (t == 0) x[0] = 30.0, x[1] = 0.0;
        if (t == 1) x[0] = -30.0, x[1] = 0.0;
        double g[2], fd[2];
        CHECK(bt_loss(x[0], x[1], &loss, &g[0], &g[1], &err) == 0);
        fd_gradient(bt_loss_at, NULL, x, 2, 1e-3, fd);
        double e = grad_rel_error(g, fd, 2);
        if (!(e <= worst)) worst = e;
    }
    CHECK(worst < 1e-6);
}

int main(void) {
    RUN(test_stats);
    RUN(test_bimodality);
    RUN(test_accuracy_and_ece);
    RUN(test_bon_choose);
    RUN(test_bon_prob_best);
    RUN(test_bon_monte_carlo);
    RUN(test_bradley_terry);
    return test_summary();
}
