/* Uses of the distribution (spec §5): benchmark accuracy and calibration, the
 * label-disagreement audit, risk-aware Best-of-N, and the Bradley-Terry baseline. */
#ifndef OPRM_ORDINAL_METRICS_H
#define OPRM_ORDINAL_METRICS_H

#include <stddef.h>

#include "ordinal/ordinal.h"

#define OPRM_ECE_BINS 10

/* Fraction of pairs with mean_c > mean_r (a tie counts as wrong). n > 0. */
int metric_accuracy_by_mean(const double *mean_c, const double *mean_r, size_t n, double *acc,
                            OprmError *err);
/* Fraction of pairs with P(c > r) > P(r > c) (a tie counts as wrong). n > 0. */
int metric_accuracy_by_prob(const double *p_win, const double *p_loss, size_t n, double *acc,
                            OprmError *err);
/* Binary-calibration ECE over `bins` equal-width bins of [0,1]: bin b holds
 * confidences in [b/B, (b+1)/B), the last bin also holds 1.0;
 * ECE = sum_b (n_b/n) |mean confidence_b - mean outcome_b|. outcome in [0,1]. */
int metric_ece(const double *confidence, const double *outcome, size_t n, int bins, double *ece,
               OprmError *err);
/* ECE of P(c > r) on preference pairs: every pair contributes (P(c > r), 1).
 * (Equals 1 - mean P(c > r); see docs/math.md.) 10 bins. */
int metric_pair_ece(const double *p_win, size_t n, double *ece, OprmError *err);
/* Symmetric variant: each pair is scored in both orientations, contributing
 * (P(c > r), 1) and (P(r > c), 0); 2n samples, 10 bins. */
int metric_pair_ece_symmetric(const double *p_win, const double *p_loss, size_t n, double *ece,
                              OprmError *err);

/* Audit suspicion score: P(r > c) + max(bimodality_c, bimodality_r). */
double audit_suspicion(double p_loss, double bimodality_c, double bimodality_r);

/* Risk-aware Best-of-N: argmax_i mean_i - lambda std_i (ties -> lowest index). lambda >= 0. */
int bon_choose(const double *mean, const double *std, size_t n, double lambda, size_t *best,
               OprmError *err);
/* p_best[i] = P(s_i > max_{j != i} s_j) = sum_k p_i(k) prod_{j != i} F_j(k-1);
 * *p_tie_top (may be NULL) = P(the maximum is shared) = 1 - sum_i p_best[i]. */
int bon_prob_best(const OrdinalDist *dists, size_t n, double *p_best, double *p_tie_top,
                  OprmError *err);

/* Bradley-Terry: L = -log sigmoid(r_c - r_r), stable for any finite margin;
 * grad_c = dL/dr_c, grad_r = dL/dr_r (may be NULL). */
int bt_loss(double r_c, double r_r, double *loss, double *grad_c, double *grad_r, OprmError *err);

#endif
