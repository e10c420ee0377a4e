/* Normalizers: NFC/NFKC/NFD/NFKD (utf8proc), Replace, Prepend, Sequence. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tokenizer_internal.h"

static int parse_pattern(json_t *j, const char *where, char **literal, pcre2_code **re,
                         OprmError *err) {
    json_t *pat = json_object_get(j, "pattern");
    json_t *str = json_object_get(pat, "String"), *rx = json_object_get(pat, "Regex");
    if (json_is_string(str)) {
        *literal = xstrdup(json_string_value(str));
        if (!**literal) return oprm_fail(err, "%s: empty pattern", where);
        return 0;
    }
    if (json_is_string(rx)) {
        *re = tok_regex_compile(json_string_value(rx), where, err);
        return *re ? 0 : -1;
    }
    return oprm_fail(err, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", where);
}

int normalizer_parse(Normalizer *n, json_t *j, OprmError *err) {
    memset(n, 0, sizeof *n);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return oprm_fail(err, "normalizer: missing \"type\"");
    if (!strcmp(type, "NFC")) n->kind = NORM_NFC;
    else if (!strcmp(type, "NFKC")) n->kind = NORM_NFKC;
    else if (!strcmp(type, "NFD")) n->kind = NORM_NFD;
    else if (!strcmp(type, "NFKD")) n->kind = NORM_NFKD;
    else if (!strcmp(type, "Prepend")) {
        n->kind = NORM_PREPEND;
        const char *p = json_string_value(json_object_get(j, "prepend"));
        if (!p) return oprm_fail(err, "normalizer Prepend: missing \"prepend\" string");
        n->a = xstrdup(p);
    } else if (!strcmp(type, "Replace")) {
        n->kind = NORM_REPLACE;
        const char *c = json_string_value(json_object_get(j, "content"));
        if (!c) return oprm_fail(err, "normalizer Replace: missing \"content\" string");
        n->content = xstrdup(c);
        if (parse_pattern(j, "normalizer Replace", &n->a, &n->re, err)) return -1;
    } else if (!strcmp(type, "Sequence")) {
        n->kind = NORM_SEQUENCE;
        json_t *items = json_object_get(j, "normalizers");
        if (!json_is_array(items)) return oprm_fail(err, "normalizer Sequence: missing \"normalizers\" list");
        n->n_items = json_array_size(items);
        n->items = xcalloc(n->n_items ? n->n_items : 1, sizeof *n->items);
        for (size_t i = 0; i < n->n_items; i++)
            if (normalizer_parse(&n->items[i], json_array_get(items, i), err)) return -1;
    } else {
        return oprm_fail(err, "normalizer type '%s' is not supported", type);
    }
    return 0;
}

void normalizer_free(Normalizer *n) {
    if (!n) return;
    free(n->a);
    free(n->content);
    if (n->re) pcre2_code_free(n->re);
    for (size_t i = 0; i < n->n_items; i++) normalizer_free(&n->items[i]);
    free(n->items);
}

static int all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

static int unicode_normalize(NormKind kind, const char *s, size_t len, StrBuf *out, OprmError *err) {
    /* ASCII is invariant under every normalization form. */
    if (all_ascii(s, len)) {
        sb_append(out, s, len);
        return 0;
    }
    utf8proc_option_t opt = UTF8PROC_STABLE;
    if (kind == NORM_NFC || kind == NORM_NFKC) opt |= UTF8PROC_COMPOSE;
    else opt |= UTF8PROC_DECOMPOSE;
    if (kind == NORM_NFKC || kind == NORM_NFKD) opt |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst, opt);
    if (n < 0) return oprm_fail(err, "unicode normalization failed: %s", utf8proc_errmsg(n));
    sb_append(out, (const char *)dst, (size_t)n);
    free(dst);
    return 0;
}

static int replace_apply(const Normalizer *n, const char *s, size_t len, StrBuf *out, OprmError *err) {
    size_t clen = strlen(n->content);
    if (n->a) {
        size_t plen = strlen(n->a), i = 0, run = 0;
        while (i + plen <= len) {
            if (s[i] == n->a[0] && !memcmp(s + i, n->a, plen)) {
                sb_append(out, s + run, i - run);
                sb_append(out, n->content, clen);
                i += plen;
                run = i;
            } else {
                i++;
            }
        }
        sb_append(out, s + run, len - run);
        return 0;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(n->re, NULL);
    size_t pos = 0, run = 0;
    while (pos <= len) {
        int rc = pcre2_match(n->re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            pcre2_match_data_free(md);
            return oprm_fail(err, "normalizer Replace: regex match failed (code %d)", rc);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* empty match: step over one character */
            pos = ov[0] + 1;
            while (pos < len && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        sb_append(out, s + run, ov[0] - run);
        sb_append(out, n->content, clen);
        run = pos = ov[1];
    }
    sb_append(out, s + run, len - run);
    pcre2_match_data_free(md);
    return 0;
}

int normalizer_apply(const Normalizer *n, const char *s, size_t len, StrBuf *out, OprmError *err) {
    sb_clear(out);
    switch (n->kind) {
    case NORM_NFC:
    case NORM_NFKC:
    case NORM_NFD:
    case NORM_NFKD:
        return unicode_normalize(n->kind, s, len, out, err);
    case NORM_PREPEND:
        /* Hugging Face prepends only to non-empty text. */
        if (len) sb_puts(out, n->a);
        sb_append(out, s, len);
        return 0;
    case NORM_REPLACE:
        return replace_apply(n, s, len, out, err);
    case NORM_SEQUENCE: {
        StrBuf tmp = {0};
        sb_append(out, s, len);
        for (size_t i = 0; i < n->n_items; i++) {
            if (normalizer_apply(&n->items[i], out->s, out->n, &tmp, err)) {
                sb_free(&tmp);
                return -1;
            }
            StrBuf swap = *out;
            *out = tmp;
            tmp = swap;
        }
        sb_free(&tmp);
        return 0;
    }
    default:
        return oprm_fail(err, "normalizer: unknown kind");
    }
}
