/* Prompt-prefix sharing end to end on the real story-llama model and real
 * hhh pairs (multi-turn prompts among them): `oprm train` with and without
 * sharing (--no-prefix-sharing) gives the same first and last loss and eval
 * loss within 1e-5 relative, for the OPRM loss with gradient accumulation,
 * the Bradley-Terry loss, RgFT labels with LoRA, prompts truncated to a short
 * --max-len, and best-of-8 records; the scorer (score, eval, bon, audit, serve) gives the same
 * distributions within 1e-5 for best-of-8 sets and pairs in one batch, and
 * `oprm score` writes the same distributions with --no-prefix-sharing. */
#include <jansson.h>
#include <unistd.h>

#include "eval/scorer.h"
#include "io/fileio.h"
#include "train/trainer.h"
#include "test.h"
#include "train_testutil.h"

static char tmp_dir[] = "/tmp/oprm_test_prefix_XXXXXX";
static char model_dir[512];

static char *tmp(const char *name) { return path_join(tmp_dir, name); }

/* The first n hhh records of at most max_chars (prompt + longer response),
 * multi-turn ones included; labelled adds chosen/rejected labels. */
static char *pairs_file(const char *name, int n, int labelled) {
    char *src = path_join(shared_data_dir(), "prefs/hhh.jsonl"), *path = tmp(name);
    FILE *f = fopen(src, "r"), *out = fopen(path, "w");
    free(src);
    CHECK(f && out);
    if (!f || !out) return path;
    char *line = NULL;
    size_t cap = 0;
    int written = 0, multi = 0;
    while (written < n && getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *p = json_object_get(o, "prompt");
        char *ps = json_dumps(p, JSON_ENCODE_ANY);
        size_t len = strlen(ps) + strlen(json_string_value(json_object_get(o, "chosen")));
        free(ps);
        if (len < 900 && (written % 2 == 0 || !json_is_string(p))) {
            if (labelled) {
                json_object_set_new(o, "chosen_label", json_string("good"));
                json_object_set_new(o, "rejected_label", json_string("bad"));
            }
            json_dumpf(o, out, JSON_COMPACT);
            fputc('\n', out);
            written++;
            multi += !json_is_string(p);
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    fclose(out);
    CHECK(written == n);
    CHECK(multi > 0);
    return path;
}

/* Best-of-8 sets from the hhh pairs file: record i's prompt, best = its
 * chosen, others = its rejected and the next three records' responses. */
static char *bon_file(const char *name, const char *pairs, int n) {
    char *path = tmp(name);
    FILE *f = fopen(pairs, "r"), *out = fopen(path, "w");
    CHECK(f && out);
    if (!f || !out) return path;
    json_t *recs[64];
    int nr = 0;
    char *line = NULL;
    size_t cap = 0;
    while (nr < 64 && getline(&line, &cap, f) > 0) recs[nr++] = json_loads(line, 0, NULL);
    free(line);
    fclose(f);
    CHECK(nr >= n + 3);
    for (int i = 0; i < n && i + 3 < nr; i++) {
        json_t *others = json_array();
        json_array_append(others, json_object_get(recs[i], "rejected"));
        for (int j = 1; j <= 3; j++) {
            json_array_append(others, json_object_get(recs[i + j], "chosen"));
            json_array_append(others, json_object_get(recs[i + j], "rejected"));
        }
        json_t *o = json_pack("{s:O, s:O, s:o}", "prompt", json_object_get(recs[i], "prompt"), "best",
                              json_object_get(recs[i], "chosen"), "others", others);
        json_dumpf(o, out, JSON_COMPACT);
        fputc('\n', out);
        json_decref(o);
    }
    for (int i = 0; i < nr; i++) json_decref(recs[i]);
    fclose(out);
    return path;
}

static void base_config(TrainConfig *c, const char *data, const char *out) {
    story_config(c, model_dir, data, out);
    c->eval_data = data;
    c->grad_accum = 2;
    c->max_steps = 2;
    c->overwrite_output_dir = 1;
}

/* Runs c with and without sharing; returns the shared run's truncations. */
static int64_t same_run(TrainConfig *c, const char *what) {
    TrainResult r[2];
    OprmError err = {{0}};
    for (int k = 0; k < 2; k++) {
        c->no_prefix_sharing = k;
        int rc = train_run(c, &r[k], &err);
        CHECK(rc == 0);
        if (rc) {
            fprintf(stderr, "%s: %s\n", what, err.msg);
            return -1;
        }
    }
    fprintf(stderr, "  %s: loss %.9g -> %.9g vs %.9g -> %.9g, eval %.9g vs %.9g\n", what, r[0].first_loss,
            r[0].last_loss, r[1].first_loss, r[1].last_loss, r[0].eval_loss_end, r[1].eval_loss_end);
    CHECK(r[0].steps == 2 && r[1].steps == 2);
    CHECK_NEAR(r[0].first_loss, r[1].first_loss, 0, 1e-5);
    CHECK_NEAR(r[0].last_loss, r[1].last_loss, 0, 1e-5);
    CHECK_NEAR(r[0].eval_loss_end, r[1].eval_loss_end, 0, 1e-5);
    CHECK(r[0].last_loss != r[0].first_loss); /* the step changed the model */
    CHECK(r[0].truncated == r[1].truncated);
    return r[0].truncated;
}

static void test_train_same(void) {
    char *data = pairs_file("p.jsonl", 8, 0), *lab = pairs_file("l.jsonl", 8, 1), *out = tmp("run");
    TrainConfig c;
    base_config(&c, data, out);
    same_run(&c, "oprm");
    base_config(&c, data, out);
    c.loss = TRAIN_LOSS_BT;
    same_run(&c, "bt");
    base_config(&c, lab, out);
    c.rgft_enabled = 1;
    c.lora_rank = 4;
    c.learning_rate = 1e-2;
    same_run(&c, "rgft+lora");
    base_config(&c, data, out);
    c.max_length = 140;
    CHECK(same_run(&c, "truncated") > 0);
    char *bon = bon_file("bon.jsonl", data, 4);
    base_config(&c, bon, out);
    c.grad_accum = 1;
    same_run(&c, "best-of-8");
    free(bon);
    free(data);
    free(lab);
    free(out);
}

/* Three prompts (one multi-turn), eight responses each, and a pair: one call. */
static void test_scorer_same(void) {
    ScoreTurn multi[3] = {{"user", "I want to bake bread at home. What flour should I buy?"},
                          {"assistant", "Bread flour has more protein, which gives a chewier crumb."},
                          {"user", "And how long should the dough rise before baking it?"}};
    ScoreTurn single[1] = {{"user", "Tell me a short story about a cat who finds a red ball in the garden."}};
    ScoreTurn sys[2] = {{"system", "You are a careful assistant who answers briefly."},
                        {"user", "What is the capital of France?"}};
    const char *resp[8] = {"About an hour, until doubled.", "Ok.", "It depends on the room temperature; in a warm "
                           "kitchen one hour, in a cold one up to three hours. Look for the dough to double.",
                           "Paris.", "Lyon", "Once upon a time a cat named Tom found a red ball.", "No idea.",
                           "Let it rise overnight in the fridge for more flavour, then shape and proof again."};
    ScoreRequest items[26];
    int n = 0;
    for (int k = 0; k < 8; k++) items[n++] = (ScoreRequest){multi, 3, resp[k]};
    for (int k = 0; k < 8; k++) items[n++] = (ScoreRequest){single, 1, resp[7 - k]};
    for (int k = 0; k < 8; k++) items[n++] = (ScoreRequest){sys, 2, resp[(k * 3) % 8]};
    items[n++] = (ScoreRequest){single, 1, "A"};
    items[n++] = (ScoreRequest){multi, 3, "B"};
    ScoreResult res[2][26];
    for (int k = 0; k < 2; k++) {
        OprmError err = {{0}};
        ScorerOptions so = {.max_len = 256, .threads = 1, .no_prefix_sharing = k};
        Scorer *s = scorer_open(model_dir, &so, &err);
        CHECK(s != NULL);
        if (!s) {
            fprintf(stderr, "%s\n", err.msg);
            return;
        }
        CHECK(scorer_score(s, items, n, res[k], &err) == 0);
        scorer_close(s);
    }
    double worst = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 9; j++) worst = fmax(worst, fabs(res[0][i].p[j] - res[1][i].p[j]));
        CHECK(res[0][i].n_tokens == res[1][i].n_tokens);
    }
    fprintf(stderr, "  scorer: worst |dp| %.3g\n", worst);
    CHECK(worst <= 1e-5);
    /* Different responses do get different scores (the comparison is not vacuous). */
    CHECK(fabs(res[0][0].mean - res[0][1].mean) > 1e-6);
}

/* The CLI flag: `oprm score` with and without --no-prefix-sharing writes the
 * same distributions (1e-5), and `oprm train` accepts the flag. */
static double max_dist_diff(const char *a, const char *b, int *lines) {
    FILE *fa = fopen(a, "r"), *fb = fopen(b, "r");
    double worst = fa && fb ? 0 : INFINITY;
    char *la = NULL, *lb = NULL;
    size_t ca = 0, cb = 0;
    *lines = 0;
    while (fa && fb && getline(&la, &ca, fa) > 0 && getline(&lb, &cb, fb) > 0) {
        json_t *ja = json_loads(la, 0, NULL), *jb = json_loads(lb, 0, NULL);
        json_t *da = json_object_get(ja, "distribution"), *db = json_object_get(jb, "distribution");
        if (json_array_size(da) != 9 || json_array_size(db) != 9) worst = INFINITY;
        for (size_t k = 0; k < 9 && json_array_size(da) == 9 && json_array_size(db) == 9; k++)
            worst = fmax(worst, fabs(json_real_value(json_array_get(da, k)) - json_real_value(json_array_get(db, k))));
        json_decref(ja);
        json_decref(jb);
        (*lines)++;
    }
    free(la);
    free(lb);
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return worst;
}

static void test_cli_flag(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/release/oprm";
    char *data = pairs_file("cli.jsonl", 6, 0), *o1 = tmp("s1.jsonl"), *o2 = tmp("s2.jsonl"), *out = tmp("cli_run");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s score --model %s --data %s --threads 1 --output %s 2>/dev/null", bin, model_dir,
             data, o1);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s score --model %s --data %s --threads 1 --no-prefix-sharing --output %s 2>/dev/null",
             bin, model_dir, data, o2);
    CHECK(system(cmd) == 0);
    int lines = 0;
    double worst = max_dist_diff(o1, o2, &lines);
    fprintf(stderr, "  oprm score: %d lines, worst |dp| %.3g\n", lines, worst);
    CHECK(lines == 12);
    CHECK(worst <= 1e-5);
    snprintf(cmd, sizeof cmd, "%s train --model %s --data %s --output %s --max-steps 1 --batch-size 2 --threads 1 "
             "--no-prefix-sharing --no-progress --quiet >/dev/null 2>&1", bin, model_dir, data, out);
    CHECK(system(cmd) == 0);
    free(data);
    free(o1);
    free(o2);
    free(out);
}

int main(void) {
    if (!mkdtemp(tmp_dir)) return 1;
    snprintf(model_dir, sizeof model_dir, "%s/models/story-llama", shared_data_dir());
    RUN_SHARED(test_scorer_same, "models/story-llama");
    RUN_SHARED(test_train_same, "models/story-llama");
    RUN_SHARED(test_cli_flag, "models/story-llama");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return test_summary();
}
