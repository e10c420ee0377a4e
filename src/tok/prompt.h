/* The scoring prompt of spec §6: the conversation so far and the response to
 * rate, shown to the model in its chat format, ending with the cue "Score: " so
 * that the next token is the rating digit. Token ids always equal tokenizing the
 * whole rendered text (also after truncation: a cut prompt is re-rendered and
 * re-tokenized), so training and scoring see exactly what the model would see
 * for that text. */
#ifndef OPRM_TOK_PROMPT_H
#define OPRM_TOK_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#include "tok/chat.h"
#include "tok/tokenizer.h"
#include "util/err.h"
#include "util/vec.h"

/* The default system text of spec §6 (exact). */
extern const char *const SCORING_DEFAULT_SYSTEM;

/* The text around the conversation and the response. In the user turn,
 * {conversation} and {response} are replaced (each must appear exactly once);
 * the cue is the start of the assistant turn (the rating digit follows it). */
typedef struct {
    char *system; /* "" = no system message */
    char *user;   /* contains {conversation} and {response} */
    char *cue;    /* "Score: " */
} ScoringTemplate;

/* The built-in template (spec §6). */
void scoring_template_default(ScoringTemplate *t);
/* Parses a --template file (format in docs/data.md: sections [system],
 * [user], [cue]); errors name the file and line. */
int scoring_template_load(const char *path, ScoringTemplate *t, OprmError *err);
int scoring_template_parse(const char *text, const char *name, ScoringTemplate *t, OprmError *err);
void scoring_template_free(ScoringTemplate *t);

/* How earlier turns are shown inside the user turn: "User: ...", "Assistant: ...",
 * "System: ..." blocks separated by a blank line. Appends to out. */
void scoring_render_conversation(const Conversation *c, StrBuf *out);

typedef struct {
    const Tokenizer *tok;
    ChatFormat format;
    const ScoringTemplate *tpl; /* NULL = default */
    size_t max_len;             /* 0 = no limit */
} ScoringConfig;

typedef struct {
    IdVec ids;                /* ends with the cue; ids.n <= max_len */
    int truncated;            /* anything cut */
    size_t full_len;          /* tokens before truncation */
    size_t cut_tokens;        /* full_len - ids.n */
    size_t response_cut;      /* tokens cut from the response's end (counted on the response alone) */
    size_t turns_dropped;     /* oldest prompt turns dropped whole */
    size_t turn_cut;          /* tokens cut from the start of the first kept turn */
} ScoringPrompt;

/* The text of the scoring prompt (no truncation). Appends to out. */
void scoring_render(const ScoringConfig *cfg, const Conversation *prompt, const char *response,
                    StrBuf *out);

/* Builds the token ids of the scoring prompt for (prompt, response), truncating
 * to cfg->max_len. Policy: the frame (system, template text, chat markup, cue)
 * is always kept; first the response is cut from its end, but not below half of
 * the tokens left after the frame; then the oldest prompt turns are dropped;
 * then the first remaining turn is cut from its start; last the response is
 * cut further. If the frame alone does not fit, fails with an error naming the
 * lengths. out must be zeroed or hold an earlier result (it is reset); free
 * it with scoring_prompt_free. On failure out is left empty. */
int scoring_build(const ScoringConfig *cfg, const Conversation *prompt, const char *response,
                  ScoringPrompt *out, OprmError *err);
void scoring_prompt_free(ScoringPrompt *p);

/* Everything a subcommand needs from the flags --chat-format, --template and
 * --max-len, plus the nine digit ids (spec §1). chat_format / template_path
 * may be NULL (format from the tokenizer; default template). Errors name the
 * flag. The config points into the setup: do not copy a ScoringSetup. */
typedef struct {
    ScoringConfig cfg;
    ScoringTemplate *tpl; /* owned; cfg.tpl points to it */
    int32_t digits[9];
} ScoringSetup;

int scoring_setup(ScoringSetup *s, const Tokenizer *t, const char *chat_format,
                  const char *template_path, size_t max_len, OprmError *err);
void scoring_setup_free(ScoringSetup *s);

/* Truncation counts over many prompts, for the end-of-run report. */
typedef struct {
    size_t prompts, truncated, tokens_cut, response_tokens_cut, turns_dropped, turn_tokens_cut;
} ScoringStats;

void scoring_stats_add(ScoringStats *st, const ScoringPrompt *p);
/* "T of P prompts truncated to --max-len N (X tokens cut: ...)" or "no prompt truncated". */
void scoring_stats_describe(const ScoringStats *st, size_t max_len, StrBuf *out);

#endif
