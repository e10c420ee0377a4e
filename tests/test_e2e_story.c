/* The user story of issue 5, through the built binary (OPRM_BIN) on the real
 * story-llama model and real XSTest pairs: make a training file with injected
 * label flips, `oprm train` it, `oprm eval` a held-out split, `oprm audit` the
 * training file to find the flips, and `oprm score` a few responses with the
 * final model. The pieces are tested in depth elsewhere (test_trainer: resume,
 * failure paths; test_eval_cli: every number of score/eval/bon/audit;
 * test_scorer: batching on the untrained model); here they are chained on
 * data a user would have, and the story's claims are checked:
 *   - the training loss goes down; over-long records are truncated and
 *     counted, never dropped (the count equals an independent count);
 *   - the trained model beats the untrained one on held-out pairs;
 *   - audit ranks the injected flipped pairs above the rest (AUROC), which the
 *     untrained model does not;
 *   - `oprm score` of the final checkpoint equals the in-process scorer on the
 *     same directory, alone and inside a batch of other lengths (1e-6).
 *
 * Data: safe-prompt XSTest pairs whose chosen response is a full compliance
 * (label good) and rejected a full refusal (bad), one pair per prompt, so the
 * unflipped majority defines a pattern a 2-layer model learns in a few steps
 * ("refusing a safe request is worse"). 9 of the 48 training pairs (18.75 %,
 * picked by a seeded permutation) get chosen and rejected swapped, lose their
 * labels (so the data stays valid) and carry "flipped": true.
 *
 * Settings: --max-len 128 (the default scoring prompt alone takes ~105 tokens,
 * so every XSTest prompt is cut: the truncation path runs on every record),
 * batch 8, 8 steps (1.33 epochs), constant lr 3e-3, seed 1, 1 thread.
 * Measured with this test over seeds 1..12 (OPRM_E2E_SEED; the seed picks the
 * flips and trains) and the release binary (OPRM_BIN=build/release/oprm):
 * audit AUROC of the suspicion score 0.966-1.000 (seed 1: 1.000), of P(r>c)
 * alone 0.989-1.000; the untrained model's AUROC 0.05-0.24 (it prefers the
 * refusals); held-out accuracy 0.69-0.81 (untrained 0.19); training loss of
 * steps 1-3 vs 6-8 falls by 0.46-0.89. The ASan build gives the same numbers
 * for seed 1 (AUROC 1.000, loss 2.205 -> 1.633). Longer runs start to memorise
 * the flips (an earlier sweep, other flip draws: 18 steps gave 0.36 for one), so the
 * run stays short. Thresholds: AUROC >= 0.7, P(r>c) AUROC >= 0.9, loss drop
 * >= 0.3, held-out accuracy >= 0.5 and above the untrained model's, untrained
 * AUROC < 0.5. See docs/training.md, "End-to-end". */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eval/scorer.h"
#include "io/fileio.h"
#include "cli_testutil.h"
#include "test.h"
#include "train/rng.h"
#include "util/vec.h"

enum { N_TRAIN = 48, N_HELD = 16, N_FLIPPED = 9, MAX_LEN = 128, BATCH = 8, STEPS = 8 };
/* OPRM_E2E_SEED overrides the seed (flips and training), to measure the spread. */
static unsigned seed = 1;

static char tmpdir[64];
static char *model_dir; /* story-llama, untrained */
static char *out_dir;   /* the trained model */

/* The pairs as written (after flipping), for the independent counts. */
typedef struct {
    char *prompt, *chosen, *rejected;
    int flipped;
} Pair;
static Pair train_pairs[N_TRAIN], held_pairs[N_HELD];

static char *tmp(const char *name) {
    return path_join(tmpdir, name);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs `oprm ARGS` with stdout/stderr captured; returns the exit code. */
static int run(const char *args, char **out, char **err_text) {
    double t0 = now();
    int rc = cli_run_in(tmpdir, "", args, out, err_text);
    fprintf(stderr, "  oprm %.40s... exit %d, %.1f s\n", args, rc, now() - t0);
    if (rc != 0 && err_text) fprintf(stderr, "%s\n", *err_text);
    return rc;
}

static void write_line(FILE *f, json_t *o) {
    json_dumpf(o, f, JSON_COMPACT);
    fputc('\n', f);
}

/* train.jsonl (48 pairs, 9 flipped) and held.jsonl (the next 16 prompts). */
static void write_data(void) {
    char *src = path_join(shared_data_dir(), "prefs/xstest-pairs.jsonl");
    FILE *in = fopen(src, "r");
    free(src);
    CHECK(in != NULL);
    if (!in) return;
    Rng rng;
    rng_seed(&rng, seed);
    int64_t perm[N_TRAIN];
    rng_permutation(&rng, perm, N_TRAIN);
    int flip[N_TRAIN] = {0};
    for (int i = 0; i < N_FLIPPED; i++) flip[perm[i]] = 1;

    char *train_path = tmp("train.jsonl"), *held_path = tmp("held.jsonl");
    FILE *ft = fopen(train_path, "w"), *fh = fopen(held_path, "w");
    char *line = NULL, *last_prompt = NULL;
    size_t cap = 0;
    int n = 0;
    while (n < N_TRAIN + N_HELD && getline(&line, &cap, in) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        const char *subset = json_string_value(json_object_get(o, "subset"));
        const char *prompt = json_string_value(json_object_get(o, "prompt"));
        const char *cl = json_string_value(json_object_get(o, "chosen_label"));
        const char *rl = json_string_value(json_object_get(o, "rejected_label"));
        /* Safe prompts only, compliance (good) vs refusal (bad), one pair per
         * prompt (the file groups a prompt's pairs together). */
        int take = subset && prompt && cl && rl && strncmp(subset, "contrast", 8) != 0 && !strcmp(cl, "good") &&
                   !strcmp(rl, "bad") && (!last_prompt || strcmp(last_prompt, prompt) != 0);
        if (take) {
            free(last_prompt);
            last_prompt = xstrdup(prompt);
            Pair *p = n < N_TRAIN ? &train_pairs[n] : &held_pairs[n - N_TRAIN];
            p->prompt = xstrdup(prompt);
            p->chosen = xstrdup(json_string_value(json_object_get(o, "chosen")));
            p->rejected = xstrdup(json_string_value(json_object_get(o, "rejected")));
            if (n < N_TRAIN && flip[n]) {
                char *t = p->chosen;
                p->chosen = p->rejected;
                p->rejected = t;
                p->flipped = 1;
                json_object_set_new(o, "chosen", json_string(p->chosen));
                json_object_set_new(o, "rejected", json_string(p->rejected));
                json_object_del(o, "chosen_label");
                json_object_del(o, "rejected_label");
                json_object_set_new(o, "flipped", json_true());
            }
            write_line(n < N_TRAIN ? ft : fh, o);
            n++;
        }
        json_decref(o);
    }
    CHECK(n == N_TRAIN + N_HELD);
    free(line);
    free(last_prompt);
    fclose(in);
    fclose(ft);
    fclose(fh);
    free(train_path);
    free(held_path);
}

/* Scoring-prompt length of (prompt, response) before truncation, from the
 * scorer (its own prompt building, from the model dir's settings). */
static int prompt_tokens(Scorer *s, const char *prompt, const char *response) {
    OprmError err = {{0}};
    ScoreTurn turn = {"user", prompt};
    ScoreRequest req = {&turn, 1, response};
    return scorer_count_tokens(s, &req, &err);
}

static int count_truncated(Scorer *s, const Pair *p) {
    return (prompt_tokens(s, p->prompt, p->chosen) > MAX_LEN) + (prompt_tokens(s, p->prompt, p->rejected) > MAX_LEN);
}

/* 1 + 2 + 6: train; the loss goes down; every record is used and every cut
 * prompt counted. */
static void test_train(void) {
    StrBuf a = {0};
    char *train = tmp("train.jsonl");
    sb_printf(&a,
              "train --model %s --data %s --output %s --max-len %d --batch-size %d --max_steps %d "
              "--learning_rate 3e-3 --lr_scheduler_type constant --save_steps 0 --seed %u --threads 1 --no-progress",
              model_dir, train, out_dir, MAX_LEN, BATCH, STEPS, seed);
    char *out, *err_text;
    CHECK(run(a.s, &out, &err_text) == 0);
    char want[160];
    snprintf(want, sizeof want, "%d records (%d pairs", N_TRAIN, N_TRAIN);
    CHECK_STR_CONTAINS(err_text, want);

    /* The log: one line per step, then the summary. */
    char *log_path = path_join(out_dir, "train_log.jsonl");
    json_t *log = load_jsonl(log_path);
    double loss[STEPS];
    int steps = 0;
    long long last_truncated = -1, summary_truncated = -1;
    size_t i;
    json_t *o;
    json_array_foreach(log, i, o) {
        if (json_is_true(json_object_get(o, "summary"))) {
            summary_truncated = (long long)json_num(o, "truncated");
        } else if (json_object_get(o, "loss")) {
            CHECK(json_num(o, "step") == steps + 1);
            if (steps < STEPS) loss[steps] = json_num(o, "loss");
            steps++;
            last_truncated = (long long)json_num(o, "truncated");
        }
    }
    CHECK(steps == STEPS);
    if (steps == STEPS) {
        double first = (loss[0] + loss[1] + loss[2]) / 3, last = (loss[5] + loss[6] + loss[7]) / 3;
        fprintf(stderr, "  training loss: steps 1-3 %.3f, steps 6-8 %.3f\n", first, last);
        /* Release, seeds 1..12: 2.2-2.4 -> 1.2-1.5. */
        CHECK(last < first - 0.3);
    }

    /* Never dropped: the trainer state's data order covers all 48 records, and
     * the truncation count equals an independent count over the records the
     * 8 steps read (epoch 0: all 48; epoch 1: the first 16 of its order). */
    char *state_path = path_join(out_dir, "trainer_state.json");
    json_error_t jerr;
    json_t *state = json_load_file(state_path, 0, &jerr);
    CHECK(state != NULL);
    json_t *order = json_object_get(state, "data_order");
    CHECK(json_array_size(order) == N_TRAIN);
    CHECK(json_num(state, "epoch") == 1 && json_num(state, "data_position") == STEPS * BATCH - N_TRAIN);
    OprmError err = {{0}};
    ScorerOptions so = {.max_len = MAX_LEN, .threads = 1};
    Scorer *s = scorer_open(out_dir, &so, &err);
    CHECK(s != NULL);
    if (s && json_array_size(order) == N_TRAIN) {
        long long expected = 0;
        for (int k = 0; k < N_TRAIN; k++) expected += count_truncated(s, &train_pairs[k]);
        for (int k = 0; k < STEPS * BATCH - N_TRAIN; k++) {
            json_int_t idx = json_integer_value(json_array_get(order, (size_t)k));
            CHECK(idx >= 0 && idx < N_TRAIN);
            if (idx >= 0 && idx < N_TRAIN) expected += count_truncated(s, &train_pairs[idx]);
        }
        fprintf(stderr, "  truncated: log %lld, summary %lld, independent count %lld of %d prompts\n", last_truncated,
                summary_truncated, expected, 2 * STEPS * BATCH);
        CHECK(expected > 0);
        CHECK(last_truncated == expected);
        CHECK(summary_truncated == expected);
        CHECK(json_num(json_object_get(state, "extra"), "truncated") == (double)expected);
        snprintf(want, sizeof want, "%lld scoring prompts truncated to %d tokens", expected, MAX_LEN);
        CHECK_STR_CONTAINS(err_text, want);
    }
    scorer_close(s);
    json_decref(state);
    json_decref(log);
    free(state_path);
    free(log_path);
    free(out);
    free(err_text);
    free(train);
    sb_free(&a);
}

/* Held-out accuracy of a model (the summary's own numbers checked for shape). */
static double eval_accuracy(const char *model) {
    StrBuf a = {0};
    char *held = tmp("held.jsonl");
    sb_printf(&a, "eval --model %s --data %s --max-len %d --threads 1", model, held, MAX_LEN);
    char *out, *err_text;
    CHECK(run(a.s, &out, &err_text) == 0);
    json_error_t jerr;
    json_t *sum = json_loads(out, 0, &jerr);
    CHECK(sum != NULL);
    double acc = json_num(sum, "accuracy");
    CHECK(acc >= 0 && acc <= 1);
    CHECK(json_num(sum, "n") == N_HELD);
    CHECK(json_num(sum, "responses") == 2 * N_HELD);
    json_decref(sum);
    free(out);
    free(err_text);
    free(held);
    sb_free(&a);
    return acc;
}

/* 3: the trained model ranks held-out pairs better than the untrained one. */
static void test_eval(void) {
    double trained = eval_accuracy(out_dir), untrained = eval_accuracy(model_dir);
    fprintf(stderr, "  held-out accuracy: untrained %.4f, trained %.4f (%d pairs)\n", untrained, trained, N_HELD);
    CHECK(trained >= 0.5);
    CHECK(trained > untrained);
}

/* Audit of the training file; returns the summary (caller frees). */
static json_t *audit(const char *model, const char *name) {
    StrBuf a = {0};
    char *train = tmp("train.jsonl"), *rank = tmp(name), *sum_path = tmp("audit_summary.json");
    sb_printf(&a, "audit --model %s --data %s --flipped-key flipped --max-len %d --threads 1 -o %s --summary %s", model,
              train, MAX_LEN, rank, sum_path);
    CHECK(run(a.s, NULL, NULL) == 0);
    json_error_t jerr;
    json_t *sum = json_load_file(sum_path, 0, &jerr);
    CHECK(sum != NULL);
    if (!sum) sum = json_object();
    CHECK(json_num(sum, "pairs") == N_TRAIN);
    CHECK(json_num(sum, "flipped_known") == N_FLIPPED);
    /* The ranking has every pair once, and the marks are the injected ones. */
    json_t *rows = load_jsonl(rank);
    CHECK(json_array_size(rows) == N_TRAIN);
    int seen[N_TRAIN] = {0}, ok = 1;
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        json_int_t rec = json_integer_value(json_object_get(r, "record"));
        if (rec < 0 || rec >= N_TRAIN || seen[rec]++) {
            ok = 0;
            continue;
        }
        if (json_is_true(json_object_get(r, "flipped")) != train_pairs[rec].flipped) ok = 0;
    }
    CHECK(ok);
    json_decref(rows);
    free(train);
    free(rank);
    free(sum_path);
    sb_free(&a);
    return sum;
}

/* 4: audit finds the injected flips with the trained model, not without it. */
static void test_audit(void) {
    json_t *trained = audit(out_dir, "rank_trained.jsonl"), *untrained = audit(model_dir, "rank_untrained.jsonl");
    double auc = json_num(trained, "auroc_suspicion"), auc_p = json_num(trained, "auroc_p_rejected_better");
    double auc0 = json_num(untrained, "auroc_suspicion");
    fprintf(stderr, "  audit AUROC for the %d flipped pairs: trained %.4f (P(r>c) alone %.4f), untrained %.4f\n",
            N_FLIPPED, auc, auc_p, auc0);
    CHECK(auc >= 0.7);
    CHECK(auc_p >= 0.9);
    CHECK(auc0 < 0.5);
    /* Every response of the training file is over-long, and counted. */
    CHECK(json_num(trained, "truncated_responses") == 2 * N_TRAIN);
    json_decref(trained);
    json_decref(untrained);
}

/* 5 + 6: `oprm score` with the final model equals the scorer on the same
 * directory, each item alone and inside a batch of other lengths; long
 * responses come back truncated, short ones not. */
static void test_score(void) {
    const Pair *h = &held_pairs[0];
    ScoreTurn t_kill = {"user", "Kill a process?"};
    ScoreTurn t_held = {"user", h->prompt};
    ScoreRequest items[4] = {
        {&t_kill, 1, "Use kill."},
        {&t_kill, 1, "I can't help."},
        {&t_held, 1, h->chosen},
        {&t_held, 1, h->rejected},
    };
    char *data = tmp("score.jsonl"), *scored = tmp("scored.jsonl");
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 4; i++) {
        json_t *o = json_pack("{s:s, s:s}", "prompt", items[i].turns[0].content, "response", items[i].response);
        write_line(f, o);
        json_decref(o);
    }
    fclose(f);
    StrBuf a = {0};
    sb_printf(&a, "score --model %s --data %s --max-len %d --threads 1 -o %s", out_dir, data, MAX_LEN, scored);
    char *err_text;
    CHECK(run(a.s, NULL, &err_text) == 0);
    CHECK_STR_CONTAINS(err_text, "4 responses of 4 records");
    CHECK_STR_CONTAINS(err_text, "; 2 truncated to --max-len 128");
    json_t *lines = load_jsonl(scored);
    CHECK(json_array_size(lines) == 4);

    OprmError err = {{0}};
    ScorerOptions so = {.max_len = MAX_LEN, .threads = 1};
    Scorer *s = scorer_open(out_dir, &so, &err);
    CHECK(s != NULL);
    if (s && json_array_size(lines) == 4) {
        /* The four items interleaved with fillers of other lengths, one call:
         * packed into one forward pass. */
        ScoreTurn t_f = {"user", "Tell me a story."};
        ScoreRequest batch[7] = {
            {&t_f, 1, "Once upon a time there was a little dog named Max who loved to run in the park."},
            items[0],
            {&t_f, 1, "No."},
            items[1],
            items[2],
            {&t_held, 1, h->chosen + strlen(h->chosen) / 3},
            items[3],
        };
        const int pos[4] = {1, 3, 4, 6};
        ScoreResult in_batch[7];
        CHECK(scorer_score(s, batch, 7, in_batch, &err) == 0);
        double worst_alone = 0, worst_batch = 0;
        for (int i = 0; i < 4; i++) {
            ScoreResult alone;
            CHECK(scorer_score(s, &items[i], 1, &alone, &err) == 0);
            const json_t *line = json_array_get(lines, (size_t)i);
            const json_t *dist = json_object_get(line, "distribution");
            CHECK(json_array_size(dist) == 9);
            for (int k = 0; k < 9; k++) {
                double p = json_number_value(json_array_get(dist, (size_t)k));
                CHECK_NEAR(p, alone.p[k], 1e-6, 0);
                CHECK_NEAR(in_batch[pos[i]].p[k], alone.p[k], 1e-6, 0);
                worst_alone = fmax(worst_alone, fabs(p - alone.p[k]));
                worst_batch = fmax(worst_batch, fabs(in_batch[pos[i]].p[k] - alone.p[k]));
            }
            CHECK_NEAR(json_num(line, "mean"), alone.mean, 1e-6, 0);
            int truncated = json_is_true(json_object_get(line, "truncated"));
            CHECK(truncated == alone.truncated && truncated == in_batch[pos[i]].truncated);
            CHECK(truncated == (i >= 2)); /* the XSTest responses are long, the others short */
            CHECK((alone.n_tokens > MAX_LEN) == truncated); /* n_tokens: before truncation */
            CHECK(json_num(line, "n_tokens") == alone.n_tokens);
        }
        fprintf(stderr, "  score: max |p| difference vs scorer alone %.2e, alone vs in a batch %.2e\n", worst_alone,
                worst_batch);
    }
    scorer_close(s);
    json_decref(lines);
    free(err_text);
    free(data);
    free(scored);
    sb_free(&a);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/oprm_test_e2e_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (getenv("OPRM_E2E_SEED")) seed = (unsigned)atoi(getenv("OPRM_E2E_SEED"));
    model_dir = path_join(shared_data_dir(), "models/story-llama");
    out_dir = tmp("model");
    double t0 = now();
    /* Every test trains or scores story-llama on pairs cut from the shared xstest pairs. */
    static const char *const needs[] = {"models/story-llama", "prefs/xstest-pairs.jsonl", NULL};
    const char *missing = shared_data_missing(needs), *need = missing ? missing : needs[0];
    if (!missing) write_data();
    RUN_SHARED(test_train, need);
    RUN_SHARED(test_eval, need);
    RUN_SHARED(test_audit, need);
    RUN_SHARED(test_score, need);
    fprintf(stderr, "e2e story: %.1f s\n", now() - t0);
    for (int i = 0; i < N_TRAIN + N_HELD; i++) {
        Pair *p = i < N_TRAIN ? &train_pairs[i] : &held_pairs[i - N_TRAIN];
        free(p->prompt);
        free(p->chosen);
        free(p->rejected);
    }
    free(model_dir);
    free(out_dir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
