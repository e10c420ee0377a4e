/* One length rule (issue 12 item 3) in every command that takes a length:
 * above the model's max_position_embeddings is refused with a message naming
 * both numbers; the default is min(1024, max_position_embeddings); the
 * scorer's default is the run's saved training max_length, capped the same
 * way. Library (max_length_resolve, train_run, scorer_open) and every command
 * (train, score, eval, bon, audit, serve). Tiny random model, 256 positions. */
#include "eval/scorer.h"
#include "model/max_length.h"
#include "train/checkpoint.h"
#include "train_testutil.h"

static char tmp_dir[] = "/tmp/oprm_test_max_length_XXXXXX";
static char model[TINY_PATH], data[TINY_PATH];

static void test_rule(void) {
    OprmError err = {{0}};
    int out = -1;
    CHECK(max_length_resolve(0, 0, 512, "--max_length", &out, &err) == 0 && out == 512);
    CHECK(max_length_resolve(0, 0, 4096, "--max_length", &out, &err) == 0 && out == OPRM_DEFAULT_MAX_LENGTH);
    CHECK(max_length_resolve(0, 0, 0, "--max_length", &out, &err) == 0 && out == OPRM_DEFAULT_MAX_LENGTH);
    CHECK(max_length_resolve(0, 256, 4096, "--max-len", &out, &err) == 0 && out == 256);
    CHECK(max_length_resolve(0, 2048, 512, "--max-len", &out, &err) == 0 && out == 512);
    CHECK(max_length_resolve(512, 0, 512, "--max-len", &out, &err) == 0 && out == 512);
    CHECK(max_length_resolve(100, 256, 512, "--max-len", &out, &err) == 0 && out == 100);
    out = -1;
    CHECK(max_length_resolve(2048, 0, 512, "--max_length", &out, &err) == -1 && out == -1);
    CHECK_STR_CONTAINS(err.msg, "--max_length 2048");
    CHECK_STR_CONTAINS(err.msg, "max_position_embeddings (512)");
}

/* train: refused above the model's 256 positions; default 256 (not 1024). */
static void test_train(void) {
    char *out = path_join(tmp_dir, "run_long");
    TrainConfig c;
    tiny_config(&c, model, data, out);
    c.max_length = 300;
    c.max_steps = 1;
    OprmError err = {{0}};
    TrainResult r;
    CHECK(train_run(&c, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "--max_length 300");
    CHECK_STR_CONTAINS(err.msg, "(256)");
    CHECK(access(out, F_OK) != 0); /* refused before anything is written */
    c.max_length = 0;              /* the default: min(1024, 256) */
    int rc = train_run(&c, &r, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    CHECK(rc == 0);
    size_t len;
    char *mp = path_join(out, "oprm.json");
    char *meta = read_file(mp, &len, &err);
    CHECK_STR_CONTAINS(meta, "\"max_length\": 256");
    free(meta);
    free(mp);
    /* The scorer: the run's 256 by default; above the model refused; a shorter
     * one given is used. */
    ScorerOptions so = {0};
    Scorer *s = scorer_open(out, &so, &err);
    CHECK(s && scorer_max_len(s) == 256);
    scorer_close(s);
    so.max_len = 257;
    CHECK(scorer_open(out, &so, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "--max-len 257");
    CHECK_STR_CONTAINS(err.msg, "(256)");
    so.max_len = 100;
    s = scorer_open(out, &so, &err);
    CHECK(s && scorer_max_len(s) == 100);
    scorer_close(s);
    /* A model without oprm.json: min(1024, 256). */
    so.max_len = 0;
    s = scorer_open(model, &so, &err);
    CHECK(s && scorer_max_len(s) == 256);
    scorer_close(s);
    free(out);
}

/* Every command that takes a length refuses one above the model, naming both
 * numbers, under both spellings. */
static void test_commands(void) {
    static const char *cmds[] = {"score", "eval", "bon", "audit", "serve", "train"};
    char args[2048], text[8192];
    char *scratch = path_join(tmp_dir, "cli.txt");
    char *out = path_join(tmp_dir, "cli_run");
    for (int i = 0; i < 6; i++) {
        for (int spelling = 0; spelling < 2; spelling++) {
            snprintf(args, sizeof args, "%s --model %s --data %s --output %s %s 4096", cmds[i], model, data,
                     out, spelling ? "--max_length" : "--max-len");
            if (!strcmp(cmds[i], "serve"))
                snprintf(args, sizeof args, "serve --model %s --port 0 %s 4096", model,
                         spelling ? "--max_length" : "--max-len");
            if (!strcmp(cmds[i], "train"))
                snprintf(args, sizeof args, "train --model %s --data %s --output %s --max_steps 1 %s 4096", model,
                         data, out, spelling ? "--max_length" : "--max-len");
            int status = run_oprm(args, scratch, text, sizeof text);
            int ok = status == 1 && strstr(text, " 4096 ") && strstr(text, "max_position_embeddings (256)");
            if (!ok) fprintf(stderr, "oprm %s: exit %d: %s\n", args, status, text);
            CHECK(ok);
        }
    }
    free(scratch);
    free(out);
}

int main(void) {
    if (tiny_fixture(tmp_dir, model, data, NULL, 4)) return 1;
    RUN(test_rule);
    RUN(test_train);
    RUN(test_commands);
    OprmError err;
    remove_tree(tmp_dir, &err);
    return test_summary();
}
