/* oprm bon: risk-aware Best-of-N (spec §5). For every best-of-N set (or pair,
 * as N = 2) the chosen candidate argmax mean - lambda std, its mean and std,
 * and every candidate's exact P(strictly best). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/score_args.h"
#include "data/flags.h"
#include "dist/dist.h"
#include "eval/bon.h"
#include "eval/score_data.h"
#include "io/fileio.h"

static const char USAGE[] =
    "usage: oprm bon --model DIR --data FILE [--risk LAMBDA] [--output FILE] [options]\n\n"
    "Best-of-N selection. FILE holds best-of-N sets {\"prompt\", \"best\", \"others\": [...]}\n"
    "(a pair counts as a set of two, chosen = best). For each set one JSON line: the chosen\n"
    "candidate (argmax mean - LAMBDA * std; ties -> lowest index; index 0 = best), its mean,\n"
    "std and utility, whether it is the file's best, P(best) of every candidate (the exact\n"
    "probability that its score is strictly above all others) and P(tie at top)\n"
    "(= 1 - sum P(best)). A summary goes to stderr (and --summary FILE as JSON): how often\n"
    "the chosen candidate is the true best.\n\n";

typedef struct {
    FILE *out;
    double lambda;
    size_t sets, chosen_best, most_likely_is_best, candidates, truncated;
    double sum_p_best_of_best, sum_tie, sum_chosen_mean;
    int write_errno; /* a failed write of the output (0: none) */
} BonCtx;

static int on_record(void *vctx, const DataRecord *rec, size_t index, const ScoreResult *res, OprmError *err) {
    BonCtx *c = vctx;
    if (rec->kind == REC_POINT)
        return oprm_fail(err, "line %zu: a single response; oprm bon needs best-of-N sets "
                              "({\"prompt\", \"best\", \"others\"}) or pairs", rec->line);
    BonResult b;
    if (bon_evaluate(res, rec->n_responses, c->lambda, &b, err) != 0) return oprm_prefix(err, "line %zu: ", rec->line);
    json_t *cands = json_array();
    for (size_t i = 0; i < rec->n_responses; i++)
        json_array_append_new(cands, json_pack("{s:I, s:s, s:f, s:f, s:f}", "index", (json_int_t)i, "side",
                                               response_side_name(rec->kind, i), "mean", res[i].mean, "std",
                                               res[i].std, "p_best", b.p_best[i]));
    json_t *o = json_object();
    json_object_set_new(o, "id", rec->id ? json_string(rec->id) : json_null());
    json_object_set_new(o, "line", json_integer((json_int_t)rec->line));
    json_object_set_new(o, "record", json_integer((json_int_t)index));
    if (rec->subset) json_object_set_new(o, "subset", json_string(rec->subset));
    json_object_set_new(o, "n", json_integer((json_int_t)rec->n_responses));
    json_object_set_new(o, "chosen", json_integer((json_int_t)b.chosen));
    json_object_set_new(o, "chosen_side", json_string(response_side_name(rec->kind, b.chosen)));
    json_object_set_new(o, "chosen_is_best", json_boolean(b.chosen == 0));
    json_object_set_new(o, "mean", json_real(res[b.chosen].mean));
    json_object_set_new(o, "std", json_real(res[b.chosen].std));
    json_object_set_new(o, "utility", json_real(b.utility));
    json_object_set_new(o, "most_likely_best", json_integer((json_int_t)b.most_likely_best));
    json_object_set_new(o, "p_tie_top", json_real(b.p_tie_top));
    json_object_set_new(o, "candidates", cands);
    int rc = write_json_line(c->out, o);
    if (rc) c->write_errno = errno ? errno : EIO;
    json_decref(o);
    c->sets++;
    c->candidates += rec->n_responses;
    for (size_t i = 0; i < rec->n_responses; i++) c->truncated += (size_t)res[i].truncated;
    c->chosen_best += b.chosen == 0;
    c->most_likely_is_best += b.most_likely_best == 0;
    c->sum_p_best_of_best += b.p_best[0];
    c->sum_tie += b.p_tie_top;
    c->sum_chosen_mean += res[b.chosen].mean;
    bon_result_free(&b);
    return rc ? oprm_fail(err, "cannot write the output: %s", strerror(c->write_errno)) : 0;
}

int cmd_bon(int argc, char **argv) {
    ScoreArgs a;
    score_args_init(&a, "bon", 0);
    BonCtx c = {0};
    const char *summary_path = NULL;
    Options o;
    options_init(&o, "bon");
    o.usage = USAGE;
    options_add(&o, OPT("--risk", "LAMBDA", "risk aversion lambda >= 0 [0: plain argmax of the mean]",
                             OPT_DOUBLE, &c.lambda, 0, 1e6));
    options_add(&o, OPT("--summary", "FILE", "also write the summary as JSON", OPT_STRING, &summary_path));
    score_args_options(&a, &o);
    int prc = options_parse_or_help(&o, argc, argv);
    if (prc) return prc == OPTIONS_HELP ? EXIT_OK : EXIT_USAGE;
    if (score_args_check(&a)) return EXIT_USAGE;
    DataReport rep;
    DataFile *df = score_args_open_data(&a, a.data[0], &rep);
    if (!df) return EXIT_RUNTIME;
    if (rep.by_kind[REC_POINT]) {
        fprintf(stderr, "oprm bon: %s has %zu single labelled responses; oprm bon needs best-of-N sets "
                        "{\"prompt\", \"best\", \"others\": [...]} or pairs (see docs/data.md)\n", a.data[0],
                rep.by_kind[REC_POINT]);
        data_close(df);
        return EXIT_RUNTIME;
    }
    Scorer *s = score_args_open_model(&a);
    if (!s) {
        data_close(df);
        return EXIT_RUNTIME;
    }
    char *tmp = NULL;
    int rc = EXIT_RUNTIME, worker = 0;
    c.out = output_open("bon", a.output, &tmp);
    if (c.out) {
        Progress prog;
        progress_start(&prog, "sets", data_count(df), a.progress);
        OprmError err = {{0}};
        int r = score_data_file(s, df, a.batch_size, &prog, on_record, &c, &err);
        int ok = r >= 0;
        worker = r == SCORE_DATA_WORKER; /* mpirun: rank 0 reports */
        progress_finish(&prog);
        if (!ok && c.write_errno) output_write_failed("bon", a.output, c.write_errno);
        else if (!ok && dist_rank() == 0) fprintf(stderr, "oprm bon: %s: %s\n", a.data[0], err.msg);
        if (output_close("bon", c.out, a.output, tmp, ok) == 0 && ok) rc = EXIT_OK;
    }
    if (rc == EXIT_OK && !worker) {
        double n = (double)c.sets;
        json_t *sum = json_pack("{s:I, s:I, s:I, s:i, s:f, s:I, s:f, s:f, s:f, s:f, s:f}", "sets", (json_int_t)c.sets,
                                "truncated", (json_int_t)c.truncated, "max_len", scorer_max_len(s),
                                "candidates", (json_int_t)c.candidates, "risk", c.lambda, "chosen_is_best",
                                (json_int_t)c.chosen_best, "accuracy", c.chosen_best / n, "most_likely_is_best",
                                c.most_likely_is_best / n, "mean_p_best_of_true_best", c.sum_p_best_of_best / n,
                                "mean_p_tie_top", c.sum_tie / n, "mean_chosen_mean", c.sum_chosen_mean / n);
        fprintf(stderr, "oprm bon: %zu sets (%zu candidates), risk %g: the chosen candidate is the file's best in "
                        "%zu (%.1f%%); mean P(best) of the true best %.3f, mean P(tie at top) %.3f\n",
                c.sets, c.candidates, c.lambda, c.chosen_best, 100.0 * c.chosen_best / n, c.sum_p_best_of_best / n,
                c.sum_tie / n);
        if (c.truncated)
            fprintf(stderr, "oprm bon: %zu of %zu candidates truncated to --max-len %d\n", c.truncated, c.candidates,
                    scorer_max_len(s));
        if (summary_path) {
            char *text = json_dumps(sum, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
            OprmError err = {{0}};
            StrBuf b = {0};
            sb_printf(&b, "%s\n", text);
            if (write_file_atomic(summary_path, b.s, b.n, &err) != 0) {
                fprintf(stderr, "oprm bon: --summary %s: %s\n", summary_path, err.msg);
                rc = EXIT_RUNTIME;
            }
            sb_free(&b);
            free(text);
        }
        json_decref(sum);
    }
    scorer_close(s);
    data_close(df);
    return rc;
}
