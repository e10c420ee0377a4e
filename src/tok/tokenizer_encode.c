/* Encoding and decoding entry points, lookups, and the digit ids.
 *
 * Invalid UTF-8 input is rejected: tok_encode fails with an error naming the
 * byte offset of the first invalid sequence and appends nothing. Hugging Face
 * only ever sees valid Unicode strings, so there is no reference behaviour to
 * copy, and silently replacing bytes would train on text the user never wrote. */
#include <stdlib.h>
#include <string.h>

#include "tok/tokenizer_internal.h"

typedef struct {
    Pieces pieces;
    StrBuf norm;
    Segment *segs;
    size_t segs_cap;
    pcre2_match_data *md;
    BpeScratch bpe;
} EncodeState;

/* Pre-tokenizes and runs BPE on text that holds no added token. */
static int encode_plain(const Tokenizer *t, EncodeState *st, const char *s, size_t len, int at_start,
                        IdVec *out, OprmError *err) {
    if (!len) return 0;
    Pieces *p = &st->pieces;
    sb_clear(&p->buf);
    sb_append(&p->buf, s, len);
    p->n = 0;
    pieces_push(p, 0, len);
    if (t->pretok && pretok_apply(t->pretok, p, at_start, st->md, err)) return -1;
    for (size_t i = 0; i < p->n; i++) {
        const char *w = p->buf.s + p->v[i].off;
        size_t wlen = p->v[i].len;
        if (!t->split_at_metaspace) {
            bpe_encode_piece(t, w, wlen, &st->bpe, out);
            continue;
        }
        /* cut before every U+2581 that follows another character */
        size_t start = 0;
        for (size_t k = 1; k + 3 <= wlen; k++) {
            if (memcmp(w + k, "\xE2\x96\x81", 3) || (k >= 3 && !memcmp(w + k - 3, "\xE2\x96\x81", 3))) continue;
            bpe_encode_piece(t, w + start, k - start, &st->bpe, out);
            start = k;
        }
        bpe_encode_piece(t, w + start, wlen - start, &st->bpe, out);
    }
    return 0;
}

/* Normalizes a stretch of text between raw-matched added tokens, then finds
 * the normalized added tokens in it. */
static int encode_segment(const Tokenizer *t, EncodeState *st, const char *s, size_t len, int at_start,
                          IdVec *out, OprmError *err) {
    if (!t->normalizer) return encode_plain(t, st, s, len, at_start, out, err);
    if (normalizer_apply(t->normalizer, s, len, &st->norm, err)) return -1;
    if (!t->norm_matcher.n) return encode_plain(t, st, st->norm.s, st->norm.n, at_start, out, err);
    /* The normalized text must outlive the pieces built from it. */
    char *norm = xstrndup(st->norm.s, st->norm.n);
    size_t norm_len = st->norm.n;
    Segment *segs = NULL;
    size_t n = 0, cap = 0;
    added_matcher_split(&t->norm_matcher, norm, norm_len, &segs, &n, &cap);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (segs[i].id >= 0) idvec_push(out, segs[i].id);
        else rc = encode_plain(t, st, norm + segs[i].start, segs[i].end - segs[i].start,
                               at_start && segs[i].start == 0, out, err);
    }
    free(segs);
    free(norm);
    return rc;
}

int tok_encode(const Tokenizer *t, const char *text, size_t len, int add_special, IdVec *out, OprmError *err) {
    size_t bad = utf8_first_invalid(text, len);
    if (bad != (size_t)-1)
        return oprm_fail(err, "tokenize: invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                         (unsigned)(unsigned char)text[bad]);
    size_t start_n = out->n;
    if (add_special) idvec_extend(out, t->prefix_ids.v, t->prefix_ids.n);
    EncodeState st;
    memset(&st, 0, sizeof st);
    st.md = pcre2_match_data_create(16, NULL);
    size_t n_segs = 0;
    added_matcher_split(&t->raw_matcher, text, len, &st.segs, &n_segs, &st.segs_cap);
    int rc = 0;
    for (size_t i = 0; i < n_segs && !rc; i++) {
        const Segment *g = &st.segs[i];
        if (g->id >= 0) idvec_push(out, g->id);
        else rc = encode_segment(t, &st, text + g->start, g->end - g->start, g->start == 0, out, err);
    }
    if (!rc && add_special) idvec_extend(out, t->suffix_ids.v, t->suffix_ids.n);
    if (rc) out->n = start_n;
    free(st.segs);
    pieces_free(&st.pieces);
    sb_free(&st.norm);
    pcre2_match_data_free(st.md);
    bpe_scratch_free(&st.bpe);
    return rc;
}

int tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, int skip_special, StrBuf *out, OprmError *err) {
    return decoder_run(t->decoder, t, ids, n, skip_special, out, err);
}

int32_t tok_token_id(const Tokenizer *t, const char *token) {
    return strmap_get(&t->token_ids, token, strlen(token));
}

const char *tok_id_token(const Tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->vocab_size) return NULL;
    return t->token_str[id];
}

int32_t tok_vocab_size(const Tokenizer *t) { return t->vocab_size; }
int32_t tok_bos_id(const Tokenizer *t) { return t->bos_id; }
int32_t tok_eos_id(const Tokenizer *t) { return t->eos_id; }
const char *tok_chat_template(const Tokenizer *t) { return t->chat_template; }

int tok_adds_bos(const Tokenizer *t) {
    if (!t->prefix_ids.n) return 0;
    if (t->bos_id < 0) return 1;
    for (size_t i = 0; i < t->prefix_ids.n; i++)
        if (t->prefix_ids.v[i] == t->bos_id) return 1;
    return 0;
}

/* The cue as a C-like literal for messages: "Score:\n" shows its newline. */
static void quote_cue(const char *cue, StrBuf *out) {
    sb_puts(out, "\"");
    for (const char *p = cue; *p; p++) {
        if (*p == '\n') sb_puts(out, "\\n");
        else if (*p == '\r') sb_puts(out, "\\r");
        else if (*p == '\t') sb_puts(out, "\\t");
        else if (*p == '"' || *p == '\\') sb_printf(out, "\\%c", *p);
        else sb_append(out, p, 1);
    }
    sb_puts(out, "\"");
}

/* A digit counts if the cue followed by it encodes as the ids of the cue plus
 * exactly one more id: that id is what the model predicts after the cue. The
 * cue is the scoring template's own ([cue] of --template, or oprm.json's), so
 * "Score:" (no space) or "Rating:\n" give the ids the model really reads. */
int tok_digit_ids_after(const Tokenizer *t, const char *cue, int32_t ids[9], OprmError *err) {
    if (!cue || !*cue) return oprm_fail(err, "tokenizer %s: the scoring cue is empty", t->name);
    size_t cue_len = strlen(cue);
    IdVec base = {0}, with = {0};
    StrBuf q = {0};
    quote_cue(cue, &q);
    int rc = tok_encode(t, cue, cue_len, 0, &base, err);
    if (rc) oprm_prefix(err, "cue %s: ", q.s);
    char *text = xmalloc(cue_len + 2);
    memcpy(text, cue, cue_len);
    text[cue_len + 1] = '\0';
    for (int d = 1; d <= 9 && !rc; d++) {
        text[cue_len] = (char)('0' + d);
        with.n = 0;
        if ((rc = tok_encode(t, text, cue_len + 1, 0, &with, err))) break;
        int one = with.n == base.n + 1 && (base.n == 0 || !memcmp(with.v, base.v, base.n * sizeof *base.v));
        int32_t id = one ? with.v[base.n] : -1;
        int ok = one;
        if (ok) {
            /* and that one token must decode to the digit alone */
            StrBuf s = {0};
            ok = tok_decode(t, &id, 1, 0, &s, NULL) == 0 && s.n == 1 && s.s[0] == '0' + d;
            sb_free(&s);
        }
        if (!ok) {
            StrBuf got = {0};
            for (size_t i = 0; i < with.n; i++) {
                const char *tokstr = tok_id_token(t, with.v[i]);
                sb_printf(&got, "%s%d", i ? ", " : "", (int)with.v[i]);
                if (tokstr) sb_printf(&got, " '%s'", tokstr);
            }
            if (one && t->unk_id >= 0 && id == t->unk_id)
                rc = oprm_fail(err,
                               "tokenizer %s: the digit '%d' is not in its vocabulary: after the cue %s it encodes "
                               "as the unknown token %s (id %d); an ordinal head needs one token for each digit "
                               "1..9: use a tokenizer whose vocabulary has the digits",
                               t->name, d, q.s, tok_id_token(t, id) ? tok_id_token(t, id) : "<unk>", (int)id);
            else
                rc = oprm_fail(err,
                               "tokenizer %s: the digit '%d' is not exactly one token after the cue %s (the cue "
                               "plus '%d' encodes as [%s], the cue alone as %zu tokens); an ordinal head needs one "
                               "token per digit 1..9: choose a cue (the [cue] section of the --template file) after "
                               "which each digit is a token of its own",
                               t->name, d, q.s, d, got.s ? got.s : "", base.n);
            sb_free(&got);
            break;
        }
        ids[d - 1] = id;
    }
    free(text);
    sb_free(&q);
    idvec_free(&base);
    idvec_free(&with);
    return rc;
}

int tok_digit_ids(const Tokenizer *t, int32_t ids[9], OprmError *err) {
    return tok_digit_ids_after(t, "Score: ", ids, err);
}
