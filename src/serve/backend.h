/* What the server needs from a model: score a batch, count an item's tokens.
 * A small vtable so the HTTP layer never depends on the model layer; the
 * real scorer (src/eval/scorer.h) plugs in through cmd_serve.c, tests plug
 * in deterministic backends. Calls come from one thread only (the batcher). */
#ifndef OPRM_SERVE_BACKEND_H
#define OPRM_SERVE_BACKEND_H

#include "eval/scorer.h"
#include "util/err.h"

typedef struct {
    void *ctx;
    /* Fills out[0..n) for items[0..n); -1 with err on failure. */
    int (*score)(void *ctx, const ScoreRequest *items, int n, ScoreResult *out, OprmError *err);
    /* Tokens of the item's scoring prompt before truncation; -1 on failure. */
    int (*count_tokens)(void *ctx, const ScoreRequest *item, OprmError *err);
} ServeBackend;

#endif
