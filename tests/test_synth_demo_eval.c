/* The demo's evaluation: AUROC against hand-computed cases, the bar drawing,
 * and pair metrics / audit on a fresh model checked against scoring each
 * response on its own and recomputing the numbers here. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fileio.h"
#include "synth/demo_eval.h"
#include "synth/init_model.h"
#include "synth/task.h"
#include "test.h"

static void test_auroc(void) {
    /* (pos, neg) pairs: (.9,.8) (.9,.1) (.3,.1) ranked right, (.3,.8) wrong: 3/4. */
    double s1[] = {0.9, 0.8, 0.3, 0.1};
    int p1[] = {1, 0, 1, 0};
    CHECK_NEAR(demo_auroc(s1, p1, 4), 0.75, 1e-12, 0);
    double s2[] = {0.5, 0.5, 0.5};
    int p2[] = {1, 0, 0};
    CHECK_NEAR(demo_auroc(s2, p2, 3), 0.5, 1e-12, 0); /* ties count half */
    double s3[] = {0.2, 0.4, 0.4, 0.9};
    int p3[] = {0, 1, 0, 1};
    /* pos .4 vs neg .2 win, vs neg .4 tie; pos .9 wins both: (1 + .5 + 2) / 4. */
    CHECK_NEAR(demo_auroc(s3, p3, 4), 0.875, 1e-12, 0);
    int p4[] = {0, 0, 0, 0};
    CHECK(demo_auroc(s3, p4, 4) == -1);
}

static void test_draw(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    double p[9] = {0, 0, 0, 0, 1, 0, 0, 0.0625, 0};
    demo_draw_dist(f, "title", p, 8);
    fclose(f);
    CHECK_STR_CONTAINS(buf, "  title\n");
    CHECK_STR_CONTAINS(buf, "    5 1.000 \u2588\u2588\u2588\u2588\u2588\u2588\u2588\u2588\n");
    CHECK_STR_CONTAINS(buf, "    8 0.062 \u258C\n"); /* half a cell: 4 eighths */
    CHECK_STR_CONTAINS(buf, "    1 0.000 \n");
    int lines = 0;
    for (char *c = buf; *c; c++) lines += *c == '\n';
    CHECK(lines == 10);
    free(buf);
}

static void remove_dir_files(const char *dir) {
    const char *names[] = {"train_pairs.jsonl", "train_truth.jsonl", "test_pairs.jsonl", "train_labels.jsonl",
                           "test_labels.jsonl", "test_bon.jsonl", "tokenizer.json", "tokenizer_config.json",
                           "special_tokens_map.json", "config.json", "model.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = path_join(dir, names[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
}

static void test_eval_fresh_model(void) {
    char dir[] = "/tmp/oprm-test-demoeval-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    InitOptions io;
    init_default_options(&io, ARCH_QWEN2);
    io.hidden = 32;
    io.ffn = 64;
    OprmError err = {0};
    CHECK(init_model_dir(dir, &io, NULL, &err) == 0);
    SynthOptions so;
    synth_default_options(&so);
    so.n_train_pairs = 60;
    so.n_test_pairs = 30;
    so.flip_fraction = 0.3;
    so.n_train_labels = so.n_test_labels = so.n_bon = 0;
    CHECK(synth_write_task(dir, &so, NULL, &err) == 0);
    Scorer *s = scorer_open(dir, NULL, &err);
    CHECK(s != NULL);
    if (!s) fprintf(stderr, "scorer_open: %s\n", err.msg);
    if (s) {
        char *test_path = path_join(dir, "test_pairs.jsonl"), *train_path = path_join(dir, "train_pairs.jsonl"),
             *truth_path = path_join(dir, "train_truth.jsonl");
        DemoPairEval ev;
        CHECK(demo_eval_pairs(s, test_path, 0, &ev, &err) == 0);
        CHECK(ev.n_pairs == 30 && ev.kind_n[0] + ev.kind_n[1] + ev.kind_n[2] == 30);
        CHECK(ev.grade_n[0] + ev.grade_n[1] + ev.grade_n[2] == 60);
        for (int g = 0; g < 3; g++) {
            double sum = 0;
            for (int k = 0; k < 9; k++) sum += ev.grade_dist[g][k];
            if (ev.grade_n[g]) CHECK_NEAR(sum, 1.0, 1e-9, 0);
        }
        /* Recompute the accuracy by scoring the first pair's sides one at a time. */
        FILE *f = fopen(test_path, "r");
        char line[512];
        int ok = 0, n = 0;
        while (f && fgets(line, sizeof line, f)) {
            char prompt[64], chosen[16], rejected[16];
            if (sscanf(line, "{\"id\":\"%*[^\"]\",\"prompt\":\"%63[^\"]\",\"chosen\":\"%15[^\"]\",\"rejected\":\"%15[^\"]\"",
                       prompt, chosen, rejected) != 3)
                continue;
            ScoreTurn turn = {"user", prompt};
            ScoreRequest rc = {&turn, 1, chosen}, rr = {&turn, 1, rejected};
            ScoreResult a, b;
            CHECK(scorer_score(s, &rc, 1, &a, &err) == 0 && scorer_score(s, &rr, 1, &b, &err) == 0);
            ok += a.mean > b.mean;
            n++;
        }
        if (f) fclose(f);
        CHECK(n == 30);
        CHECK_NEAR(ev.accuracy, (double)ok / n, 1e-12, 0);
        CHECK(ev.ece >= 0 && ev.ece <= 1 && ev.mean_p_win > 0 && ev.mean_p_win < 1);
        CHECK_NEAR(ev.ece, 1 - ev.mean_p_win, 1e-9, 0); /* every outcome is 1 */

        DemoAudit au;
        CHECK(demo_audit(s, train_path, truth_path, 0, &au, &err) == 0);
        CHECK(au.n_pairs == 60);
        CHECK(au.n_flipped > 5 && au.n_flipped < 35); /* binomial(60, 0.3) */
        CHECK(au.auroc >= 0 && au.auroc <= 1 && au.flipped_in_top <= au.n_flipped);
        CHECK(demo_audit(s, train_path, test_path, 0, &au, &err) == -1); /* mismatched truth */
        free(test_path);
        free(train_path);
        free(truth_path);
        scorer_close(s);
    }
    remove_dir_files(dir);
}

int main(void) {
    RUN(test_auroc);
    RUN(test_draw);
    RUN(test_eval_fresh_model);
    return test_summary();
}
