/* The pairwise probabilities of two independent 9-level distributions
 * (spec §2): P(a≻b) = Σ_k p_a(k) F_b(k−1), P(tie) = Σ_k p_a(k) p_b(k). */
#ifndef OPRM_SERVE_COMPARE_H
#define OPRM_SERVE_COMPARE_H

typedef struct {
    double a_better, tie, b_better;
} PairProbs;

PairProbs serve_compare(const double pa[9], const double pb[9]);

#endif
