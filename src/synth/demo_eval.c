#include "synth/demo_eval.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "eval/audit.h"
#include "eval/report_html.h"
#include "eval/score_data.h"
#include "io/fileio.h"
#include "ordinal/metrics.h"
#include "ordinal/ordinal.h"

const char *const DEMO_KIND_NAMES[DEMO_N_KINDS] = {"good>normal", "good>bad", "normal>bad"};
const double DEMO_LAMBDAS[DEMO_N_LAMBDAS] = {0, 0.5, 1};

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
    out->scores = xcalloc(n, sizeof *out->scores);
    out->kind = xcalloc(n, sizeof *out->kind);
    for (size_t i = 0; i < n && !rc; i++) {
        int gc = grade_index(field(r.rows[i], "chosen_label")), gr = grade_index(field(r.rows[i], "rejected_label"));
        if (gc < 0 || gr < 0 || gc <= gr) {
            rc = oprm_fail(err, "%s:%zu: the demo needs true labels with chosen better than rejected", pairs_path,
                           i + 1);
            break;
        }
        const ScoreResult *c = &res[2 * i], *j = &res[2 * i + 1];
        PairScore ps = pair_score_of(c, j);
        out->scores[i] = ps;
        mc[i] = c->mean;
        mr[i] = j->mean;
        pw[i] = ps.p_win;
        pl[i] = ps.p_loss;
        int kind = gc == 2 ? (gr == 1 ? 0 : 1) : 2;
        out->kind[i] = kind;
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
    if (rc) demo_pair_eval_free(out);
    return rc;
}

void demo_pair_eval_free(DemoPairEval *e) {
    free(e->scores);
    free(e->kind);
    e->scores = NULL;
    e->kind = NULL;
}

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
        AuditRow row = audit_row_of(i, &res[2 * i], &res[2 * i + 1]);
        ploss[i] = row.p_loss;
        sus[i] = row.suspicion;
        out->n_flipped += flipped[i];
        if (flipped[i]) out->mean_p_loss_flipped += row.p_loss;
        else out->mean_p_loss_clean += row.p_loss;
    }
    if (!rc) {
        out->n_pairs = n;
        if (out->n_flipped) out->mean_p_loss_flipped /= (double)out->n_flipped;
        if (n > out->n_flipped) out->mean_p_loss_clean /= (double)(n - out->n_flipped);
        out->auroc = out->auroc_p_loss = -1; /* no flipped (or no clean) pair: undefined */
        if (out->n_flipped && out->n_flipped < n) {
            OprmError ignored;
            auroc(sus, flipped, n, &out->auroc, &ignored);
            auroc(ploss, flipped, n, &out->auroc_p_loss, &ignored);
        }
        AuditRow *rows = xmalloc((n + 1) * sizeof *rows);
        for (size_t i = 0; i < n; i++) {
            rows[i] = audit_row_of(i, &res[2 * i], &res[2 * i + 1]);
            rows[i].flipped = flipped[i];
        }
        audit_rank(rows, n);
        for (size_t i = 0; i < out->n_flipped; i++) out->flipped_in_top += rows[i].flipped == 1;
        free(rows);
    }
    free(sus);
    free(ploss);
    free(flipped);
    free(res);
    rows_free(&r);
    rows_free(&t);
    return rc;
}

int demo_eval_bon(Scorer *s, const char *bon_path, DemoBon *out, OprmError *err) {
    memset(out, 0, sizeof *out);
    Rows r;
    if (read_rows(bon_path, 0, &r, err)) return -1;
    int rc = r.n ? 0 : oprm_fail(err, "%s: no Best-of-N sets", bon_path);
    size_t picked[DEMO_N_LAMBDAS] = {0};
    for (size_t i = 0; i < r.n && !rc; i++) {
        const char *prompt = field(r.rows[i], "prompt"), *best = field(r.rows[i], "best");
        json_t *others = json_object_get(r.rows[i], "others");
        size_t n = 1 + json_array_size(others);
        if (!prompt || !best || !json_is_array(others) || n < 2) {
            rc = oprm_fail(err, "%s:%zu: needs prompt, best and a non-empty others list", bon_path, i + 1);
            break;
        }
        ScoreTurn turn = {"user", prompt};
        ScoreRequest *req = xcalloc(n, sizeof *req);
        ScoreResult *res = xcalloc(n, sizeof *res);
        double *mean = xcalloc(n, sizeof *mean), *std = xcalloc(n, sizeof *std), *p_best = xcalloc(n, sizeof *p_best);
        OrdinalDist *d = xcalloc(n, sizeof *d);
        req[0] = (ScoreRequest){&turn, 1, best};
        for (size_t k = 1; k < n && !rc; k++) {
            const char *o = json_string_value(json_array_get(others, k - 1));
            if (!o) rc = oprm_fail(err, "%s:%zu: others[%zu] is not a string", bon_path, i + 1, k - 1);
            req[k] = (ScoreRequest){&turn, 1, o ? o : ""};
        }
        if (!rc) rc = scorer_score(s, req, (int)n, res, err);
        for (size_t k = 0; k < n && !rc; k++) {
            mean[k] = res[k].mean;
            std[k] = res[k].std;
            dist_of_result(&res[k], &d[k]);
        }
        for (int l = 0; l < DEMO_N_LAMBDAS && !rc; l++) {
            size_t chosen;
            rc = bon_choose(mean, std, n, DEMO_LAMBDAS[l], &chosen, err);
            picked[l] += !rc && chosen == 0;
        }
        if (!rc) rc = bon_prob_best(d, n, p_best, NULL, err);
        if (!rc) out->mean_p_best += p_best[0];
        free(req);
        free(res);
        free(mean);
        free(std);
        free(p_best);
        free(d);
    }
    if (!rc) {
        out->n_sets = r.n;
        for (int l = 0; l < DEMO_N_LAMBDAS; l++) out->picked_best[l] = (double)picked[l] / (double)r.n;
        out->mean_p_best /= (double)r.n;
    }
    rows_free(&r);
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

int demo_write_report(Scorer *s, const char *path, const char *model_dir, const char *pairs_path,
                      const DemoPairEval *ev, const char *labels_path, const char *summary_json, OprmError *err) {
    if (!ev->n_pairs) return oprm_fail(err, "demo report: no pairs");
    PairSummary overall;
    if (pair_summary(ev->scores, NULL, ev->n_pairs, &overall, err)) return -1;
    const char *subsets[DEMO_N_KINDS];
    double subset_acc[DEMO_N_KINDS];
    size_t subset_n[DEMO_N_KINDS], n_subsets = 0;
    for (int k = 0; k < DEMO_N_KINDS; k++)
        if (ev->kind_n[k]) {
            subsets[n_subsets] = DEMO_KIND_NAMES[k];
            subset_acc[n_subsets] = ev->kind_accuracy[k];
            subset_n[n_subsets++] = ev->kind_n[k];
        }
    LabelTable labels = {0};
    int rc = 0;
    if (labels_path) {
        Rows r;
        if (read_rows(labels_path, 0, &r, err)) return -1;
        ScoreTurn *turns = xcalloc(r.n + 1, sizeof *turns);
        ScoreRequest *req = xcalloc(r.n + 1, sizeof *req);
        ScoreResult *res = xcalloc(r.n + 1, sizeof *res);
        for (size_t i = 0; i < r.n && !rc; i++) {
            const char *p = field(r.rows[i], "prompt"), *resp = field(r.rows[i], "response");
            if (!p || !resp || grade_index(field(r.rows[i], "label")) < 0)
                rc = oprm_fail(err, "%s:%zu: needs prompt, response and a good/normal/bad label", labels_path, i + 1);
            turns[i] = (ScoreTurn){"user", p};
            req[i] = (ScoreRequest){&turns[i], 1, resp};
        }
        if (!rc && r.n) rc = scorer_score(s, req, (int)r.n, res, err);
        static const LabelKind kinds[3] = {LABEL_BAD, LABEL_NORMAL, LABEL_GOOD};
        for (size_t i = 0; i < r.n && !rc; i++)
            label_table_add(&labels, label_quality(kinds[grade_index(field(r.rows[i], "label"))]), &res[i]);
        free(turns);
        free(req);
        free(res);
        rows_free(&r);
    }
    const char *files[2] = {pairs_path, labels_path};
    ReportInput in = {0};
    in.model = model_dir;
    in.files = files;
    in.n_files = labels_path ? 2 : 1;
    in.pairs = ev->scores;
    in.n_pairs = ev->n_pairs;
    in.overall = &overall;
    in.subsets = subsets;
    in.subset_accuracy = subset_acc;
    in.subset_n = subset_n;
    in.n_subsets = n_subsets;
    in.labels = labels_path ? &labels : NULL;
    in.summary_json = summary_json;
    if (!rc) rc = report_html_write(path, &in, err);
    label_table_free(&labels);
    return rc;
}
