/* Decoders, run like Hugging Face's decode_chain: a list of token strings is
 * passed through each decoder in turn and the final list is concatenated.
 * Supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace,
 * Sequence. The result is always valid UTF-8 (ByteLevel repairs invalid byte
 * runs with U+FFFD, ByteFallback writes one U+FFFD per byte of an invalid run,
 * as Hugging Face does). */
#include <stdlib.h>
#include <string.h>

#include "tok/tokenizer_internal.h"

typedef struct {
    StrBuf *v;
    size_t n, cap;
} TokList;

static StrBuf *toklist_add(TokList *l) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    StrBuf *b = &l->v[l->n++];
    memset(b, 0, sizeof *b);
    sb_append(b, "", 0);
    return b;
}

static void toklist_free(TokList *l) {
    for (size_t i = 0; i < l->n; i++) sb_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int parse_pattern(json_t *j, const char *where, char **literal, pcre2_code **re, OprmError *err) {
    json_t *pat = json_object_get(j, "pattern");
    json_t *str = json_object_get(pat, "String"), *rx = json_object_get(pat, "Regex");
    if (json_is_string(str)) {
        *literal = xstrdup(json_string_value(str));
        return **literal ? 0 : oprm_fail(err, "%s: empty pattern", where);
    }
    if (json_is_string(rx)) {
        *re = tok_regex_compile(json_string_value(rx), where, err);
        return *re ? 0 : -1;
    }
    return oprm_fail(err, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", where);
}

int decoder_parse(Decoder *d, json_t *j, OprmError *err) {
    memset(d, 0, sizeof *d);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return oprm_fail(err, "decoder: missing \"type\"");
    if (!strcmp(type, "ByteLevel")) {
        d->kind = DEC_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = DEC_METASPACE;
        const char *r = json_string_value(json_object_get(j, "replacement"));
        if (!r) r = "\xE2\x96\x81";
        if (!*r || strlen(r) >= sizeof d->replacement) return oprm_fail(err, "decoder Metaspace: bad \"replacement\"");
        strcpy(d->replacement, r);
        const char *s = json_string_value(json_object_get(j, "prepend_scheme"));
        json_t *aps = json_object_get(j, "add_prefix_space");
        if (s) d->prepend_scheme = !strcmp(s, "never") ? PREPEND_NEVER : !strcmp(s, "first") ? PREPEND_FIRST : PREPEND_ALWAYS;
        else d->prepend_scheme = (aps && !json_is_true(aps)) ? PREPEND_NEVER : PREPEND_ALWAYS;
    } else if (!strcmp(type, "ByteFallback")) {
        d->kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->kind = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        d->kind = DEC_STRIP;
        const char *c = json_string_value(json_object_get(j, "content"));
        if (!c || !*c) return oprm_fail(err, "decoder Strip: missing \"content\"");
        if (utf8_seq_len((const unsigned char *)c, strlen(c)) != strlen(c))
            return oprm_fail(err, "decoder Strip: \"content\" must be one character");
        d->content = xstrdup(c);
        d->start = (int)json_integer_value(json_object_get(j, "start"));
        d->stop = (int)json_integer_value(json_object_get(j, "stop"));
    } else if (!strcmp(type, "Replace")) {
        d->kind = DEC_REPLACE;
        const char *c = json_string_value(json_object_get(j, "content"));
        if (!c) return oprm_fail(err, "decoder Replace: missing \"content\"");
        d->content = xstrdup(c);
        if (parse_pattern(j, "decoder Replace", &d->pattern, &d->re, err)) return -1;
    } else if (!strcmp(type, "Sequence")) {
        d->kind = DEC_SEQUENCE;
        json_t *items = json_object_get(j, "decoders");
        if (!json_is_array(items)) return oprm_fail(err, "decoder Sequence: missing \"decoders\" list");
        d->n_items = json_array_size(items);
        d->items = xcalloc(d->n_items ? d->n_items : 1, sizeof *d->items);
        for (size_t i = 0; i < d->n_items; i++)
            if (decoder_parse(&d->items[i], json_array_get(items, i), err)) return -1;
    } else {
        return oprm_fail(err, "decoder type '%s' is not supported", type);
    }
    return 0;
}

void decoder_free(Decoder *d) {
    if (!d) return;
    free(d->pattern);
    free(d->content);
    if (d->re) pcre2_code_free(d->re);
    for (size_t i = 0; i < d->n_items; i++) decoder_free(&d->items[i]);
    free(d->items);
}

static uint32_t next_cp(const char *s, size_t n, size_t *k) {
    const unsigned char *u = (const unsigned char *)s;
    *k = utf8_seq_len(u, n);
    if (*k <= 1) {
        *k = 1;
        return u[0];
    }
    if (*k == 2) return (uint32_t)(u[0] & 31) << 6 | (u[1] & 63);
    if (*k == 3) return (uint32_t)(u[0] & 15) << 12 | (uint32_t)(u[1] & 63) << 6 | (u[2] & 63);
    return (uint32_t)(u[0] & 7) << 18 | (uint32_t)(u[1] & 63) << 12 | (uint32_t)(u[2] & 63) << 6 | (u[3] & 63);
}

/* ByteLevel: every token's characters back to bytes (a token with a character
 * outside the byte alphabet, e.g. an added token, keeps its UTF-8), all joined
 * into one token, invalid UTF-8 repaired. */
static void dec_bytelevel(TokList *in, TokList *out) {
    StrBuf bytes = {0};
    for (size_t i = 0; i < in->n; i++) {
        const StrBuf *tok = &in->v[i];
        size_t start = bytes.n, k;
        int ok = 1;
        for (size_t p = 0; p < tok->n; p += k) {
            int b = bytelevel_byte_of_char(next_cp(tok->s + p, tok->n - p, &k));
            if (b < 0) {
                ok = 0;
                break;
            }
            char c = (char)b;
            sb_append(&bytes, &c, 1);
        }
        if (!ok) {
            bytes.n = start;
            sb_append(&bytes, tok->s, tok->n);
        }
    }
    utf8_append_lossy(toklist_add(out), bytes.s ? bytes.s : "", bytes.n);
    sb_free(&bytes);
}

static void replace_literal(const char *s, size_t n, const char *pat, const char *content, StrBuf *out) {
    size_t plen = strlen(pat), run = 0, i = 0;
    while (i + plen <= n) {
        if (!memcmp(s + i, pat, plen)) {
            sb_append(out, s + run, i - run);
            sb_puts(out, content);
            i += plen;
            run = i;
        } else {
            i++;
        }
    }
    sb_append(out, s + run, n - run);
}

static int dec_replace_regex(const Decoder *d, const StrBuf *tok, StrBuf *out, OprmError *err) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(d->re, NULL);
    size_t pos = 0, run = 0;
    while (pos <= tok->n) {
        int rc = pcre2_match(d->re, (PCRE2_SPTR)tok->s, tok->n, pos, 0, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            pcre2_match_data_free(md);
            return oprm_fail(err, "decoder Replace: regex match failed (code %d)", rc);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[0] == ov[1]) {
            pos = ov[0] + 1;
            continue;
        }
        sb_append(out, tok->s + run, ov[0] - run);
        sb_puts(out, d->content);
        run = pos = ov[1];
    }
    sb_append(out, tok->s + run, tok->n - run);
    pcre2_match_data_free(md);
    return 0;
}

static int byte_token(const StrBuf *tok) {
    if (tok->n != 6 || memcmp(tok->s, "<0x", 3) || tok->s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = tok->s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static void flush_bytes(StrBuf *pending, TokList *out) {
    if (!pending->n) return;
    if (utf8_first_invalid(pending->s, pending->n) == (size_t)-1) {
        sb_append(toklist_add(out), pending->s, pending->n);
    } else {
        for (size_t i = 0; i < pending->n; i++) sb_puts(toklist_add(out), "\xEF\xBF\xBD");
    }
    sb_clear(pending);
}

static int decode_chain(const Decoder *d, TokList *in, TokList *out, OprmError *err) {
    switch (d->kind) {
    case DEC_SEQUENCE: {
        TokList cur = *in, next = {0};
        memset(in, 0, sizeof *in);
        for (size_t i = 0; i < d->n_items; i++) {
            if (decode_chain(&d->items[i], &cur, &next, err)) {
                toklist_free(&cur);
                toklist_free(&next);
                return -1;
            }
            toklist_free(&cur);
            cur = next;
            memset(&next, 0, sizeof next);
        }
        *out = cur;
        return 0;
    }
    case DEC_BYTELEVEL:
        dec_bytelevel(in, out);
        return 0;
    case DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            /* As Hugging Face: in the first token the replacement characters
             * are dropped (they were prepended), elsewhere they become spaces. */
            StrBuf *o = toklist_add(out);
            int drop = i == 0 && d->prepend_scheme != PREPEND_NEVER;
            replace_literal(in->v[i].s, in->v[i].n, d->replacement, drop ? "" : " ", o);
        }
        return 0;
    case DEC_BYTEFALLBACK: {
        StrBuf pending = {0};
        for (size_t i = 0; i < in->n; i++) {
            int b = byte_token(&in->v[i]);
            if (b >= 0) {
                char c = (char)b;
                sb_append(&pending, &c, 1);
                continue;
            }
            flush_bytes(&pending, out);
            sb_append(toklist_add(out), in->v[i].s, in->v[i].n);
        }
        flush_bytes(&pending, out);
        sb_free(&pending);
        return 0;
    }
    case DEC_FUSE: {
        StrBuf *o = toklist_add(out);
        for (size_t i = 0; i < in->n; i++) sb_append(o, in->v[i].s, in->v[i].n);
        return 0;
    }
    case DEC_STRIP: {
        size_t clen = strlen(d->content);
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->v[i].s;
            size_t a = 0, b = in->v[i].n;
            for (int k = 0; k < d->start && a + clen <= b && !memcmp(s + a, d->content, clen); k++) a += clen;
            for (int k = 0; k < d->stop && b >= a + clen && !memcmp(s + b - clen, d->content, clen); k++) b -= clen;
            sb_append(toklist_add(out), s + a, b - a);
        }
        return 0;
    }
    case DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            StrBuf *o = toklist_add(out);
            if (d->pattern) replace_literal(in->v[i].s, in->v[i].n, d->pattern, d->content, o);
            else if (dec_replace_regex(d, &in->v[i], o, err)) return -1;
        }
        return 0;
    }
    return oprm_fail(err, "decoder: unknown kind");
}

int decoder_run(const Decoder *d, const Tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                StrBuf *out, OprmError *err) {
    TokList in = {0}, res = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size || !t->token_str[id]) {
            toklist_free(&in);
            return oprm_fail(err, "decode: token id %d at position %zu is not in the vocabulary (size %d)",
                             (int)id, i, (int)t->vocab_size);
        }
        if (skip_special && t->is_special[id]) continue;
        sb_append(toklist_add(&in), t->token_str[id], t->token_len[id]);
    }
    int rc = 0;
    if (d) {
        rc = decode_chain(d, &in, &res, err);
    } else {
        /* No decoder: Hugging Face joins the tokens with spaces. */
        StrBuf *o = toklist_add(&res);
        for (size_t i = 0; i < in.n; i++) {
            if (i) sb_append(o, " ", 1);
            sb_append(o, in.v[i].s, in.v[i].n);
        }
    }
    if (!rc) {
        sb_append(out, "", 0);
        for (size_t i = 0; i < res.n; i++) sb_append(out, res.v[i].s, res.v[i].n);
    }
    toklist_free(&in);
    toklist_free(&res);
    return rc;
}
