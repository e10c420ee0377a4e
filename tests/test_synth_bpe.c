/* The demo tokenizer builder against an independent reference: the merges that
 * tools/demo_prototype.py (pure Python, written separately) learns from the
 * same weighted corpus (tests/fixtures/synth_bpe.json), and the structure of
 * the written Hugging Face files checked field by field against the layout of
 * the real Qwen3 tokenizer.json. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fileio.h"
#include "synth/bpe.h"
#include "test.h"

static json_t *load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text);
    return j;
}

static void test_byte_chars(void) {
    /* GPT-2's byte-level map: printable ASCII as itself, space -> U+0120, LF -> U+010A. */
    CHECK(strcmp(bpe_byte_char('a'), "a") == 0);
    CHECK(strcmp(bpe_byte_char(' '), "\xC4\xA0") == 0);
    CHECK(strcmp(bpe_byte_char('\n'), "\xC4\x8A") == 0);
    CHECK(strcmp(bpe_byte_char(0xFF), "\xC3\xBF") == 0);
    CHECK(strcmp(bpe_byte_char(0xAD), "\xC5\x83") == 0); /* soft hyphen: the 68th unprintable byte */
}

typedef struct {
    char pieces[64][64];
    int n;
} Pieces;

static void collect(const char *p, size_t n, void *ctx) {
    Pieces *ps = ctx;
    if (ps->n < 64 && n < 63) {
        memcpy(ps->pieces[ps->n], p, n);
        ps->pieces[ps->n][n] = 0;
    }
    ps->n++;
}

static void test_pretokenize(void) {
    /* Expected pieces follow the Qwen2 regex: one digit per piece, words keep
     * their leading space, a lone space before a word stays attached to it. */
    Pieces ps = {0};
    OprmError err = {0};
    const char *text = "Score: 42 it's\n\n  ok";
    CHECK(bpe_pretokenize(text, strlen(text), collect, &ps, &err) == 0);
    const char *want[] = {"Score", ":", "\xC4\xA0", "4", "2", "\xC4\xA0it", "'s", "\xC4\x8A\xC4\x8A", "\xC4\xA0", "\xC4\xA0ok"};
    CHECK(ps.n == 10);
    for (int i = 0; i < 10 && i < ps.n; i++) CHECK(strcmp(ps.pieces[i], want[i]) == 0);
}

static void test_merges_match_python(void) {
    json_t *fx = load_json("tests/fixtures/synth_bpe.json");
    CHECK(fx != NULL);
    if (!fx) return;
    json_t *texts = json_object_get(fx, "texts"), *merges = json_object_get(fx, "merges");
    int n = (int)json_array_size(texts);
    BpeText *bt = calloc((size_t)n, sizeof *bt);
    for (int i = 0; i < n; i++) {
        bt[i].text = json_string_value(json_array_get(json_array_get(texts, (size_t)i), 0));
        bt[i].weight = (int)json_integer_value(json_array_get(json_array_get(texts, (size_t)i), 1));
    }
    BpeMerges m;
    OprmError err = {0};
    CHECK(bpe_train(bt, n, (int)json_integer_value(json_object_get(fx, "n_merges")), &m, &err) == 0);
    CHECK(m.n_merges == (int)json_array_size(merges));
    int same = 0;
    for (int i = 0; i < m.n_merges && i < (int)json_array_size(merges); i++) {
        json_t *p = json_array_get(merges, (size_t)i);
        if (!strcmp(m.left[i], json_string_value(json_array_get(p, 0))) &&
            !strcmp(m.right[i], json_string_value(json_array_get(p, 1))))
            same++;
        else if (same == i)
            fprintf(stderr, "first differing merge %d: C '%s' '%s'\n", i, m.left[i], m.right[i]);
    }
    CHECK(same == m.n_merges);

    /* Written files: structure of a Hugging Face byte-level BPE tokenizer. */
    char dir[] = "/tmp/oprm-test-bpe-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    int vocab_size = 0;
    CHECK(bpe_write_tokenizer(dir, &m, &vocab_size, &err) == 0);
    CHECK(vocab_size == (int)json_integer_value(json_object_get(fx, "vocab_size")));
    char *p = path_join(dir, "tokenizer.json");
    json_t *tj = load_json(p);
    free(p);
    CHECK(tj != NULL);
    if (tj) {
        json_t *model = json_object_get(tj, "model"), *vocab = json_object_get(model, "vocab");
        CHECK(strcmp(json_string_value(json_object_get(model, "type")), "BPE") == 0);
        CHECK(json_is_false(json_object_get(model, "byte_fallback")));
        CHECK(json_object_size(vocab) == (size_t)vocab_size - BPE_N_ADDED);
        for (int d = 1; d <= 9; d++) { /* digits are single tokens, ids 16..24 as in Qwen */
            char s[2] = {(char)('0' + d), 0};
            CHECK(json_integer_value(json_object_get(vocab, s)) == 15 + d);
        }
        CHECK(json_integer_value(json_object_get(vocab, "!")) == 0);
        CHECK(json_integer_value(json_object_get(vocab, "\xC4\xA0")) == 220); /* space, as in Qwen/GPT-2 */
        /* Every id 0..|vocab|-1 used exactly once. */
        char *seen = calloc((size_t)vocab_size, 1);
        const char *key;
        json_t *val;
        int dup = 0;
        json_object_foreach(vocab, key, val) {
            json_int_t id = json_integer_value(val);
            if (id < 0 || id >= vocab_size || seen[id]++) dup++;
        }
        CHECK(dup == 0);
        free(seen);
        json_t *jm = json_object_get(model, "merges");
        CHECK(json_array_size(jm) == (size_t)m.n_merges);
        CHECK(strcmp(json_string_value(json_array_get(jm, 0)), "r e") == 0);
        json_t *added = json_object_get(tj, "added_tokens");
        CHECK(json_array_size(added) == 3);
        CHECK(strcmp(json_string_value(json_object_get(json_array_get(added, 1), "content")), "<|im_start|>") == 0);
        CHECK(json_integer_value(json_object_get(json_array_get(added, 2), "id")) == vocab_size - 1);
        json_t *pre = json_object_get(tj, "pre_tokenizer");
        json_t *split = json_array_get(json_object_get(pre, "pretokenizers"), 0);
        CHECK(strcmp(json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex")),
                     BPE_SPLIT_REGEX) == 0);
        /* Same regex text as the real Qwen3 tokenizer (when the shared data is present). */
        char qpath[512];
        snprintf(qpath, sizeof qpath, "%s/tokenizers/qwen3/tokenizer.json", shared_data_dir());
        if (file_exists(qpath)) {
            json_t *q = load_json(qpath);
            json_t *qs = json_array_get(json_object_get(json_object_get(q, "pre_tokenizer"), "pretokenizers"), 0);
            CHECK(strcmp(json_string_value(json_object_get(json_object_get(qs, "pattern"), "Regex")),
                         BPE_SPLIT_REGEX) == 0);
            CHECK(json_equal(json_object_get(q, "decoder"), json_object_get(tj, "decoder")));
            CHECK(json_equal(json_object_get(q, "normalizer"), json_object_get(tj, "normalizer")));
            json_decref(q);
        }
        json_decref(tj);
    }
    p = path_join(dir, "tokenizer_config.json");
    json_t *cfg = load_json(p);
    free(p);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_STR_CONTAINS(json_string_value(json_object_get(cfg, "chat_template")), "<|im_start|>");
        CHECK(strcmp(json_string_value(json_object_get(cfg, "eos_token")), "<|im_end|>") == 0);
        json_decref(cfg);
    }
    const char *names[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    for (int i = 0; i < 3; i++) {
        p = path_join(dir, names[i]);
        CHECK(file_exists(p));
        unlink(p);
        free(p);
    }
    rmdir(dir);
    bpe_merges_free(&m);
    free(bt);
    json_decref(fx);
}

static void test_weights_and_stop(void) {
    /* "ab" x3 and "cd" x2: first merge is (a,b); then (c,d); then nothing occurs twice. */
    BpeText t[] = {{"ab", 3}, {"cd", 2}, {"xy", 1}};
    BpeMerges m;
    OprmError err = {0};
    CHECK(bpe_train(t, 3, 10, &m, &err) == 0);
    CHECK(m.n_merges == 2);
    if (m.n_merges == 2) {
        CHECK(!strcmp(m.left[0], "a") && !strcmp(m.right[0], "b"));
        CHECK(!strcmp(m.left[1], "c") && !strcmp(m.right[1], "d"));
    }
    bpe_merges_free(&m);
    BpeText bad[] = {{"ab", -1}};
    CHECK(bpe_train(bad, 1, 10, &m, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "negative weight");
}

int main(void) {
    RUN(test_byte_chars);
    RUN(test_pretokenize);
    RUN(test_merges_match_python);
    RUN(test_weights_and_stop);
    return test_summary();
}
