/* Conversations and the chat formats of the model families oprm supports.
 * A conversation is a list of system/user/assistant messages; rendering turns
 * it into the exact text the model family was trained on (special tokens as
 * their literal strings, which the tokenizer matches as added tokens). */
#ifndef OPRM_TOK_CHAT_H
#define OPRM_TOK_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "tok/tokenizer.h"
#include "util/err.h"
#include "util/vec.h"

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } ChatRole;

typedef struct {
    ChatRole role;
    char *content; /* owned, NUL-terminated UTF-8 */
} ChatMessage;

typedef struct {
    ChatMessage *msgs;
    size_t n, cap;
} Conversation;

void conv_push(Conversation *c, ChatRole role, const char *content, size_t len);
void conv_free(Conversation *c);
/* Deep copy of src into dst (dst is overwritten, not freed). */
void conv_copy(Conversation *dst, const Conversation *src);
const char *chat_role_name(ChatRole r); /* "system" / "user" / "assistant" */
/* Parses "system"/"user"/"assistant" (also "human", "gpt", "bot", "model"). -1 if unknown. */
int chat_role_parse(const char *s);

typedef enum {
    CHAT_CHATML,  /* Qwen: <|im_start|>role\n...<|im_end|>\n */
    CHAT_LLAMA3,  /* <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    CHAT_LLAMA2,  /* <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] */
    CHAT_MISTRAL, /* <s>[INST] ... [/INST]; no system role: system text opens the first user turn */
    CHAT_PLAIN,   /* base models: "System: ...\n\nUser: ...\n\nAssistant: " */
} ChatFormat;

/* "chatml", "llama3", "llama2", "mistral", "plain"; -1 (with err) if unknown. */
int chat_format_parse(const char *name, ChatFormat *out, OprmError *err);
const char *chat_format_name(ChatFormat f);

/* Chooses the format from a tokenizer_config.json chat_template string:
 * NULL template -> CHAT_PLAIN (a base model); a template with none of the
 * known markers -> -1 with an error that tells the user to pass --chat-format. */
int chat_format_from_template(const char *chat_template, ChatFormat *out, OprmError *err);
/* How a chat_template relates to the built-in formats. oprm does not run
 * Jinja: it knows the exact templates it reproduces (compared by their full
 * text, as verified against transformers' apply_chat_template by
 * tests/test_chat_hf.c) and otherwise goes by the family's markers. */
typedef enum {
    CHAT_TEMPLATE_NONE,   /* no chat_template: plain (a base model) */
    CHAT_TEMPLATE_EXACT,  /* a template oprm renders exactly (scoring prompts included) */
    CHAT_TEMPLATE_FAMILY, /* not one of those: rendered as the family its markers name */
} ChatTemplateMatch;

/* Classifies tpl like chat_format_from_template (same format, same error for a
 * template without known markers). *match says how; if note is non-NULL and
 * the match is CHAT_TEMPLATE_FAMILY, a one-line note is appended that says the
 * template is not reproduced exactly, how it differs where oprm knows, and
 * which format oprm uses instead. */
int chat_template_match(const char *chat_template, ChatFormat *out, ChatTemplateMatch *match, StrBuf *note,
                        OprmError *err);
/* FNV-1a 64 of the template text (the identity used above). */
uint64_t chat_template_hash(const char *chat_template);

/* The same for a loaded tokenizer; override (a --chat-format name, or NULL) wins.
 * Without an override, a CHAT_TEMPLATE_FAMILY match prints its note to stderr
 * (once per process), so the user learns that oprm renders another format. */
int chat_format_choose(const Tokenizer *t, const char *override, ChatFormat *out, OprmError *err);

/* Renders c in format f, appending to out. bos/eos: the BOS and EOS token
 * strings that llama2/mistral use (NULL -> "<s>" / "</s>"). If gen_prefix is non-NULL, the
 * assistant generation prompt follows (header of an assistant turn) with
 * gen_prefix as the start of its text (e.g. "Score: "). llama3/llama2/mistral
 * trim message contents as their Hugging Face templates do; chatml and plain
 * keep them verbatim. */
void chat_render(ChatFormat f, const Conversation *c, const char *bos, const char *eos,
                 const char *gen_prefix, StrBuf *out);

/* Whether the token ids of a rendering in format f must start with the
 * tokenizer's BOS added by the tokenizer itself (plain format only: the other
 * formats spell their BOS in the text). */
int chat_encode_add_special(ChatFormat f);

#endif
