/* Open-addressing hash maps for the vocabulary (string -> id) and the merge
 * table ((id, id) -> rank, merged id). Load factor stays at or below 1/2 so
 * probes are short; the qwen3 vocabulary has 151k entries. */
#include <stdlib.h>
#include <string.h>

#include "tok/tokenizer_internal.h"

uint64_t tok_hash_bytes(const char *s, size_t n) {
    /* FNV-1a, then a final mix so the low bits spread. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static size_t table_size_for(size_t expected) {
    size_t size = 16;
    while (size < expected * 2 + 2) size *= 2;
    return size;
}

void strmap_init(StrMap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t size = table_size_for(expected);
    m->slots = xcalloc(size, sizeof *m->slots);
    m->mask = size - 1;
}

void strmap_free(StrMap *m) {
    free(m->slots);
    free(m->key_off);
    free(m->key_len);
    free(m->val);
    sb_free(&m->keys);
    memset(m, 0, sizeof *m);
}

static void strmap_grow(StrMap *m) {
    size_t size = (m->mask + 1) * 2;
    uint32_t *slots = xcalloc(size, sizeof *slots);
    for (size_t e = 0; e < m->n; e++) {
        size_t i = tok_hash_bytes(m->keys.s + m->key_off[e], m->key_len[e]) & (size - 1);
        while (slots[i]) i = (i + 1) & (size - 1);
        slots[i] = (uint32_t)(e + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->mask = size - 1;
}

void strmap_put(StrMap *m, const char *key, size_t len, int32_t val) {
    size_t i = tok_hash_bytes(key, len) & m->mask;
    while (m->slots[i]) {
        size_t e = m->slots[i] - 1;
        if (m->key_len[e] == len && !memcmp(m->keys.s + m->key_off[e], key, len)) {
            m->val[e] = val;
            return;
        }
        i = (i + 1) & m->mask;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->key_off = xrealloc(m->key_off, m->cap * sizeof *m->key_off);
        m->key_len = xrealloc(m->key_len, m->cap * sizeof *m->key_len);
        m->val = xrealloc(m->val, m->cap * sizeof *m->val);
    }
    size_t e = m->n++;
    m->key_off[e] = m->keys.n;
    m->key_len[e] = (uint32_t)len;
    m->val[e] = val;
    sb_append(&m->keys, key, len);
    m->slots[i] = (uint32_t)(e + 1);
    if (m->n * 2 > m->mask + 1) strmap_grow(m);
}

int32_t strmap_get(const StrMap *m, const char *key, size_t len) {
    if (!m->slots) return -1;
    size_t i = tok_hash_bytes(key, len) & m->mask;
    for (;;) {
        uint32_t s = m->slots[i];
        if (!s) return -1;
        size_t e = s - 1;
        if (m->key_len[e] == len && !memcmp(m->keys.s + m->key_off[e], key, len)) return m->val[e];
        i = (i + 1) & m->mask;
    }
}

void pairmap_init(PairMap *m, size_t expected) {
    size_t size = table_size_for(expected);
    m->e = xcalloc(size, sizeof *m->e);
    m->mask = size - 1;
    m->n = 0;
}

void pairmap_free(PairMap *m) {
    free(m->e);
    memset(m, 0, sizeof *m);
}

void pairmap_put(PairMap *m, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    size_t i = pairmap_slot(key, m->mask);
    while (m->e[i].key && m->e[i].key != key) i = (i + 1) & m->mask;
    if (!m->e[i].key) m->n++;
    m->e[i] = (PairEntry){key, rank, merged};
    /* The table is sized from the merge count up front; growth is a safeguard. */
    if (m->n * 2 > m->mask + 1) {
        PairMap bigger;
        pairmap_init(&bigger, m->n * 2);
        for (size_t j = 0; j <= m->mask; j++) {
            if (!m->e[j].key) continue;
            uint64_t k = m->e[j].key - 1;
            pairmap_put(&bigger, (int32_t)(k >> 32), (int32_t)(uint32_t)k, m->e[j].rank, m->e[j].merged);
        }
        pairmap_free(m);
        *m = bigger;
    }
}
