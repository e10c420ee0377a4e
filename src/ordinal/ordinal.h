/* The ordinal distribution of OPRM (spec §1, §2, §4): nine digit logits become a
 * distribution over quality levels 1..9; from two of them come the preference
 * probabilities and the pair loss -log P(c > r) with its gradient.
 * Pure math: double precision inside, no dependency above src/util.
 * Level k (1..9) lives at array index k-1 everywhere. Every probability a
 * function here returns lies in [0, 1] (clamped: sums of products can pass 1
 * by one rounding step when distributions are nearly one-hot). */
#ifndef OPRM_ORDINAL_ORDINAL_H
#define OPRM_ORDINAL_ORDINAL_H

#include "util/err.h"

#define OPRM_LEVELS 9
/* Spec §4: a response is "bimodal" when its bimodality is >= this. */
#define OPRM_BIMODAL_THRESHOLD 0.05

typedef struct {
    double p[OPRM_LEVELS];    /* p(k) */
    double logp[OPRM_LEVELS]; /* log p(k), exact even where p(k) underflows to 0 */
    double cdf[OPRM_LEVELS];  /* F(k) = sum_{j<=k} p(j); F(9) is 1 up to rounding */
} OrdinalDist;

typedef struct {
    double win;      /* P(c > r) */
    double tie;      /* P(c = r) */
    double loss;     /* P(r > c) */
    double log_win;  /* log P(c > r), computed in log space (finite for finite logits) */
} PairProbs;

typedef struct {
    double mean;       /* mu = sum k p(k): the reward */
    double var;        /* sigma^2 */
    double std;        /* sigma */
    double entropy;    /* -sum p log p, nats */
    int mode;          /* level 1..9 with the largest p (lowest level on ties) */
    double bimodality; /* spec §4, see ordinal_bimodality */
    int bimodal;       /* bimodality >= OPRM_BIMODAL_THRESHOLD */
} ScoreStats;

/* Softmax over the nine digit logits (max subtracted). Fails on NaN/inf. */
int ordinal_dist_from_logits(const double z[OPRM_LEVELS], OrdinalDist *d, OprmError *err);
int ordinal_dist_from_logits_f(const float z[OPRM_LEVELS], OrdinalDist *d, OprmError *err);

/* F(k) for k in 0..9 (F(0) = 0, F(9) = 1); S(k) = 1 - F(k) = P(s > k), k in 0..9. */
double ordinal_cdf(const OrdinalDist *d, int k);
double ordinal_survival(const OrdinalDist *d, int k);

/* P(c > r), P(tie), P(r > c) for independent c and r (each summed directly,
 * then clamped to [0, 1]; log_win <= 0). */
void ordinal_pair_probs(const OrdinalDist *c, const OrdinalDist *r, PairProbs *out);

/* L = -log P(c > r) from the two logit vectors; grad_c/grad_r (may be NULL)
 * receive dL/dz_c and dL/dz_r. Fails on non-finite logits. */
int ordinal_pair_loss(const double zc[OPRM_LEVELS], const double zr[OPRM_LEVELS], double *loss,
                      double grad_c[OPRM_LEVELS], double grad_r[OPRM_LEVELS], OprmError *err);

/* The weighted form L = -log sum_{i>j} w_c(i) p_c(i) w_r(j) p_r(j) (spec §3);
 * w_c or w_r NULL means w = 1 (then it is bitwise the pair loss). Weights must be
 * finite and > 0. */
int ordinal_weighted_pair_loss(const double zc[OPRM_LEVELS], const double *w_c,
                               const double zr[OPRM_LEVELS], const double *w_r, double *loss,
                               double grad_c[OPRM_LEVELS], double grad_r[OPRM_LEVELS],
                               OprmError *err);

/* Spec §4 statistics of one distribution. */
void ordinal_stats(const OrdinalDist *d, ScoreStats *out);
/* Spec §4 bimodality of p(1..9) (index k-1). */
double ordinal_bimodality(const double p[OPRM_LEVELS]);

#endif
