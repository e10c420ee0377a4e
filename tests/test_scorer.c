/* The scorer on the real story-llama model: distributions are proper
 * (test_batching_independent), equal a direct engine computation
 * (test_direct_engine: prompt built from the tokenizer, forward, the nine digit
 * rows, softmax, all here), and do not depend on how items are batched
 * (test_batching_independent). */
#include <stdlib.h>
#include <string.h>

#include "eval/scorer.h"
#include "model/model.h"
#include "tok/prompt.h"
#include "io/fileio.h"
#include "test.h"
#include "train/oprm_meta.h"
#include <unistd.h>
#include "util/vec.h"

static char *story_dir(void) {
    return path_join(shared_data_dir(), "models/story-llama");
}

static void test_batching_independent(void) {
    char *dir = story_dir();
    OprmError err = {0};
    Scorer *alone = scorer_open(dir, NULL, &err);
    ScorerOptions small = {.max_batch_tokens = 1}; /* forces one sequence per forward */
    Scorer *one_by_one = scorer_open(dir, &small, &err);
    CHECK(alone != NULL && one_by_one != NULL);
    if (!alone || !one_by_one) {
        fprintf(stderr, "%s\n", err.msg);
        free(dir);
        scorer_close(alone);
        scorer_close(one_by_one);
        return;
    }
    ScoreTurn t1[] = {{"user", "Tell me a story about a cat."}};
    ScoreTurn t2[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Name a color."}};
    ScoreRequest items[3] = {
        {t1, 1, "Once upon a time there was a cat named Tom. He liked to play."},
        {t2, 4, "Blue."},
        {t1, 1, "The cat sat."},
    };
    ScoreResult batched[3], single[3];
    CHECK(scorer_score(alone, items, 3, batched, &err) == 0);
    CHECK(scorer_score(one_by_one, items, 3, single, &err) == 0);
    for (int i = 0; i < 3; i++) {
        double sum = 0, mean = 0;
        for (int k = 0; k < 9; k++) {
            sum += batched[i].p[k];
            mean += (k + 1) * batched[i].p[k];
            CHECK_NEAR(batched[i].p[k], single[i].p[k], 1e-6, 0);
        }
        CHECK_NEAR(sum, 1.0, 1e-9, 0);
        CHECK_NEAR(batched[i].mean, mean, 1e-9, 0);
        CHECK(batched[i].std >= 0 && batched[i].mode >= 1 && batched[i].mode <= 9);
        CHECK(batched[i].n_tokens > 20 && !batched[i].truncated);
    }
    /* Different responses give different distributions (the model reads them). */
    CHECK(fabs(batched[0].mean - batched[2].mean) > 1e-6);
    int n = scorer_count_tokens(alone, &items[1], &err);
    CHECK(n == batched[1].n_tokens);
    scorer_close(alone);
    scorer_close(one_by_one);
    free(dir);
}

/* scorer_score against the pieces it is made of, called here one by one: the
 * tokenizer's scoring prompt (format from tokenizer_config.json, default
 * template), one forward pass of the model, the LM-head rows of the digits
 * 1..9 (ids 12..20 in story-llama's vocabulary, data/README.md), a softmax and
 * the moments of the 9-level distribution. */
static void test_direct_engine(void) {
    char *dir = story_dir();
    OprmError err = {0};
    Scorer *sc = scorer_open(dir, NULL, &err);
    Tokenizer *tok = tok_load(dir, &err);
    Model *m = model_load(dir, NULL, &err);
    CHECK(sc && tok && m);
    ScoringSetup setup;
    int setup_ok = tok && scoring_setup(&setup, tok, NULL, NULL, 0, &err) == 0;
    CHECK(setup_ok);
    if (!sc || !tok || !m || !setup_ok) {
        fprintf(stderr, "%s\n", err.msg);
        scorer_close(sc);
        tok_free(tok);
        model_free(m);
        free(dir);
        return;
    }
    for (int k = 0; k < 9; k++) CHECK(setup.digits[k] == 12 + k);
    const char *prompts[2] = {"Tell me a story about a dog.", "What did the cat do?"};
    const char *responses[2] = {"The dog ran to the park and played with a red ball all day.", "It slept."};
    for (int i = 0; i < 2; i++) {
        ScoreTurn turn = {"user", prompts[i]};
        ScoreRequest item = {&turn, 1, responses[i]};
        ScoreResult got;
        CHECK(scorer_score(sc, &item, 1, &got, &err) == 0);
        Conversation c = {0};
        conv_push(&c, ROLE_USER, prompts[i], strlen(prompts[i]));
        ScoringPrompt sp = {0};
        CHECK(scoring_build(&setup.cfg, &c, responses[i], &sp, &err) == 0);
        CHECK(got.n_tokens == (int)sp.ids.n && sp.ids.n > 20);
        int32_t len = (int32_t)sp.ids.n;
        SeqBatch b = {.ids = sp.ids.v, .lens = &len, .nseq = 1};
        int H = model_config(m)->hidden;
        float *h = calloc((size_t)H, sizeof *h), z[9];
        CHECK(model_forward(m, &b, 0, h, &err) == 0);
        model_head_rows_forward(m, h, 1, setup.digits, 9, z);
        double p[9], zmax = -INFINITY, sum = 0, mean = 0, m2 = 0;
        for (int k = 0; k < 9; k++) zmax = fmax(zmax, z[k]);
        for (int k = 0; k < 9; k++) sum += p[k] = exp(z[k] - zmax);
        int mode = 1;
        for (int k = 0; k < 9; k++) {
            p[k] /= sum;
            mean += (k + 1) * p[k];
            m2 += (k + 1) * (k + 1) * p[k];
            if (p[k] > p[mode - 1]) mode = k + 1;
        }
        for (int k = 0; k < 9; k++) CHECK_NEAR(got.p[k], p[k], 1e-6, 0);
        CHECK_NEAR(got.mean, mean, 1e-5, 0);
        CHECK_NEAR(got.std, sqrt(m2 - mean * mean), 1e-5, 0);
        CHECK(got.mode == mode);
        free(h);
        scoring_prompt_free(&sp);
        conv_free(&c);
    }
    scoring_setup_free(&setup);
    model_free(m);
    tok_free(tok);
    scorer_close(sc);
    free(dir);
}

static void test_truncation_counted(void) {
    char *dir = story_dir();
    OprmError err = {0};
    ScorerOptions o = {.max_len = 160};
    Scorer *s = scorer_open(dir, &o, &err);
    CHECK(s != NULL);
    if (!s) {
        free(dir);
        return;
    }
    StrBuf long_text = {0};
    for (int i = 0; i < 200; i++) sb_puts(&long_text, "the dog ran to the park and ");
    ScoreTurn t[] = {{"user", "Write a long story."}};
    ScoreRequest item = {t, 1, long_text.s};
    ScoreResult r;
    int rc = scorer_score(s, &item, 1, &r, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    CHECK(rc == 0);
    CHECK(r.truncated == 1);
    CHECK(r.n_tokens > 160);
    ScoreTurn bad[] = {{"robot", "x"}};
    ScoreRequest bad_item = {bad, 1, "y"};
    CHECK(scorer_score(s, &bad_item, 1, &r, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "unknown role 'robot'");
    sb_free(&long_text);
    scorer_close(s);
    free(dir);
}

/* A trained model scores at its training length (oprm.json) unless told otherwise. */
static void test_meta_max_len(void) {
    char dir[] = "/tmp/oprm-scorer-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *src = story_dir();
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    OprmError err = {0};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *from = path_join(src, files[i]), *to = path_join(dir, files[i]);
        size_t n;
        char *data = read_file(from, &n, &err);
        CHECK(data && write_file_atomic(to, data, n, &err) == 0);
        free(data);
        free(from);
        free(to);
    }
    Scorer *plain = scorer_open(dir, NULL, &err);
    CHECK(plain && scorer_max_len(plain) == 512); /* 2048 capped by max_position_embeddings */
    scorer_close(plain);
    OprmMeta meta = {.head = "oprm", .chat_format = "plain", .system_prompt = "Rate it.", .cue = "Score: ", .training_args = json_pack("{s:i}", "max_length", 160)};
    for (int k = 0; k < 9; k++) meta.digit_ids[k] = 12 + k;
    char *mp = path_join(dir, OPRM_META_FILE);
    CHECK(oprm_meta_write(&meta, mp, &err) == 0);
    json_decref(meta.training_args);
    Scorer *s = scorer_open(dir, NULL, &err);
    if (!s) fprintf(stderr, "%s\n", err.msg);
    CHECK(s && scorer_max_len(s) == 160);
    scorer_close(s);
    ScorerOptions o = {.max_len = 300};
    s = scorer_open(dir, &o, &err);
    CHECK(s && scorer_max_len(s) == 300);
    scorer_close(s);
    unlink(mp);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *to = path_join(dir, files[i]);
        unlink(to);
        free(to);
    }
    rmdir(dir);
    free(mp);
    free(src);
}

static void test_missing_model(void) {
    OprmError err = {0};
    CHECK(scorer_open("/nonexistent-model-dir", NULL, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent-model-dir");
}

int main(void) {
    RUN_SHARED(test_batching_independent, "models/story-llama");
    RUN_SHARED(test_direct_engine, "models/story-llama");
    RUN_SHARED(test_truncation_counted, "models/story-llama");
    RUN_SHARED(test_meta_max_len, "models/story-llama");
    RUN(test_missing_model);
    return test_summary();
}
