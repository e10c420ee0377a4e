/* What `oprm demo` shows after training, computed from the synthetic task's
 * files with the scorer: held-out pair accuracy and calibration, the mean
 * distribution of each true grade, absolute-quality accuracy, and the audit's
 * catch of the pairs flipped on purpose (AUROC, flipped pairs among the top-k
 * suspicions). Also the terminal drawing of a distribution as nine bars. */
#ifndef OPRM_SYNTH_DEMO_EVAL_H
#define OPRM_SYNTH_DEMO_EVAL_H

#include <stddef.h>
#include <stdio.h>

#include "eval/scorer.h"
#include "util/err.h"

/* Pair kinds by true grades, in this order: good>normal, good>bad, normal>bad. */
#define DEMO_N_KINDS 3
extern const char *const DEMO_KIND_NAMES[DEMO_N_KINDS];

typedef struct {
    size_t n_pairs;
    double accuracy;      /* mean_c > mean_r (spec §5; ties wrong) */
    double accuracy_prob; /* P(c>r) > P(r>c) */
    double ece;           /* ECE of P(c>r), 10 bins (metric_pair_ece) */
    double mean_p_win;    /* mean P(c>r) */
    size_t kind_n[DEMO_N_KINDS];
    double kind_accuracy[DEMO_N_KINDS];
    /* Mean distribution and count of the responses of each true grade (index:
     * 0 bad, 1 normal, 2 good), over both sides of the pairs. */
    double grade_dist[3][9];
    size_t grade_n[3];
    /* Absolute quality: the grade whose region (1-3, 4-6, 7-9) holds the most
     * mass equals the true grade. */
    double region_accuracy;
} DemoPairEval;

/* Scores the pairs of a JSONL file {"prompt","chosen","rejected",
 * "chosen_label","rejected_label"} (labels are the true grades). */
int demo_eval_pairs(Scorer *s, const char *pairs_path, size_t max_pairs, DemoPairEval *out, OprmError *err);

typedef struct {
    size_t n_pairs, n_flipped;
    double auroc;           /* of the suspicion score (spec §5) for flipped vs clean pairs */
    double auroc_p_loss;    /* of P(r>c) alone */
    size_t flipped_in_top;  /* flipped pairs among the n_flipped most suspicious */
    double mean_p_loss_flipped, mean_p_loss_clean;
} DemoAudit;

/* Audits the first max_pairs (0 = all) training pairs against the truth file
 * ({"id","flipped"} per line, same order). */
int demo_audit(Scorer *s, const char *pairs_path, const char *truth_path, size_t max_pairs, DemoAudit *out,
               OprmError *err);

/* Area under the ROC curve of score for positive vs negative items (ties
 * count half): the Mann-Whitney statistic. -1 when a class is empty. */
double demo_auroc(const double *score, const int *positive, size_t n);

/* Nine horizontal bars, one per level, scaled so that p = 1 fills width cells. */
void demo_draw_dist(FILE *f, const char *title, const double p[9], int width);

#endif
