#include "eval/audit.h"

#include <stdlib.h>

#include "eval/eval_pairs.h"
#include "ordinal/metrics.h"

AuditRow audit_row_of(size_t record, const ScoreResult *chosen, const ScoreResult *rejected) {
    PairScore ps = pair_score_of(chosen, rejected);
    AuditRow r = {.record = record,
                  .p_win = ps.p_win,
                  .p_tie = ps.p_tie,
                  .p_loss = ps.p_loss,
                  .bimodality_c = chosen->bimodality,
                  .bimodality_r = rejected->bimodality,
                  .bimodal_c = chosen->bimodality >= OPRM_BIMODAL_THRESHOLD,
                  .bimodal_r = rejected->bimodality >= OPRM_BIMODAL_THRESHOLD,
                  .flipped = -1};
    r.suspicion = audit_suspicion(ps.p_loss, chosen->bimodality, rejected->bimodality);
    return r;
}

static int by_suspicion(const void *a, const void *b) {
    const AuditRow *x = a, *y = b;
    if (x->suspicion != y->suspicion) return x->suspicion > y->suspicion ? -1 : 1;
    return x->record < y->record ? -1 : x->record > y->record;
}

void audit_rank(AuditRow *rows, size_t n) {
    if (n > 1) qsort(rows, n, sizeof *rows, by_suspicion);
}

typedef struct {
    double score;
    int positive;
} Scored;

static int by_score(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    return (x->score > y->score) - (x->score < y->score);
}

int auroc(const double *score, const int *positive, size_t n, double *out, OprmError *err) {
    size_t npos = 0;
    for (size_t i = 0; i < n; i++) {
        if (score[i] != score[i]) return oprm_fail(err, "auroc: score %zu is NaN", i);
        npos += positive[i] != 0;
    }
    if (npos == 0 || npos == n)
        return oprm_fail(err, "auroc: needs both positives and negatives (%zu of %zu positive)", npos, n);
    Scored *v = xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (Scored){score[i], positive[i] != 0};
    qsort(v, n, sizeof *v, by_score);
    /* Mann-Whitney: sum over positives of (negatives below + half the tied negatives). */
    double wins = 0;
    size_t neg_below = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, pos = 0, neg = 0;
        while (j < n && v[j].score == v[i].score) {
            pos += (size_t)v[j].positive;
            neg += (size_t)!v[j].positive;
            j++;
        }
        wins += (double)pos * ((double)neg_below + 0.5 * (double)neg);
        neg_below += neg;
        i = j;
    }
    free(v);
    *out = wins / ((double)npos * (double)(n - npos));
    return 0;
}
