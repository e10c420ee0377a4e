#include "eval/bon.h"

#include <stdlib.h>

#include "eval/score_data.h"
#include "ordinal/metrics.h"

int bon_evaluate(const ScoreResult *cands, size_t n, double lambda, BonResult *out, OprmError *err) {
    if (n == 0) return oprm_fail(err, "best-of-N: no candidates");
    double *mean = xmalloc(n * sizeof *mean), *std = xmalloc(n * sizeof *std);
    OrdinalDist *d = xmalloc(n * sizeof *d);
    double *p_best = xmalloc(n * sizeof *p_best);
    for (size_t i = 0; i < n; i++) {
        mean[i] = cands[i].mean;
        std[i] = cands[i].std;
        dist_of_result(&cands[i], &d[i]);
    }
    BonResult r = {0};
    int rc = bon_choose(mean, std, n, lambda, &r.chosen, err);
    if (rc == 0) rc = bon_prob_best(d, n, p_best, &r.p_tie_top, err);
    if (rc == 0) {
        r.utility = mean[r.chosen] - lambda * std[r.chosen];
        for (size_t i = 1; i < n; i++)
            if (p_best[i] > p_best[r.most_likely_best]) r.most_likely_best = i;
        r.p_best = p_best;
        *out = r;
    } else {
        free(p_best);
    }
    free(mean);
    free(std);
    free(d);
    return rc;
}

void bon_result_free(BonResult *r) {
    free(r->p_best);
    r->p_best = NULL;
}
