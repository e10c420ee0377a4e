/* Added (and special) tokens are found in the text before anything else,
 * leftmost-longest like Hugging Face's Aho-Corasick matcher. Candidates are
 * bucketed by their first byte, longest first, so plain text costs one table
 * lookup per byte. lstrip/rstrip widen a match over neighbouring whitespace;
 * single_word requires non-word characters (or the text's ends) around it. */
#include <stdlib.h>
#include <string.h>

#include "tok/tokenizer_internal.h"

static int by_length_desc(const void *a, const void *b) {
    const AddedToken *x = *(AddedToken *const *)a, *y = *(AddedToken *const *)b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void added_matcher_build(AddedMatcher *m, AddedToken **tokens, size_t n) {
    memset(m, 0, sizeof *m);
    m->tokens = xmalloc((n ? n : 1) * sizeof *m->tokens);
    m->n = 0;
    for (size_t i = 0; i < n; i++)
        if (tokens[i]->len) m->tokens[m->n++] = tokens[i];
    qsort(m->tokens, m->n, sizeof *m->tokens, by_length_desc);
    uint32_t count[256] = {0};
    for (size_t i = 0; i < m->n; i++) count[(unsigned char)m->tokens[i]->content[0]]++;
    m->first[0] = 0;
    for (int b = 0; b < 256; b++) m->first[b + 1] = m->first[b] + count[b];
    m->by_first = xmalloc((m->n ? m->n : 1) * sizeof *m->by_first);
    uint32_t fill[256];
    memcpy(fill, m->first, sizeof fill);
    for (size_t i = 0; i < m->n; i++) /* keeps the longest-first order per bucket */
        m->by_first[fill[(unsigned char)m->tokens[i]->content[0]]++] = (uint32_t)i;
}

void added_matcher_free(AddedMatcher *m) {
    free(m->tokens);
    free(m->by_first);
    memset(m, 0, sizeof *m);
}

static int is_space_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int is_word_byte(unsigned char c) {
    /* ASCII letters, digits, '_' and any non-ASCII byte count as word characters. */
    return c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z') || c >= 0x80;
}

void added_matcher_split(const AddedMatcher *m, const char *text, size_t len, Segment **segs,
                         size_t *n_segs, size_t *cap) {
    size_t plain = 0; /* start of the pending plain text */
    size_t i = 0;
    while (i < len) {
        unsigned char b = (unsigned char)text[i];
        const AddedToken *hit = NULL;
        for (uint32_t k = m->first[b]; k < m->first[b + 1]; k++) {
            const AddedToken *a = m->tokens[m->by_first[k]];
            if (a->len > len - i || memcmp(text + i, a->content, a->len)) continue;
            if (a->single_word) {
                if (i > 0 && is_word_byte((unsigned char)text[i - 1])) continue;
                if (i + a->len < len && is_word_byte((unsigned char)text[i + a->len])) continue;
            }
            hit = a;
            break;
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t start = i, end = i + hit->len;
        if (hit->lstrip)
            while (start > plain && is_space_byte(text[start - 1])) start--;
        if (hit->rstrip)
            while (end < len && is_space_byte(text[end])) end++;
        if (*n_segs + 2 > *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *segs = xrealloc(*segs, *cap * sizeof **segs);
        }
        if (start > plain) (*segs)[(*n_segs)++] = (Segment){plain, start, -1};
        (*segs)[(*n_segs)++] = (Segment){start, end, hit->id};
        plain = i = end;
    }
    if (len > plain) {
        if (*n_segs + 1 > *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *segs = xrealloc(*segs, *cap * sizeof **segs);
        }
        (*segs)[(*n_segs)++] = (Segment){plain, len, -1};
    }
}
