/* What a checkpoint's tokenizer_config.json must say so that Hugging Face
 * transformers reads a model exactly as oprm trained and scores it. */
#ifndef OPRM_TOK_HF_EXPORT_H
#define OPRM_TOK_HF_EXPORT_H

#include "util/err.h"

/* The Jinja template that makes transformers' apply_chat_template render
 * oprm's plain format (base models); chat_template_match knows it as exact. */
extern const char *const CHAT_PLAIN_TEMPLATE;

/* Rewrites DIR/tokenizer_config.json (atomically; creates it if absent) when
 * DIR has a tokenizer.json:
 * - "tokenizer_class": "PreTrainedTokenizerFast" (the original kept as
 *   "oprm_original_tokenizer_class"), so that AutoTokenizer runs tokenizer.json
 *   as written -- what oprm does. transformers 5 rebuilds the pipeline of
 *   classes such as LlamaTokenizer from the config (Metaspace instead of the
 *   file's normalizer, no unk token: unknown characters silently dropped), and
 *   then gives other ids than the ones the model was trained on. Only done when
 *   the special tokens added around a text stay the same (checked by loading
 *   both ways); otherwise the file is left as it is.
 * - for chat_format "plain" and no chat_template: CHAT_PLAIN_TEMPLATE, so that
 *   apply_chat_template works at all and renders the scoring prompt oprm used.
 * chat_format may be NULL (no change of the template). */
int tok_export_for_hf(const char *dir, const char *chat_format, OprmError *err);

#endif
