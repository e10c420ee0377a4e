/* The demo tokenizer as oprm's own tokenizer loads it: encodings equal the
 * independent Python BPE of tools/demo_prototype.py (tests/fixtures/
 * synth_bpe.json), decoding round-trips, the digits and ChatML markers resolve,
 * and the scoring prompt builds. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fileio.h"
#include "synth/bpe.h"
#include "synth/task.h"
#include "test.h"
#include "tok/chat.h"
#include "tok/prompt.h"
#include "tok/tokenizer.h"

static void remove_tok_dir(const char *dir) {
    const char *names[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    for (int i = 0; i < 3; i++) {
        char *p = path_join(dir, names[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
}

static void test_fixture_encodings(void) {
    json_t *fx = json_load_file("tests/fixtures/synth_bpe.json", 0, NULL);
    CHECK(fx != NULL);
    if (!fx) return;
    json_t *texts = json_object_get(fx, "texts");
    int n = (int)json_array_size(texts);
    BpeText *bt = calloc((size_t)n, sizeof *bt);
    for (int i = 0; i < n; i++) {
        bt[i].text = json_string_value(json_array_get(json_array_get(texts, (size_t)i), 0));
        bt[i].weight = (int)json_integer_value(json_array_get(json_array_get(texts, (size_t)i), 1));
    }
    BpeMerges m;
    OprmError err = {0};
    CHECK(bpe_train(bt, n, (int)json_integer_value(json_object_get(fx, "n_merges")), &m, &err) == 0);
    char dir[] = "/tmp/oprm-test-synthtok-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    int vocab = 0;
    CHECK(bpe_write_tokenizer(dir, &m, &vocab, &err) == 0);
    Tokenizer *t = tok_load(dir, &err);
    CHECK(t != NULL);
    if (!t) fprintf(stderr, "tok_load: %s\n", err.msg);
    if (t) {
        CHECK(tok_vocab_size(t) == vocab);
        json_t *enc = json_object_get(fx, "encodings");
        for (size_t i = 0; i < json_array_size(enc); i++) {
            const char *text = json_string_value(json_object_get(json_array_get(enc, i), "text"));
            json_t *want = json_object_get(json_array_get(enc, i), "ids");
            IdVec ids = {0};
            CHECK(tok_encode(t, text, strlen(text), 0, &ids, &err) == 0);
            int same = ids.n == json_array_size(want);
            for (size_t k = 0; same && k < ids.n; k++) same = ids.v[k] == json_integer_value(json_array_get(want, k));
            CHECK(same);
            if (!same) fprintf(stderr, "encoding %zu differs (%zu ids vs %zu)\n", i, ids.n, json_array_size(want));
            StrBuf back = {0};
            CHECK(tok_decode(t, ids.v, ids.n, 0, &back, &err) == 0);
            CHECK(back.s && strcmp(back.s, text) == 0);
            sb_free(&back);
            idvec_free(&ids);
        }
        int32_t digits[9];
        CHECK(tok_digit_ids(t, digits, &err) == 0);
        for (int d = 0; d < 9; d++) CHECK(digits[d] == 16 + d);
        CHECK(tok_token_id(t, "<|im_end|>") == vocab - 1);
        CHECK(tok_eos_id(t) == vocab - 1);
        CHECK(tok_adds_bos(t) == 0);
        ChatFormat f;
        CHECK(chat_format_choose(t, NULL, &f, &err) == 0 && f == CHAT_CHATML);
        tok_free(t);
    }
    remove_tok_dir(dir);
    bpe_merges_free(&m);
    free(bt);
    json_decref(fx);
}

static void test_demo_scoring_prompt(void) {
    char dir[] = "/tmp/oprm-test-synthtok-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    OprmError err = {0};
    int vocab = 0;
    CHECK(synth_write_tokenizer(dir, 1, 0, &vocab, &err) == 0);
    Tokenizer *t = tok_load(dir, &err);
    CHECK(t != NULL);
    char *tpl_path = path_join(dir, "template.txt");
    CHECK(write_file_atomic(tpl_path, SYNTH_DEMO_TEMPLATE, strlen(SYNTH_DEMO_TEMPLATE), &err) == 0);
    for (int use_tpl = 0; t && use_tpl < 2; use_tpl++) {
        ScoringSetup s;
        CHECK(scoring_setup(&s, t, NULL, use_tpl ? tpl_path : NULL, 0, &err) == 0);
        Conversation c = {0};
        conv_push(&c, ROLE_USER, "Write six even digits.", strlen("Write six even digits."));
        ScoringPrompt sp = {0};
        CHECK(scoring_build(&s.cfg, &c, "482066", &sp, &err) == 0);
        /* The merges learned from the frames keep prompts short: every word of
         * the frame is one token (the token listing is in docs/demo.md: 72
         * for the default template, 44 for the demo's). */
        CHECK(sp.ids.n == (use_tpl ? 44u : 72u));
        CHECK(sp.ids.n > 0 && sp.ids.v[sp.ids.n - 1] == tok_token_id(t, "\xC4\xA0")); /* ends with the cue's space */
        /* The six response digits are six tokens among the ids. */
        int run = 0, best = 0;
        for (size_t i = 0; i < sp.ids.n; i++) {
            run = (sp.ids.v[i] >= 15 && sp.ids.v[i] <= 24) ? run + 1 : 0;
            if (run > best) best = run;
        }
        CHECK(best == 6);
        scoring_prompt_free(&sp);
        conv_free(&c);
        scoring_setup_free(&s);
    }
    tok_free(t);
    unlink(tpl_path);
    free(tpl_path);
    remove_tok_dir(dir);
}

int main(void) {
    RUN(test_fixture_encodings);
    RUN(test_demo_scoring_prompt);
    return test_summary();
}
