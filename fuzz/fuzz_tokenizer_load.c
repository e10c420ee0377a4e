/* tokenizer.json (+ tokenizer_config.json) loading. The first byte's bit 0
 * says whether a tokenizer_config.json follows: then the rest is split at the
 * first 0xFF byte (never valid in JSON text) into tokenizer.json and
 * tokenizer_config.json, both written into a per-process directory in
 * /dev/shm. An accepted tokenizer must encode/decode text, answer lookups for
 * every id, and report the digits consistently. */
#include <sys/stat.h>

#include "fuzz_util.h"
#include "tok/tokenizer.h"

static char tl_fz_dir[128], tl_fz_tok_path[192], tl_fz_cfg_path[192];

static void tl_fz_cleanup(void) {
    unlink(tl_fz_tok_path);
    unlink(tl_fz_cfg_path);
    rmdir(tl_fz_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    snprintf(tl_fz_dir, sizeof tl_fz_dir, "/dev/shm/oprm-fuzz-tok-%d", (int)getpid());
    mkdir(tl_fz_dir, 0700);
    snprintf(tl_fz_tok_path, sizeof tl_fz_tok_path, "%s/tokenizer.json", tl_fz_dir);
    snprintf(tl_fz_cfg_path, sizeof tl_fz_cfg_path, "%s/tokenizer_config.json", tl_fz_dir);
    atexit(tl_fz_cleanup);
    return 0;
}

static void tl_fz_put(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static void tl_fz_exercise(const Tokenizer *t, const char *text, size_t len) {
    OprmError err;
    int32_t vocab = tok_vocab_size(t);
    FUZZ_ASSERT(vocab >= 0);
    for (int add = 0; add < 2; add++) {
        IdVec ids = {0};
        if (tok_encode(t, text, len, add, &ids, &err) == 0) {
            for (size_t i = 0; i < ids.n; i++) FUZZ_ASSERT(ids.v[i] >= 0 && ids.v[i] < vocab);
            StrBuf out = {0};
            (void)tok_decode(t, ids.v, ids.n, add, &out, &err);
            sb_free(&out);
        } else {
            FUZZ_ASSERT(ids.n == 0);
        }
        idvec_free(&ids);
    }
    for (int32_t id = -1; id <= vocab && id < 1024; id++) {
        const char *s = tok_id_token(t, id);
        if (s) FUZZ_ASSERT(tok_token_id(t, s) >= 0);
    }
    int32_t ids[9];
    if (tok_digit_ids(t, ids, &err) == 0)
        for (int k = 0; k < 9; k++) FUZZ_ASSERT(ids[k] >= 0 && ids[k] < vocab);
    int32_t bos = tok_bos_id(t), eos = tok_eos_id(t);
    FUZZ_ASSERT(bos >= -1 && eos >= -1);
    (void)tok_chat_template(t);
    (void)tok_adds_bos(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int with_config = data[0] & 1;
    data++, size--;
    size_t tok_len = size;
    if (with_config) {
        const uint8_t *sep = memchr(data, 0xFF, size);
        if (sep) tok_len = (size_t)(sep - data);
        tl_fz_put(tl_fz_cfg_path, sep ? sep + 1 : data + size, sep ? size - tok_len - 1 : 0);
    } else {
        unlink(tl_fz_cfg_path);
    }
    tl_fz_put(tl_fz_tok_path, data, tok_len);
    OprmError err;
    Tokenizer *t = tok_load(tl_fz_dir, &err);
    if (!t) {
        FUZZ_ASSERT(err.msg[0] != '\0');
        return 0;
    }
    static const char sample[] = "Hello world! Score: 7\n<|im_start|>user 12 <s></s> caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac";
    tl_fz_exercise(t, sample, sizeof sample - 1);
    tl_fz_exercise(t, (const char *)data, tok_len < 256 ? tok_len : 256);
    tok_free(t);
    return 0;
}
