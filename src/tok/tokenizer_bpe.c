/* The BPE merge loop for one pre-token, as Hugging Face's Word::merge_all:
 * symbols form a doubly linked list; a binary heap holds candidate merges
 * ordered by (rank, position); a popped candidate is applied only if the pair
 * at its position is still the one it was made for. O(n log n) per word. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tokenizer_internal.h"

struct BpeSym {
    int32_t id;
    int32_t prev, next;
    int32_t len; /* bytes; 0 once merged into its left neighbour */
};

struct BpeMerge {
    int32_t rank;
    int32_t pos;
};

static void sym_push(BpeScratch *s, size_t *n, int32_t id, int32_t len) {
    if (*n == s->sym_cap) {
        s->sym_cap = s->sym_cap ? s->sym_cap * 2 : 64;
        s->sym = xrealloc(s->sym, s->sym_cap * sizeof *s->sym);
    }
    struct BpeSym *y = &s->sym[*n];
    y->id = id;
    y->len = len;
    y->prev = (int32_t)*n - 1;
    y->next = (int32_t)*n + 1;
    (*n)++;
}

static inline int merge_less(struct BpeMerge a, struct BpeMerge b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(BpeScratch *s, size_t *n, struct BpeMerge m) {
    if (*n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 64;
        s->heap = xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    struct BpeMerge *h = s->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!merge_less(m, h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = m;
}

static struct BpeMerge heap_pop(BpeScratch *s, size_t *n) {
    struct BpeMerge *h = s->heap;
    struct BpeMerge top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_less(h[c + 1], h[c])) c++;
        if (!merge_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

/* Initial symbols of a model running on Unicode characters (SentencePiece
 * style): each character's piece, else its <0xNN> bytes (byte_fallback), else
 * unk (fused if fuse_unk), else nothing -- in Hugging Face's order, where a
 * pending unk is written only before the next known character. */
static size_t char_symbols(const Tokenizer *t, const char *s, size_t len, BpeScratch *sc) {
    size_t n = 0;
    int32_t unk_len = 0; /* pending unk bytes, 0 = none */
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq_len((const unsigned char *)s + i, len - i);
        if (!k) k = 1;
        int32_t id = strmap_get(&t->model_vocab, s + i, k);
        if (id >= 0) {
            if (unk_len) sym_push(sc, &n, t->unk_id, unk_len), unk_len = 0;
            sym_push(sc, &n, id, (int32_t)k);
        } else {
            int fell_back = 0;
            if (t->byte_fallback) {
                fell_back = 1;
                for (size_t b = 0; b < k; b++)
                    if (t->byte_fallback_id[(unsigned char)s[i + b]] < 0) fell_back = 0;
                if (fell_back)
                    for (size_t b = 0; b < k; b++)
                        sym_push(sc, &n, t->byte_fallback_id[(unsigned char)s[i + b]], 1);
            }
            if (!fell_back && t->unk_id >= 0) {
                if (unk_len && !t->fuse_unk) sym_push(sc, &n, t->unk_id, unk_len), unk_len = 0;
                unk_len += (int32_t)k;
            }
        }
        i += k;
    }
    if (unk_len) sym_push(sc, &n, t->unk_id, unk_len);
    return n;
}

/* Word cache: most pre-tokens are frequent words, and merging them again costs
 * a dozen random lookups in the merge table. A per-thread direct-mapped cache
 * (1 MiB) keeps encode() free of shared mutable state; entries are tagged with
 * the tokenizer's uid so several tokenizers can share a thread. */
#define WC_SLOTS 16384
#define WC_MAX_BYTES 22
#define WC_MAX_IDS 6

typedef struct {
    uint32_t owner, hash;
    uint8_t len, n_ids;
    char bytes[WC_MAX_BYTES];
    int32_t ids[WC_MAX_IDS];
} WordSlot;

static _Thread_local WordSlot *tl_cache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_make_key(void) { pthread_key_create(&cache_key, free); }

static WordSlot *word_cache(void) {
    if (!tl_cache) {
        pthread_once(&cache_once, cache_make_key);
        tl_cache = xcalloc(WC_SLOTS, sizeof *tl_cache);
        pthread_setspecific(cache_key, tl_cache); /* freed when the thread exits */
    }
    return tl_cache;
}

static void bpe_merge_piece(const Tokenizer *t, const char *s, size_t len, BpeScratch *sc, IdVec *out);

void bpe_encode_piece(const Tokenizer *t, const char *s, size_t len, BpeScratch *sc, IdVec *out) {
    if (!len) return;
    if (len > WC_MAX_BYTES) {
        bpe_merge_piece(t, s, len, sc, out);
        return;
    }
    uint32_t hash = (uint32_t)tok_hash_bytes(s, len);
    WordSlot *slot = &word_cache()[hash & (WC_SLOTS - 1)];
    if (slot->owner == t->uid && slot->hash == hash && slot->len == len && !memcmp(slot->bytes, s, len)) {
        idvec_extend(out, slot->ids, slot->n_ids);
        return;
    }
    size_t before = out->n;
    bpe_merge_piece(t, s, len, sc, out);
    size_t n_ids = out->n - before;
    if (n_ids <= WC_MAX_IDS) {
        slot->owner = t->uid;
        slot->hash = hash;
        slot->len = (uint8_t)len;
        slot->n_ids = (uint8_t)n_ids;
        memcpy(slot->bytes, s, len);
        if (n_ids) memcpy(slot->ids, out->v + before, n_ids * sizeof *slot->ids); /* out->v may be NULL */
    }
}

static void bpe_merge_piece(const Tokenizer *t, const char *s, size_t len, BpeScratch *sc, IdVec *out) {
    if (t->ignore_merges) {
        int32_t whole = strmap_get(&t->model_vocab, s, len);
        if (whole >= 0) {
            idvec_push(out, whole);
            return;
        }
    }
    size_t n = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < len; i++) {
            int32_t id = t->byte_id[(unsigned char)s[i]];
            if (id >= 0) sym_push(sc, &n, id, 1);
            else if (t->unk_id >= 0) sym_push(sc, &n, t->unk_id, 1);
        }
    } else {
        n = char_symbols(t, s, len, sc);
    }
    if (n == 0) return;
    if (n == 1) {
        idvec_push(out, sc->sym[0].id);
        return;
    }
    struct BpeSym *sym = sc->sym;
    sym[n - 1].next = -1;
    size_t heap_n = 0;
    int32_t rank, merged;
    for (size_t i = 0; i + 1 < n; i++)
        if (pairmap_get(&t->merges, sym[i].id, sym[i + 1].id, &rank, &merged))
            heap_push(sc, &heap_n, (struct BpeMerge){rank, (int32_t)i});
    while (heap_n) {
        struct BpeMerge top = heap_pop(sc, &heap_n);
        struct BpeSym *left = &sym[top.pos];
        if (left->len == 0 || left->next < 0) continue;
        struct BpeSym *right = &sym[left->next];
        if (!pairmap_get(&t->merges, left->id, right->id, &rank, &merged) || rank != top.rank) continue;
        /* Merge right into left. */
        left->id = merged;
        left->len += right->len;
        right->len = 0;
        left->next = right->next;
        if (right->next >= 0) sym[right->next].prev = top.pos;
        if (left->prev >= 0 &&
            pairmap_get(&t->merges, sym[left->prev].id, left->id, &rank, &merged))
            heap_push(sc, &heap_n, (struct BpeMerge){rank, left->prev});
        if (left->next >= 0 && pairmap_get(&t->merges, left->id, sym[left->next].id, &rank, &merged))
            heap_push(sc, &heap_n, (struct BpeMerge){rank, top.pos});
        sym = sc->sym; /* heap_push never moves sym, but keep the pointer honest */
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) idvec_push(out, sym[i].id);
}

void bpe_scratch_free(BpeScratch *s) {
    free(s->sym);
    free(s->heap);
    memset(s, 0, sizeof *s);
}
