/* Tokenizer encoding of arbitrary bytes with two real tokenizers loaded once:
 * story-llama (SentencePiece-style, byte_fallback) and Qwen3 (byte-level BPE,
 * NFC normalizer). The first input byte picks the tokenizer and add_special;
 * the rest is the text. Invariants:
 *  - invalid UTF-8 is refused and appends nothing;
 *  - valid UTF-8 encodes, every id is in range, encoding is deterministic;
 *  - decoding gives the text back: exactly (story-llama, unless a character
 *    outside its tiny vocabulary became <unk>), or its NFC form (Qwen3, whose
 *    normalizer is NFC). */
#include <utf8proc.h>

#include "fuzz_util.h"
#include "tok/tokenizer.h"

static Tokenizer *enc_fz_toks[2];

static const char *enc_fz_shared_dir(void) {
    const char *d = getenv("OPRM_SHARED_DATA");
    return d ? d : "../shared/data";
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *names[2] = {"models/story-llama", "tokenizers/qwen3"};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", enc_fz_shared_dir(), names[i]);
        OprmError err;
        enc_fz_toks[i] = tok_load(path, &err);
        if (!enc_fz_toks[i]) {
            fprintf(stderr, "fuzz_tokenizer_encode: %s\n", err.msg);
            exit(1);
        }
    }
    return 0;
}

static int enc_fz_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] & 1, add_special = (data[0] >> 1) & 1;
    const Tokenizer *t = enc_fz_toks[which];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    IdVec ids = {0};
    idvec_push(&ids, 7); /* a failed encode must leave what was there */
    OprmError err;
    int rc = tok_encode(t, text, len, add_special, &ids, &err);
    int valid = enc_fz_utf8_valid((const uint8_t *)text, len);
    if (!valid) {
        FUZZ_ASSERT(rc == -1 && ids.n == 1 && ids.v[0] == 7);
        idvec_free(&ids);
        return 0;
    }
    if (rc) fprintf(stderr, "encode failed on valid UTF-8: %s\n", err.msg);
    FUZZ_ASSERT(rc == 0);
    int32_t vocab = tok_vocab_size(t);
    for (size_t i = 1; i < ids.n; i++) FUZZ_ASSERT(ids.v[i] >= 0 && ids.v[i] < vocab && tok_id_token(t, ids.v[i]));
    IdVec again = {0};
    FUZZ_ASSERT(tok_encode(t, text, len, add_special, &again, &err) == 0);
    FUZZ_ASSERT(again.n == ids.n - 1 && (!again.n || memcmp(again.v, ids.v + 1, again.n * sizeof *again.v) == 0));
    idvec_free(&again);

    /* What add_special puts around a text (BOS for story-llama, nothing for
     * Qwen3) comes first; decode the rest with special tokens kept, since the
     * text may spell special tokens itself. */
    IdVec extra = {0};
    FUZZ_ASSERT(tok_encode(t, "", 0, add_special, &extra, &err) == 0);
    size_t skip = 1 + extra.n;
    FUZZ_ASSERT(ids.n >= skip);
    for (size_t i = 0; i < extra.n; i++) FUZZ_ASSERT(ids.v[1 + i] == extra.v[i]);
    idvec_free(&extra);
    StrBuf out = {0};
    FUZZ_ASSERT(tok_decode(t, ids.v + skip, ids.n - skip, 0, &out, &err) == 0);
    int has_unk = 0; /* story-llama's 512-token vocabulary lacks some bytes: those become <unk> */
    int32_t unk = tok_token_id(t, "<unk>");
    for (size_t i = 1; i < ids.n; i++) has_unk |= unk >= 0 && ids.v[i] == unk;
    if (which == 0) {
        /* "\xe2\x96\x81" (U+2581) is SentencePiece's space: it decodes to ' ' */
        /* around an added token ("<s>", "<|end_story|>") the normalizer prepends a
         * space to the next stretch, as in HF: the round trip holds without them */
        if (!has_unk && !memmem(text, len, "\xe2\x96\x81", 3) && !memchr(text, '<', len)) FUZZ_ASSERT(out.n == len && (!len || memcmp(out.s, text, len) == 0));
    } else if (memchr(text, 0, len) == NULL) { /* utf8proc's NFC stops at a NUL */
        char *z = strndup(text, len);
        uint8_t *nfc = utf8proc_NFC((const uint8_t *)z);
        FUZZ_ASSERT(nfc != NULL);
        size_t nfc_len = strlen((char *)nfc);
        FUZZ_ASSERT(out.n == nfc_len && (!nfc_len || memcmp(out.s, nfc, nfc_len) == 0));
        free(nfc);
        free(z);
    }
    sb_free(&out);
    idvec_free(&ids);
    return 0;
}
