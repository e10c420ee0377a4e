/* The tokenizer against Hugging Face's own `tokenizers` library
 * (tests/fixtures/hf/tokens-<name>.json from tools/gen_hf_chat_vectors.py):
 * for the 400 texts of the shared oracle-<name>.jsonl, the number of ids and
 * their FNV-1a 64 digest (so the committed fixture stays small); for every
 * chat-rendered text of tests/fixtures/hf/chat_templates.json (all families'
 * renderings, also followed by the cue "Score: 7") the full ids; a few texts
 * with add_special_tokens. All exact. story-llama is encoded on the qwen3
 * file's texts (its own vocabulary, byte fallback and <unk>). */
#include <jansson.h>

#include "test.h"
#include "tok/tokenizer.h"

static uint64_t fnv_ids(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int b = 0; b < 4; b++) h = (h ^ ((v >> (8 * b)) & 0xff)) * 0x100000001b3ULL;
    }
    return h;
}

static size_t encode_check(const Tokenizer *t, const char *what, size_t idx, const char *text, size_t len, int special,
                           json_t *want_ids, size_t want_n, const char *want_fnv) {
    IdVec ids = {0};
    OprmError err = {{0}};
    int rc = tok_encode(t, text, len, special, &ids, &err);
    int ok = rc == 0;
    if (ok && want_ids) {
        ok = ids.n == json_array_size(want_ids);
        for (size_t i = 0; ok && i < ids.n; i++) ok = ids.v[i] == json_integer_value(json_array_get(want_ids, i));
    }
    if (ok && want_fnv) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv_ids(ids.v, ids.n));
        ok = ids.n == want_n && !strcmp(hex, want_fnv);
    }
    if (!ok) fprintf(stderr, "%s #%zu differs from tokenizers: \"%.70s\" (%zu ids) %s\n", what, idx, text, ids.n,
                     rc ? err.msg : "");
    idvec_free(&ids);
    return ok;
}

static void check_tokenizer(const char *name, const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "tests/fixtures/hf/tokens-%s.json", name);
    json_error_t je;
    json_t *fx = json_load_file(path, 0, &je);
    if (!fx) fprintf(stderr, "%s: %s\n", path, je.text);
    CHECK(fx != NULL);
    snprintf(path, sizeof path, "%s/%s", shared_data_dir(), dir);
    OprmError err = {{0}};
    Tokenizer *t = tok_load(path, &err);
    if (!t) fprintf(stderr, "load %s: %s\n", path, err.msg);
    CHECK(t != NULL);
    if (!fx || !t) {
        json_decref(fx);
        tok_free(t);
        return;
    }
    /* the texts, in order, from the shared oracle file */
    snprintf(path, sizeof path, "%s/%s", shared_data_dir(), json_string_value(json_object_get(fx, "oracle_texts")));
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    json_t *digests = json_object_get(fx, "oracle");
    size_t n = 0, same = 0, lcap = 0;
    char *line = NULL;
    ssize_t len;
    while (f && (len = getline(&line, &lcap, f)) > 0) {
        json_t *o = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &je);
        json_t *d = json_array_get(digests, n);
        CHECK(o != NULL && d != NULL);
        if (o && d) {
            json_t *tx = json_object_get(o, "text");
            same += encode_check(t, name, n, json_string_value(tx), json_string_length(tx), 0, NULL,
                                 (size_t)json_integer_value(json_array_get(d, 0)), json_string_value(json_array_get(d, 1)));
        }
        json_decref(o);
        n++;
    }
    free(line);
    if (f) fclose(f);
    CHECK(n == 400 && json_array_size(digests) == 400);
    CHECK(same == n);
    json_t *chat = json_object_get(fx, "chat");
    size_t chat_same = 0;
    for (size_t i = 0; i < json_array_size(chat); i++) {
        json_t *c = json_array_get(chat, i), *tx = json_object_get(c, "text");
        chat_same += encode_check(t, name, i, json_string_value(tx), json_string_length(tx), 0,
                                  json_object_get(c, "ids"), 0, NULL);
    }
    CHECK(json_array_size(chat) == 75 && chat_same == json_array_size(chat));
    json_t *special = json_object_get(fx, "special");
    CHECK(json_array_size(special) == 3);
    for (size_t i = 0; i < json_array_size(special); i++) {
        json_t *c = json_array_get(special, i), *tx = json_object_get(c, "text");
        CHECK(encode_check(t, name, i, json_string_value(tx), json_string_length(tx), 1, json_object_get(c, "ids"), 0,
                           NULL));
    }
    fprintf(stderr, "%s: %zu/%zu oracle texts and %zu/%zu chat texts equal to tokenizers %s\n", name, same, n,
            chat_same, json_array_size(chat), json_string_value(json_object_get(fx, "tokenizers")));
    json_decref(fx);
    tok_free(t);
}

static void test_qwen3(void) { check_tokenizer("qwen3", "tokenizers/qwen3"); }
static void test_llama3(void) { check_tokenizer("llama3", "tokenizers/llama3"); }
static void test_mistral(void) { check_tokenizer("mistral", "tokenizers/mistral"); }
static void test_story_llama(void) { check_tokenizer("story-llama", "models/story-llama"); }

int main(void) {
    RUN_SHARED(test_qwen3, "tokenizers/qwen3");
    RUN_SHARED(test_llama3, "tokenizers/llama3");
    RUN_SHARED(test_mistral, "tokenizers/mistral");
    RUN_SHARED(test_story_llama, "models/story-llama");
    return test_summary();
}
