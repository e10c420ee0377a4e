/* Pre-tokenizers: Split (regex or string, every SplitDelimiterBehavior),
 * ByteLevel, Metaspace, Digits, WhitespaceSplit, Sequence. Regexes are
 * Oniguruma syntax in tokenizer.json; PCRE2 with UTF+UCP runs them, after \s
 * is rewritten to Oniguruma's set (Unicode White_Space), which differs from
 * PCRE2's UCP \s in U+180E. */
#include <stdlib.h>
#include <string.h>

#include "tok/tokenizer_internal.h"

/* Unicode White_Space, the set Oniguruma's \s matches in UTF-8 mode. */
#define WS_CLASS_BODY "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

pcre2_code *tok_regex_compile(const char *pattern, const char *what, OprmError *err) {
    StrBuf rx = {0};
    int depth = 0; /* inside a character class */
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\' && p[1]) {
            if (p[1] == 's') {
                sb_puts(&rx, depth ? WS_CLASS_BODY : "[" WS_CLASS_BODY "]");
            } else if (p[1] == 'S' && !depth) {
                sb_puts(&rx, "[^" WS_CLASS_BODY "]");
            } else {
                sb_append(&rx, p, 2);
            }
            p++;
            continue;
        }
        if (*p == '[') {
            if (depth && p[1] == ':') { /* POSIX [:name:] inside a class */
                const char *end = strstr(p, ":]");
                if (end) {
                    sb_append(&rx, p, (size_t)(end + 2 - p));
                    p = end + 1;
                    continue;
                }
            }
            depth++;
            sb_append(&rx, p, 1);
            /* A ']' first in a class (after an optional '^') is literal. */
            if (p[1] == '^') sb_append(&rx, ++p, 1);
            if (p[1] == ']') sb_append(&rx, ++p, 1);
            continue;
        }
        if (*p == ']' && depth) depth--;
        sb_append(&rx, p, 1);
    }
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)rx.s, rx.n, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        oprm_fail(err, "%s: cannot compile regex '%s': %s", what, pattern, (char *)msg);
        sb_free(&rx);
        return NULL;
    }
    sb_free(&rx);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is absent */
    return re;
}

void pieces_push(Pieces *p, size_t off, size_t len) {
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 32;
        p->v = xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->v[p->n].off = off;
    p->v[p->n].len = len;
    p->n++;
}

void pieces_free(Pieces *p) {
    sb_free(&p->buf);
    free(p->v);
    memset(p, 0, sizeof *p);
}

static int parse_behavior(const char *b, SplitBehavior *out, OprmError *err) {
    if (!b) return oprm_fail(err, "pre_tokenizer Split: missing \"behavior\"");
    if (!strcmp(b, "Removed")) *out = SPLIT_REMOVED;
    else if (!strcmp(b, "Isolated")) *out = SPLIT_ISOLATED;
    else if (!strcmp(b, "MergedWithPrevious")) *out = SPLIT_MERGED_PREV;
    else if (!strcmp(b, "MergedWithNext")) *out = SPLIT_MERGED_NEXT;
    else if (!strcmp(b, "Contiguous")) *out = SPLIT_CONTIGUOUS;
    else return oprm_fail(err, "pre_tokenizer Split: behavior '%s' is not supported", b);
    return 0;
}

static int parse_replacement(json_t *j, char out[8], const char *where, OprmError *err) {
    const char *r = json_string_value(json_object_get(j, "replacement"));
    if (!r) r = "\xE2\x96\x81"; /* U+2581 */
    if (strlen(r) >= 8 || !*r) return oprm_fail(err, "%s: bad \"replacement\"", where);
    strcpy(out, r);
    return 0;
}

static int parse_prepend_scheme(json_t *j, PrependScheme *out, const char *where, OprmError *err) {
    const char *s = json_string_value(json_object_get(j, "prepend_scheme"));
    json_t *aps = json_object_get(j, "add_prefix_space");
    if (s) {
        if (!strcmp(s, "always")) *out = PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = PREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = PREPEND_NEVER;
        else return oprm_fail(err, "%s: prepend_scheme '%s' is not supported", where, s);
    } else {
        /* Older files: add_prefix_space (default true). */
        *out = (aps && !json_is_true(aps)) ? PREPEND_NEVER : PREPEND_ALWAYS;
    }
    return 0;
}

int pretok_parse(PreTok *p, json_t *j, OprmError *err) {
    memset(p, 0, sizeof *p);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return oprm_fail(err, "pre_tokenizer: missing \"type\"");
    if (!strcmp(type, "Split")) {
        p->kind = PRETOK_SPLIT;
        json_t *pat = json_object_get(j, "pattern");
        json_t *str = json_object_get(pat, "String"), *rx = json_object_get(pat, "Regex");
        if (json_is_string(str)) {
            p->literal_len = json_string_length(str);
            p->literal = xstrndup(json_string_value(str), p->literal_len);
            if (!p->literal_len) return oprm_fail(err, "pre_tokenizer Split: empty pattern");
        } else if (json_is_string(rx)) {
            p->re = tok_regex_compile(json_string_value(rx), "pre_tokenizer Split", err);
            if (!p->re) return -1;
        } else {
            return oprm_fail(err, "pre_tokenizer Split: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
        }
        if (parse_behavior(json_string_value(json_object_get(j, "behavior")), &p->behavior, err)) return -1;
        p->invert = json_is_true(json_object_get(j, "invert"));
    } else if (!strcmp(type, "ByteLevel")) {
        p->kind = PRETOK_BYTELEVEL;
        p->add_prefix_space = json_is_true(json_object_get(j, "add_prefix_space"));
        json_t *use_regex = json_object_get(j, "use_regex");
        if (!use_regex || json_is_true(use_regex)) {
            p->re = tok_regex_compile(GPT2_PATTERN, "pre_tokenizer ByteLevel", err);
            if (!p->re) return -1;
            p->behavior = SPLIT_ISOLATED;
        }
    } else if (!strcmp(type, "Metaspace")) {
        p->kind = PRETOK_METASPACE;
        if (parse_replacement(j, p->replacement, "pre_tokenizer Metaspace", err)) return -1;
        if (parse_prepend_scheme(j, &p->prepend_scheme, "pre_tokenizer Metaspace", err)) return -1;
        json_t *split = json_object_get(j, "split");
        p->split = !split || json_is_true(split);
    } else if (!strcmp(type, "Digits")) {
        p->kind = PRETOK_DIGITS;
        p->individual_digits = json_is_true(json_object_get(j, "individual_digits"));
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = PRETOK_WHITESPACE_SPLIT;
    } else if (!strcmp(type, "Sequence")) {
        p->kind = PRETOK_SEQUENCE;
        json_t *items = json_object_get(j, "pretokenizers");
        if (!json_is_array(items)) return oprm_fail(err, "pre_tokenizer Sequence: missing \"pretokenizers\" list");
        p->n_items = json_array_size(items);
        p->items = xcalloc(p->n_items ? p->n_items : 1, sizeof *p->items);
        for (size_t i = 0; i < p->n_items; i++) {
            if (pretok_parse(&p->items[i], json_array_get(items, i), err)) return -1;
            if (p->items[i].kind == PRETOK_BYTELEVEL && i + 1 < p->n_items)
                return oprm_fail(err, "pre_tokenizer Sequence: a ByteLevel step before other steps is not supported");
        }
    } else {
        return oprm_fail(err, "pre_tokenizer type '%s' is not supported", type);
    }
    return 0;
}

void pretok_free(PreTok *p) {
    if (!p) return;
    if (p->re) pcre2_code_free(p->re);
    free(p->literal);
    for (size_t i = 0; i < p->n_items; i++) pretok_free(&p->items[i]);
    free(p->items);
}

int pretok_has_bytelevel(const PreTok *p) {
    if (!p) return 0;
    if (p->kind == PRETOK_BYTELEVEL) return 1;
    for (size_t i = 0; i < p->n_items; i++)
        if (pretok_has_bytelevel(&p->items[i])) return 1;
    return 0;
}

/* ---- splitting one piece by its matches ---- */

typedef struct {
    size_t start, end;
    int is_match;
} Mark;

typedef struct {
    Mark *v;
    size_t n, cap;
} Marks;

static void marks_push(Marks *m, size_t start, size_t end, int is_match) {
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 32;
        m->v = xrealloc(m->v, m->cap * sizeof *m->v);
    }
    m->v[m->n++] = (Mark){start, end, is_match};
}

/* Adds a match [start, end) after the previous marks, with the gap before it. */
static void marks_add_match(Marks *m, size_t *prev, size_t start, size_t end) {
    if (start > *prev) marks_push(m, *prev, start, 0);
    marks_push(m, start, end, 1);
    *prev = end;
}

/* Turns the marks of a piece at base into output spans, as Hugging Face's
 * NormalizedString::split does for each SplitDelimiterBehavior. */
static void marks_emit(Marks *m, SplitBehavior behavior, int invert, size_t base, Pieces *out) {
    if (invert)
        for (size_t i = 0; i < m->n; i++) m->v[i].is_match = !m->v[i].is_match;
    size_t k = 0; /* compacted marks */
    int previous_match = 0;
    switch (behavior) {
    case SPLIT_REMOVED:
        for (size_t i = 0; i < m->n; i++)
            if (!m->v[i].is_match) m->v[k++] = m->v[i];
        break;
    case SPLIT_ISOLATED:
        k = m->n;
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < m->n; i++) {
            if (m->v[i].is_match && !previous_match && k) m->v[k - 1].end = m->v[i].end;
            else m->v[k++] = m->v[i];
            previous_match = m->v[i].is_match;
        }
        break;
    case SPLIT_MERGED_NEXT: {
        /* Walk backwards, then the kept marks are in reverse order at the end. */
        size_t w = m->n; /* kept marks occupy [w, n) */
        for (size_t i = m->n; i-- > 0;) {
            Mark cur = m->v[i];
            if (cur.is_match && !previous_match && w < m->n) m->v[w].start = cur.start;
            else m->v[--w] = cur;
            previous_match = cur.is_match;
        }
        memmove(m->v, m->v + w, (m->n - w) * sizeof *m->v);
        k = m->n - w;
        break;
    }
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < m->n; i++) {
            if (m->v[i].is_match == previous_match && k) m->v[k - 1].end = m->v[i].end;
            else m->v[k++] = m->v[i];
            previous_match = m->v[i].is_match;
        }
        break;
    }
    for (size_t i = 0; i < k; i++)
        if (m->v[i].end > m->v[i].start) pieces_push(out, base + m->v[i].start, m->v[i].end - m->v[i].start);
    m->n = 0;
}

static int regex_marks(const pcre2_code *re, const char *s, size_t len, pcre2_match_data *md,
                       Marks *m, OprmError *err) {
    size_t pos = 0, prev = 0;
    while (pos < len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return oprm_fail(err, "pre_tokenizer: regex match failed (PCRE2 code %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* empty match: no split, step one character */
            pos = ov[0] + 1;
            while (pos < len && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        marks_add_match(m, &prev, ov[0], ov[1]);
        pos = ov[1];
    }
    if (prev < len) marks_push(m, prev, len, 0);
    return 0;
}

static void literal_marks(const char *lit, size_t lit_len, const char *s, size_t len, Marks *m) {
    size_t i = 0, prev = 0;
    while (i + lit_len <= len) {
        if (!memcmp(s + i, lit, lit_len)) {
            marks_add_match(m, &prev, i, i + lit_len);
            i += lit_len;
        } else {
            i++;
        }
    }
    if (prev < len) marks_push(m, prev, len, 0);
}

/* One mark per character: whether it satisfies pred. */
static void char_marks(int (*pred)(const unsigned char *, size_t), const char *s, size_t len, Marks *m) {
    size_t i = 0, prev = 0;
    while (i < len) {
        size_t k = utf8_seq_len((const unsigned char *)s + i, len - i);
        if (!k) k = 1;
        int w = pred((const unsigned char *)s + i, k);
        if (w) marks_add_match(m, &prev, i, i + k);
        i += k;
    }
    if (prev < len) marks_push(m, prev, len, 0);
}

static int is_ascii_digit(const unsigned char *c, size_t k) { return k == 1 && c[0] >= '0' && c[0] <= '9'; }

static int is_white_space(const unsigned char *c, size_t k) {
    if (k == 1) return c[0] == ' ' || (c[0] >= 9 && c[0] <= 13);
    uint32_t cp = k == 2 ? (uint32_t)((c[0] & 31) << 6 | (c[1] & 63))
                         : k == 3 ? (uint32_t)((c[0] & 15) << 12 | (c[1] & 63) << 6 | (c[2] & 63)) : 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Applies a splitting step to every piece (the buffer is unchanged). */
static int split_all(const PreTok *p, Pieces *pieces, pcre2_match_data *md, OprmError *err) {
    Span *old = pieces->v;
    size_t n_old = pieces->n;
    pieces->v = NULL;
    pieces->n = pieces->cap = 0;
    Marks m = {0};
    int rc = 0;
    for (size_t i = 0; i < n_old && !rc; i++) {
        const char *s = pieces->buf.s + old[i].off;
        size_t len = old[i].len;
        SplitBehavior behavior = p->behavior;
        int invert = p->invert;
        switch (p->kind) {
        case PRETOK_SPLIT:
            if (p->re) rc = regex_marks(p->re, s, len, md, &m, err);
            else literal_marks(p->literal, p->literal_len, s, len, &m);
            break;
        case PRETOK_BYTELEVEL:
            rc = regex_marks(p->re, s, len, md, &m, err);
            behavior = SPLIT_ISOLATED;
            invert = 0;
            break;
        case PRETOK_DIGITS:
            char_marks(is_ascii_digit, s, len, &m);
            behavior = p->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
            invert = 0;
            break;
        case PRETOK_WHITESPACE_SPLIT:
            char_marks(is_white_space, s, len, &m);
            behavior = SPLIT_REMOVED;
            invert = 0;
            break;
        default:
            break;
        }
        if (!rc) marks_emit(&m, behavior, invert, old[i].off, pieces);
    }
    free(m.v);
    free(old);
    return rc;
}

/* ByteLevel's add_prefix_space: a space before every piece not starting with one. */
static void prefix_space_all(Pieces *pieces) {
    Pieces out = {0};
    for (size_t i = 0; i < pieces->n; i++) {
        const char *s = pieces->buf.s + pieces->v[i].off;
        size_t off = out.buf.n;
        if (pieces->v[i].len == 0 || s[0] != ' ') sb_append(&out.buf, " ", 1);
        sb_append(&out.buf, s, pieces->v[i].len);
        pieces_push(&out, off, out.buf.n - off);
    }
    pieces_free(pieces);
    *pieces = out;
}

static void metaspace_all(const PreTok *p, Pieces *pieces, int at_start) {
    Pieces out = {0};
    const char *rep = p->replacement;
    size_t rep_len = strlen(rep);
    for (size_t i = 0; i < pieces->n; i++) {
        const char *s = pieces->buf.s + pieces->v[i].off;
        size_t len = pieces->v[i].len;
        size_t off = out.buf.n;
        int prepend = p->prepend_scheme == PREPEND_ALWAYS ||
                      (p->prepend_scheme == PREPEND_FIRST && at_start && i == 0 && pieces->v[i].off == 0);
        if (prepend && !(len >= rep_len && !memcmp(s, rep, rep_len))) sb_append(&out.buf, rep, rep_len);
        for (size_t k = 0; k < len; k++) {
            if (s[k] == ' ') sb_append(&out.buf, rep, rep_len);
            else sb_append(&out.buf, s + k, 1);
        }
        size_t end = out.buf.n;
        if (!p->split) {
            if (end > off) pieces_push(&out, off, end - off);
            continue;
        }
        /* Split before every replacement character (MergedWithNext). */
        size_t start = off;
        for (size_t k = off; k + rep_len <= end;) {
            if (!memcmp(out.buf.s + k, rep, rep_len)) {
                if (k > start) pieces_push(&out, start, k - start);
                start = k;
                k += rep_len;
            } else {
                k++;
            }
        }
        if (end > start) pieces_push(&out, start, end - start);
    }
    pieces_free(pieces);
    *pieces = out;
}

int pretok_apply(const PreTok *p, Pieces *pieces, int at_start, pcre2_match_data *md, OprmError *err) {
    switch (p->kind) {
    case PRETOK_SEQUENCE:
        for (size_t i = 0; i < p->n_items; i++)
            if (pretok_apply(&p->items[i], pieces, at_start, md, err)) return -1;
        return 0;
    case PRETOK_BYTELEVEL:
        if (p->add_prefix_space) prefix_space_all(pieces);
        /* The byte mapping itself is a no-op: the model works on raw bytes. */
        return p->re ? split_all(p, pieces, md, err) : 0;
    case PRETOK_METASPACE:
        metaspace_all(p, pieces, at_start);
        return 0;
    default:
        return split_all(p, pieces, md, err);
    }
}
