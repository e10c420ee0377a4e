/* Issue 12, items 1, 5 and 11, as a user meets them (the binary named by
 * OPRM_BIN): `oprm eval`, `audit` and `bon` on a confident model (a fresh
 * `oprm init` model whose final norm weight is multiplied, so every digit
 * distribution is nearly or exactly one-hot) give numbers in [0, 1] and exit 0;
 * (the model: `oprm demo --max-steps 40`, so chosen and rejected differ);
 * pairs with contradicting labels or identical texts are skipped and counted
 * by train, eval and audit; error messages name the file, the line and what to
 * do. Needs no ../shared data. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "io/safetensors.h"
#include "cli_testutil.h"
#include "test.h"
#include "util/vec.h"

static char tmpdir[64];

static char *tmp(const char *name) {
    return path_join(tmpdir, name);
}

/* Runs `PREFIX oprm ARGS` in sh with stdout/stderr captured; returns the exit code. */
static int run_in(const char *prefix, const char *args, char **out, char **err_text) {
    return cli_run_in(tmpdir, prefix, args, out, err_text);
}

static int run(const char *args, char **out, char **err_text) {
    return run_in("", args, out, err_text);
}

/* A copy of model dir `src` at `dst` whose model.norm.weight is multiplied by
 * `scale` (every other tensor as stored). */
static int scaled_model(const char *src, const char *dst, float scale) {
    StrBuf cmd = {0};
    sb_printf(&cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
    int rc = system(cmd.s);
    sb_free(&cmd);
    if (rc != 0) return -1;
    char *sp = path_join(src, "model.safetensors"), *dp = path_join(dst, "model.safetensors");
    OprmError err = {{0}};
    StFile *f = st_open(sp, &err);
    if (!f) {
        fprintf(stderr, "%s\n", err.msg);
        free(sp);
        free(dp);
        return -1;
    }
    StWriteTensor *w = xcalloc((size_t)f->n_tensors, sizeof *w);
    float **bufs = xcalloc((size_t)f->n_tensors, sizeof *bufs);
    int found = 0;
    rc = 0;
    for (int i = 0; i < f->n_tensors && rc == 0; i++) {
        const StTensor *t = &f->tensors[i];
        bufs[i] = xmalloc(t->numel * sizeof(float));
        rc = st_to_f32(f, t, bufs[i], &err);
        if (!strcmp(t->name, "model.norm.weight")) {
            found = 1;
            for (size_t k = 0; k < t->numel; k++) bufs[i][k] *= scale;
        }
        w[i].name = t->name;
        w[i].data = bufs[i];
        w[i].ndim = t->ndim;
        memcpy(w[i].shape, t->shape, sizeof w[i].shape);
    }
    if (rc == 0 && found) rc = st_write_f32(dp, w, f->n_tensors, NULL, 0, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    for (int i = 0; i < f->n_tensors; i++) free(bufs[i]);
    free(bufs);
    free(w);
    st_close(f);
    free(sp);
    free(dp);
    return rc == 0 && found ? 0 : -1;
}

/* The first n lines of src into dst. */
static void head_lines(const char *src, const char *dst, int n) {
    char *text = slurp_text(src);
    FILE *f = fopen(dst, "w");
    int k = 0;
    for (char *line = strtok(text, "\n"); line && k < n; line = strtok(NULL, "\n"), k++) fprintf(f, "%s\n", line);
    fclose(f);
    free(text);
}

#define N_PAIRS 200

static char *base_model, *confident_model, *saturated_model, *uniform_model, *pairs_path;

static int in_unit(double x) {
    return x >= 0.0 && x <= 1.0;
}

/* Item 1: eval on confident models gives every pair and numbers in [0, 1]. */
static void eval_on(const char *model, int n_pairs) {
    StrBuf a = {0};
    sb_printf(&a, "eval --model %s --data %s --max-len 128 --threads 1", model, pairs_path);
    char *out = NULL, *err = NULL;
    int rc = run(a.s, &out, &err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECK(j != NULL);
    CHECK(json_num(j, "n") == n_pairs);
    double acc = json_num(j, "accuracy"), ece = json_num(j, "ece"), eces = json_num(j, "ece_symmetric");
    double pw = json_num(j, "mean_p_chosen_better"), pt = json_num(j, "mean_p_tie");
    CHECK(in_unit(acc) && in_unit(ece) && in_unit(eces) && in_unit(pw) && in_unit(pt));
    /* ece = 1 - mean P(c>r) (every pair has outcome 1), to rounding */
    CHECK_NEAR(ece, 1.0 - pw, 1e-12, 0);
    json_decref(j);
    free(out);
    free(err);
    sb_free(&a);
}

static void test_eval_confident(void) {
    eval_on(base_model, N_PAIRS);
    eval_on(confident_model, N_PAIRS);
    eval_on(saturated_model, N_PAIRS);
}

/* Final norm weight 0: every logit is 0, every distribution exactly uniform.
 * P(c>r) = P(r>c) = 36/81, P(tie) = 9/81; means tie, so accuracy 0 (a tie is
 * wrong); ECE = 1 - 4/9 = 5/9; symmetric ECE |4/9 - 1/2| = 1/18. Best-of-N
 * of two: P(best) = 4/9 each, P(tie at top) = 1/9; audit suspicion 4/9. */
static void test_uniform_model(void) {
    StrBuf a = {0};
    sb_printf(&a, "eval --model %s --data %s --max-len 128 --threads 1", uniform_model, pairs_path);
    char *out = NULL, *err = NULL;
    CHECK(run(a.s, &out, &err) == 0);
    json_t *j = json_loads(out, 0, NULL);
    CHECK(json_num(j, "n") == N_PAIRS);
    CHECK(json_num(j, "accuracy") == 0.0 && json_num(j, "accuracy_by_prob") == 0.0);
    CHECK_NEAR(json_num(j, "ece"), 5.0 / 9, 1e-12, 0);
    CHECK_NEAR(json_num(j, "ece_symmetric"), 1.0 / 18, 1e-12, 0);
    CHECK_NEAR(json_num(j, "mean_p_chosen_better"), 4.0 / 9, 1e-12, 0);
    CHECK_NEAR(json_num(j, "mean_p_tie"), 1.0 / 9, 1e-12, 0);
    json_decref(j);
    free(out);
    free(err);
    sb_free(&a);
    sb_printf(&a, "bon --model %s --data %s --max-len 128 --threads 1", uniform_model, pairs_path);
    CHECK(run(a.s, &out, NULL) == 0);
    json_t *o = json_loads(strtok(out, "\n"), 0, NULL);
    json_t *c = json_object_get(o, "candidates");
    CHECK(json_array_size(c) == 2);
    CHECK_NEAR(json_num(json_array_get(c, 0), "p_best"), 4.0 / 9, 1e-12, 0);
    CHECK_NEAR(json_num(json_array_get(c, 1), "p_best"), 4.0 / 9, 1e-12, 0);
    CHECK_NEAR(json_num(o, "p_tie_top"), 1.0 / 9, 1e-12, 0);
    CHECK(json_num(o, "chosen") == 0); /* equal utilities: the lowest index */
    json_decref(o);
    free(out);
    sb_free(&a);
    sb_printf(&a, "audit --model %s --data %s --max-len 128 --threads 1", uniform_model, pairs_path);
    CHECK(run(a.s, &out, NULL) == 0);
    o = json_loads(strtok(out, "\n"), 0, NULL);
    CHECK_NEAR(json_num(o, "suspicion"), 4.0 / 9, 1e-12, 0);
    CHECK_NEAR(json_num(o, "p_rejected_better"), 4.0 / 9, 1e-12, 0);
    json_decref(o);
    free(out);
    sb_free(&a);
}

/* The saturated model's distributions are one-hot to double precision: score
 * says so, and bon/audit still give probabilities in [0, 1] that sum to 1. */
static void test_bon_audit_confident(void) {
    const char *models[2] = {confident_model, saturated_model};
    for (int m = 0; m < 2; m++) {
        char *out = NULL, *err = NULL;
        StrBuf a = {0};
        sb_printf(&a, "bon --model %s --data %s --max-len 128 --threads 1", models[m], pairs_path);
        int rc = run(a.s, &out, &err);
        CHECK(rc == 0);
        if (rc) fprintf(stderr, "%s\n", err);
        size_t lines = 0;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
            json_t *o = json_loads(line, 0, NULL);
            if (!o) continue;
            lines++;
            double tie = json_num(o, "p_tie_top"), sum = tie;
            int ok = in_unit(tie);
            json_t *c = json_object_get(o, "candidates");
            for (size_t i = 0; i < json_array_size(c); i++) {
                double pb = json_num(json_array_get(c, i), "p_best");
                ok &= in_unit(pb);
                sum += pb;
            }
            CHECK(ok);
            CHECK_NEAR(sum, 1.0, 1e-9, 0);
            json_decref(o);
        }
        CHECK(lines == N_PAIRS);
        free(out);
        free(err);
        sb_free(&a);

        sb_printf(&a, "audit --model %s --data %s --max-len 128 --threads 1", models[m], pairs_path);
        rc = run(a.s, &out, &err);
        CHECK(rc == 0);
        if (rc) fprintf(stderr, "%s\n", err);
        lines = 0;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
            json_t *o = json_loads(line, 0, NULL);
            if (!o) continue;
            lines++;
            double w = json_num(o, "p_chosen_better"), t = json_num(o, "p_tie"), l = json_num(o, "p_rejected_better");
            CHECK(in_unit(w) && in_unit(t) && in_unit(l));
            CHECK_NEAR(w + t + l, 1.0, 1e-9, 0);
            CHECK(json_num(o, "suspicion") >= 0.0 && json_num(o, "suspicion") <= 2.0);
            json_decref(o);
        }
        CHECK(lines == N_PAIRS);
        free(out);
        free(err);
        sb_free(&a);
    }
    /* the saturated model really is one-hot: p of the mode is 1 exactly */
    char *out = NULL;
    StrBuf a = {0};
    sb_printf(&a, "score --model %s --data %s --max-len 128 --threads 1", saturated_model, pairs_path);
    CHECK(run(a.s, &out, NULL) == 0);
    json_t *o = json_loads(strtok(out, "\n"), 0, NULL);
    json_t *p = json_object_get(o, "distribution");
    double top = 0;
    for (size_t k = 0; k < json_array_size(p); k++)
        if (json_number_value(json_array_get(p, k)) > top) top = json_number_value(json_array_get(p, k));
    CHECK(top == 1.0);
    json_decref(o);
    free(out);
    sb_free(&a);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

#define GOOD "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}"

/* Item 11: a JSONL record cut short on line 3 is "at the end of the line", not
 * "near end of file"; a JSON array that ends inside an element names where
 * the element starts and does not suggest --skip-invalid (which cannot help). */
static void test_message_malformed(void) {
    char *p = tmp("bad3.jsonl"), *q = tmp("bad3.json"), *r = tmp("comma.json");
    write_text(p, GOOD "\n" GOOD "\n{\"prompt\": \"a\", \"chosen\": \"b3\",\n" GOOD "\n");
    write_text(q, "[\n" GOOD ",\n" GOOD ",\n{\"prompt\": \"a\", \"chosen\": \"b3\",\n");
    write_text(r, "[\n" GOOD ",\n" GOOD "\n" GOOD "]\n");
    StrBuf a = {0};
    char *err = NULL;
    sb_printf(&a, "eval --model %s --data %s", base_model, p);
    CHECK(run(a.s, NULL, &err) == 1);
    StrBuf want = {0};
    sb_printf(&want, "%s:3: malformed JSON: string or '}' expected at the end of the line: the record is cut short", p);
    CHECK_STR_CONTAINS(err, want.s);
    CHECK_STR_CONTAINS(err, "JSONL needs each record complete on one line");
    CHECK(!strstr(err, "end of file"));
    free(err);
    sb_free(&a);
    sb_free(&want);
    sb_printf(&a, "score --model %s --data %s", base_model, q);
    CHECK(run(a.s, NULL, &err) == 1);
    sb_printf(&want, "%s:4: malformed JSON array: the file ends inside element 3, which starts on line 4", q);
    CHECK_STR_CONTAINS(err, want.s);
    CHECK_STR_CONTAINS(err, "close the array with ']'");
    CHECK(!strstr(err, "pass --skip-invalid"));
    free(err);
    sb_free(&a);
    sb_free(&want);
    sb_printf(&a, "audit --model %s --data %s --skip-invalid", base_model, r);
    CHECK(run(a.s, NULL, &err) == 1);
    sb_printf(&want, "%s:4: malformed JSON array: expected ',' or ']' after element 2; add the missing ','", r);
    CHECK_STR_CONTAINS(err, want.s);
    free(err);
    sb_free(&a);
    sb_free(&want);
    free(p);
    free(q);
    free(r);
}

/* Item 11: a full disk (here RLIMIT_FSIZE, SIGXFSZ ignored) names the file
 * being written, not the input, says what to do, and leaves no output. */
static void test_message_disk_full(void) {
    static const char *const cmds[] = {"score", "bon", "audit", "eval"};
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "full_%s.jsonl", cmds[i]);
        char *out = tmp(name);
        StrBuf a = {0};
        sb_printf(&a, "%s --model %s --data %s --max-len 128 --output %s", cmds[i], base_model, pairs_path, out);
        char *err = NULL;
        int rc = run_in("trap '' XFSZ; ulimit -f 1;", a.s, NULL, &err);
        CHECK(rc == 1);
        StrBuf want = {0};
        sb_printf(&want, "oprm %s: cannot write %s: File too large (is the disk full?)", cmds[i], out);
        CHECK_STR_CONTAINS(err, want.s);
        CHECK_STR_CONTAINS(err, "free some space or choose another --output");
        /* the line that reports it does not name the input file */
        const char *line = strstr(err, want.s);
        const char *eol = line ? strchr(line, '\n') : NULL;
        const char *in = line ? strstr(line, "pairs.jsonl") : NULL;
        CHECK(line && (!in || (eol && in > eol)));
        CHECK(!file_exists(out));
        sb_free(&want);
        sb_free(&a);
        free(err);
        free(out);
    }
}

/* Item 11: a --max-len below the frame names the real token counts (it said
 * "scoring prompt of 0 tokens"), the file and line, and the least --max-len. */
static void test_message_max_len(void) {
    StrBuf a = {0};
    sb_printf(&a, "score --model %s --data %s --max-len 8", base_model, pairs_path);
    char *err = NULL;
    CHECK(run(a.s, NULL, &err) == 1);
    CHECK(!strstr(err, "of 0 tokens"));
    StrBuf want = {0};
    sb_printf(&want, "%s: line 1 (record 0, chosen)", pairs_path);
    CHECK_STR_CONTAINS(err, want.s);
    CHECK_STR_CONTAINS(err, "and does not fit --max-len 8: the frame alone");
    const char *at = strstr(err, "the scoring prompt is ");
    int total = at ? atoi(at + strlen("the scoring prompt is ")) : 0;
    const char *fr = strstr(err, "the frame alone (system text, template, chat markup, cue) is ");
    int frame = fr ? atoi(fr + strlen("the frame alone (system text, template, chat markup, cue) is ")) : 0;
    CHECK(total > frame && frame > 8);
    char least[64];
    snprintf(least, sizeof least, "raise --max-len to at least %d", frame);
    CHECK_STR_CONTAINS(err, least);
    free(err);
    sb_free(&want);
    sb_free(&a);
}

/* Item 5: a file of 20 demo pairs plus one pair whose labels contradict its
 * preference (chosen bad, rejected good; line 22), one with identical chosen
 * and rejected text (line 23) and one whose labels overlap (chosen normal,
 * rejected rated 6: kept, line 21). Every command keeps the same 21 pairs and
 * reports the two it left out. */
static char *skip_file(void) {
    char *path = tmp("skips.jsonl");
    head_lines(pairs_path, path, 20);
    FILE *f = fopen(path, "a");
    fputs("{\"prompt\": \"Write four even digits.\", \"chosen\": \"2468\", \"rejected\": \"2461\", "
          "\"chosen_label\": \"normal\", \"rejected_label\": 6}\n", f);
    fputs("{\"prompt\": \"Write four even digits.\", \"chosen\": \"1357\", \"rejected\": \"2468\", "
          "\"chosen_label\": \"bad\", \"rejected_label\": \"good\"}\n", f);
    fputs("{\"prompt\": \"Write four odd digits.\", \"chosen\": \"1357\", \"rejected\": \"1357\"}\n", f);
    fclose(f);
    return path;
}

static void check_reported(const char *err, const char *path) {
    StrBuf want = {0};
    sb_printf(&want, "%s:22: field 'chosen_label': chosen is labelled bad but rejected good", path);
    CHECK_STR_CONTAINS(err, want.s);
    sb_free(&want);
    sb_printf(&want, "%s:23: field 'rejected': same text as 'chosen'", path);
    CHECK_STR_CONTAINS(err, want.s);
    sb_free(&want);
    CHECK_STR_CONTAINS(err, "1 labels contradict the preference");
    CHECK_STR_CONTAINS(err, "1 identical chosen and rejected");
}

static void test_skipped_pairs_eval(void) {
    char *path = skip_file(), *out = NULL, *err = NULL;
    StrBuf a = {0};
    sb_printf(&a, "eval --model %s --data %s --max-len 128", base_model, path);
    int rc = run(a.s, &out, &err);
    CHECK(rc == 0); /* skipped, not refused */
    if (rc) fprintf(stderr, "%s\n", err);
    check_reported(err, path);
    json_t *j = json_loads(out, 0, NULL);
    CHECK(json_num(j, "n") == 21);
    json_t *ps = json_object_get(j, "pairs_skipped");
    CHECK(json_num(ps, "labels_contradict") == 1 && json_num(ps, "identical") == 1);
    json_t *f0 = json_array_get(json_object_get(j, "files"), 0);
    CHECK(json_num(f0, "skipped_contradicting") == 1 && json_num(f0, "skipped_identical") == 1 && json_num(f0, "records") == 21);
    json_decref(j);
    free(out);
    free(err);
    sb_free(&a);
    free(path);
}

static void test_skipped_pairs_audit(void) {
    char *path = skip_file(), *out = NULL, *err = NULL, *sum = tmp("audit_sum.json");
    StrBuf a = {0};
    sb_printf(&a, "audit --model %s --data %s --max-len 128 --summary %s", base_model, path, sum);
    int rc = run(a.s, &out, &err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", err);
    check_reported(err, path);
    CHECK_STR_CONTAINS(err, "oprm audit: 2 pairs left out, not ranked: 1 with labels that contradict the preference, "
                            "1 with identical chosen and rejected text");
    size_t lines = 0, line22 = 0, line21 = 0;
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
        json_t *o = json_loads(l, 0, NULL);
        lines += o != NULL;
        line22 += json_num(o, "line") == 22 || json_num(o, "line") == 23;
        line21 += json_num(o, "line") == 21;
        json_decref(o);
    }
    CHECK(lines == 21 && line22 == 0 && line21 == 1);
    json_error_t je;
    json_t *j = json_load_file(sum, 0, &je);
    CHECK(json_num(j, "pairs") == 21 && json_num(j, "skipped_contradicting") == 1 && json_num(j, "skipped_identical") == 1);
    json_decref(j);
    free(out);
    free(err);
    free(sum);
    sb_free(&a);
    free(path);
}

static void test_skipped_pairs_train(void) {
    char *path = skip_file(), *err = NULL, *run_dir = tmp("run_skip");
    StrBuf a = {0};
    sb_printf(&a, "train --model %s --data %s --eval-data %s --output %s --max_steps 2 "
                  "--per_device_train_batch_size 4 --max_length 128",
              base_model, path, path, run_dir);
    int rc = run(a.s, NULL, &err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", err);
    check_reported(err, path);
    CHECK_STR_CONTAINS(err, "; 2 pairs left out (contradicting labels or identical texts, spec §3)");
    CHECK_STR_CONTAINS(err, "left out of --data: 1 contradicting, 1 identical chosen and rejected");
    char *logp = path_join(run_dir, "train_log.jsonl");
    char *log = slurp_text(logp);
    CHECK_STR_CONTAINS(log, "\"pairs_skipped_at_load\":{\"labels_contradict\":1,\"identical\":1}");
    CHECK_STR_CONTAINS(log, "\"eval_records\":21,");
    CHECK_STR_CONTAINS(log, "\"eval_pairs_skipped\":2");
    free(log);
    free(logp);
    free(err);
    sb_free(&a);
    free(run_dir);
    free(path);
}

/* Item 4 through the commands: a model with the real qwen3 tokenizer (a
 * tiny `oprm init` body with its vocabulary) and a --template whose cue is
 * "Score:  " (two spaces: before a digit they are two tokens, so no digit
 * follows the cue as one token). score and train refuse it naming the cue
 * and the digit, also on a trained run whose oprm.json holds the ids of its
 * own cue; "Score:\n" is accepted. (Checking after "Score: " accepted both.) */
static void test_cue_commands(void) {
    char *qm = tmp("qwen_tiny"), *run_dir = tmp("qwen_run"), *data = tmp("one.jsonl");
    char *bad = tmp("cue2.txt"), *good = tmp("cue_nl.txt");
    StrBuf a = {0};
    sb_printf(&a, "init --arch qwen2 --hidden 16 --heads 2 --layers 1 --vocab 151669 --output %s", qm);
    int ok = run(a.s, NULL, NULL) == 0;
    sb_free(&a);
    sb_printf(&a, "cp %s/tokenizers/qwen3/tokenizer.json %s/tokenizers/qwen3/tokenizer_config.json %s/",
              shared_data_dir(), shared_data_dir(), qm);
    ok = ok && system(a.s) == 0;
    sb_free(&a);
    CHECK(ok);
    if (!ok) goto out;
    write_text(bad, "[cue]\nScore:  ");
    write_text(good, "[cue]\nScore:\n");
    write_text(data, "{\"prompt\": \"Hi\", \"chosen\": \"Hello\", \"rejected\": \"Go\"}\n"
                     "{\"prompt\": \"Hey\", \"chosen\": \"Hello there\", \"rejected\": \"No\"}\n");
    const char *shown = "the digit '1' is not exactly one token after the cue \"Score:  \"";
    char *err = NULL, *out = NULL;
    sb_printf(&a, "score --model %s --data %s --template %s", qm, data, bad);
    CHECK(run(a.s, NULL, &err) == 1);
    CHECK_STR_CONTAINS(err, shown);
    CHECK_STR_CONTAINS(err, "qwen_tiny/tokenizer.json");
    free(err);
    sb_free(&a);
    sb_printf(&a, "score --model %s --data %s --template %s", qm, data, good);
    CHECK(run(a.s, &out, &err) == 0);
    json_t *o = json_loads(strtok(out, "\n"), 0, NULL);
    CHECK(json_array_size(json_object_get(o, "distribution")) == 9);
    json_decref(o);
    free(out);
    free(err);
    sb_free(&a);
    sb_printf(&a, "train --model %s --data %s --output %s --template %s --max_steps 1 --quiet", qm, data, run_dir, bad);
    CHECK(run(a.s, NULL, &err) == 1);
    CHECK_STR_CONTAINS(err, shown);
    free(err);
    sb_free(&a);
    /* a trained run (default cue, its digit ids in oprm.json), scored with the bad cue */
    sb_printf(&a, "train --model %s --data %s --output %s --max_steps 1 --quiet", qm, data, run_dir);
    CHECK(run(a.s, NULL, &err) == 0);
    free(err);
    sb_free(&a);
    sb_printf(&a, "score --model %s --data %s --template %s", run_dir, data, bad);
    CHECK(run(a.s, NULL, &err) == 1);
    CHECK_STR_CONTAINS(err, shown);
    free(err);
    sb_free(&a);
out:
    free(qm);
    free(run_dir);
    free(data);
    free(bad);
    free(good);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/oprm_trustcli_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("OMP_NUM_THREADS", "1", 1);
    base_model = tmp("base");
    confident_model = tmp("confident");
    saturated_model = tmp("saturated");
    uniform_model = tmp("uniform");
    pairs_path = tmp("pairs.jsonl");
    char *demo = tmp("demo"), *demo_model = tmp("demo/model"), *demo_pairs = tmp("demo/data/train_pairs.jsonl");
    StrBuf a = {0};
    sb_printf(&a, "demo --output %s --max-steps 40 --audit-pairs 50 --force", demo);
    int ok = run(a.s, NULL, NULL) == 0;
    sb_free(&a);
    if (ok) {
        sb_printf(&a, "cp -r %s %s", demo_model, base_model);
        ok = system(a.s) == 0 && scaled_model(base_model, confident_model, 40.0f) == 0 &&
             scaled_model(base_model, saturated_model, 4000.0f) == 0 &&
             scaled_model(base_model, uniform_model, 0.0f) == 0;
        sb_free(&a);
        head_lines(demo_pairs, pairs_path, N_PAIRS);
    }
    free(demo);
    free(demo_model);
    free(demo_pairs);
    CHECK(ok);
    if (ok) {
        RUN(test_eval_confident);
        RUN(test_bon_audit_confident);
        RUN(test_uniform_model);
        RUN(test_message_malformed);
        RUN(test_message_disk_full);
        RUN(test_message_max_len);
        RUN(test_skipped_pairs_eval);
        RUN(test_skipped_pairs_audit);
        RUN(test_skipped_pairs_train);
        RUN_SHARED(test_cue_commands, "tokenizers/qwen3");
    }
    StrBuf rm = {0};
    sb_printf(&rm, "rm -rf '%s'", tmpdir);
    if (system(rm.s) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    sb_free(&rm);
    free(base_model);
    free(confident_model);
    free(saturated_model);
    free(uniform_model);
    free(pairs_path);
    return test_summary();
}
