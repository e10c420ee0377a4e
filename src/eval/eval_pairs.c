#include "eval/eval_pairs.h"

#include <string.h>

#include "eval/score_data.h"
#include "ordinal/metrics.h"

PairScore pair_score_of(const ScoreResult *chosen, const ScoreResult *rejected) {
    OrdinalDist c, r;
    dist_of_result(chosen, &c);
    dist_of_result(rejected, &r);
    PairProbs pp;
    ordinal_pair_probs(&c, &r, &pp);
    PairScore s = {.mean_c = chosen->mean,
                   .mean_r = rejected->mean,
                   .p_win = pp.win,
                   .p_tie = pp.tie,
                   .p_loss = pp.loss,
                   .truncated = chosen->truncated || rejected->truncated};
    return s;
}

int pair_summary(const PairScore *pairs, const size_t *idx, size_t n, PairSummary *out, OprmError *err) {
    if (n == 0) return oprm_fail(err, "no pairs to summarise");
    double *mc = xmalloc(n * sizeof *mc), *mr = xmalloc(n * sizeof *mr);
    double *pw = xmalloc(n * sizeof *pw), *pl = xmalloc(n * sizeof *pl);
    PairSummary s = {.n = n};
    for (size_t i = 0; i < n; i++) {
        const PairScore *p = &pairs[idx ? idx[i] : i];
        mc[i] = p->mean_c;
        mr[i] = p->mean_r;
        pw[i] = p->p_win;
        pl[i] = p->p_loss;
        s.mean_p_win += p->p_win;
        s.mean_p_tie += p->p_tie;
        s.mean_margin += p->mean_c - p->mean_r;
        s.truncated += (size_t)p->truncated;
    }
    s.mean_p_win /= (double)n;
    s.mean_p_tie /= (double)n;
    s.mean_margin /= (double)n;
    int rc = 0;
    if (metric_accuracy_by_mean(mc, mr, n, &s.accuracy, err) || metric_accuracy_by_prob(pw, pl, n, &s.accuracy_by_prob, err) ||
        metric_pair_ece(pw, n, &s.ece, err) || metric_pair_ece_symmetric(pw, pl, n, &s.ece_symmetric, err))
        rc = -1;
    free(mc);
    free(mr);
    free(pw);
    free(pl);
    if (rc == 0) *out = s;
    return rc;
}

json_t *pair_summary_json(const PairSummary *s) {
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I}", "n", (json_int_t)s->n, "accuracy", s->accuracy,
                     "accuracy_by_prob", s->accuracy_by_prob, "ece", s->ece, "ece_symmetric", s->ece_symmetric,
                     "mean_p_chosen_better", s->mean_p_win, "mean_p_tie", s->mean_p_tie, "mean_margin",
                     s->mean_margin, "truncated_pairs", (json_int_t)s->truncated);
}

int bon_best_beats_all(const ScoreResult *res, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (!(res[0].mean > res[i].mean)) return 0;
    return 1;
}

void label_table_add(LabelTable *t, QualityLabel label, const ScoreResult *r) {
    if (label.kind == LABEL_NONE) return;
    char name[16];
    label_describe(label, name, sizeof name);
    LabelStats *ls = NULL;
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].name, name)) ls = &t->v[i];
    if (!ls) {
        t->v = xrealloc(t->v, (t->n + 1) * sizeof *t->v);
        ls = &t->v[t->n++];
        memset(ls, 0, sizeof *ls);
        snprintf(ls->name, sizeof ls->name, "%s", name);
        ls->lo = label.lo;
        ls->hi = label.hi;
    }
    if (ls->n == ls->cap) {
        ls->cap = ls->cap ? 2 * ls->cap : 64;
        ls->means = xrealloc(ls->means, ls->cap * sizeof *ls->means);
    }
    ls->means[ls->n++] = r->mean;
    ls->sum_mean += r->mean;
    double pr = 0;
    for (int k = ls->lo; k <= ls->hi; k++) pr += r->p[k - 1];
    ls->sum_p_region += pr;
    ls->mode_in_region += (size_t)(r->mode >= ls->lo && r->mode <= ls->hi);
}

json_t *label_table_json(const LabelTable *t) {
    json_t *o = json_object();
    for (size_t i = 0; i < t->n; i++) {
        const LabelStats *ls = &t->v[i];
        double n = (double)ls->n;
        json_object_set_new(o, ls->name,
                            json_pack("{s:I, s:[i,i], s:f, s:f, s:f}", "n", (json_int_t)ls->n, "region", ls->lo,
                                      ls->hi, "mean", ls->sum_mean / n, "mean_p_region", ls->sum_p_region / n,
                                      "mode_in_region", (double)ls->mode_in_region / n));
    }
    return o;
}

void label_table_free(LabelTable *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i].means);
    free(t->v);
    memset(t, 0, sizeof *t);
}
