#include "ordinal/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "util/err.h"

#define K OPRM_LEVELS

static int check_finite_array(const double *x, size_t n, const char *what, OprmError *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return oprm_fail(err, "metrics: %s[%zu] is %g (not finite)", what, i, x[i]);
    return 0;
}

/* Fraction of i with a[i] > b[i] strictly. */
static int fraction_greater(const double *a, const double *b, size_t n, const char *name_a,
                            const char *name_b, double *acc, OprmError *err) {
    if (n == 0) return oprm_fail(err, "metrics: accuracy of zero pairs");
    if (check_finite_array(a, n, name_a, err) || check_finite_array(b, n, name_b, err)) return -1;
    size_t right = 0;
    for (size_t i = 0; i < n; i++) right += a[i] > b[i];
    *acc = (double)right / (double)n;
    return 0;
}

int metric_accuracy_by_mean(const double *mean_c, const double *mean_r, size_t n, double *acc,
                            OprmError *err) {
    return fraction_greater(mean_c, mean_r, n, "mean_chosen", "mean_rejected", acc, err);
}

int metric_accuracy_by_prob(const double *p_win, const double *p_loss, size_t n, double *acc,
                            OprmError *err) {
    return fraction_greater(p_win, p_loss, n, "p_chosen_better", "p_rejected_better", acc, err);
}

int metric_ece(const double *confidence, const double *outcome, size_t n, int bins, double *ece,
               OprmError *err) {
    if (n == 0) return oprm_fail(err, "metrics: ECE of zero samples");
    if (bins < 1) return oprm_fail(err, "metrics: ECE needs at least one bin, got %d", bins);
    for (size_t i = 0; i < n; i++) {
        if (!(confidence[i] >= 0.0 && confidence[i] <= 1.0))
            return oprm_fail(err, "metrics: confidence[%zu] = %g is outside [0, 1]", i, confidence[i]);
        if (!(outcome[i] >= 0.0 && outcome[i] <= 1.0))
            return oprm_fail(err, "metrics: outcome[%zu] = %g is outside [0, 1]", i, outcome[i]);
    }
    double *sum_conf = xcalloc((size_t)bins, sizeof *sum_conf);
    double *sum_out = xcalloc((size_t)bins, sizeof *sum_out);
    size_t *count = xcalloc((size_t)bins, sizeof *count);
    for (size_t i = 0; i < n; i++) {
        int b = (int)(confidence[i] * bins); /* [b/B, (b+1)/B); 1.0 goes to the last bin */
        if (b >= bins) b = bins - 1;
        sum_conf[b] += confidence[i];
        sum_out[b] += outcome[i];
        count[b]++;
    }
    double total = 0.0;
    for (int b = 0; b < bins; b++)
        if (count[b]) total += fabs(sum_conf[b] - sum_out[b]); /* = n_b |mean conf - mean outcome| */
    *ece = total / (double)n;
    free(sum_conf);
    free(sum_out);
    free(count);
    return 0;
}

int metric_pair_ece(const double *p_win, size_t n, double *ece, OprmError *err) {
    if (n == 0) return oprm_fail(err, "metrics: ECE of zero pairs");
    double *ones = xmalloc(n * sizeof *ones);
    for (size_t i = 0; i < n; i++) ones[i] = 1.0;
    int rc = metric_ece(p_win, ones, n, OPRM_ECE_BINS, ece, err);
    free(ones);
    return rc;
}

int metric_pair_ece_symmetric(const double *p_win, const double *p_loss, size_t n, double *ece,
                              OprmError *err) {
    if (n == 0) return oprm_fail(err, "metrics: ECE of zero pairs");
    double *conf = xmalloc(2 * n * sizeof *conf);
    double *out = xmalloc(2 * n * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        conf[2 * i] = p_win[i];
        out[2 * i] = 1.0;
        conf[2 * i + 1] = p_loss[i];
        out[2 * i + 1] = 0.0;
    }
    int rc = metric_ece(conf, out, 2 * n, OPRM_ECE_BINS, ece, err);
    free(conf);
    free(out);
    return rc;
}

double audit_suspicion(double p_loss, double bimodality_c, double bimodality_r) {
    return p_loss + (bimodality_c > bimodality_r ? bimodality_c : bimodality_r);
}

int bon_choose(const double *mean, const double *std, size_t n, double lambda, size_t *best,
               OprmError *err) {
    if (n == 0) return oprm_fail(err, "best-of-n: no candidates");
    if (!(lambda >= 0.0) || !isfinite(lambda))
        return oprm_fail(err, "best-of-n: lambda %g must be finite and >= 0", lambda);
    if (check_finite_array(mean, n, "mean", err) || check_finite_array(std, n, "std", err)) return -1;
    size_t arg = 0;
    double top = mean[0] - lambda * std[0];
    for (size_t i = 1; i < n; i++) {
        double v = mean[i] - lambda * std[i];
        if (v > top) { /* strict: ties keep the lowest index */
            top = v;
            arg = i;
        }
    }
    *best = arg;
    return 0;
}

int bon_prob_best(const OrdinalDist *dists, size_t n, double *p_best, double *p_tie_top,
                  OprmError *err) {
    if (n == 0) return oprm_fail(err, "best-of-n: no candidates");
    /* F_j(k-1) for level k (index k-1): cdf of the level below, 0 below level 1. */
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int k = 0; k < K; k++) {
            double prod = dists[i].p[k];
            for (size_t j = 0; j < n && prod > 0.0; j++)
                if (j != i) prod *= k > 0 ? dists[j].cdf[k - 1] : 0.0;
            s += prod;
        }
        /* a sum of products of probabilities: keep it a probability (rounding) */
        p_best[i] = s > 1.0 ? 1.0 : s < 0.0 ? 0.0 : s;
    }
    if (p_tie_top) {
        /* Computed on its own (not as 1 - sum p_best) so the identity is a real check:
         * P(max = k) - P(exactly one candidate at k, all others below) summed over k. */
        double tie = 0.0;
        for (int k = 0; k < K; k++) {
            double all_le = 1.0, all_lt = 1.0, unique = 0.0;
            for (size_t j = 0; j < n; j++) {
                all_le *= dists[j].cdf[k];
                all_lt *= k > 0 ? dists[j].cdf[k - 1] : 0.0;
            }
            for (size_t i = 0; i < n; i++) {
                double prod = dists[i].p[k];
                for (size_t j = 0; j < n && prod > 0.0; j++)
                    if (j != i) prod *= k > 0 ? dists[j].cdf[k - 1] : 0.0;
                unique += prod;
            }
            double t = all_le - all_lt - unique;
            tie += t > 0.0 ? t : 0.0;
        }
        *p_tie_top = tie < 1.0 ? tie : 1.0;
    }
    return 0;
}

int bt_loss(double r_c, double r_r, double *loss, double *grad_c, double *grad_r, OprmError *err) {
    if (!isfinite(r_c) || !isfinite(r_r))
        return oprm_fail(err, "bradley-terry: reward %s is %g (not finite)", isfinite(r_c) ? "rejected" : "chosen",
                         isfinite(r_c) ? r_r : r_c);
    double d = r_c - r_r;
    /* The difference of two finite rewards can overflow; clamp so the loss stays finite. */
    if (d > 1e300) d = 1e300;
    if (d < -1e300) d = -1e300;
    /* softplus(-d) and sigmoid(-d), each in the branch that never overflows exp. */
    double sp, sig_neg;
    if (d >= 0) {
        double e = exp(-d);
        sp = log1p(e);
        sig_neg = e / (1.0 + e);
    } else {
        double e = exp(d);
        sp = -d + log1p(e);
        sig_neg = 1.0 / (1.0 + e);
    }
    *loss = sp;
    if (grad_c) *grad_c = -sig_neg;
    if (grad_r) *grad_r = sig_neg;
    return 0;
}
