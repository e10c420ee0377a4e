/* The demo's training loop and the oprm demo command: the loop lowers the
 * loss and fits a small fixed set of pairs (a wrong sign or a miswired
 * gradient would raise it), the trained directory reloads through the scorer
 * with the template of its oprm.json and ranks those pairs as trained; the
 * command's exit codes and its summary. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "model/model.h"
#include "synth/demo_eval.h"
#include "synth/demo_train.h"
#include "synth/init_model.h"
#include "synth/task.h"
#include "test.h"

static void rm_rf(const char *dir) {
    char cmd[600];
    if (strncmp(dir, "/tmp/oprm-test-", 15) != 0) return; /* only our own temp dirs */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static void test_train_fits_pairs(void) {
    char dir[] = "/tmp/oprm-test-demotrain-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    InitOptions io;
    init_default_options(&io, ARCH_LLAMA);
    io.hidden = 32;
    io.ffn = 64;
    OprmError err = {0};
    CHECK(init_model_dir(dir, &io, NULL, &err) == 0);
    SynthOptions so;
    synth_default_options(&so);
    so.n_train_pairs = 8;
    so.flip_fraction = 0;
    so.n_test_pairs = 8;
    so.n_train_labels = so.n_test_labels = so.n_bon = 0;
    CHECK(synth_write_task(dir, &so, NULL, &err) == 0);
    char *pairs = path_join(dir, "train_pairs.jsonl");

    /* Before training: the fresh model's accuracy on these pairs. */
    DemoTrainOptions o;
    demo_train_default_options(&o);
    o.steps = 1;
    o.batch = 8;
    o.lr = 0; /* a step with lr 0 measures the initial loss and saves oprm.json */
    o.label_fraction = 0;
    DemoTrainResult r0, r1;
    CHECK(demo_train(dir, pairs, &o, &r0, &err) == 0);
    CHECK(r0.pairs_used == 8 && r0.labelled_pairs == 0);
    o.steps = 60;
    o.lr = 1e-2;
    o.warmup = 5;
    CHECK(demo_train(dir, pairs, &o, &r1, &err) == 0);
    if (err.msg[0]) fprintf(stderr, "demo_train: %s\n", err.msg);
    /* Fitting 8 pairs: the loss falls well below ln(81/36) = 0.81 of uniform distributions. */
    CHECK_NEAR(r0.final_loss, log(81.0 / 36.0), 0.05, 0);
    CHECK(r1.final_loss < 0.4);
    CHECK(r1.final_batch_accuracy > 0.9);
    char *meta = path_join(dir, "oprm.json");
    CHECK(file_exists(meta));
    free(meta);
    Scorer *s = scorer_open(dir, NULL, &err);
    CHECK(s != NULL);
    if (s) {
        DemoPairEval ev;
        CHECK(demo_eval_pairs(s, pairs, 0, &ev, &err) == 0);
        CHECK(ev.accuracy >= 0.875); /* at least 7 of the 8 trained pairs */
        scorer_close(s);
    }
    free(pairs);
    rm_rf(dir);
}

static int run_cmd(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/asan/oprm";
    if (!file_exists(bin)) {
        fprintf(stderr, "skipping CLI checks: %s not built\n", bin);
        return;
    }
    char dir[] = "/tmp/oprm-test-democli-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "%s demo --help > /dev/null", bin);
    CHECK(run_cmd(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s demo --max-steps 0 > /dev/null 2>&1", bin);
    CHECK(run_cmd(cmd) == 2);
    snprintf(cmd, sizeof cmd, "%s demo --bogus 1 > /dev/null 2>&1", bin);
    CHECK(run_cmd(cmd) == 2);
    snprintf(cmd, sizeof cmd,
             "%s demo --output %s/d --max-steps 4 --batch-size 2 --audit-pairs 16 --threads 1 > %s/out.txt 2>&1", bin,
             dir, dir);
    CHECK(run_cmd(cmd) == 0);
    char *out_path = path_join(dir, "out.txt");
    OprmError err = {0};
    char *out = read_file(out_path, NULL, &err);
    CHECK_STR_CONTAINS(out, "[5/5] audit of 8 training pairs");
    CHECK_STR_CONTAINS(out, "held-out pairs (600): accuracy");
    free(out);
    free(out_path);
    char sum_path[600];
    snprintf(sum_path, sizeof sum_path, "%s/d/summary.json", dir);
    json_t *sum = json_load_file(sum_path, 0, NULL);
    CHECK(sum != NULL);
    double acc = json_real_value(json_object_get(sum, "heldout_pair_accuracy"));
    CHECK(acc >= 0 && acc <= 1);
    CHECK(json_integer_value(json_object_get(json_object_get(sum, "training"), "steps")) == 4);
    json_decref(sum);
    CHECK(run_cmd(cmd) == 1); /* refuses to overwrite without --force */
    rm_rf(dir);
}

int main(void) {
    model_set_threads(1); /* tiny matrices: threads only add synchronisation */
    RUN(test_train_fits_pairs);
    RUN(test_cli);
    return test_summary();
}
