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

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
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
        int same = rc == 0 && ids_equal(out.v, out.n, v[i].ids, v[i].n_ids);
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

/* decode(encode(text)) for every vector text. expect_normalized: compare with
 * the NFC form (qwen3 normalizes). Returns the number of texts that differ. */
static size_t round_trips(const Tokenizer *t, const char *file, int expect_nfc) {
    size_t total, bad = 0;
    Vec *v = read_vectors(file, &total);
    for (size_t i = 0; i < total; i++) {
        IdVec ids = {0};
        StrBuf out = {0};
        OprmError err = {{0}};
        int rc = tok_encode(t, v[i].text, v[i].len, 0, &ids, &err);
        rc = rc || tok_decode(t, ids.v, ids.n, 0, &out, &err);
        const char *want = v[i].text;
        size_t want_len = v[i].len;
        utf8proc_uint8_t *nfc = NULL;
        if (expect_nfc) {
            utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)v[i].text, (utf8proc_ssize_t)v[i].len,
                                              &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (n >= 0) want = (const char *)nfc, want_len = (size_t)n;
        }
        if (rc || out.n != want_len || (want_len && memcmp(out.s, want, want_len))) {
            bad++;
            fprintf(stderr, "%s #%zu: round trip differs: \"%.60s\" -> \"%.60s\"\n", file, i, v[i].text,
                    out.s ? out.s : "");
        }
        free(nfc);
        idvec_free(&ids);
        sb_free(&out);
    }
    free_vectors(v, total);
    return bad;
}

static void check_encode(const Tokenizer *t, const char *text, int add_special, const int32_t *want, size_t n) {
    IdVec ids = {0};
    OprmError err = {{0}};
    CHECK(tok_encode(t, text, strlen(text), add_special, &ids, &err) == 0);
    CHECK(ids_equal(ids.v, ids.n, want, n));
    if (!ids_equal(ids.v, ids.n, want, n)) print_ids(text, ids.v, ids.n);
    idvec_free(&ids);
}

/* Digit ids, "Score: 7" and "Hello world" (with and without special tokens)
 * as stated in ../shared/data/README.md. */
static void check_readme_facts(const Tokenizer *t, const int32_t digits[9], const int32_t score7[4],
                               const int32_t hello[2], int bos) {
    int32_t got[9] = {0};
    OprmError err = {{0}};
    CHECK(tok_digit_ids(t, got, &err) == 0);
    CHECK(!memcmp(got, digits, sizeof got));
    check_encode(t, "Score: 7", 0, score7, 4);
    check_encode(t, "Hello world", 0, hello, 2);
    int32_t with_bos[3] = {bos, hello[0], hello[1]};
    if (bos >= 0) check_encode(t, "Hello world", 1, with_bos, 3);
    else check_encode(t, "Hello world", 1, hello, 2);
    CHECK(tok_adds_bos(t) == (bos >= 0));
}

static void test_qwen3_vectors(void) {
    Tokenizer *t = load("tokenizers/qwen3");
    CHECK(t != NULL);
    if (!t) return;
    size_t total;
    CHECK(check_vectors(t, "oracle-qwen3.jsonl", &total) == 400 && total == 400);
    /* again: now most words come from the per-thread word cache */
    CHECK(check_vectors(t, "oracle-qwen3.jsonl", &total) == 400 && total == 400);
    CHECK(check_vectors(t, "llamacpp-qwen2.jsonl", &total) == 46 && total == 46);
    CHECK(round_trips(t, "oracle-qwen3.jsonl", 1) == 0);
    CHECK(round_trips(t, "llamacpp-qwen2.jsonl", 1) == 0);
    check_readme_facts(t, (int32_t[]){16, 17, 18, 19, 20, 21, 22, 23, 24}, (int32_t[]){10570, 25, 220, 22},
                       (int32_t[]){9707, 1879}, -1);
    CHECK(tok_vocab_size(t) == 151669); /* 151643 BPE tokens + 26 added */
    CHECK(tok_token_id(t, "<|im_start|>") == 151644);
    CHECK(tok_id_token(t, 151644) && !strcmp(tok_id_token(t, 151644), "<|im_start|>"));
    CHECK(tok_token_id(t, "\xC4\xA0") == 220); /* "Ġ", the space */
    CHECK(tok_id_token(t, -1) == NULL && tok_id_token(t, 151669) == NULL);
    CHECK(tok_eos_id(t) == 151645 && tok_bos_id(t) == -1);
    CHECK(tok_chat_template(t) != NULL);
    /* a lone UTF-8 lead byte decodes to U+FFFD, as Hugging Face's lossy decode */
    int32_t lead = tok_token_id(t, "\xC3\x83"); /* "Ã" = byte 0xC3 */
    StrBuf out = {0};
    OprmError err = {{0}};
    CHECK(lead >= 0 && tok_decode(t, &lead, 1, 0, &out, &err) == 0 && out.s && !strcmp(out.s, "\xEF\xBF\xBD"));
    sb_free(&out);
    /* skip_special drops special tokens only */
    int32_t chat[3] = {151644, 9707, 151645};
    CHECK(tok_decode(t, chat, 3, 1, &out, &err) == 0 && out.s && !strcmp(out.s, "Hello"));
    sb_clear(&out);
    CHECK(tok_decode(t, chat, 3, 0, &out, &err) == 0 && out.s && !strcmp(out.s, "<|im_start|>Hello<|im_end|>"));
    sb_free(&out);
    int32_t bad_id = 999999;
    CHECK(tok_decode(t, &bad_id, 1, 0, &out, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "999999");
    sb_free(&out);
    tok_free(t);
}

static void test_llama3_vectors(void) {
    Tokenizer *t = load("tokenizers/llama3");
    CHECK(t != NULL);
    if (!t) return;
    size_t total;
    CHECK(check_vectors(t, "oracle-llama3.jsonl", &total) == 400 && total == 400);
    CHECK(check_vectors(t, "llamacpp-llama-bpe.jsonl", &total) == 46 && total == 46);
    CHECK(round_trips(t, "oracle-llama3.jsonl", 0) == 0);
    CHECK(round_trips(t, "llamacpp-llama-bpe.jsonl", 0) == 0);
    /* this tokenizer.json adds no BOS (ByteLevel post-processor, PreTrainedTokenizerFast) */
    check_readme_facts(t, (int32_t[]){16, 17, 18, 19, 20, 21, 22, 23, 24}, (int32_t[]){10793, 25, 220, 22},
                       (int32_t[]){9906, 1917}, -1);
    CHECK(tok_bos_id(t) == 128000 && tok_eos_id(t) == 128001);
    tok_free(t);
}

/* Several threads encoding with one tokenizer (each has its own word cache). */
static size_t check_vectors_parallel(const Tokenizer *t, const char *file, size_t *total) {
    Vec *v = read_vectors(file, total);
    size_t ok = 0;
#pragma omp parallel for num_threads(4) reduction(+ : ok) schedule(dynamic, 8)
    for (size_t i = 0; i < *total; i++) {
        IdVec out = {0};
        OprmError err = {{0}};
        ok += tok_encode(t, v[i].text, v[i].len, 0, &out, &err) == 0 && ids_equal(out.v, out.n, v[i].ids, v[i].n_ids);
        idvec_free(&out);
    }
    free_vectors(v, *total);
    fprintf(stderr, "%s: %zu/%zu exact with 4 threads\n", file, ok, *total);
    return ok;
}

static void test_mistral_vectors(void) {
    Tokenizer *t = load("tokenizers/mistral");
    CHECK(t != NULL);
    if (!t) return;
    size_t total;
    CHECK(check_vectors(t, "oracle-mistral.jsonl", &total) == 400 && total == 400);
    CHECK(check_vectors_parallel(t, "oracle-mistral.jsonl", &total) == 400 && total == 400);
    /* Two texts cannot round-trip, exactly as in Hugging Face: "<s>[INST]..."
     * (the decoder's Strip removes the first character's space only) and a text
     * starting with a literal U+2581 (decoded as a space). */
    CHECK(round_trips(t, "oracle-mistral.jsonl", 0) == 2);
    int32_t inst[] = {1, 733, 16289, 28793, 12014, 733, 28748, 16289, 28793};
    check_encode(t, "<s>[INST] hi [/INST]", 0, inst, 9); /* the oracle's ids */
    StrBuf out = {0};
    OprmError err = {{0}};
    CHECK(tok_decode(t, inst, 9, 0, &out, &err) == 0 && out.s && !strcmp(out.s, "<s> [INST] hi [/INST]"));
    sb_clear(&out);
    CHECK(tok_decode(t, inst, 9, 1, &out, &err) == 0 && out.s && !strcmp(out.s, "[INST] hi [/INST]"));
    sb_free(&out);
    check_readme_facts(t, (int32_t[]){28740, 28750, 28770, 28781, 28782, 28784, 28787, 28783, 28774},
                       (int32_t[]){18528, 28747, 28705, 28787}, (int32_t[]){22557, 1526}, 1);
    tok_free(t);
}

int main(void) {
    RUN_SHARED(test_qwen3_vectors, "tokenizers/vectors");
    RUN_SHARED(test_llama3_vectors, "tokenizers/vectors");
    RUN_SHARED(test_mistral_vectors, "tokenizers/vectors");
    return test_summary();
}
