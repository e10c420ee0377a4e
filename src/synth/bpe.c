#include "synth/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/vec.h"

const char BPE_SPLIT_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char *const BPE_ADDED_TOKENS[BPE_N_ADDED] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

/* ---------------------------------------------------------------- byte-level unicode (GPT-2) */

/* Byte b is shown as the code point byte_cp[b]: printable Latin-1 bytes as
 * themselves, the others as 256, 257, ... in byte order. byte_rank[b] is the
 * token id of byte b: the printable ones first, in byte order, then the rest. */
static char byte_chars[256][3];
static int byte_rank[256];
static int byte_tables_ready;

static int byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174); }

static void init_byte_tables(void) {
    if (byte_tables_ready) return;
    int next_cp = 256, rank = 0;
    for (int b = 0; b < 256; b++)
        if (byte_is_printable(b)) byte_rank[b] = rank++;
    for (int b = 0; b < 256; b++) {
        int cp = b;
        if (!byte_is_printable(b)) {
            cp = next_cp++;
            byte_rank[b] = rank++;
        }
        if (cp < 0x80) {
            byte_chars[b][0] = (char)cp;
            byte_chars[b][1] = 0;
        } else {
            byte_chars[b][0] = (char)(0xC0 | (cp >> 6));
            byte_chars[b][1] = (char)(0x80 | (cp & 0x3F));
            byte_chars[b][2] = 0;
        }
    }
    byte_tables_ready = 1;
}

const char *bpe_byte_char(unsigned char b) {
    init_byte_tables();
    return byte_chars[b];
}

/* ---------------------------------------------------------------- a string -> int map */

typedef struct {
    char **keys; /* owned */
    int *vals;
    size_t cap, n;
} StrMap;

static uint64_t hash_bytes(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void strmap_grow(StrMap *m);

/* Returns a pointer to the value slot of key, inserting it (value init) if absent. */
static int *strmap_slot(StrMap *m, const char *key, int init, int *inserted) {
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    size_t i = hash_bytes(key) & (m->cap - 1);
    while (m->keys[i]) {
        if (!strcmp(m->keys[i], key)) {
            if (inserted) *inserted = 0;
            return &m->vals[i];
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = xstrdup(key);
    m->vals[i] = init;
    m->n++;
    if (inserted) *inserted = 1;
    return &m->vals[i];
}

static void strmap_grow(StrMap *m) {
    StrMap bigger = {0};
    bigger.cap = m->cap ? m->cap * 2 : 64;
    bigger.keys = xcalloc(bigger.cap, sizeof *bigger.keys);
    bigger.vals = xcalloc(bigger.cap, sizeof *bigger.vals);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) {
            size_t j = hash_bytes(m->keys[i]) & (bigger.cap - 1);
            while (bigger.keys[j]) j = (j + 1) & (bigger.cap - 1);
            bigger.keys[j] = m->keys[i];
            bigger.vals[j] = m->vals[i];
            bigger.n++;
        }
    free(m->keys);
    free(m->vals);
    *m = bigger;
}

static void strmap_free(StrMap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- pre-tokenization */

static pcre2_code *split_re;

static int compile_split(OprmError *err) {
    if (split_re) return 0;
    int code;
    PCRE2_SIZE off;
    split_re = pcre2_compile((PCRE2_SPTR)BPE_SPLIT_REGEX, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code,
                             &off, NULL);
    if (!split_re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return oprm_fail(err, "bpe: cannot compile the split regex at offset %zu: %s", (size_t)off,
                         (char *)msg);
    }
    return 0;
}

static void emit_mapped(const char *s, size_t n, StrBuf *tmp, void (*fn)(const char *, size_t, void *),
                        void *ctx) {
    sb_clear(tmp);
    for (size_t i = 0; i < n; i++) sb_puts(tmp, bpe_byte_char((unsigned char)s[i]));
    fn(tmp->s, tmp->n, ctx);
}

int bpe_pretokenize(const char *text, size_t len, void (*fn)(const char *, size_t, void *), void *ctx,
                    OprmError *err) {
    if (compile_split(err)) return -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(split_re, NULL);
    StrBuf tmp = {0};
    size_t pos = 0;
    int rc = 0;
    while (pos < len) {
        int r = pcre2_match(split_re, (PCRE2_SPTR)text, len, pos, 0, md, NULL);
        if (r == PCRE2_ERROR_NOMATCH) {
            emit_mapped(text + pos, len - pos, &tmp, fn, ctx); /* Isolated: the unmatched rest */
            break;
        }
        if (r < 0) {
            rc = oprm_fail(err, "bpe: regex match failed at byte %zu (error %d; is the text valid UTF-8?)", pos, r);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[0] > pos) emit_mapped(text + pos, ov[0] - pos, &tmp, fn, ctx);
        if (ov[1] == ov[0]) { /* the regex cannot match empty, but never loop forever */
            rc = oprm_fail(err, "bpe: the split regex matched an empty string at byte %zu", (size_t)ov[0]);
            break;
        }
        emit_mapped(text + ov[0], ov[1] - ov[0], &tmp, fn, ctx);
        pos = ov[1];
    }
    sb_free(&tmp);
    pcre2_match_data_free(md);
    return rc;
}

/* ---------------------------------------------------------------- training */

typedef struct {
    int *sym;
    int n;
    long count;
} Word;

typedef struct {
    StrMap words; /* pre-token -> weighted count (as int; texts are small) */
    int weight;
} CountCtx;

static void count_piece(const char *piece, size_t n, void *vctx) {
    CountCtx *c = vctx;
    (void)n;
    *strmap_slot(&c->words, piece, 0, NULL) += c->weight;
}

/* Length in bytes of the UTF-8 character starting at s. */
static int utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

typedef struct {
    char **str; /* symbol id -> string */
    int n, cap;
    StrMap ids; /* string -> symbol id */
} Symbols;

static int intern(Symbols *s, const char *str) {
    int inserted;
    int *slot = strmap_slot(&s->ids, str, s->n, &inserted);
    if (inserted) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 256;
            s->str = xrealloc(s->str, (size_t)s->cap * sizeof *s->str);
        }
        s->str[s->n++] = xstrdup(str);
    }
    return *slot;
}

typedef struct {
    uint64_t *keys; /* (left << 32 | right) + 1; 0 = empty */
    long *counts;
    size_t cap;
} PairCounts;

static void pairs_add(PairCounts *p, int a, int b, long c) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (p->cap - 1);
    while (p->keys[i] && p->keys[i] != key) i = (i + 1) & (p->cap - 1);
    p->keys[i] = key;
    p->counts[i] += c;
}

static int sort_strcmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int bpe_train(const BpeText *texts, int n_texts, int max_merges, BpeMerges *out, OprmError *err) {
    memset(out, 0, sizeof *out);
    init_byte_tables();
    CountCtx cc = {0};
    for (int t = 0; t < n_texts; t++) {
        if (texts[t].weight < 0) {
            strmap_free(&cc.words);
            return oprm_fail(err, "bpe: text %d has a negative weight", t);
        }
        cc.weight = texts[t].weight;
        if (bpe_pretokenize(texts[t].text, strlen(texts[t].text), count_piece, &cc, err)) {
            strmap_free(&cc.words);
            return oprm_prefix(err, "text %d: ", t);
        }
    }
    /* Words in sorted order, each split into its unicode characters. */
    char **keys = xmalloc((cc.words.n + 1) * sizeof *keys);
    size_t nw = 0;
    for (size_t i = 0; i < cc.words.cap; i++)
        if (cc.words.keys[i]) keys[nw++] = cc.words.keys[i];
    qsort(keys, nw, sizeof *keys, sort_strcmp);
    Symbols syms = {0};
    Word *words = xcalloc(nw ? nw : 1, sizeof *words);
    size_t total_syms = 0;
    for (size_t w = 0; w < nw; w++) {
        words[w].count = *strmap_slot(&cc.words, keys[w], 0, NULL);
        size_t len = strlen(keys[w]);
        words[w].sym = xmalloc((len + 1) * sizeof(int));
        char ch[5];
        for (size_t i = 0; i < len;) {
            int l = utf8_len((unsigned char)keys[w][i]);
            memcpy(ch, keys[w] + i, (size_t)l);
            ch[l] = 0;
            words[w].sym[words[w].n++] = intern(&syms, ch);
            i += (size_t)l;
        }
        total_syms += (size_t)words[w].n;
    }
    free(keys);

    PairCounts pc = {0};
    pc.cap = 64;
    while (pc.cap < 2 * total_syms + 2) pc.cap *= 2;
    pc.keys = xmalloc(pc.cap * sizeof *pc.keys);
    pc.counts = xmalloc(pc.cap * sizeof *pc.counts);
    StrBuf joined = {0};
    while (out->n_merges < max_merges) {
        memset(pc.keys, 0, pc.cap * sizeof *pc.keys);
        memset(pc.counts, 0, pc.cap * sizeof *pc.counts);
        for (size_t w = 0; w < nw; w++)
            for (int i = 0; i + 1 < words[w].n; i++) pairs_add(&pc, words[w].sym[i], words[w].sym[i + 1], words[w].count);
        long best = 0;
        int ba = -1, bb = -1;
        for (size_t i = 0; i < pc.cap; i++) {
            if (!pc.keys[i]) continue;
            int a = (int)((pc.keys[i] - 1) >> 32), b = (int)((pc.keys[i] - 1) & 0xFFFFFFFFu);
            long c = pc.counts[i];
            int better = c > best;
            if (!better && c == best && ba >= 0) {
                int cmp = strcmp(syms.str[a], syms.str[ba]);
                better = cmp < 0 || (cmp == 0 && strcmp(syms.str[b], syms.str[bb]) < 0);
            }
            if (better) {
                best = c;
                ba = a;
                bb = b;
            }
        }
        if (best < 2) break;
        sb_clear(&joined);
        sb_puts(&joined, syms.str[ba]);
        sb_puts(&joined, syms.str[bb]);
        int merged = intern(&syms, joined.s);
        out->left = xrealloc(out->left, (size_t)(out->n_merges + 1) * sizeof *out->left);
        out->right = xrealloc(out->right, (size_t)(out->n_merges + 1) * sizeof *out->right);
        out->left[out->n_merges] = xstrdup(syms.str[ba]);
        out->right[out->n_merges] = xstrdup(syms.str[bb]);
        out->n_merges++;
        for (size_t w = 0; w < nw; w++) { /* non-overlapping, left to right */
            int n = 0;
            for (int i = 0; i < words[w].n; i++) {
                if (i + 1 < words[w].n && words[w].sym[i] == ba && words[w].sym[i + 1] == bb) {
                    words[w].sym[n++] = merged;
                    i++;
                } else {
                    words[w].sym[n++] = words[w].sym[i];
                }
            }
            words[w].n = n;
        }
    }
    sb_free(&joined);
    free(pc.keys);
    free(pc.counts);
    for (size_t w = 0; w < nw; w++) free(words[w].sym);
    free(words);
    for (int i = 0; i < syms.n; i++) free(syms.str[i]);
    free(syms.str);
    strmap_free(&syms.ids);
    strmap_free(&cc.words);
    return 0;
}

void bpe_merges_free(BpeMerges *m) {
    for (int i = 0; i < m->n_merges; i++) {
        free(m->left[i]);
        free(m->right[i]);
    }
    free(m->left);
    free(m->right);
    memset(m, 0, sizeof *m);
}
