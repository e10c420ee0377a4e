/* oprm train end to end on the real story-llama model and real hhh pairs:
 * the loss goes down, the saved model scores as the in-memory one did,
 * interrupt + resume reproduces the uninterrupted run bit for bit, every
 * failure path stops cleanly, truncations are counted, and mixed
 * labelled / unlabelled / point data, --label-fraction and --loss bt train. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/reader.h"
#include "eval/scorer.h"
#include "io/fileio.h"
#include "model/model.h"
#include "ordinal/ordinal.h"
#include "tok/prompt.h"
#include "tok/tokenizer.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "train/trainer_state.h"
#include "test.h"
#include "train_testutil.h"

static char tmp_dir[] = "/tmp/oprm_test_trainer_XXXXXX";
static char model_dir[512];

static char *tmp(const char *name) {
    return path_join(tmp_dir, name);
}

/* Label decorations of the records written by write_pairs. */
enum { PLAIN, LABELLED, POINT };

/* Writes the first n hhh pairs whose prompt and responses are short (so a
 * step is cheap under ASan), starting at the skip-th such pair. kind LABELLED
 * adds chosen_label good / rejected_label bad; POINT writes two point records
 * per pair (chosen labelled good, rejected bad). min_len selects long ones. */
static void write_pairs(FILE *out, int n, int skip, int kind, size_t min_len, size_t max_len) {
    char *src = path_join(shared_data_dir(), "prefs/hhh.jsonl");
    FILE *f = fopen(src, "r");
    free(src);
    CHECK(f != NULL);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int written = 0, seen = 0;
    while (written < n && getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        const char *p = json_string_value(json_object_get(o, "prompt"));
        const char *c = json_string_value(json_object_get(o, "chosen"));
        const char *r = json_string_value(json_object_get(o, "rejected"));
        size_t len = p && c && r ? strlen(p) + (strlen(c) > strlen(r) ? strlen(c) : strlen(r)) : 0;
        if (len && len >= min_len && len < max_len && seen++ >= skip) {
            if (kind == POINT) {
                json_t *a = json_pack("{s:s, s:s, s:s, s:s}", "id", json_string_value(json_object_get(o, "id")),
                                      "prompt", p, "response", c, "label", "good");
                json_t *b = json_pack("{s:s, s:s, s:s, s:s}", "id", "point-bad", "prompt", p, "response", r,
                                      "label", "bad");
                json_dumpf(a, out, JSON_COMPACT);
                fputc('\n', out);
                json_dumpf(b, out, JSON_COMPACT);
                fputc('\n', out);
                json_decref(a);
                json_decref(b);
            } else {
                if (kind == LABELLED) {
                    json_object_set_new(o, "chosen_label", json_string("good"));
                    json_object_set_new(o, "rejected_label", json_string("bad"));
                }
                json_dumpf(o, out, JSON_COMPACT);
                fputc('\n', out);
            }
            written++;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    CHECK(written == n);
}

static char *pairs_file(const char *name, int n, int skip, int kind) {
    char *path = tmp(name);
    FILE *f = fopen(path, "w");
    write_pairs(f, n, skip, kind, 0, 180);
    fclose(f);
    return path;
}

static void base_config(TrainConfig *c, const char *data, const char *out) {
    story_config(c, model_dir, data, out);
}

/* Mean -log P(c > r) over the pairs of data, scored by the saved model
 * through the scorer (an independent path: its own prompt building from
 * oprm.json, its own batching). */
static double scorer_pair_loss(const char *dir, const char *data, double *acc) {
    OprmError err = {{0}};
    ScorerOptions so = {.max_len = 256};
    Scorer *s = scorer_open(dir, &so, &err);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "%s\n", err.msg);
        return NAN;
    }
    DataOptions o;
    data_options_default(&o);
    DataSet set = {0};
    CHECK(data_load(data, &o, &set, NULL, &err) == 0);
    double total = 0;
    int correct = 0;
    for (size_t i = 0; i < set.n; i++) {
        DataRecord *r = &set.recs[i];
        ScoreTurn *turns = calloc(r->prompt.n, sizeof *turns);
        for (size_t k = 0; k < r->prompt.n; k++)
            turns[k] = (ScoreTurn){chat_role_name(r->prompt.msgs[k].role), r->prompt.msgs[k].content};
        ScoreRequest req[2] = {{turns, (int)r->prompt.n, r->responses[0].text},
                               {turns, (int)r->prompt.n, r->responses[1].text}};
        ScoreResult res[2];
        CHECK(scorer_score(s, req, 2, res, &err) == 0);
        double zc[9], zr[9], loss;
        for (int k = 0; k < 9; k++) {
            zc[k] = log(res[0].p[k]);
            zr[k] = log(res[1].p[k]);
        }
        CHECK(ordinal_pair_loss(zc, zr, &loss, NULL, NULL, &err) == 0);
        total += loss;
        correct += res[0].mean > res[1].mean;
        free(turns);
    }
    if (acc) *acc = set.n ? (double)correct / (double)set.n : NAN;
    double mean = set.n ? total / (double)set.n : NAN;
    dataset_free(&set);
    scorer_close(s);
    return mean;
}

/* (a) + (b): a short run lowers the loss on its training pairs; the final
 * model reloads and scores exactly as the in-memory model did at the end. */
static void test_loss_decreases_and_reload(void) {
    char *data = pairs_file("a.jsonl", 12, 0, PLAIN);
    char *out = tmp("run_a");
    TrainConfig c;
    base_config(&c, data, out);
    c.eval_data = data;
    c.batch_size = 4;
    c.max_steps = 6; /* two epochs */
    TrainResult r;
    OprmError err = {{0}};
    int rc = train_run(&c, &r, &err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "train_run: %s\n", err.msg);
    fprintf(stderr, "eval loss %.6f -> %.6f, acc %.3f -> %.3f; train loss %.6f -> %.6f; %.0f tok/s\n",
            r.eval_loss_start, r.eval_loss_end, r.eval_acc_start, r.eval_acc_end, r.first_loss, r.last_loss,
            r.tokens_per_s);
    CHECK(r.steps == 6);
    CHECK(r.eval_loss_end < r.eval_loss_start - 0.05);
    CHECK(r.eval_acc_end >= r.eval_acc_start);
    /* The checkpoint is complete and scores as the model did in memory. */
    OprmError verr = {{0}};
    CHECK(checkpoint_verify(out, 1, &verr) == 0);
    double acc;
    double reloaded = scorer_pair_loss(out, data, &acc);
    CHECK_NEAR(reloaded, r.eval_loss_end, 1e-6, 0);
    CHECK_NEAR(acc, r.eval_acc_end, 1e-12, 0);
    /* The untrained model scores as the start-of-run evaluation did. */
    CHECK_NEAR(scorer_pair_loss(model_dir, data, NULL), r.eval_loss_start, 1e-6, 0);
    /* The log has one line per step with its loss, plus eval and summary lines. */
    char *logp = path_join(out, TRAIN_LOG_FILE);
    size_t len;
    char *text = read_file(logp, &len, &err);
    CHECK(text != NULL);
    int steps = 0;
    for (char *l = text; l && *l;) {
        char *e = strchr(l, '\n');
        json_t *o = json_loadb(l, e ? (size_t)(e - l) : strlen(l), 0, NULL);
        CHECK(o != NULL);
        if (json_object_get(o, "loss")) {
            steps++;
            CHECK(json_integer_value(json_object_get(o, "step")) == steps);
            CHECK(json_is_number(json_object_get(o, "acc")) && json_is_number(json_object_get(o, "lr")));
            CHECK(json_is_integer(json_object_get(o, "truncated")));
        }
        json_decref(o);
        l = e ? e + 1 : NULL;
    }
    CHECK(steps == 6);
    CHECK_STR_CONTAINS(text, "\"summary\":true");
    free(text);
    free(logp);
    /* A second run into the same output is refused unless resumed or overwritten. */
    c.eval_data = NULL;
    CHECK(train_run(&c, NULL, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "--resume");
    free(data);
    free(out);
}

static int sigint_at;
static int hook_sigint(void *ctx, int64_t step, void *model) {
    if (step == sigint_at) raise(SIGINT);
    return 0;
}

/* (c): 6 steps straight vs. Ctrl-C after step 4 (a real SIGINT) and --resume:
 * the same loss sequence bit for bit, the same final weights byte for byte
 * (and the prefetch thread changes nothing: the straight run builds inline).
 * 8 records in batches of 2: the resumed part crosses an epoch boundary, so
 * the next epoch's permutation comes from the restored RNG. */
static void test_resume_exact(void) {
    char *data = pairs_file("c.jsonl", 8, 12, PLAIN);
    char *full = tmp("run_full"), *cut = tmp("run_cut");
    TrainConfig c;
    base_config(&c, data, full);
    c.max_steps = 6;
    c.save_steps = 3;
    c.scheduler = SCHED_COSINE;
    c.warmup_steps = 1;
    c.weight_decay = 0.01;
    c.dataloader_num_workers = 0; /* batches built inline here, prefetched in the cut run */
    TrainResult r;
    OprmError err = {{0}};
    CHECK(train_run(&c, &r, &err) == 0);
    c.dataloader_num_workers = 1;
    c.output_dir = cut;
    c.hook = hook_sigint;
    sigint_at = 4;
    int rc = train_run(&c, &r, &err);
    CHECK(rc == 130);
    CHECK(r.interrupted == SIGINT && r.steps == 4);
    char *ck4 = path_join(cut, "checkpoint-4");
    CHECK(checkpoint_verify(ck4, 1, &err) == 0);
    char *final_manifest = path_join(cut, CHECKPOINT_MANIFEST);
    CHECK(!file_exists(final_manifest)); /* no final model from an interrupted run */
    c.hook = NULL;
    c.resume = "latest";
    rc = train_run(&c, &r, &err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "resume: %s\n", err.msg);
    CHECK(r.steps == 6);
    size_t na = 0, nb = 0;
    double *la = run_losses(full, &na), *lb = run_losses(cut, &nb);
    CHECK(na == 6 && nb == 6);
    if (la && lb && na == nb) {
        CHECK(memcmp(la, lb, na * sizeof *la) == 0);
        for (size_t i = 0; i < na; i++) fprintf(stderr, "step %zu: loss %.17g | resumed %.17g\n", i + 1, la[i], lb[i]);
    }
    free(la);
    free(lb);
    size_t sa, sb;
    char *wa = read_in(full, "model.safetensors", &sa), *wb = read_in(cut, "model.safetensors", &sb);
    CHECK(wa && wb && sa == sb && memcmp(wa, wb, sa) == 0);
    free(wa);
    free(wb);
    /* The logs agree line for line on every step's loss. */
    char *ta = read_in(full, TRAIN_LOG_FILE, &sa), *tb = read_in(cut, TRAIN_LOG_FILE, &sb);
    CHECK(ta && tb);
    if (ta && tb) {
        int matched = 0;
        for (int step = 1; step <= 6; step++) {
            char key[64];
            snprintf(key, sizeof key, "{\"step\":%d,\"epoch\"", step);
            char *a = strstr(ta, key), *b = strstr(tb, key);
            CHECK(a && b);
            if (!a || !b) continue;
            char *la2 = strstr(a, "\"lr\""), *lb2 = strstr(b, "\"lr\"");
            matched += la2 && lb2 && la2 - a == lb2 - b && !memcmp(a, b, (size_t)(la2 - a));
        }
        CHECK(matched == 6);
    }
    free(ta);
    free(tb);
    /* Resuming from the earlier checkpoint-3 (after the run finished) redoes
     * steps 4..6 identically and the log keeps one line per step. */
    char *ck3 = path_join(cut, "checkpoint-3");
    c.resume = ck3;
    CHECK(train_run(&c, &r, &err) == 0);
    lb = run_losses(cut, &nb);
    la = run_losses(full, &na);
    CHECK(la && lb && na == nb && memcmp(la, lb, na * sizeof *la) == 0);
    free(la);
    free(lb);
    tb = read_in(cut, TRAIN_LOG_FILE, &sb);
    int lines = 0;
    for (char *p = tb; p && (p = strstr(p, "\"epoch\"")); p++) lines++;
    CHECK(lines == 6);
    free(tb);
    free(ck3);
    free(final_manifest);
    free(ck4);
    free(data);
    free(full);
    free(cut);
}

static int poison_at;
static int hook_poison(void *ctx, int64_t step, void *model) {
    if (step != poison_at) return 0;
    int n;
    ModelParam *p = model_params(model, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(p[i].name, "model.norm.weight")) p[i].data[0] = NAN;
    return 0;
}

static struct rlimit saved_limit;
static int hook_full_disk(void *ctx, int64_t step, void *model) {
    if (step == 2) {
        struct rlimit lim = saved_limit;
        lim.rlim_cur = 200000; /* the weights are ~1 MB: the next checkpoint cannot be written */
        setrlimit(RLIMIT_FSIZE, &lim);
    }
    return 0;
}

/* (d): NaN loss, full disk, bad data, missing model. */
static void test_failures(void) {
    char *data = pairs_file("d.jsonl", 4, 20, PLAIN);
    TrainConfig c;
    TrainResult r;
    OprmError err = {{0}};

    /* NaN: weights poisoned after step 2 (checkpoint-2 saved): step 3 stops
     * with the step and the record ids, no final model, checkpoint-2 intact. */
    char *out = tmp("run_nan");
    base_config(&c, data, out);
    c.max_steps = 4;
    c.save_steps = 2;
    c.hook = hook_poison;
    poison_at = 2;
    CHECK(train_run(&c, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "step 3");
    CHECK_STR_CONTAINS(err.msg, "NaN");
    CHECK_STR_CONTAINS(err.msg, "hhh-");
    CHECK_STR_CONTAINS(err.msg, "checkpoint-2");
    CHECK(r.steps == 2);
    char *ck = path_join(out, "checkpoint-2");
    CHECK(checkpoint_verify(ck, 1, &err) == 0);
    char *ck3 = path_join(out, "checkpoint-3"), *man = path_join(out, CHECKPOINT_MANIFEST);
    CHECK(!file_exists(ck3) && !file_exists(man));
    free(ck);
    free(ck3);
    free(man);
    free(out);

    /* Full disk: the save at step 4 fails with a message, exit 1; checkpoint-2 loads. */
    out = tmp("run_full_disk");
    base_config(&c, data, out);
    c.max_steps = 4;
    c.save_steps = 2;
    c.hook = hook_full_disk;
    getrlimit(RLIMIT_FSIZE, &saved_limit);
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    int rc = train_run(&c, &r, &err);
    setrlimit(RLIMIT_FSIZE, &saved_limit);
    signal(SIGXFSZ, old);
    CHECK(rc == 1);
    CHECK_STR_CONTAINS(err.msg, "checkpoint-4");
    CHECK_STR_CONTAINS(err.msg, "not saved");
    ck = path_join(out, "checkpoint-2");
    TrainerState st = {0};
    int loaded = checkpoint_load(ck, &st, NULL, NULL, &err) == 0;
    CHECK(loaded);
    if (loaded) {
        CHECK(st.global_step == 2 && st.loss_count == 2);
        trainer_state_free(&st);
    }
    ck3 = path_join(out, "checkpoint-4");
    CHECK(!file_exists(ck3));
    free(ck3);
    free(ck);
    free(out);

    /* Bad data: the message names file, line and field; nothing is created. */
    char *bad = tmp("bad.jsonl");
    FILE *f = fopen(bad, "w");
    fprintf(f, "{\"prompt\": \"Hi\", \"chosen\": \"Hello!\", \"rejected\": \"Go away.\"}\n"
               "{\"prompt\": \"Hi\", \"chosen\": \"Hello!\"}\n");
    fclose(f);
    out = tmp("run_bad");
    base_config(&c, bad, out);
    c.max_steps = 1;
    CHECK(train_run(&c, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "bad.jsonl:2");
    CHECK_STR_CONTAINS(err.msg, "rejected");
    CHECK(access(out, F_OK) != 0 && r.steps == 0);
    free(out);

    /* A pair labelled chosen bad / rejected good: the reader leaves it out and
     * counts it (spec §3), with or without --skip-invalid; the run trains on
     * the other record and reports the count in its summary. */
    f = fopen(bad, "w");
    fprintf(f, "{\"prompt\": \"Hi\", \"chosen\": \"Hello!\", \"rejected\": \"Go away.\"}\n"
               "{\"prompt\": \"Hi\", \"chosen\": \"Hey\", \"rejected\": \"Go.\", \"chosen_label\": \"bad\", "
               "\"rejected_label\": \"good\"}\n");
    fclose(f);
    out = tmp("run_contra");
    base_config(&c, bad, out);
    c.max_steps = 1;
    CHECK(train_run(&c, &r, &err) == 0);
    size_t clen;
    char *clog = read_in(out, TRAIN_LOG_FILE, &clen);
    CHECK(clog && strstr(clog, "\"pairs_skipped_at_load\":{\"labels_contradict\":1,\"identical\":0}"));
    free(clog);
    free(out);
    free(bad);

    /* Missing model dir. */
    out = tmp("run_nomodel");
    base_config(&c, data, out);
    c.model_dir = "/nonexistent/model";
    CHECK(train_run(&c, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/model");
    CHECK(access(out, F_OK) != 0);
    free(out);
    free(data);
}

/* (e): over-long records are truncated, never dropped, and counted: the
 * count equals the responses whose full scoring prompt exceeds max_length. */
static void test_truncation_counted(void) {
    char *data = tmp("e.jsonl");
    FILE *f = fopen(data, "w");
    write_pairs(f, 2, 0, PLAIN, 0, 120);
    write_pairs(f, 2, 0, PLAIN, 400, 600);
    fclose(f);
    OprmError err = {{0}};
    Tokenizer *tok = tok_load(model_dir, &err);
    ScoringTemplate tpl;
    scoring_template_default(&tpl);
    ScoringConfig sc = {.tok = tok, .format = CHAT_PLAIN, .tpl = &tpl, .max_len = 0};
    DataOptions o;
    data_options_default(&o);
    DataSet set = {0};
    CHECK(data_load(data, &o, &set, NULL, &err) == 0);
    const int max_len = 150;
    int expected = 0;
    for (size_t i = 0; i < set.n; i++)
        for (size_t j = 0; j < set.recs[i].n_responses; j++) {
            ScoringPrompt p = {0};
            CHECK(scoring_build(&sc, &set.recs[i].prompt, set.recs[i].responses[j].text, &p, &err) == 0);
            expected += p.full_len > (size_t)max_len;
            scoring_prompt_free(&p);
        }
    dataset_free(&set);
    scoring_template_free(&tpl);
    tok_free(tok);
    CHECK(expected >= 2 && expected < 8);
    char *out = tmp("run_e");
    TrainConfig c;
    base_config(&c, data, out);
    c.max_length = max_len;
    c.max_steps = 2; /* one epoch: every record once */
    TrainResult r;
    CHECK(train_run(&c, &r, &err) == 0);
    fprintf(stderr, "truncated %lld of 8 prompts (expected %d)\n", (long long)r.truncated, expected);
    CHECK(r.truncated == expected);
    size_t len;
    char *log = read_in(out, TRAIN_LOG_FILE, &len);
    char want[128];
    snprintf(want, sizeof want, "\"summary\":true,\"final_loss\"");
    CHECK(log && strstr(log, want));
    snprintf(want, sizeof want, "\"truncated\":%d,\"contradictions_skipped\":0,\"tokens_per_s\"", expected);
    CHECK(log && strstr(log, want));
    free(log);
    free(out);
    free(data);
}

/* (f): labelled + unlabelled pairs + point records in one run with
 * --label-fraction, and the Bradley-Terry baseline: both lower their loss. */
static void test_mixed_and_bt(void) {
    char *data = tmp("f.jsonl");
    FILE *f = fopen(data, "w");
    write_pairs(f, 3, 24, LABELLED, 0, 180);
    write_pairs(f, 3, 27, PLAIN, 0, 180);
    fclose(f);
    /* Point records and a best-of-N set in a second --data file. */
    char *data2 = tmp("f2.jsonl");
    f = fopen(data2, "w");
    write_pairs(f, 1, 30, POINT, 0, 180);
    fprintf(f, "{\"id\": \"bon\", \"prompt\": \"Say hi.\", \"best\": \"Hi there!\", "
               "\"others\": [\"No.\", \"Whatever.\"]}\n");
    fclose(f);
    f = fopen(data, "a");
    /* Chosen labelled normal {4,5,6} but rejected rated 7: the reader leaves
     * it out and counts it (spec §3), in --data and in --eval-data. (Normal vs
     * 6 overlaps: reader, trainer, eval and audit all keep it.) */
    fprintf(f, "{\"id\": \"contra\", \"prompt\": \"Hi\", \"chosen\": \"Hello!\", \"rejected\": \"Go.\", "
               "\"chosen_label\": \"normal\", \"rejected_label\": 7}\n");
    fclose(f);
    char *out = tmp("run_f");
    TrainConfig c;
    base_config(&c, data, out);
    c.data[1] = data2;
    c.n_data = 2;
    c.eval_data = data;
    c.batch_size = 4;
    c.max_steps = 5;
    c.label_fraction = 0.5;
    TrainResult r;
    OprmError err = {{0}};
    size_t len;
    int rc = train_run(&c, &r, &err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    fprintf(stderr, "mixed: eval loss %.6f -> %.6f\n", r.eval_loss_start, r.eval_loss_end);
    CHECK(r.eval_loss_end < r.eval_loss_start - 0.02);
    CHECK(r.contradictions == 0); /* the reader left it out: never drawn */
    char *log = read_in(out, TRAIN_LOG_FILE, &len);
    CHECK(log && strstr(log, "\"contradictions_skipped\":0,\"tokens_per_s\""));
    CHECK(log && strstr(log, "\"pairs_skipped_at_load\":{\"labels_contradict\":1,\"identical\":0}"));
    CHECK(log && strstr(log, "\"eval_pairs_skipped\":1"));
    free(log);
    free(out);

    /* --loss bt on the unlabelled pairs; the head is saved beside the model. */
    char *pairs = pairs_file("f_bt.jsonl", 8, 12, PLAIN);
    out = tmp("run_bt");
    base_config(&c, pairs, out);
    c.eval_data = pairs;
    c.loss = TRAIN_LOSS_BT;
    c.batch_size = 4;
    c.max_steps = 4;
    rc = train_run(&c, &r, &err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    fprintf(stderr, "bt: eval loss %.6f -> %.6f, acc %.3f -> %.3f\n", r.eval_loss_start, r.eval_loss_end,
            r.eval_acc_start, r.eval_acc_end);
    CHECK(r.eval_loss_end < r.eval_loss_start - 0.02);
    CHECK(r.eval_loss_start > 0.6 && r.eval_loss_start < 0.8); /* a fresh head: about log 2 */
    char *head = path_join(out, BT_HEAD_FILE);
    CHECK(file_exists(head));
    free(head);
    /* Point records cannot train a BT head: refused up front. */
    char *out2 = tmp("run_bt_points");
    base_config(&c, data2, out2);
    c.loss = TRAIN_LOSS_BT;
    c.max_steps = 1;
    CHECK(train_run(&c, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "point-wise");
    free(out2);
    free(out);
    free(pairs);
    free(data);
    free(data2);
}

/* `oprm train ARGS`, what it said into out. */
static int run_cli(const char *args, char *out, size_t size) {
    char full[2048];
    snprintf(full, sizeof full, "train %s", args);
    char *res = tmp("cli.txt");
    int rc = run_oprm_prefixed("", full, res, out, size);
    free(res);
    return rc;
}

/* Ctrl-C on the real binary: a SIGINT mid-run saves a checkpoint and exits 130. */
static void test_cli_sigint(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/release/oprm";
    if (access(bin, X_OK)) {
        SKIP("SIGINT check: %s not built (make; OPRM_BIN overrides)", bin);
        return;
    }
    char *data = pairs_file("sigint.jsonl", 8, 12, PLAIN);
    char *dir = tmp("run_sigint");
    char *logp = path_join(dir, TRAIN_LOG_FILE);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        execl(bin, bin, "train", "--model", model_dir, "--data", data, "--output", dir, "--max-len", "256",
              "--batch-size", "2", "--max_steps", "100000", "--save_steps", "0", "--threads", "1",
              "--learning_rate", "1e-4", (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0);
    int seen = 0;
    for (int i = 0; i < 600 && !seen; i++) { /* up to 60 s for the first step under ASan */
        size_t len;
        OprmError e;
        char *text = file_exists(logp) ? read_file(logp, &len, &e) : NULL;
        seen = text && strstr(text, "\"step\":2,");
        free(text);
        if (!seen) usleep(100000);
    }
    CHECK(seen);
    kill(pid, SIGINT);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 130);
    char *latest = NULL;
    int64_t step = 0;
    OprmError err;
    CHECK(checkpoint_find_latest(dir, &latest, &step, &err) == 1);
    CHECK(step >= 2);
    if (latest) CHECK(checkpoint_verify(latest, 1, &err) == 0);
    free(latest);
    free(logp);
    free(dir);
    free(data);
}

/* LoRA: the adapters learn (loss goes down), the base stays frozen, the
 * final dir is a merged HF checkpoint plus a PEFT adapter in DIR/adapter/,
 * and interrupt + resume (base + fp32 adapter) reproduces the losses exactly. */
static void test_lora(void) {
    char *data = pairs_file("lora.jsonl", 8, 12, PLAIN);
    char *full = tmp("run_lora_full"), *cut = tmp("run_lora_cut");
    TrainConfig c;
    base_config(&c, data, full);
    c.lora_rank = 4;
    c.lora_alpha = 8;
    c.lora_targets = "q_proj,v,gate,down";
    c.learning_rate = 1e-2;
    c.max_steps = 6;
    c.save_steps = 3;
    c.eval_data = data;
    TrainResult r;
    OprmError err = {{0}};
    int rc = train_run(&c, &r, &err);
    if (rc) fprintf(stderr, "lora: %s\n", err.msg);
    CHECK(rc == 0);
    CHECK(r.eval_loss_end < r.eval_loss_start);
    fprintf(stderr, "lora eval loss %.4f -> %.4f\n", r.eval_loss_start, r.eval_loss_end);
    char *cfg = path_join(full, "adapter/adapter_config.json");
    char *ad = path_join(full, "adapter/adapter_model.safetensors");
    char *ck_ad = path_join(full, "checkpoint-3/adapter/adapter_model.safetensors");
    CHECK(file_exists(cfg) && file_exists(ad) && file_exists(ck_ad));
    size_t len;
    char *text = read_file(cfg, &len, &err);
    CHECK_STR_CONTAINS(text, "\"r\": 4");
    free(text);
    /* The merged checkpoint scores as the model ended training. */
    double acc;
    double merged = scorer_pair_loss(full, data, &acc);
    CHECK_NEAR(merged, r.eval_loss_end, 1e-5, 0);
    c.output_dir = cut;
    c.hook = hook_sigint;
    sigint_at = 4;
    CHECK(train_run(&c, &r, &err) == 130);
    c.hook = NULL;
    c.resume = "latest";
    rc = train_run(&c, &r, &err);
    if (rc) fprintf(stderr, "lora resume: %s\n", err.msg);
    CHECK(rc == 0);
    size_t na = 0, nb = 0;
    double *la = run_losses(full, &na), *lb = run_losses(cut, &nb);
    CHECK(la && lb && na == 6 && nb == 6 && memcmp(la, lb, na * sizeof *la) == 0);
    free(la);
    free(lb);
    free(cfg);
    free(ad);
    free(ck_ad);
    free(data);
    free(full);
    free(cut);
}

/* The CLI: usage errors exit 2 with a message, --help 0, a tiny run 0. */
static void test_cli(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/release/oprm";
    if (access(bin, X_OK)) {
        SKIP("CLI checks: %s not built (make; OPRM_BIN overrides)", bin);
        return;
    }
    char out[8192], args[1024];
    char *data = pairs_file("cli.jsonl", 2, 32, PLAIN);
    char *dir = tmp("run_cli");
    CHECK(run_cli("--help", out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "--per_device_train_batch_size");
    CHECK(run_cli("--bogus 1", out, sizeof out) == 2);
    CHECK_STR_CONTAINS(out, "unknown option --bogus");
    snprintf(args, sizeof args, "--model %s --data %s --output %s --learning_rate abc", model_dir, data, dir);
    CHECK(run_cli(args, out, sizeof out) == 2);
    CHECK_STR_CONTAINS(out, "expects a number");
    snprintf(args, sizeof args, "--model %s --output %s", model_dir, dir);
    CHECK(run_cli(args, out, sizeof out) == 2);
    CHECK_STR_CONTAINS(out, "--data");
    snprintf(args, sizeof args, "--model %s --data %s --output %s --lora-rank 8 --lora-targets q,bogus", model_dir,
             data, dir);
    CHECK(run_cli(args, out, sizeof out) == 1);
    CHECK_STR_CONTAINS(out, "unknown module 'bogus'");
    snprintf(args, sizeof args, "--model %s --data %s --output %s --loss hinge", model_dir, data, dir);
    CHECK(run_cli(args, out, sizeof out) == 2);
    snprintf(args, sizeof args,
             "--model %s --data %s --output %s --max-len 256 --batch-size 2 --max_steps 1 --learning-rate 1e-3 "
             "--lr_scheduler_type cosine --threads 2",
             model_dir, data, dir);
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "done: 1 steps");
    OprmError err;
    CHECK(checkpoint_verify(dir, 1, &err) == 0);
    free(dir);
    free(data);
}

#include <time.h>
static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* Every test trains the shared story-llama on the shared hhh pairs. */
static const char *const needs[] = {"models/story-llama", "prefs/hhh.jsonl", NULL};
#define RUN_TIMED(fn)                                                  \
    do {                                                               \
        double t0_ = wall();                                           \
        const char *missing_ = shared_data_missing(needs);             \
        RUN_SHARED(fn, missing_ ? missing_ : needs[0]);                \
        fprintf(stderr, "  (%s: %.1f s)\n", #fn, wall() - t0_);        \
    } while (0)

int main(void) {
    if (!mkdtemp(tmp_dir)) return 1;
    snprintf(model_dir, sizeof model_dir, "%s/models/story-llama", shared_data_dir());
    RUN_TIMED(test_loss_decreases_and_reload);
    RUN_TIMED(test_resume_exact);
    RUN_TIMED(test_failures);
    RUN_TIMED(test_truncation_counted);
    RUN_TIMED(test_mixed_and_bt);
    RUN_TIMED(test_lora);
    RUN_TIMED(test_cli);
    RUN_TIMED(test_cli_sigint);
    OprmError err;
    remove_tree(tmp_dir, &err);
    return test_summary();
}
