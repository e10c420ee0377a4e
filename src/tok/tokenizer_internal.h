/* Internals of the tokenizer, shared by the src/tok/tokenizer_*.c files only.
 * The pipeline follows Hugging Face `tokenizers`:
 *   raw text -> added tokens (non-normalized) -> normalizer -> added tokens
 *   (normalized) -> pre-tokenizer -> BPE model -> post-processor.
 * Byte-level models are run on raw bytes: at load time every vocabulary entry
 * is mapped back from the GPT-2 byte alphabet ("Ġ" -> ' '), so the ByteLevel
 * pre-tokenizer needs no per-call remapping and BPE starts from one symbol per
 * byte. */
#ifndef OPRM_TOK_TOKENIZER_INTERNAL_H
#define OPRM_TOK_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tok/tokenizer.h"
#include "util/err.h"
#include "util/vec.h"

/* ---- hash maps (tokenizer_map.c) ---- */

/* Byte string -> int32. Keys are copied into the map's own arena. */
typedef struct {
    uint32_t *slots; /* entry index + 1, 0 = empty */
    size_t mask;
    size_t *key_off;
    uint32_t *key_len;
    int32_t *val;
    size_t n, cap;
    StrBuf keys;
} StrMap;

void strmap_init(StrMap *m, size_t expected);
void strmap_free(StrMap *m);
/* Inserts or overwrites. */
void strmap_put(StrMap *m, const char *key, size_t len, int32_t val);
/* Returns the value or -1. */
int32_t strmap_get(const StrMap *m, const char *key, size_t len);

/* (left id, right id) -> (rank, merged id): the BPE merge table. One 16-byte
 * entry per slot so a lookup touches one cache line. */
typedef struct {
    uint64_t key; /* (left << 32 | right) + 1, 0 = empty */
    int32_t rank, merged;
} PairEntry;

typedef struct {
    PairEntry *e;
    size_t mask, n;
} PairMap;

void pairmap_init(PairMap *m, size_t expected);
void pairmap_free(PairMap *m);
void pairmap_put(PairMap *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
static inline size_t pairmap_slot(uint64_t key, size_t mask) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}
/* Returns 1 and fills rank/merged if present, else 0. */
static inline int pairmap_get(const PairMap *m, int32_t left, int32_t right, int32_t *rank,
                              int32_t *merged) {
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    size_t i = pairmap_slot(key, m->mask);
    for (;;) {
        const PairEntry *e = &m->e[i];
        if (e->key == key) {
            *rank = e->rank;
            *merged = e->merged;
            return 1;
        }
        if (e->key == 0) return 0;
        i = (i + 1) & m->mask;
    }
}

uint64_t tok_hash_bytes(const char *s, size_t n);

/* ---- UTF-8 helpers (tokenizer_utf8.c) ---- */

/* Length of the valid UTF-8 sequence starting at s[0] (s has n bytes), or 0 if
 * the bytes there are not valid UTF-8. */
size_t utf8_seq_len(const unsigned char *s, size_t n);
/* Returns the byte offset of the first invalid sequence, or (size_t)-1. */
size_t utf8_first_invalid(const char *s, size_t n);
/* Appends s with every invalid sequence replaced by U+FFFD (maximal subparts,
 * as Rust's String::from_utf8_lossy does). */
void utf8_append_lossy(StrBuf *out, const char *s, size_t n);
void utf8_append_cp(StrBuf *out, uint32_t cp);
/* GPT-2 byte <-> unicode alphabet. */
uint32_t bytelevel_char_of_byte(unsigned char b);
/* Byte of a code point of the alphabet, or -1. */
int bytelevel_byte_of_char(uint32_t cp);

/* ---- normalizers (tokenizer_normalize.c) ---- */

typedef enum { NORM_NFC, NORM_NFKC, NORM_NFD, NORM_NFKD, NORM_REPLACE, NORM_PREPEND,
               NORM_SEQUENCE } NormKind;

typedef struct Normalizer {
    NormKind kind;
    char *a; /* Replace: the pattern string (or NULL for regex); Prepend: the text */
    char *content; /* Replace: the replacement */
    pcre2_code *re; /* Replace with a Regex pattern */
    struct Normalizer *items;
    size_t n_items;
} Normalizer;

/* Parses a "normalizer" JSON object (never null here). */
int normalizer_parse(Normalizer *n, json_t *j, OprmError *err);
void normalizer_free(Normalizer *n);
/* Normalizes s[0..len) into out (cleared first). */
int normalizer_apply(const Normalizer *n, const char *s, size_t len, StrBuf *out, OprmError *err);

/* ---- pre-tokenizers (tokenizer_pretok.c) ---- */

typedef struct {
    size_t off, len;
} Span;

/* Pieces of text: spans into buf. */
typedef struct {
    StrBuf buf;
    Span *v;
    size_t n, cap;
} Pieces;

void pieces_push(Pieces *p, size_t off, size_t len);
void pieces_free(Pieces *p);

typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT,
               SPLIT_CONTIGUOUS } SplitBehavior;
typedef enum { PRETOK_SPLIT, PRETOK_BYTELEVEL, PRETOK_METASPACE, PRETOK_DIGITS,
               PRETOK_WHITESPACE_SPLIT, PRETOK_SEQUENCE } PreTokKind;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } PrependScheme;

typedef struct PreTok {
    PreTokKind kind;
    /* Split (and ByteLevel with use_regex) */
    pcre2_code *re;
    char *literal; /* Split with a String pattern */
    size_t literal_len;
    SplitBehavior behavior;
    int invert;
    /* ByteLevel */
    int add_prefix_space;
    /* Metaspace */
    char replacement[8];
    PrependScheme prepend_scheme;
    int split;
    /* Digits */
    int individual_digits;
    struct PreTok *items;
    size_t n_items;
} PreTok;

int pretok_parse(PreTok *p, json_t *j, OprmError *err);
void pretok_free(PreTok *p);
/* Splits/rewrites the pieces in place. at_start: this text begins the input
 * (Metaspace prepend_scheme "first"). md: match data sized for the regexes. */
int pretok_apply(const PreTok *p, Pieces *pieces, int at_start, pcre2_match_data *md,
                 OprmError *err);
/* Whether a ByteLevel pre-tokenizer is present (the model then runs on bytes). */
int pretok_has_bytelevel(const PreTok *p);
/* Compiles an HF (Oniguruma) regex with PCRE2, rewriting \s/\S to Oniguruma's
 * Unicode White_Space set. what: for error messages. */
pcre2_code *tok_regex_compile(const char *pattern, const char *what, OprmError *err);

/* ---- decoders (tokenizer_decode.c) ---- */

typedef enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_REPLACE,
               DEC_SEQUENCE } DecKind;

typedef struct Decoder {
    DecKind kind;
    char *pattern, *content; /* Replace: literal pattern/content; Strip: content */
    pcre2_code *re;
    int start, stop; /* Strip */
    char replacement[8]; /* Metaspace */
    PrependScheme prepend_scheme;
    struct Decoder *items;
    size_t n_items;
} Decoder;

int decoder_parse(Decoder *d, json_t *j, OprmError *err);
void decoder_free(Decoder *d);

/* ---- the tokenizer ---- */

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    int special, normalized, lstrip, rstrip, single_word;
} AddedToken;

/* Leftmost-longest matcher over a set of added tokens. */
typedef struct {
    AddedToken **tokens; /* sorted by content length, longest first */
    size_t n;
    /* first byte -> range [first[b], first[b+1]) in by_first */
    uint32_t first[257];
    uint32_t *by_first;
} AddedMatcher;

typedef struct {
    size_t start, end; /* byte range in the text, strip whitespace included */
    int32_t id;        /* -1: plain text */
} Segment;

void added_matcher_build(AddedMatcher *m, AddedToken **tokens, size_t n);
void added_matcher_free(AddedMatcher *m);
/* Splits text into plain-text segments and added-token segments (appended to
 * *segs, *n_segs, *cap). */
void added_matcher_split(const AddedMatcher *m, const char *text, size_t len, Segment **segs,
                         size_t *n_segs, size_t *cap);

struct Tokenizer {
    char *name; /* the path it was loaded from, for messages */
    uint32_t uid; /* unique per loaded tokenizer: tags its entries in the word cache */
    int32_t vocab_size;
    char **token_str; /* id -> token string as in tokenizer.json (NULL for holes) */
    uint32_t *token_len;
    StrMap token_ids; /* token string -> id (vocab and added tokens) */

    /* BPE model */
    int byte_level; /* model runs on raw bytes (ByteLevel pre-tokenizer) */
    StrMap model_vocab; /* model piece (raw bytes when byte_level) -> id */
    PairMap merges;
    int ignore_merges, byte_fallback, fuse_unk;
    /* No vocabulary piece has U+2581 right after another character, so BPE
     * over a whole SentencePiece-style text equals BPE over its "▁word" parts
     * (no merge can cross such a boundary): lets long texts use the word cache. */
    int split_at_metaspace;
    int32_t unk_id;
    int32_t byte_id[256];       /* byte_level: id of each single byte */
    int32_t byte_fallback_id[256]; /* "<0xNN>" ids or -1 */

    Normalizer *normalizer; /* NULL: none */
    PreTok *pretok;         /* NULL: none */
    Decoder *decoder;       /* NULL: none */

    AddedToken *added;
    size_t n_added;
    AddedToken *added_normed; /* normalized:true tokens, content normalized */
    size_t n_added_normed;
    AddedMatcher raw_matcher, norm_matcher;
    uint8_t *is_special; /* by id */

    /* what encode(add_special) puts around the text */
    IdVec prefix_ids, suffix_ids;
    int32_t bos_id, eos_id;
    char *chat_template;
};

/* tokenizer_bpe.c: appends the ids of one pre-token. */
typedef struct {
    struct BpeSym *sym;
    size_t sym_cap;
    struct BpeMerge *heap;
    size_t heap_cap;
} BpeScratch;

void bpe_encode_piece(const Tokenizer *t, const char *s, size_t len, BpeScratch *scratch,
                      IdVec *out);
void bpe_scratch_free(BpeScratch *s);

/* tokenizer_decode.c */
int decoder_run(const Decoder *d, const Tokenizer *t, const int32_t *ids, size_t n,
                int skip_special, StrBuf *out, OprmError *err);

/* tokenizer_config.c: post-processor and tokenizer_config.json. */
int tok_parse_post_processor(Tokenizer *t, json_t *pp, OprmError *err);
int tok_apply_config(Tokenizer *t, json_t *cfg, OprmError *err);

#endif
