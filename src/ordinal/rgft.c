#include "ordinal/rgft.h"

#include <math.h>
#include <string.h>

#define K OPRM_LEVELS

RgftConfig rgft_default_config(void) {
    RgftConfig cfg = {RGFT_TRIANGLE, RGFT_DEFAULT_HALFWIDTH, RGFT_DEFAULT_FLOOR};
    return cfg;
}

int rgft_parse_label(const char *s, OprmLabel *out, OprmError *err) {
    out->kind = OPRM_LABEL_NONE;
    out->rating = 0;
    if (!s || !*s) return 0;
    if (strcmp(s, "bad") == 0) {
        out->kind = OPRM_LABEL_BAD;
    } else if (strcmp(s, "normal") == 0) {
        out->kind = OPRM_LABEL_NORMAL;
    } else if (strcmp(s, "good") == 0) {
        out->kind = OPRM_LABEL_GOOD;
    } else if (s[0] >= '1' && s[0] <= '9' && s[1] == '\0') {
        out->kind = OPRM_LABEL_RATING;
        out->rating = s[0] - '0';
    } else {
        return oprm_fail(err, "rgft: label \"%s\" is not good, normal, bad or a rating 1..9", s);
    }
    return 0;
}

int rgft_parse_mode(const char *s, RgftMode *out, OprmError *err) {
    if (s && strcmp(s, "triangle") == 0) {
        *out = RGFT_TRIANGLE;
    } else if (s && strcmp(s, "hard") == 0) {
        *out = RGFT_HARD;
    } else {
        return oprm_fail(err, "rgft: mode \"%s\" is not triangle or hard", s ? s : "(null)");
    }
    return 0;
}

int rgft_label_centre(const OprmLabel *label) {
    switch (label->kind) {
    case OPRM_LABEL_BAD: return 2;
    case OPRM_LABEL_NORMAL: return 5;
    case OPRM_LABEL_GOOD: return 8;
    case OPRM_LABEL_RATING: return label->rating >= 1 && label->rating <= K ? label->rating : 0;
    default: return 0;
    }
}

int rgft_label_region(const OprmLabel *label, int *lo, int *hi) {
    int m = rgft_label_centre(label);
    if (m == 0) return -1;
    /* Named labels: {m-1, m, m+1} is exactly the spec's region. Ratings: the same
     * three levels, clipped to 1..9 (project choice). */
    *lo = m - 1 < 1 ? 1 : m - 1;
    *hi = m + 1 > K ? K : m + 1;
    return 0;
}

int rgft_landscape(const OprmLabel *label, const RgftConfig *cfg, double w[K], OprmError *err) {
    if (label->kind == OPRM_LABEL_NONE) {
        for (int k = 0; k < K; k++) w[k] = 1.0;
        return 0;
    }
    int lo, hi;
    if (rgft_label_region(label, &lo, &hi) != 0)
        return oprm_fail(err, "rgft: rating %d is outside 1..9", label->rating);
    if (!(cfg->floor > 0.0 && cfg->floor <= 1.0))
        return oprm_fail(err, "rgft: floor %g must be in (0, 1]", cfg->floor);
    int m = rgft_label_centre(label);
    if (cfg->mode == RGFT_HARD) {
        for (int k = 1; k <= K; k++) w[k - 1] = (k >= lo && k <= hi) ? 1.0 : cfg->floor;
        return 0;
    }
    if (!(cfg->halfwidth > 0.0) || !isfinite(cfg->halfwidth))
        return oprm_fail(err, "rgft: half-width %g must be finite and > 0", cfg->halfwidth);
    for (int k = 1; k <= K; k++) {
        double t = 1.0 - fabs((double)(k - m)) / cfg->halfwidth;
        w[k - 1] = t > cfg->floor ? t : cfg->floor;
    }
    return 0;
}

/* The levels a label asserts: bad/normal/good their three levels, a rating
 * just itself (not the clipped r-1..r+1 the hard landscape uses). */
static int label_span(const OprmLabel *l, int *lo, int *hi) {
    int m = rgft_label_centre(l);
    if (m == 0) return -1;
    if (l->kind == OPRM_LABEL_RATING) {
        *lo = *hi = m;
    } else {
        *lo = m - 1;
        *hi = m + 1;
    }
    return 0;
}

int rgft_labels_contradict(const OprmLabel *chosen, const OprmLabel *rejected) {
    /* The data reader's rule (label_contradicts), so that train, eval and audit
     * skip the same pairs: the chosen span lies entirely below the rejected one. */
    int cl, ch, rl, rh;
    if (label_span(chosen, &cl, &ch) != 0 || label_span(rejected, &rl, &rh) != 0) return 0;
    return ch < rl;
}

int rgft_pair_loss(const double zc[K], const double w_c[K], const double zr[K], const double w_r[K],
                   double *loss, double grad_c[K], double grad_r[K], OprmError *err) {
    return ordinal_weighted_pair_loss(zc, w_c, zr, w_r, loss, grad_c, grad_r, err);
}

int rgft_point_loss(const double z[K], const double w[K], double *loss, double grad[K],
                    OprmError *err) {
    OrdinalDist d;
    if (ordinal_dist_from_logits(z, &d, err) != 0) return -1;
    double a[K];
    for (int k = 0; k < K; k++) {
        if (!isfinite(w[k]) || !(w[k] > 0.0))
            return oprm_fail(err, "rgft: weight of level %d is %g (must be finite and > 0)", k + 1, w[k]);
        a[k] = d.logp[k] + log(w[k]);
    }
    double m = a[0];
    for (int k = 1; k < K; k++)
        if (a[k] > m) m = a[k];
    double s = 0.0;
    for (int k = 0; k < K; k++) s += exp(a[k] - m);
    double log_pw = m + log(s);
    *loss = -log_pw;
    /* dL/dz(m) = p(m) - w(m) p(m) / sum_k w(k) p(k) */
    if (grad)
        for (int k = 0; k < K; k++) grad[k] = d.p[k] - exp(a[k] - log_pw);
    return 0;
}
