/* Issue 12, item 1: every probability the ordinal code returns stays in
 * [0, 1], also for distributions that are exactly one-hot, one-hot up to
 * rounding, or uniform, and the eval/audit/Best-of-N arithmetic on top of
 * them gives numbers instead of failing. The nearly one-hot cases sweep the
 * gap between the top two logits over [20, 45] (where the second level's
 * probability is 2e-9 .. 3e-20 and rounding decides whether sums pass 1). */
#include <stdlib.h>
#include <string.h>

#include "eval/audit.h"
#include "eval/bon.h"
#include "eval/eval_pairs.h"
#include "ordinal/metrics.h"
#include "ordinal/ordinal.h"
#include "test.h"

static int in_unit(double x) {
    return x >= 0.0 && x <= 1.0;
}

/* Logits with level `top` at 0, level `second` at -gap, the rest at -1e4. */
static void peaked(int top, int second, double gap, double z[9]) {
    for (int k = 0; k < 9; k++) z[k] = -1e4;
    z[top - 1] = 0.0;
    if (second) z[second - 1] = -gap;
}

static ScoreResult result_of(const OrdinalDist *d) {
    ScoreResult r = {0};
    ScoreStats st;
    ordinal_stats(d, &st);
    memcpy(r.p, d->p, sizeof r.p);
    r.mean = st.mean;
    r.std = st.std;
    r.mode = st.mode;
    r.bimodality = st.bimodality;
    return r;
}

static int dist_in_unit(const OrdinalDist *d) {
    int ok = 1;
    for (int k = 0; k <= 9; k++) ok &= in_unit(ordinal_cdf(d, k)) && in_unit(ordinal_survival(d, k));
    for (int k = 0; k < 9; k++) ok &= in_unit(d->p[k]) && in_unit(d->cdf[k]);
    return ok;
}

static void test_nearly_one_hot_sweep(void) {
    OprmError err = {{0}};
    size_t n = 0, bad_dist = 0, bad_pair = 0, bad_summary = 0, bad_bon = 0, bad_audit = 0;
    double max_win = 0, max_cdf = 0;
    for (double gap = 20.0; gap <= 45.0; gap += 0.001) {
        double zc[9], zr[9];
        peaked(9, 8, gap, zc); /* chosen: almost surely 9 */
        peaked(1, 2, gap, zr); /* rejected: almost surely 1 */
        OrdinalDist c, r;
        if (ordinal_dist_from_logits(zc, &c, &err) || ordinal_dist_from_logits(zr, &r, &err)) {
            bad_dist++;
            continue;
        }
        n++;
        bad_dist += !dist_in_unit(&c) || !dist_in_unit(&r);
        if (c.cdf[8] > max_cdf) max_cdf = c.cdf[8];
        PairProbs pp;
        ordinal_pair_probs(&c, &r, &pp);
        if (pp.win > max_win) max_win = pp.win;
        bad_pair += !in_unit(pp.win) || !in_unit(pp.tie) || !in_unit(pp.loss) || !(pp.log_win <= 0.0);
        /* the scored numbers, as eval/audit/bon get them */
        ScoreResult sr[2] = {result_of(&c), result_of(&r)};
        PairScore ps = pair_score_of(&sr[0], &sr[1]);
        PairSummary s;
        bad_summary += pair_summary(&ps, NULL, 1, &s, &err) != 0 || s.accuracy != 1.0 || !in_unit(s.ece) ||
                       !in_unit(s.ece_symmetric) || !in_unit(s.mean_p_win);
        AuditRow ar = audit_row_of(0, &sr[0], &sr[1]);
        bad_audit += !in_unit(ar.p_win) || !in_unit(ar.p_tie) || !in_unit(ar.p_loss) || !(ar.suspicion >= 0.0);
        BonResult b;
        if (bon_evaluate(sr, 2, 0.5, &b, &err) != 0) {
            bad_bon++;
            continue;
        }
        bad_bon += !in_unit(b.p_best[0]) || !in_unit(b.p_best[1]) || !in_unit(b.p_tie_top) || b.chosen != 0;
        bon_result_free(&b);
    }
    fprintf(stderr, "nearly one-hot: %zu gaps, largest P(c>r) %.17g, largest F(9) %.17g\n", n, max_win, max_cdf);
    CHECK(n == 25001);
    CHECK(bad_dist == 0);
    CHECK(bad_pair == 0);
    CHECK(bad_summary == 0);
    CHECK(bad_audit == 0);
    CHECK(bad_bon == 0);
    CHECK(max_win <= 1.0);
}

/* Exactly one-hot: chosen 9 for sure, rejected 1 for sure. Every number is exact. */
static void test_exactly_one_hot(void) {
    OprmError err = {{0}};
    double zc[9], zr[9];
    peaked(9, 0, 0, zc);
    peaked(1, 0, 0, zr);
    OrdinalDist c, r;
    CHECK(ordinal_dist_from_logits(zc, &c, &err) == 0 && ordinal_dist_from_logits(zr, &r, &err) == 0);
    CHECK(c.p[8] == 1.0 && r.p[0] == 1.0 && c.p[0] == 0.0);
    PairProbs pp;
    ordinal_pair_probs(&c, &r, &pp);
    CHECK(pp.win == 1.0 && pp.tie == 0.0 && pp.loss == 0.0 && pp.log_win == 0.0);
    ScoreResult sr[2] = {result_of(&c), result_of(&r)};
    PairScore ps[2] = {pair_score_of(&sr[0], &sr[1]), pair_score_of(&sr[1], &sr[0])};
    PairSummary s;
    /* pair 0 right with certainty, pair 1 (the flipped order) wrong with certainty:
     * accuracy 1/2; ECE = 1 - mean P(c>r) = 1/2; symmetric: (1,1),(0,0),(0,1),(1,0)
     * -> bin 0: |0 - 1/2| * 2/4, bin 9: |1 - 1/2| * 2/4 -> 1/2. */
    CHECK(pair_summary(ps, NULL, 2, &s, &err) == 0);
    CHECK(s.accuracy == 0.5 && s.accuracy_by_prob == 0.5);
    CHECK_NEAR(s.ece, 0.5, 1e-15, 0);
    CHECK_NEAR(s.ece_symmetric, 0.5, 1e-15, 0);
    CHECK(pair_summary(ps, NULL, 1, &s, &err) == 0 && s.ece == 0.0 && s.mean_p_win == 1.0);
    AuditRow ar = audit_row_of(0, &sr[1], &sr[0]);
    CHECK(ar.p_loss == 1.0 && ar.suspicion == 1.0);
    BonResult b;
    CHECK(bon_evaluate(sr, 2, 0.0, &b, &err) == 0);
    CHECK(b.chosen == 0 && b.p_best[0] == 1.0 && b.p_best[1] == 0.0 && b.p_tie_top == 0.0);
    bon_result_free(&b);
    /* the same level for sure on both sides: a certain tie */
    ScoreResult same[2] = {sr[0], sr[0]};
    PairScore t = pair_score_of(&same[0], &same[1]);
    CHECK(t.p_win == 0.0 && t.p_tie == 1.0 && t.p_loss == 0.0);
    CHECK(pair_summary(&t, NULL, 1, &s, &err) == 0 && s.accuracy == 0.0 && s.ece == 1.0);
    CHECK(bon_evaluate(same, 2, 0.0, &b, &err) == 0);
    CHECK(b.p_best[0] == 0.0 && b.p_best[1] == 0.0 && b.p_tie_top == 1.0);
    bon_result_free(&b);
}

/* Uniform on both sides: P(c>r) = P(r>c) = 36/81 = 4/9, P(tie) = 9/81 = 1/9;
 * by mean a tie (wrong), ECE = 1 - 4/9 = 5/9; symmetric: (4/9, 1), (4/9, 0)
 * in bin 4 -> |4/9 - 1/2| = 1/18. Best-of-N of 3: P(best) = sum_k (1/9)((k-1)/9)^2
 * = (0+1+4+...+64)/729 = 204/729 each; P(tie at top) = 1 - 612/729 = 117/729. */
static void test_uniform(void) {
    OprmError err = {{0}};
    double z[9] = {0};
    OrdinalDist d;
    CHECK(ordinal_dist_from_logits(z, &d, &err) == 0);
    CHECK(dist_in_unit(&d));
    CHECK(ordinal_cdf(&d, 9) == 1.0 && ordinal_survival(&d, 0) == 1.0);
    PairProbs pp;
    ordinal_pair_probs(&d, &d, &pp);
    CHECK_NEAR(pp.win, 4.0 / 9, 1e-15, 0);
    CHECK_NEAR(pp.tie, 1.0 / 9, 1e-15, 0);
    CHECK_NEAR(pp.loss, 4.0 / 9, 1e-15, 0);
    CHECK_NEAR(pp.log_win, log(4.0 / 9), 1e-14, 0);
    ScoreResult sr[3] = {result_of(&d), result_of(&d), result_of(&d)};
    PairScore ps = pair_score_of(&sr[0], &sr[1]);
    PairSummary s;
    CHECK(pair_summary(&ps, NULL, 1, &s, &err) == 0);
    CHECK(s.accuracy == 0.0 && s.accuracy_by_prob == 0.0);
    CHECK_NEAR(s.ece, 5.0 / 9, 1e-15, 0);
    CHECK_NEAR(s.ece_symmetric, 1.0 / 18, 1e-15, 0);
    AuditRow ar = audit_row_of(0, &sr[0], &sr[1]);
    CHECK_NEAR(ar.suspicion, 4.0 / 9, 1e-15, 0); /* uniform is not bimodal */
    BonResult b;
    CHECK(bon_evaluate(sr, 3, 1.0, &b, &err) == 0);
    for (int i = 0; i < 3; i++) CHECK_NEAR(b.p_best[i], 204.0 / 729, 1e-15, 0);
    CHECK_NEAR(b.p_tie_top, 117.0 / 729, 1e-15, 0);
    CHECK(b.chosen == 0);
    bon_result_free(&b);
}

/* Probabilities whose sum passes 1 by rounding (as a float->double copy of a
 * softmax gives): every returned probability is still in [0, 1]. */
static void test_sums_past_one(void) {
    OprmError err = {{0}};
    ScoreResult c = {0}, r = {0};
    c.p[8] = 1.0;
    c.p[7] = 3e-16;
    c.mean = 9;
    r.p[0] = 1.0;
    r.p[1] = 3e-16;
    r.mean = 1;
    PairScore ps = pair_score_of(&c, &r);
    CHECK(in_unit(ps.p_win) && in_unit(ps.p_tie) && in_unit(ps.p_loss));
    PairSummary s;
    CHECK(pair_summary(&ps, NULL, 1, &s, &err) == 0);
    CHECK(s.n == 1 && s.accuracy == 1.0 && in_unit(s.ece));
    ScoreResult set[2] = {c, r};
    BonResult b;
    CHECK(bon_evaluate(set, 2, 0.0, &b, &err) == 0);
    CHECK(in_unit(b.p_best[0]) && in_unit(b.p_best[1]) && in_unit(b.p_tie_top));
    bon_result_free(&b);
}

/* A metric that cannot be computed is an error with a message. */
static void test_metric_errors(void) {
    OprmError err = {{0}};
    PairSummary s;
    PairScore bad = {9, 1, NAN, 0, 0, 0};
    CHECK(pair_summary(&bad, NULL, 1, &s, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "not finite");
    double conf[1] = {1.5}, out[1] = {1};
    double e;
    CHECK(metric_ece(conf, out, 1, 10, &e, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "outside [0, 1]");
}

int main(void) {
    RUN(test_nearly_one_hot_sweep);
    RUN(test_exactly_one_hot);
    RUN(test_uniform);
    RUN(test_sums_past_one);
    RUN(test_metric_errors);
    return test_summary();
}
