/* Pair-benchmark arithmetic of `oprm eval` (spec §5): accuracy by mean and by
 * probability, the two ECEs, mean P(c>r), grouped per subset and per file;
 * Best-of-N "best beats every other"; per-label statistics of labelled
 * responses. Pure: works on scored numbers, never on the model. */
#ifndef OPRM_EVAL_EVAL_PAIRS_H
#define OPRM_EVAL_EVAL_PAIRS_H

#include <jansson.h>
#include <stddef.h>

#include "data/record.h"
#include "eval/scorer.h"

typedef struct {
    double mean_c, mean_r;
    double p_win, p_tie, p_loss; /* P(c>r), P(c=r), P(r>c) */
    int truncated;               /* either side was truncated */
} PairScore;

PairScore pair_score_of(const ScoreResult *chosen, const ScoreResult *rejected);

typedef struct {
    size_t n;
    double accuracy;         /* mean_c > mean_r, tie wrong */
    double accuracy_by_prob; /* P(c>r) > P(r>c), tie wrong */
    double ece;              /* metric_pair_ece */
    double ece_symmetric;    /* metric_pair_ece_symmetric */
    double mean_p_win, mean_p_tie, mean_margin;
    size_t truncated;
} PairSummary;

/* Summary of pairs[idx[0..n)] (idx NULL = pairs[0..n)). n > 0. */
int pair_summary(const PairScore *pairs, const size_t *idx, size_t n, PairSummary *out, OprmError *err);
json_t *pair_summary_json(const PairSummary *s);

/* Best-of-N: 1 when the best response's mean is strictly above every other's. */
int bon_best_beats_all(const ScoreResult *res, size_t n);

/* Labelled responses, per label (key from label_describe: "good", "rating 7"). */
typedef struct {
    char name[16];
    int lo, hi; /* the label's region */
    size_t n, mode_in_region;
    double sum_mean, sum_p_region;
    double *means; /* every response's mean, for histograms */
    size_t cap;
} LabelStats;

typedef struct {
    LabelStats *v;
    size_t n;
} LabelTable;

void label_table_add(LabelTable *t, QualityLabel label, const ScoreResult *r);
json_t *label_table_json(const LabelTable *t);
void label_table_free(LabelTable *t);

#endif
