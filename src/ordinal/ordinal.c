#include "ordinal/ordinal.h"

#include <math.h>

#define K OPRM_LEVELS

/* Logits may be any finite doubles; a gap of more than this below the maximum is
 * clamped so sums of two log-probabilities stay finite (exp of it is 0 anyway). */
#define LOGP_FLOOR (-1e300)

/* Sums of products of probabilities can pass 1 (or go below 0) by one
 * rounding step, e.g. P(c > r) = 1.0000000000000002 for two nearly one-hot
 * distributions; callers (ECE binning) rely on [0, 1], so every probability
 * returned is clamped here. */
static double unit_clamp(double x) {
    return x > 1.0 ? 1.0 : x < 0.0 ? 0.0 : x;
}

/* log sum exp of x[0..n-1]; -inf for n == 0. Every x is finite or -inf. */
static double log_sum_exp(const double *x, int n) {
    double m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    if (m == -INFINITY) return -INFINITY;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp(x[i] - m);
    return m + log(s);
}

int ordinal_dist_from_logits(const double z[K], OrdinalDist *d, OprmError *err) {
    double m = -INFINITY;
    for (int k = 0; k < K; k++) {
        if (!isfinite(z[k]))
            return oprm_fail(err, "ordinal: logit of level %d is %g (not finite)", k + 1, z[k]);
        if (z[k] > m) m = z[k];
    }
    double shifted[K];
    for (int k = 0; k < K; k++) {
        shifted[k] = z[k] - m;
        if (!(shifted[k] >= LOGP_FLOOR)) shifted[k] = LOGP_FLOOR; /* also catches -inf from overflow */
    }
    double lse = log_sum_exp(shifted, K); /* in [0, log 9] */
    double run = 0.0;
    for (int k = 0; k < K; k++) {
        d->logp[k] = shifted[k] - lse;
        d->p[k] = unit_clamp(exp(d->logp[k]));
        run += d->p[k];
        d->cdf[k] = unit_clamp(run);
    }
    return 0;
}

int ordinal_dist_from_logits_f(const float z[K], OrdinalDist *d, OprmError *err) {
    double zd[K];
    for (int k = 0; k < K; k++) zd[k] = (double)z[k];
    return ordinal_dist_from_logits(zd, d, err);
}

double ordinal_cdf(const OrdinalDist *d, int k) {
    if (k <= 0) return 0.0;
    if (k >= K) return 1.0;
    return unit_clamp(d->cdf[k - 1]);
}

double ordinal_survival(const OrdinalDist *d, int k) {
    if (k <= 0) return 1.0;
    if (k >= K) return 0.0;
    /* Summing the upper tail directly keeps small survival values accurate. */
    double s = 0.0;
    for (int j = K - 1; j >= k; j--) s += d->p[j];
    return unit_clamp(s);
}

void ordinal_pair_probs(const OrdinalDist *c, const OrdinalDist *r, PairProbs *out) {
    double win = 0.0, tie = 0.0, loss = 0.0;
    double cells[K * (K - 1) / 2];
    int n = 0;
    for (int i = 0; i < K; i++) {
        for (int j = 0; j < K; j++) {
            double prod = c->p[i] * r->p[j];
            if (i > j) {
                win += prod;
                cells[n++] = c->logp[i] + r->logp[j];
            } else if (i == j) {
                tie += prod;
            } else {
                loss += prod;
            }
        }
    }
    out->win = unit_clamp(win);
    out->tie = unit_clamp(tie);
    out->loss = unit_clamp(loss);
    double lw = log_sum_exp(cells, n);
    out->log_win = lw > 0.0 ? 0.0 : lw; /* log of a probability */
}

static int check_weights(const double *w, const char *side, OprmError *err) {
    if (!w) return 0;
    for (int k = 0; k < K; k++)
        if (!isfinite(w[k]) || !(w[k] > 0.0))
            return oprm_fail(err, "ordinal: weight of level %d for the %s response is %g (must be finite and > 0)",
                             k + 1, side, w[k]);
    return 0;
}

int ordinal_weighted_pair_loss(const double zc[K], const double *w_c, const double zr[K],
                               const double *w_r, double *loss, double grad_c[K], double grad_r[K],
                               OprmError *err) {
    OrdinalDist c, r;
    if (ordinal_dist_from_logits(zc, &c, err) != 0) return oprm_prefix(err, "chosen: ");
    if (ordinal_dist_from_logits(zr, &r, err) != 0) return oprm_prefix(err, "rejected: ");
    if (check_weights(w_c, "chosen", err) != 0 || check_weights(w_r, "rejected", err) != 0) return -1;

    /* a(k) = log(w_c(k) p_c(k)), b(k) = log(w_r(k) p_r(k)); with w == 1 they are exactly logp. */
    double a[K], b[K];
    for (int k = 0; k < K; k++) {
        a[k] = c.logp[k] + (w_c ? log(w_c[k]) : 0.0);
        b[k] = r.logp[k] + (w_r ? log(w_r[k]) : 0.0);
    }
    double cells[K * (K - 1) / 2];
    int n = 0;
    for (int i = 1; i < K; i++)
        for (int j = 0; j < i; j++) cells[n++] = a[i] + b[j];
    double log_pw = log_sum_exp(cells, n);
    *loss = -log_pw;

    if (grad_c) {
        /* dL/dz_c(m) = p_c(m) - w_c(m) p_c(m) G_r(m-1) / P_w, G_r(m-1) = sum_{j<m} w_r(j) p_r(j). */
        for (int m = 0; m < K; m++) {
            double log_g = log_sum_exp(b, m); /* levels below m */
            grad_c[m] = c.p[m] - exp(a[m] + log_g - log_pw);
        }
    }
    if (grad_r) {
        /* dL/dz_r(m) = p_r(m) - w_r(m) p_r(m) H_c(m) / P_w, H_c(m) = sum_{i>m} w_c(i) p_c(i). */
        for (int m = 0; m < K; m++) {
            double log_h = log_sum_exp(a + m + 1, K - m - 1); /* levels above m */
            grad_r[m] = r.p[m] - exp(b[m] + log_h - log_pw);
        }
    }
    return 0;
}

int ordinal_pair_loss(const double zc[K], const double zr[K], double *loss, double grad_c[K],
                      double grad_r[K], OprmError *err) {
    return ordinal_weighted_pair_loss(zc, NULL, zr, NULL, loss, grad_c, grad_r, err);
}

double ordinal_bimodality(const double p[K]) {
    /* Peaks: p >= 0.1, >= left neighbour, > right neighbour; outside 1..9 counts as lower.
     * A plateau therefore yields one peak, at its right end. */
    int first = -1, second = -1; /* indices of the highest and second-highest peak */
    for (int k = 0; k < K; k++) {
        if (!(p[k] >= 0.1)) continue;
        if (k > 0 && !(p[k] >= p[k - 1])) continue;
        if (k < K - 1 && !(p[k] > p[k + 1])) continue;
        /* Equal heights: the lower level ranks first (strict > keeps the earlier). */
        if (first < 0 || p[k] > p[first]) {
            second = first;
            first = k;
        } else if (second < 0 || p[k] > p[second]) {
            second = k;
        }
    }
    if (second < 0) return 0.0;
    int a = first < second ? first : second;
    int b = first < second ? second : first;
    if (b - a < 2) return 0.0; /* cannot happen for two peaks, kept for the spec's wording */
    double valley = p[a + 1];
    for (int v = a + 2; v < b; v++)
        if (p[v] < valley) valley = p[v];
    double top = p[a] < p[b] ? p[a] : p[b];
    return top - valley;
}

void ordinal_stats(const OrdinalDist *d, ScoreStats *out) {
    double mean = 0.0;
    for (int k = 0; k < K; k++) mean += (k + 1) * d->p[k];
    /* sum (k - mu)^2 p equals sum k^2 p - mu^2 but cannot go negative by rounding. */
    double var = 0.0, ent = 0.0;
    int mode = 0;
    for (int k = 0; k < K; k++) {
        double dk = (k + 1) - mean;
        var += dk * dk * d->p[k];
        ent -= d->p[k] * d->logp[k]; /* p = 0 contributes 0 since logp is finite */
        if (d->p[k] > d->p[mode]) mode = k;
    }
    out->mean = mean;
    out->var = var;
    out->std = sqrt(var);
    out->entropy = ent;
    out->mode = mode + 1;
    out->bimodality = ordinal_bimodality(d->p);
    out->bimodal = out->bimodality >= OPRM_BIMODAL_THRESHOLD;
}
