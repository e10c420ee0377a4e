/* Hugging Face tokenizer.json (+ tokenizer_config.json) for BPE models:
 * byte-level (GPT-2, Llama-3, Qwen2/2.5/3) and SentencePiece-style with
 * byte_fallback (Llama-2, Mistral, story-llama). Encoding equals HF
 * `tokenizers` exactly on the oracle vectors in ../shared/data/tokenizers.
 * Anything unsupported in tokenizer.json is refused with an error naming it. */
#ifndef OPRM_TOK_TOKENIZER_H
#define OPRM_TOK_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/vec.h"

typedef struct Tokenizer Tokenizer;

/* path: a model directory (reads tokenizer.json and, if present,
 * tokenizer_config.json) or a tokenizer.json file. */
Tokenizer *tok_load(const char *path, OprmError *err);
void tok_free(Tokenizer *t);

/* Appends the ids of text[0..len) to out. Invalid UTF-8 is rejected (error
 * naming the byte offset; nothing appended). Safe to call from several threads
 * on one tokenizer. add_special: add what the
 * post-processor / tokenizer_config adds (e.g. BOS). Added/special tokens that
 * appear in the text are matched as such. Returns 0, or -1 with err set. */
int tok_encode(const Tokenizer *t, const char *text, size_t len, int add_special, IdVec *out,
               OprmError *err);

/* Appends the decoded UTF-8 of ids to out (skip_special: drop special tokens). */
int tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, int skip_special, StrBuf *out,
               OprmError *err);

/* Exact lookup of a token string (vocab or added token); -1 if absent. Token
 * strings are as written in tokenizer.json: byte-level vocabularies use the
 * GPT-2 byte alphabet ("\xC4\xA0the" = "Ġthe" for " the"). */
int32_t tok_token_id(const Tokenizer *t, const char *token);
/* The token string of an id (NULL if out of range). */
const char *tok_id_token(const Tokenizer *t, int32_t id);
int32_t tok_vocab_size(const Tokenizer *t); /* max id + 1, added tokens included */

/* Special ids from tokenizer_config.json / tokenizer.json; -1 when unknown. */
int32_t tok_bos_id(const Tokenizer *t);
int32_t tok_eos_id(const Tokenizer *t);
/* tokenizer_config.json's chat_template (NULL when absent). */
const char *tok_chat_template(const Tokenizer *t);
/* Whether encode(add_special=1) prepends BOS (add_bos_token / post-processor). */
int tok_adds_bos(const Tokenizer *t);

/* The nine ids of the digits '1'..'9' as the model sees them in the rating
 * position, right after `cue` (the scoring template's cue). Fails with an
 * error naming the tokenizer, the cue and the digit if any digit is not
 * exactly one token after the cue (or is the unknown token). */
int tok_digit_ids_after(const Tokenizer *t, const char *cue, int32_t ids[9], OprmError *err);
/* The same after the built-in cue "Score: ". */
int tok_digit_ids(const Tokenizer *t, int32_t ids[9], OprmError *err);

#endif
