/* Risk-aware Best-of-N over scored candidates (spec §5): the choice
 * argmax mean - lambda std, and every candidate's exact P(strictly best). */
#ifndef OPRM_EVAL_BON_H
#define OPRM_EVAL_BON_H

#include <stddef.h>

#include "eval/scorer.h"

typedef struct {
    size_t chosen;    /* index of the chosen candidate */
    double utility;   /* its mean - lambda std */
    double *p_best;   /* n values, P(candidate i is strictly the best) */
    double p_tie_top; /* P(the top level is shared) = 1 - sum p_best */
    size_t most_likely_best; /* argmax p_best (lowest index on ties) */
} BonResult;

/* n >= 1; lambda >= 0. out->p_best is allocated (bon_result_free). */
int bon_evaluate(const ScoreResult *cands, size_t n, double lambda, BonResult *out, OprmError *err);
void bon_result_free(BonResult *r);

#endif
