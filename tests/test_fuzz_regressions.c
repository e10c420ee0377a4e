/* Every libFuzzer target's entry point, built into the ordinary ASan + UBSan
 * test build (no clang needed), run on each committed seed
 * (fuzz/corpus/<target>/) and each input that once crashed a target
 * (tests/fixtures/fuzz-regressions/<target>/, named after the bug). The
 * harnesses abort on a broken invariant, the sanitizers on a bad read or a
 * leak, so a regression ends this binary without its RESULT line. */
#include <dirent.h>

#include "io/fileio.h"
#include "test.h"

/* Each harness is included under its own names. */
#define LLVMFuzzerTestOneInput fuzz_safetensors_one
#include "../fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_config_one
#include "../fuzz/fuzz_config.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_data_one
#include "../fuzz/fuzz_data.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_tokenizer_load_one
#define LLVMFuzzerInitialize fuzz_tokenizer_load_init
#include "../fuzz/fuzz_tokenizer_load.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize
#define LLVMFuzzerTestOneInput fuzz_tokenizer_encode_one
#define LLVMFuzzerInitialize fuzz_tokenizer_encode_init
#include "../fuzz/fuzz_tokenizer_encode.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize
#define LLVMFuzzerTestOneInput fuzz_checkpoint_one
#define LLVMFuzzerInitialize fuzz_checkpoint_init
#include "../fuzz/fuzz_checkpoint.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize
#define LLVMFuzzerTestOneInput fuzz_serve_request_one
#define LLVMFuzzerInitialize fuzz_serve_request_init
#include "../fuzz/fuzz_serve_request.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize

typedef int (*FuzzOne)(const uint8_t *, size_t);

/* Feeds every file of dir (if it exists) to one(); returns how many. */
static int feed_dir(const char *dir, FuzzOne one) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = path_join(dir, e->d_name);
        size_t len = 0;
        OprmError err;
        char *data = read_file(p, &len, &err);
        CHECK(data != NULL);
        if (data) {
            fprintf(stderr, "  %s\n", p);
            CHECK(one((const uint8_t *)data, len) == 0);
            n++;
        }
        free(data);
        free(p);
    }
    closedir(d);
    return n;
}

/* Seeds must exist (the corpus is committed); regressions may not yet. */
static void feed_target(const char *name, FuzzOne one) {
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", name);
    int seeds = feed_dir(dir, one);
    CHECK(seeds > 0);
    snprintf(dir, sizeof dir, "tests/fixtures/fuzz-regressions/%s", name);
    int regressions = feed_dir(dir, one);
    fprintf(stderr, "%s: %d seeds, %d regression inputs\n", name, seeds, regressions);
}

static void test_safetensors(void) { feed_target("fuzz_safetensors", fuzz_safetensors_one); }
static void test_config(void) { feed_target("fuzz_config", fuzz_config_one); }
static void test_data(void) { feed_target("fuzz_data", fuzz_data_one); }

static void test_tokenizer_load(void) {
    fuzz_tokenizer_load_init(NULL, NULL);
    feed_target("fuzz_tokenizer_load", fuzz_tokenizer_load_one);
    /* the BPE word-cache bug needs a vocabulary without the text's bytes: it is there */
    char p[] = "tests/fixtures/fuzz-regressions/fuzz_tokenizer_load/bpe-cache-null-ids";
    CHECK(file_exists(p));
    /* a 4 KB tokenizer.json with one vocab id of 232888888 once cost 26 s and 3 GB: now refused */
    size_t len = 0;
    OprmError err;
    char *data = read_file("tests/fixtures/fuzz-regressions/fuzz_tokenizer_load/huge-sparse-vocab-id", &len, &err);
    CHECK(data != NULL && len > 1);
    if (data && len > 1) {
        tl_fz_put(tl_fz_tok_path, (const uint8_t *)data + 1, len - 1);
        unlink(tl_fz_cfg_path);
        Tokenizer *t = tok_load(tl_fz_dir, &err);
        CHECK(t == NULL);
        if (t) tok_free(t);
        else CHECK_STR_CONTAINS(err.msg, "id must be an integer in 0..16777215");
    }
    free(data);
}

static void test_tokenizer_encode(void) {
    /* The harness encodes with two shared tokenizers (and exits without them). */
    NEED_SHARED("models/story-llama");
    NEED_SHARED("tokenizers/qwen3");
    fuzz_tokenizer_encode_init(NULL, NULL);
    feed_target("fuzz_tokenizer_encode", fuzz_tokenizer_encode_one);
    for (int i = 0; i < 2; i++) tok_free(enc_fz_toks[i]);
}

static void test_serve_request(void) {
    fuzz_serve_request_init(NULL, NULL);
    feed_target("fuzz_serve_request", fuzz_serve_request_one);
    batcher_stop(sv_fz_batcher);
    metrics_destroy(&sv_fz_metrics);
}

static void test_checkpoint(void) {
    fuzz_checkpoint_init(NULL, NULL);
    feed_target("fuzz_checkpoint", fuzz_checkpoint_one);
    OprmError err;
    CHECK(checkpoint_verify(ck_fz_dir, 1, &err) == 0); /* every original file was put back */
    free(ck_fz_dir);
    for (int k = 0; k < 4; k++) free(ck_fz_orig[k]);
}

int main(void) {
    RUN(test_safetensors);
    RUN(test_config);
    RUN(test_data);
    RUN(test_tokenizer_load);
    RUN(test_tokenizer_encode);
    RUN(test_serve_request);
    RUN(test_checkpoint);
    return test_summary();
}
