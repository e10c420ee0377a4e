/* oprm eval: pair accuracy (spec §5) overall, per subset and per file,
 * accuracy by probability, ECE, Best-of-N accuracy, per-label statistics;
 * optionally RewardBench section scores and an HTML report. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/score_args.h"
#include "data/flags.h"
#include "dist/dist.h"
#include "eval/eval_pairs.h"
#include "eval/report_html.h"
#include "eval/rewardbench.h"
#include "eval/score_data.h"

static const char USAGE[] =
    "usage: oprm eval --model DIR --data FILE... [--report FILE.html] [--rewardbench] [options]\n\n"
    "Scores every response of the files and prints a JSON summary on stdout:\n"
    "  accuracy          pairs with mean(chosen) > mean(rejected); a tie counts as wrong\n"
    "  accuracy_by_prob  pairs with P(chosen > rejected) > P(rejected > chosen)\n"
    "  ece               ECE of P(c>r), each pair (P(c>r), 1), 10 bins (= 1 - mean P(c>r))\n"
    "  ece_symmetric     ECE over both orders (P(c>r), 1) and (P(r>c), 0), 10 bins\n"
    "  mean_p_chosen_better, mean_p_tie, truncated counts, n\n"
    "  subsets / files   the same per `subset` field and per file\n"
    "  best_of_n         fraction of best-of-N sets where best's mean beats every other's\n"
    "  labels            labelled responses per label: mean score, P(label region), mode in region\n"
    "See docs/eval.md for every field.\n\n";

typedef struct {
    char **names;
    size_t n;
} Names;

static int name_index(Names *t, const char *s) {
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->names[i], s)) return (int)i;
    t->names = xrealloc(t->names, (t->n + 1) * sizeof *t->names);
    t->names[t->n] = xstrdup(s);
    return (int)t->n++;
}

typedef struct {
    /* every pair of every file */
    PairScore *pairs;
    int *pair_subset; /* index into subsets, -1 none */
    int *pair_file;
    size_t n_pairs, cap_pairs;
    Names subsets;
    /* best-of-N sets */
    size_t bon_sets, bon_correct, bon_candidates;
    int *bon_file;
    unsigned char *bon_ok;
    size_t cap_bon;
    LabelTable labels;
    size_t responses, truncated, points;
    int file; /* the file being read */
} EvalCtx;

static int on_record(void *vctx, const DataRecord *rec, size_t index, const ScoreResult *res, OprmError *err) {
    EvalCtx *c = vctx;
    for (size_t k = 0; k < rec->n_responses; k++) {
        c->responses++;
        c->truncated += (size_t)res[k].truncated;
        label_table_add(&c->labels, rec->responses[k].label, &res[k]);
    }
    if (rec->kind == REC_PAIR) {
        if (c->n_pairs == c->cap_pairs) {
            c->cap_pairs = c->cap_pairs ? 2 * c->cap_pairs : 256;
            c->pairs = xrealloc(c->pairs, c->cap_pairs * sizeof *c->pairs);
            c->pair_subset = xrealloc(c->pair_subset, c->cap_pairs * sizeof *c->pair_subset);
            c->pair_file = xrealloc(c->pair_file, c->cap_pairs * sizeof *c->pair_file);
        }
        c->pairs[c->n_pairs] = pair_score_of(&res[0], &res[1]);
        c->pair_subset[c->n_pairs] = rec->subset ? name_index(&c->subsets, rec->subset) : -1;
        c->pair_file[c->n_pairs] = c->file;
        c->n_pairs++;
    } else if (rec->kind == REC_BEST_OF_N) {
        if (c->bon_sets == c->cap_bon) {
            c->cap_bon = c->cap_bon ? 2 * c->cap_bon : 64;
            c->bon_file = xrealloc(c->bon_file, c->cap_bon * sizeof *c->bon_file);
            c->bon_ok = xrealloc(c->bon_ok, c->cap_bon);
        }
        int ok = bon_best_beats_all(res, rec->n_responses);
        c->bon_file[c->bon_sets] = c->file;
        c->bon_ok[c->bon_sets] = (unsigned char)ok;
        c->bon_sets++;
        c->bon_correct += (size_t)ok;
        c->bon_candidates += rec->n_responses;
    } else {
        c->points++;
    }
    return 0;
}

static json_t *bon_json(const EvalCtx *c, int file) {
    size_t n = 0, ok = 0;
    for (size_t i = 0; i < c->bon_sets; i++)
        if (file < 0 || c->bon_file[i] == file) {
            n++;
            ok += c->bon_ok[i];
        }
    if (!n) return json_null();
    return json_pack("{s:I, s:I, s:f, s:s}", "n", (json_int_t)n, "best_beats_all", (json_int_t)ok, "accuracy",
                     (double)ok / (double)n, "definition", "mean(best) > mean(other) for every other; ties wrong");
}

/* Pair summary of the pairs selected by (file, subset); -1 = any. *out is
 * NULL when no pair is selected; a summary that cannot be computed (e.g. a
 * non-finite score) fails with err set, never a silent null. */
static int pairs_json(const EvalCtx *c, int file, int subset, PairSummary *out_summary, json_t **out,
                      OprmError *err) {
    *out = NULL;
    size_t *idx = xmalloc((c->n_pairs ? c->n_pairs : 1) * sizeof *idx), n = 0;
    for (size_t i = 0; i < c->n_pairs; i++)
        if ((file < 0 || c->pair_file[i] == file) && (subset < 0 || c->pair_subset[i] == subset)) idx[n++] = i;
    PairSummary s;
    int rc = 0;
    if (n) {
        if (pair_summary(c->pairs, idx, n, &s, err) == 0) {
            *out = pair_summary_json(&s);
            if (out_summary) *out_summary = s;
        } else {
            rc = -1;
        }
    }
    free(idx);
    return rc;
}

static const char *const ECE_DEFINITION =
    "ece: metric_pair_ece, 10 equal-width bins of P(c>r), every pair contributes (P(c>r), outcome 1), so it "
    "equals 1 - mean P(c>r); ece_symmetric: metric_pair_ece_symmetric, each pair in both orders "
    "(P(c>r), 1) and (P(r>c), 0), 2n samples, 10 bins";

static void eval_free(EvalCtx *c) {
    free(c->pairs);
    free(c->pair_subset);
    free(c->pair_file);
    for (size_t i = 0; i < c->subsets.n; i++) free(c->subsets.names[i]);
    free(c->subsets.names);
    free(c->bon_file);
    free(c->bon_ok);
    label_table_free(&c->labels);
}

int cmd_eval(int argc, char **argv) {
    ScoreArgs a;
    score_args_init(&a, "eval", 1);
    const char *report = NULL;
    int rewardbench = 0;
    Options o;
    options_init(&o, "eval");
    o.usage = USAGE;
    options_add(&o, OPT("--report", "FILE.html", "also write a self-contained HTML report with SVG plots",
                             OPT_STRING, &report));
    options_add(&o, OPT("--rewardbench", NULL,
                             "add RewardBench v1 section scores and leaderboard score for\n"
                             "records whose subset is a RewardBench subset name",
                             OPT_FLAG, &rewardbench, .ival = 1));
    score_args_options(&a, &o);
    int prc = options_parse_or_help(&o, argc, argv);
    if (prc) return prc == OPTIONS_HELP ? EXIT_OK : EXIT_USAGE;
    if (score_args_check(&a)) return EXIT_USAGE;
    /* Every file is opened (and validated) before the model is loaded. */
    DataFile *files[SCORE_ARGS_MAX_DATA] = {0};
    DataReport reps[SCORE_ARGS_MAX_DATA];
    int rc = EXIT_RUNTIME;
    Scorer *s = NULL;
    EvalCtx c = {0};
    json_t *root = NULL;
    for (int f = 0; f < a.n_data; f++)
        if (!(files[f] = score_args_open_data(&a, a.data[f], &reps[f]))) goto done;
    if (!(s = score_args_open_model(&a))) goto done;
    int worker = 0; /* mpirun: this rank scored its share, rank 0 reports */
    for (int f = 0; f < a.n_data; f++) {
        Progress prog;
        progress_start(&prog, "records", data_count(files[f]), a.progress);
        OprmError err = {{0}};
        c.file = f;
        int r = score_data_file(s, files[f], a.batch_size, &prog, on_record, &c, &err);
        progress_finish(&prog);
        if (r < 0) {
            if (dist_rank() == 0) fprintf(stderr, "oprm eval: %s: %s\n", a.data[f], err.msg);
            goto done;
        }
        worker |= r == SCORE_DATA_WORKER;
    }
    if (worker) {
        rc = EXIT_OK;
        goto done;
    }
    root = json_object();
    json_object_set_new(root, "model", json_string(a.model_dir));
    PairSummary overall;
    json_t *pj = NULL;
    OprmError merr = {{0}};
    if (pairs_json(&c, -1, -1, &overall, &pj, &merr) != 0) {
        fprintf(stderr, "oprm eval: cannot compute the pair metrics of %zu pairs: %s\n", c.n_pairs, merr.msg);
        goto done;
    }
    if (pj) {
        json_object_update(root, pj);
        json_decref(pj);
    } else {
        /* no preference pair in the data (labelled responses or best-of-N only) */
        json_object_set_new(root, "n", json_integer(0));
        json_object_set_new(root, "accuracy", json_null());
        fprintf(stderr, "oprm eval: the data holds no preference pairs: pair accuracy and ECE are not computed\n");
    }
    size_t skip_contra = 0, skip_ident = 0;
    for (int f = 0; f < a.n_data; f++) {
        skip_contra += reps[f].by_reason[DATA_CONTRADICTION];
        skip_ident += reps[f].by_reason[DATA_IDENTICAL];
    }
    json_object_set_new(root, "pairs_skipped", json_pack("{s:I, s:I, s:s}", "labels_contradict", (json_int_t)skip_contra,
                                                         "identical", (json_int_t)skip_ident, "definition",
                                                         "left out, not scored (spec §3): chosen labelled entirely "
                                                         "below rejected, or chosen and rejected the same text"));
    json_object_set_new(root, "ece_definition", json_string(ECE_DEFINITION));
    json_object_set_new(root, "responses", json_integer((json_int_t)c.responses));
    json_object_set_new(root, "truncated", json_integer((json_int_t)c.truncated));
    json_object_set_new(root, "max_len", json_integer(scorer_max_len(s)));
    /* Per subset, in order of first appearance. */
    json_t *subsets = json_object();
    double *sub_acc = xcalloc(c.subsets.n + 1, sizeof *sub_acc);
    size_t *sub_n = xcalloc(c.subsets.n + 1, sizeof *sub_n);
    SubsetAccuracy *rb_in = xcalloc(c.subsets.n + 1, sizeof *rb_in);
    for (size_t k = 0; k < c.subsets.n; k++) {
        PairSummary ss = {0};
        json_t *sj = NULL;
        if (pairs_json(&c, -1, (int)k, &ss, &sj, &merr) != 0) {
            fprintf(stderr, "oprm eval: cannot compute the pair metrics of subset '%s': %s\n", c.subsets.names[k],
                    merr.msg);
            json_decref(subsets);
            goto metrics_failed;
        }
        json_object_set_new(subsets, c.subsets.names[k], sj ? sj : json_null());
        sub_acc[k] = ss.accuracy;
        sub_n[k] = ss.n;
        rb_in[k] = (SubsetAccuracy){c.subsets.names[k], ss.accuracy};
    }
    json_object_set_new(root, "subsets", subsets);
    json_t *files_j = json_array();
    for (int f = 0; f < a.n_data; f++) {
        json_t *fj = NULL;
        if (pairs_json(&c, f, -1, NULL, &fj, &merr) != 0) {
            fprintf(stderr, "oprm eval: %s: cannot compute the pair metrics: %s\n", a.data[f], merr.msg);
            json_decref(files_j);
            goto metrics_failed;
        }
        json_t *o = json_pack("{s:s, s:I, s:I, s:{s:I, s:I, s:I}}", "path", a.data[f], "records",
                              (json_int_t)data_count(files[f]), "skipped_invalid", (json_int_t)reps[f].skipped,
                              "kinds", "pairs", (json_int_t)reps[f].by_kind[REC_PAIR], "points", (json_int_t)reps[f].by_kind[REC_POINT], "best_of_n",
                              (json_int_t)reps[f].by_kind[REC_BEST_OF_N]);
        /* spec §3: left out by the reader, never scored */
        json_object_set_new(o, "skipped_contradicting", json_integer((json_int_t)reps[f].by_reason[DATA_CONTRADICTION]));
        json_object_set_new(o, "skipped_identical", json_integer((json_int_t)reps[f].by_reason[DATA_IDENTICAL]));
        json_object_set_new(o, "pairs", fj ? fj : json_null());
        json_object_set_new(o, "best_of_n", bon_json(&c, f));
        json_array_append_new(files_j, o);
    }
    json_object_set_new(root, "files", files_j);
    json_object_set_new(root, "best_of_n", bon_json(&c, -1));
    json_object_set_new(root, "labelled_points", json_integer((json_int_t)c.points));
    json_object_set_new(root, "labels", label_table_json(&c.labels));
    if (rewardbench) {
        RewardBenchScores rb;
        rewardbench_scores(rb_in, c.subsets.n, &rb);
        json_t *rj = rewardbench_json(&rb);
        json_t *ignored = json_array();
        for (size_t k = 0; k < c.subsets.n; k++)
            if (rewardbench_section_of(c.subsets.names[k]) < 0)
                json_array_append_new(ignored, json_string(c.subsets.names[k]));
        json_object_set_new(rj, "subsets_ignored", ignored);
        json_object_set_new(root, "rewardbench", rj);
        if (!rb.used)
            fprintf(stderr, "oprm eval: --rewardbench: no subset is a RewardBench subset name (e.g. llmbar-natural, "
                            "math-prm); use --subset-key if the names are in another field\n");
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    rc = EXIT_OK;
    if (report) {
        const char **subset_names = xmalloc((c.subsets.n + 1) * sizeof *subset_names);
        for (size_t k = 0; k < c.subsets.n; k++) subset_names[k] = c.subsets.names[k];
        ReportInput in = {.model = a.model_dir, .files = a.data, .n_files = (size_t)a.n_data, .pairs = c.pairs,
                          .n_pairs = c.n_pairs, .overall = c.n_pairs ? &overall : NULL, .subsets = subset_names,
                          .subset_accuracy = sub_acc, .subset_n = sub_n, .n_subsets = c.subsets.n,
                          .labels = &c.labels, .summary_json = text};
        OprmError err = {{0}};
        if (report_html_write(report, &in, &err) != 0) {
            fprintf(stderr, "oprm eval: --report %s: %s\n", report, err.msg);
            rc = EXIT_RUNTIME;
        }
        free(subset_names);
    }
    if (rc == EXIT_OK) {
        char *tmp = NULL;
        FILE *out = output_open("eval", a.output, &tmp);
        if (!out) rc = EXIT_RUNTIME;
        else {
            int ok = fputs(text, out) >= 0 && fputc('\n', out) != EOF;
            if (!ok) output_write_failed("eval", a.output, errno ? errno : EIO);
            if (output_close("eval", out, a.output, tmp, ok) != 0 || !ok) rc = EXIT_RUNTIME;
        }
    }
    if (rc == EXIT_OK && c.truncated)
        fprintf(stderr, "oprm eval: %zu of %zu responses truncated to --max-len %d\n", c.truncated, c.responses,
                scorer_max_len(s));
    free(text);
metrics_failed:
    free(sub_acc);
    free(sub_n);
    free(rb_in);
done:
    json_decref(root);
    eval_free(&c);
    scorer_close(s);
    for (int f = 0; f < a.n_data; f++) data_close(files[f]);
    return rc;
}
