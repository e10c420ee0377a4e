/* Scoring responses with an OPRM: the one entry point that `oprm score`,
 * eval, bon, audit and serve share. It owns the model, the tokenizer and the
 * scoring-prompt settings of a model directory (oprm.json when present), builds
 * each item's scoring prompt, batches items into packed forward passes and
 * returns the 9-level distribution and its statistics (spec §1, §4). */
#ifndef OPRM_EVAL_SCORER_H
#define OPRM_EVAL_SCORER_H

#include <stddef.h>

#include "util/err.h"

typedef struct {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} ScoreTurn;

/* One response to rate: the conversation before it (ending with a user
 * turn) and the response text. */
typedef struct {
    const ScoreTurn *turns;
    int n_turns;
    const char *response;
} ScoreRequest;

typedef struct {
    double p[9];
    double mean, std, entropy, bimodality;
    int mode;      /* 1..9 */
    int truncated; /* the prompt was cut to max_len */
    int n_tokens;  /* tokens in the scoring prompt */
} ScoreResult;

typedef struct {
    int max_len;             /* 0 = the default (model/max_length.h); above the model's positions: refused */
    int threads;             /* 0 = all cores */
    int max_batch_tokens;    /* packing budget per forward; 0 = default */
    const char *chat_format; /* NULL = from oprm.json / tokenizer_config.json */
    const char *template_path;
} ScorerOptions;

typedef struct Scorer Scorer;

Scorer *scorer_open(const char *model_dir, const ScorerOptions *opt, OprmError *err);
void scorer_close(Scorer *s);

/* Scores n items (any n; batched internally). Not thread-safe: one caller at
 * a time (the server's batching thread). */
int scorer_score(Scorer *s, const ScoreRequest *items, int n, ScoreResult *out, OprmError *err);

/* Token count of an item's scoring prompt before truncation (limits checks). */
int scorer_count_tokens(Scorer *s, const ScoreRequest *item, OprmError *err);

/* The raw text of a model's tokenizer encode (for /get_reward prefix split). */
int scorer_max_len(const Scorer *s);

#endif
