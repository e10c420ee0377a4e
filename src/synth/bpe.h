/* The demo's own tokenizer: a tiny deterministic byte-level BPE trainer and a
 * writer of Hugging Face tokenizer files (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json) that both Hugging Face `tokenizers` and oprm load.
 *
 * Layout of the written tokenizer (the Qwen2 family's, so every consumer of
 * Qwen tokenizers reads it): NFC normalizer; Split with the Qwen2 regex
 * (digits are split one per pre-token, so '1'..'9' are always single tokens)
 * followed by ByteLevel without prefix space; ByteLevel decoder; BPE model with
 * the 256 byte tokens first (in GPT-2's byte-to-unicode order, so '1'..'9' are
 * ids 16..24 as in Qwen), then one token per learned merge, then the ChatML
 * added tokens <|endoftext|>, <|im_start|>, <|im_end|>. tokenizer_config.json
 * carries a ChatML chat_template, so oprm picks the ChatML format. */
#ifndef OPRM_SYNTH_BPE_H
#define OPRM_SYNTH_BPE_H

#include <stddef.h>

#include "util/err.h"

/* The regex of the Split pre-tokenizer (Qwen2's), as written in tokenizer.json. */
extern const char BPE_SPLIT_REGEX[];

typedef struct {
    const char *text;
    int weight; /* how many times the text counts (e.g. the system prompt once per example) */
} BpeText;

typedef struct {
    int n_merges;
    char **left, **right; /* byte-level (GPT-2 unicode) strings, UTF-8 */
} BpeMerges;

/* Learns up to max_merges merges from the weighted texts (which should be NFC;
 * ASCII is). Greedy: each step merges the adjacent pair with the highest
 * weighted count; ties go to the smallest (left, right) in byte order; stops
 * early when no pair occurs twice. Deterministic. */
int bpe_train(const BpeText *texts, int n_texts, int max_merges, BpeMerges *out, OprmError *err);
void bpe_merges_free(BpeMerges *m);

/* Splits text with BPE_SPLIT_REGEX (PCRE2, Unicode) and maps each piece's bytes
 * to GPT-2's byte-level unicode. Calls fn(piece, len, ctx) per piece. */
int bpe_pretokenize(const char *text, size_t len, void (*fn)(const char *, size_t, void *), void *ctx,
                    OprmError *err);

/* The byte-level unicode character of byte b (UTF-8, NUL-terminated, <= 2 bytes). */
const char *bpe_byte_char(unsigned char b);

/* Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json into
 * dir (which must exist), atomically. *vocab_size receives the number of ids
 * (byte tokens + merge tokens + 3 added tokens). */
int bpe_write_tokenizer(const char *dir, const BpeMerges *m, int *vocab_size, OprmError *err);

/* Names of the added tokens, in id order after the BPE vocabulary. */
#define BPE_N_ADDED 3
extern const char *const BPE_ADDED_TOKENS[BPE_N_ADDED];

#endif
