/* oprm score: every response of a data file -> one JSONL line with its
 * 9-level distribution and statistics (spec §4). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/score_args.h"
#include "data/flags.h"
#include "dist/dist.h"
#include "eval/score_data.h"

static const char USAGE[] =
    "usage: oprm score --model DIR --data FILE [--output FILE] [options]\n\n"
    "Scores every response of FILE and writes one JSON line per response (to stdout or\n"
    "--output, atomically: the file appears when complete): pairs give two lines (chosen,\n"
    "then rejected), labelled responses and {\"prompt\", \"response\"} records one, best-of-N\n"
    "sets one per candidate (best first). Each line: id, line, record, kind, side, index,\n"
    "subset, label, distribution (p(1..9)), mean, std, entropy, mode, bimodality, bimodal,\n"
    "truncated, n_tokens (see docs/eval.md).\n\n";

typedef struct {
    FILE *out;
    size_t responses, truncated;
    int write_errno; /* a failed write of the output (0: none) */
} ScoreCtx;

static int on_record(void *vctx, const DataRecord *rec, size_t index, const ScoreResult *res, OprmError *err) {
    ScoreCtx *c = vctx;
    for (size_t k = 0; k < rec->n_responses; k++) {
        json_t *o = json_object();
        json_object_set_new(o, "id", rec->id ? json_string(rec->id) : json_null());
        json_object_set_new(o, "line", json_integer((json_int_t)rec->line));
        json_object_set_new(o, "record", json_integer((json_int_t)index));
        json_object_set_new(o, "kind", json_string(rec->kind == REC_PAIR ? "pair" : rec->kind == REC_POINT ? "point" : "best-of-n"));
        json_object_set_new(o, "side", json_string(response_side_name(rec->kind, k)));
        json_object_set_new(o, "index", json_integer((json_int_t)k));
        if (rec->subset) json_object_set_new(o, "subset", json_string(rec->subset));
        if (rec->responses[k].label.kind != LABEL_NONE) {
            char buf[16];
            json_object_set_new(o, "label", json_string(label_describe(rec->responses[k].label, buf, sizeof buf)));
        }
        json_t *stats = score_result_json(&res[k]);
        json_object_update(o, stats);
        json_decref(stats);
        int rc = write_json_line(c->out, o);
        if (rc) c->write_errno = errno ? errno : EIO;
        json_decref(o);
        if (rc) return oprm_fail(err, "cannot write the output: %s", strerror(c->write_errno));
        c->responses++;
        c->truncated += (size_t)res[k].truncated;
    }
    return 0;
}

int cmd_score(int argc, char **argv) {
    ScoreArgs a;
    score_args_init(&a, "score", 0);
    Options o;
    options_init(&o, "score");
    o.usage = USAGE;
    score_args_options(&a, &o);
    int prc = options_parse_or_help(&o, argc, argv);
    if (prc) return prc == OPTIONS_HELP ? EXIT_OK : EXIT_USAGE;
    if (score_args_check(&a)) return EXIT_USAGE;
    DataReport rep;
    DataFile *df = score_args_open_data(&a, a.data[0], &rep);
    if (!df) return EXIT_RUNTIME;
    Scorer *s = score_args_open_model(&a);
    if (!s) {
        data_close(df);
        return EXIT_RUNTIME;
    }
    char *tmp = NULL;
    FILE *out = output_open("score", a.output, &tmp);
    int rc = EXIT_RUNTIME;
    if (out) {
        ScoreCtx c = {.out = out};
        Progress prog;
        progress_start(&prog, "records", data_count(df), a.progress);
        OprmError err = {{0}};
        double t0 = progress_now();
        int r = score_data_file(s, df, a.batch_size, &prog, on_record, &c, &err);
        int ok = r >= 0, worker = r == SCORE_DATA_WORKER; /* mpirun: rank 0 writes it all */
        progress_finish(&prog);
        if (!ok && c.write_errno) output_write_failed("score", a.output, c.write_errno);
        else if (!ok && dist_rank() == 0) fprintf(stderr, "oprm score: %s: %s\n", a.data[0], err.msg);
        int closed = output_close("score", out, a.output, tmp, ok) == 0;
        if (closed && ok && worker) {
            rc = EXIT_OK;
        } else if (closed && ok) {
            double dt = progress_now() - t0;
            fprintf(stderr, "oprm score: %zu responses of %zu records in %.1f s (%.1f responses/s); %zu truncated to "
                            "--max-len %d\n", c.responses, data_count(df), dt, dt > 0 ? (double)c.responses / dt : 0,
                    c.truncated, scorer_max_len(s));
            rc = EXIT_OK;
        }
    }
    scorer_close(s);
    data_close(df);
    return rc;
}
