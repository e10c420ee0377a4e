/* The label-disagreement audit (spec §5): pairs ranked by suspicion =
 * P(r>c) + max(bimodality_c, bimodality_r), and the AUROC helper that says
 * how well a score separates known-flipped pairs from the rest. */
#ifndef OPRM_EVAL_AUDIT_H
#define OPRM_EVAL_AUDIT_H

#include <stddef.h>

#include "eval/scorer.h"

typedef struct {
    size_t record; /* index of the pair among the file's valid records */
    double suspicion, p_win, p_tie, p_loss, bimodality_c, bimodality_r;
    int bimodal_c, bimodal_r;
    int flipped; /* -1 unknown, 0/1 from the --flipped-key field */
} AuditRow;

AuditRow audit_row_of(size_t record, const ScoreResult *chosen, const ScoreResult *rejected);

/* Sorts by suspicion, highest first; equal suspicion keeps file order. */
void audit_rank(AuditRow *rows, size_t n);

/* Area under the ROC curve of `score` for the positives: the probability that
 * a random positive scores above a random negative, ties counted one half.
 * Fails when there is no positive or no negative. O(n log n). */
int auroc(const double *score, const int *positive, size_t n, double *out, OprmError *err);

#endif
