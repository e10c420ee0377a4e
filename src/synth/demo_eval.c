#include "synth/demo_eval.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ordinal/metrics.h"
#include "ordinal/ordinal.h"

const char *const DEMO_KIND_NAMES[DEMO_N_KINDS] = {"good>normal", "good>bad", "normal>bad"};

static int grade_index(const char *label) {
    if (!label) return -1;
    return !strcmp(label, "bad") ? 0 : !strcmp(label, "normal") ? 1 : !strcmp(label, "good") ? 2 : -1;
}

typedef struct {
    json_t **rows;
    size_t n;
} Rows;

static void rows_free(Rows *r) {
    for (size_t i = 0; i < r->n; i++) json_decref(r->rows[i]);
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* Reads up to max (0 = all) JSONL objects. */
static int read_rows(const char *path, size_t max, Rows *out, OprmError *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return oprm_fail(err, "%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    while (getline(&line, &cap, f) > 0 && (!max || out->n < max)) {
        lineno++;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!json_is_object(j)) {
            json_decref(j);
            free(line);
            fclose(f);
            rows_free(out);
            return oprm_fail(err, "%s:%zu: not a JSON object", path, lineno);
        }
        out->rows = xrealloc(out->rows, (out->n + 1) * sizeof *out->rows);
        out->rows[out->n++] = j;
    }
    free(line);
    fclose(f);
    return 0;
}

static const char *field(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* Scores chosen and rejected of every row: out[2i] chosen, out[2i+1] rejected. */
static int score_pairs(Scorer *s, const Rows *r, const char *path, ScoreResult *out, OprmError *err) {
    size_t n = r->n;
    ScoreTurn *turns = xcalloc(n ? n : 1, sizeof *turns);
    ScoreRequest *req = xcalloc(2 * n + 1, sizeof *req);
    for (size_t i = 0; i < n; i++) {
        const char *p = field(r->rows[i], "prompt"), *c = field(r->rows[i], "chosen"),
                   *j = field(r->rows[i], "rejected");
        if (!p || !c || !j) {
            free(turns);
            free(req);
            return oprm_fail(err, "%s:%zu: needs string fields prompt, chosen and rejected", path, i + 1);
        }
        turns[i] = (ScoreTurn){"user", p};
        req[2 * i] = (ScoreRequest){&turns[i], 1, c};
        req[2 * i + 1] = (ScoreRequest){&turns[i], 1, j};
    }
    int rc = n ? scorer_score(s, req, (int)(2 * n), out, err) : 0;
    free(turns);
    free(req);
    return rc;
}

static void pair_probs(const ScoreResult *c, const ScoreResult *r, PairProbs *pp) {
    OrdinalDist dc, dr;
    memset(&dc, 0, sizeof dc);
    memset(&dr, 0, sizeof dr);
    double fc = 0, fr = 0;
    for (int k = 0; k < 9; k++) {
        dc.p[k] = c->p[k];
        dr.p[k] = r->p[k];
        fc += c->p[k];
        fr += r->p[k];
        dc.cdf[k] = fc;
        dr.cdf[k] = fr;
    }
    ordinal_pair_probs(&dc, &dr, pp);
}

int demo_eval_pairs(Scorer *s, const char *pairs_path, size_t max_pairs, DemoPairEval *out, OprmError *err) {
    memset(out, 0, sizeof *out);
    Rows r;
    if (read_rows(pairs_path, max_pairs, &r, err)) return -1;
    if (!r.n) {
        rows_free(&r);
        return oprm_fail(err, "%s: no pairs", pairs_path);
    }
    ScoreResult *res = xcalloc(2 * r.n, sizeof *res);
    if (score_pairs(s, &r, pairs_path, res, err)) {
        free(res);
        rows_free(&r);
        return -1;
    }
    size_t n = r.n;
    double *mc = xmalloc(n * sizeof *mc), *mr = xmalloc(n * sizeof *mr), *pw = xmalloc(n * sizeof *pw),
           *pl = xmalloc(n * sizeof *pl);
    size_t kind_ok[DEMO_N_KINDS] = {0}, region_ok = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int gc = grade_index(field(r.rows[i], "chosen_label")), gr = grade_index(field(r.rows[i], "rejected_label"));
        if (gc < 0 || gr < 0 || gc <= gr) {
            rc = oprm_fail(err, "%s:%zu: the demo needs true labels with chosen better than rejected", pairs_path,
                           i + 1);
            break;
        }
        const ScoreResult *c = &res[2 * i], *j = &res[2 * i + 1];
        PairProbs pp;
        pair_probs(c, j, &pp);
        mc[i] = c->mean;
        mr[i] = j->mean;
        pw[i] = pp.win;
        pl[i] = pp.loss;
        int kind = gc == 2 ? (gr == 1 ? 0 : 1) : 2;
        out->kind_n[kind]++;
        kind_ok[kind] += c->mean > j->mean;
        const ScoreResult *side[2] = {c, j};
        int grade[2] = {gc, gr};
        for (int sd = 0; sd < 2; sd++) {
            double region[3] = {0};
            for (int k = 0; k < 9; k++) {
                out->grade_dist[grade[sd]][k] += side[sd]->p[k];
                region[k / 3] += side[sd]->p[k];
            }
            out->grade_n[grade[sd]]++;
            int best = region[2] > region[1] && region[2] > region[0] ? 2 : region[1] > region[0] ? 1 : 0;
            region_ok += best == grade[sd];
        }
        out->mean_p_win += pw[i] / (double)n;
    }
    if (!rc) rc = metric_accuracy_by_mean(mc, mr, n, &out->accuracy, err);
    if (!rc) rc = metric_accuracy_by_prob(pw, pl, n, &out->accuracy_prob, err);
    if (!rc) rc = metric_pair_ece(pw, n, &out->ece, err);
    if (!rc) {
        out->n_pairs = n;
        for (int k = 0; k < DEMO_N_KINDS; k++)
            out->kind_accuracy[k] = out->kind_n[k] ? (double)kind_ok[k] / (double)out->kind_n[k] : 0;
        for (int g = 0; g < 3; g++)
            for (int k = 0; k < 9 && out->grade_n[g]; k++) out->grade_dist[g][k] /= (double)out->grade_n[g];
        out->region_accuracy = (double)region_ok / (double)(2 * n);
    }
    free(mc);
    free(mr);
    free(pw);
    free(pl);
    free(res);
    rows_free(&r);
    return rc;
}

typedef struct {
    double score;
    int positive;
} Ranked;

static int by_score(const void *a, const void *b) {
    double x = ((const Ranked *)a)->score, y = ((const Ranked *)b)->score;
    return x < y ? -1 : x > y;
}

double demo_auroc(const double *score, const int *positive, size_t n) {
    Ranked *r = xmalloc((n ? n : 1) * sizeof *r);
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        r[i] = (Ranked){score[i], positive[i] != 0};
        np += r[i].positive;
    }
    size_t nn = n - np;
    if (!np || !nn) {
        free(r);
        return -1;
    }
    qsort(r, n, sizeof *r, by_score);
    /* Sum of the positives' ranks (1-based, ties share their mean rank). */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && r[j].score == r[i].score) j++;
        double mean_rank = (double)(i + 1 + j) / 2.0;
        for (size_t k = i; k < j; k++)
            if (r[k].positive) rank_sum += mean_rank;
        i = j;
    }
    free(r);
    return (rank_sum - (double)np * (double)(np + 1) / 2.0) / ((double)np * (double)nn);
}

static int by_score_desc(const void *a, const void *b) { return -by_score(a, b); }

int demo_audit(Scorer *s, const char *pairs_path, const char *truth_path, size_t max_pairs, DemoAudit *out,
               OprmError *err) {
    memset(out, 0, sizeof *out);
    Rows r, t;
    if (read_rows(pairs_path, max_pairs, &r, err)) return -1;
    if (read_rows(truth_path, max_pairs, &t, err)) {
        rows_free(&r);
        return -1;
    }
    int rc = 0;
    if (r.n != t.n) rc = oprm_fail(err, "%s and %s differ in length (%zu vs %zu lines)", pairs_path, truth_path, r.n, t.n);
    ScoreResult *res = rc ? NULL : xcalloc(2 * r.n + 1, sizeof *res);
    if (!rc) rc = score_pairs(s, &r, pairs_path, res, err);
    size_t n = r.n;
    double *sus = xmalloc((n + 1) * sizeof *sus), *ploss = xmalloc((n + 1) * sizeof *ploss);
    int *flipped = xmalloc((n + 1) * sizeof *flipped);
    for (size_t i = 0; i < n && !rc; i++) {
        const char *a = field(r.rows[i], "id"), *b = field(t.rows[i], "id");
        if (!a || !b || strcmp(a, b)) {
            rc = oprm_fail(err, "%s:%zu: id does not match the truth file", pairs_path, i + 1);
            break;
        }
        flipped[i] = json_is_true(json_object_get(t.rows[i], "flipped"));
        PairProbs pp;
        pair_probs(&res[2 * i], &res[2 * i + 1], &pp);
        ploss[i] = pp.loss;
        sus[i] = audit_suspicion(pp.loss, res[2 * i].bimodality, res[2 * i + 1].bimodality);
        out->n_flipped += flipped[i];
        if (flipped[i]) out->mean_p_loss_flipped += pp.loss;
        else out->mean_p_loss_clean += pp.loss;
    }
    if (!rc) {
        out->n_pairs = n;
        if (out->n_flipped) out->mean_p_loss_flipped /= (double)out->n_flipped;
        if (n > out->n_flipped) out->mean_p_loss_clean /= (double)(n - out->n_flipped);
        out->auroc = demo_auroc(sus, flipped, n);
        out->auroc_p_loss = demo_auroc(ploss, flipped, n);
        Ranked *rk = xmalloc((n + 1) * sizeof *rk);
        for (size_t i = 0; i < n; i++) rk[i] = (Ranked){sus[i], flipped[i]};
        qsort(rk, n, sizeof *rk, by_score_desc);
        for (size_t i = 0; i < out->n_flipped; i++) out->flipped_in_top += rk[i].positive;
        free(rk);
    }
    free(sus);
    free(ploss);
    free(flipped);
    free(res);
    rows_free(&r);
    rows_free(&t);
    return rc;
}

void demo_draw_dist(FILE *f, const char *title, const double p[9], int width) {
    /* Eighth blocks give sub-cell resolution. */
    static const char *const part[8] = {"", "\u258F", "\u258E", "\u258D", "\u258C", "\u258B", "\u258A", "\u2589"};
    if (title) fprintf(f, "  %s\n", title);
    for (int k = 0; k < 9; k++) {
        double x = p[k] < 0 ? 0 : p[k] > 1 ? 1 : p[k];
        int eighths = (int)(x * width * 8 + 0.5);
        fprintf(f, "    %d %5.3f ", k + 1, p[k]);
        for (int i = 0; i < eighths / 8; i++) fputs("\u2588", f);
        fputs(part[eighths % 8], f);
        fputc('\n', f);
    }
}
