/* oprm audit: rank the pairs of a preference file by suspicion (spec §5) =
 * P(r>c) + max(bimodality_c, bimodality_r), to find labels that may be wrong. */
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
#include "eval/audit.h"
#include "eval/score_data.h"
#include "io/fileio.h"

static const char USAGE[] =
    "usage: oprm audit --model DIR --data FILE [--flipped-key K] [--top N] [options]\n\n"
    "Scores every pair of FILE and writes them ranked by suspicion, most suspicious first,\n"
    "one JSON line each: rank, id, line, suspicion = P(r>c) + max(bimodality_c, bimodality_r),\n"
    "p_chosen_better, p_tie, p_rejected_better, mean and bimodality of both sides, bimodal flags.\n"
    "A summary goes to stderr (and --summary FILE as JSON): how many pairs look flipped\n"
    "(P(r>c) > P(c>r)) and how many have a bimodal side.\n\n";

typedef struct {
    AuditRow *rows;
    char **ids;
    size_t *lines;
    double *mean_c, *mean_r;
    size_t n, cap, truncated;
} AuditCtx;

static int on_record(void *vctx, const DataRecord *rec, size_t index, const ScoreResult *res, OprmError *err) {
    AuditCtx *c = vctx;
    if (rec->kind != REC_PAIR)
        return oprm_fail(err, "line %zu: a %s; oprm audit ranks preference pairs only", rec->line,
                         record_kind_name(rec->kind));
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->rows = xrealloc(c->rows, c->cap * sizeof *c->rows);
        c->ids = xrealloc(c->ids, c->cap * sizeof *c->ids);
        c->lines = xrealloc(c->lines, c->cap * sizeof *c->lines);
        c->mean_c = xrealloc(c->mean_c, c->cap * sizeof *c->mean_c);
        c->mean_r = xrealloc(c->mean_r, c->cap * sizeof *c->mean_r);
    }
    c->rows[c->n] = audit_row_of(c->n, &res[0], &res[1]);
    c->ids[c->n] = rec->id ? xstrdup(rec->id) : NULL;
    c->lines[c->n] = rec->line;
    c->mean_c[c->n] = res[0].mean;
    c->mean_r[c->n] = res[1].mean;
    c->n++;
    c->truncated += (size_t)res[0].truncated + (size_t)res[1].truncated;
    (void)index;
    return 0;
}

/* 1 / 0 from a JSON value of the flipped field; -1 when it is neither. */
static int flipped_value(const json_t *v) {
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_true(v)) return 1;
    if (json_is_integer(v)) return json_integer_value(v) != 0;
    if (json_is_real(v)) return json_real_value(v) != 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes")) return 1;
        if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no") || !*s) return 0;
    }
    return -1;
}

/* The records carry the flag in a field the data layer does not keep: read it
 * from the file again. JSONL: by the line where each record starts; a JSON
 * array: by position (only when no record was skipped). */
static int read_flipped(const char *path, const char *key, const AuditCtx *c, int skipped, int *out, OprmError *err) {
    size_t len = 0;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    const char *p = text;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    int rc = 0;
    if (*p == '[') {
        if (skipped) {
            free(text);
            return oprm_fail(err, "--flipped-key with a JSON array needs every record valid (records were skipped); "
                                  "use JSONL");
        }
        json_error_t jerr;
        json_t *arr = json_loads(p, 0, &jerr);
        for (size_t i = 0; i < c->n && rc == 0; i++) {
            int v = flipped_value(json_object_get(json_array_get(arr, i), key));
            if (v < 0) rc = oprm_fail(err, "%s: element %zu: field '%s': expected true/false or 1/0", path, i, key);
            out[i] = v;
        }
        json_decref(arr);
    } else {
        /* Walk lines once; the records' start lines increase. */
        size_t line = 1, r = 0;
        const char *s = text;
        while (r < c->n && *s) {
            const char *e = strchr(s, '\n');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (line == c->lines[r]) {
                json_error_t jerr;
                json_t *o = json_loadb(s, n, 0, &jerr);
                int v = flipped_value(json_object_get(o, key));
                json_decref(o);
                if (v < 0) {
                    rc = oprm_fail(err, "%s:%zu: field '%s': expected true/false or 1/0", path, line, key);
                    break;
                }
                out[r++] = v;
            }
            if (!e) break;
            s = e + 1;
            line++;
        }
        if (rc == 0 && r < c->n) rc = oprm_fail(err, "%s: could not find line %zu again", path, c->lines[r]);
    }
    free(text);
    return rc;
}

static void audit_free(AuditCtx *c) {
    for (size_t i = 0; i < c->n; i++) free(c->ids[i]);
    free(c->ids);
    free(c->rows);
    free(c->lines);
    free(c->mean_c);
    free(c->mean_r);
}

static int write_ranking(FILE *out, const AuditCtx *c, size_t top, int have_flipped) {
    for (size_t k = 0; k < c->n && k < top; k++) {
        const AuditRow *r = &c->rows[k];
        size_t i = r->record;
        json_t *o = json_object();
        json_object_set_new(o, "rank", json_integer((json_int_t)k + 1));
        json_object_set_new(o, "id", c->ids[i] ? json_string(c->ids[i]) : json_null());
        json_object_set_new(o, "line", json_integer((json_int_t)c->lines[i]));
        json_object_set_new(o, "record", json_integer((json_int_t)i));
        json_object_set_new(o, "suspicion", json_real(r->suspicion));
        json_object_set_new(o, "p_chosen_better", json_real(r->p_win));
        json_object_set_new(o, "p_tie", json_real(r->p_tie));
        json_object_set_new(o, "p_rejected_better", json_real(r->p_loss));
        json_object_set_new(o, "mean_chosen", json_real(c->mean_c[i]));
        json_object_set_new(o, "mean_rejected", json_real(c->mean_r[i]));
        json_object_set_new(o, "bimodality_chosen", json_real(r->bimodality_c));
        json_object_set_new(o, "bimodality_rejected", json_real(r->bimodality_r));
        json_object_set_new(o, "bimodal_chosen", json_boolean(r->bimodal_c));
        json_object_set_new(o, "bimodal_rejected", json_boolean(r->bimodal_r));
        if (have_flipped) json_object_set_new(o, "flipped", json_boolean(r->flipped == 1));
        int rc = write_json_line(out, o);
        json_decref(o);
        if (rc) return -1;
    }
    return 0;
}

int cmd_audit(int argc, char **argv) {
    ScoreArgs a;
    score_args_init(&a, "audit", 0);
    const char *flipped_key = NULL, *summary_path = NULL;
    double top = -1;
    Options o;
    options_init(&o, "audit");
    o.usage = USAGE;
    options_add(&o, OPT("--flipped-key", "K",
                             "a record field marking pairs known to be flipped (true/false,\n"
                             "1/0; absent or null = not flipped): the summary reports the AUROC\n"
                             "of the suspicion score (and of P(r>c) alone) for finding them",
                             OPT_STRING, &flipped_key));
    options_add(&o, OPT("--top", "N", "write only the N most suspicious pairs [all]", OPT_DOUBLE, &top, 1, 1e15));
    options_add(&o, OPT("--summary", "FILE", "also write the summary as JSON", OPT_STRING, &summary_path));
    score_args_options(&a, &o);
    int prc = options_parse_or_help(&o, argc, argv);
    if (prc) return prc == OPTIONS_HELP ? EXIT_OK : EXIT_USAGE;
    if (score_args_check(&a)) return EXIT_USAGE;
    DataReport rep;
    DataFile *df = score_args_open_data(&a, a.data[0], &rep);
    if (!df) return EXIT_RUNTIME;
    if (rep.by_kind[REC_PAIR] != rep.records) {
        fprintf(stderr, "oprm audit: %s has %zu records that are not pairs; oprm audit ranks preference pairs "
                        "{\"prompt\", \"chosen\", \"rejected\"} (use --data-kind pair or a pairs file)\n",
                a.data[0], rep.records - rep.by_kind[REC_PAIR]);
        data_close(df);
        return EXIT_RUNTIME;
    }
    Scorer *s = score_args_open_model(&a);
    if (!s) {
        data_close(df);
        return EXIT_RUNTIME;
    }
    AuditCtx c = {0};
    int rc = EXIT_RUNTIME;
    int *flipped = NULL;
    Progress prog;
    progress_start(&prog, "pairs", data_count(df), a.progress);
    OprmError err = {{0}};
    int r = score_data_file(s, df, a.batch_size, &prog, on_record, &c, &err);
    progress_finish(&prog);
    if (r < 0) {
        if (dist_rank() == 0) fprintf(stderr, "oprm audit: %s: %s\n", a.data[0], err.msg);
        goto done;
    }
    if (r == SCORE_DATA_WORKER) { /* mpirun: this rank scored its share, rank 0 reports */
        rc = EXIT_OK;
        goto done;
    }
    if (flipped_key) {
        flipped = xcalloc(c.n ? c.n : 1, sizeof *flipped);
        if (read_flipped(a.data[0], flipped_key, &c, rep.skipped > 0, flipped, &err) != 0) {
            fprintf(stderr, "oprm audit: --flipped-key: %s\n", err.msg);
            goto done;
        }
        for (size_t i = 0; i < c.n; i++) c.rows[i].flipped = flipped[i];
    }
    /* Summary over file order (before ranking). */
    size_t look_flipped = 0, bimodal_pairs = 0, bimodal_c = 0, bimodal_r = 0, known = 0;
    double *susp = xmalloc((c.n ? c.n : 1) * sizeof *susp), *ploss = xmalloc((c.n ? c.n : 1) * sizeof *ploss);
    for (size_t i = 0; i < c.n; i++) {
        const AuditRow *r = &c.rows[i];
        look_flipped += r->p_loss > r->p_win;
        bimodal_pairs += r->bimodal_c || r->bimodal_r;
        bimodal_c += (size_t)r->bimodal_c;
        bimodal_r += (size_t)r->bimodal_r;
        known += flipped && flipped[i];
        susp[i] = r->suspicion;
        ploss[i] = r->p_loss;
    }
    json_t *sum = json_pack("{s:I, s:I, s:i, s:I, s:I, s:I, s:I}", "pairs", (json_int_t)c.n, "truncated_responses",
                            (json_int_t)c.truncated, "max_len", scorer_max_len(s), "look_flipped",
                            (json_int_t)look_flipped, "bimodal_pairs", (json_int_t)bimodal_pairs, "bimodal_chosen",
                            (json_int_t)bimodal_c, "bimodal_rejected", (json_int_t)bimodal_r);
    /* spec §3: left out by the reader, not ranked */
    json_object_set_new(sum, "skipped_contradicting", json_integer((json_int_t)rep.by_reason[DATA_CONTRADICTION]));
    json_object_set_new(sum, "skipped_identical", json_integer((json_int_t)rep.by_reason[DATA_IDENTICAL]));
    fprintf(stderr, "oprm audit: %zu pairs; %zu look flipped (P(r>c) > P(c>r)); %zu have a bimodal side "
                    "(bimodality >= %.2f: %zu chosen, %zu rejected)\n",
            c.n, look_flipped, bimodal_pairs, OPRM_BIMODAL_THRESHOLD, bimodal_c, bimodal_r);
    if (rep.by_reason[DATA_CONTRADICTION] || rep.by_reason[DATA_IDENTICAL])
        fprintf(stderr, "oprm audit: %zu pairs left out, not ranked: %zu with labels that contradict the preference, "
                        "%zu with identical chosen and rejected text (spec §3)\n",
                rep.by_reason[DATA_CONTRADICTION] + rep.by_reason[DATA_IDENTICAL], rep.by_reason[DATA_CONTRADICTION],
                rep.by_reason[DATA_IDENTICAL]);
    if (c.truncated)
        fprintf(stderr, "oprm audit: %zu of %zu responses truncated to --max-len %d\n", c.truncated, 2 * c.n,
                scorer_max_len(s));
    if (flipped) {
        double au_s = 0, au_p = 0;
        json_object_set_new(sum, "flipped_known", json_integer((json_int_t)known));
        if (auroc(susp, flipped, c.n, &au_s, &err) == 0 && auroc(ploss, flipped, c.n, &au_p, &err) == 0) {
            json_object_set_new(sum, "auroc_suspicion", json_real(au_s));
            json_object_set_new(sum, "auroc_p_rejected_better", json_real(au_p));
            fprintf(stderr, "oprm audit: %zu pairs marked '%s': AUROC of the suspicion score %.4f (of P(r>c) alone "
                            "%.4f; 0.5 = chance)\n", known, flipped_key, au_s, au_p);
        } else {
            json_object_set_new(sum, "auroc_suspicion", json_null());
            fprintf(stderr, "oprm audit: no AUROC: %s\n", err.msg);
        }
    }
    free(susp);
    free(ploss);
    audit_rank(c.rows, c.n);
    char *tmp = NULL;
    FILE *out = output_open("audit", a.output, &tmp);
    if (out) {
        int wok = write_ranking(out, &c, top > 0 ? (size_t)top : c.n, flipped != NULL) == 0;
        if (!wok) output_write_failed("audit", a.output, errno ? errno : EIO);
        if (output_close("audit", out, a.output, tmp, wok) == 0 && wok) rc = EXIT_OK;
    }
    if (rc == EXIT_OK && summary_path) {
        char *text = json_dumps(sum, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        StrBuf b = {0};
        sb_printf(&b, "%s\n", text);
        if (write_file_atomic(summary_path, b.s, b.n, &err) != 0) {
            fprintf(stderr, "oprm audit: --summary %s: %s\n", summary_path, err.msg);
            rc = EXIT_RUNTIME;
        }
        sb_free(&b);
        free(text);
    }
    json_decref(sum);
done:
    free(flipped);
    audit_free(&c);
    scorer_close(s);
    data_close(df);
    return rc;
}
