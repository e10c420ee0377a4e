/* The JSON object of one scored response, shared by `oprm score` and the
 * server's /v1/score and /v1/compare (one shape everywhere). No model
 * dependency, so the HTTP layer and its fuzz target link without the engine. */
#ifndef OPRM_EVAL_SCORE_JSON_H
#define OPRM_EVAL_SCORE_JSON_H

#include <jansson.h>

#include "eval/scorer.h"

/* {"distribution": [9], "mean", "std", "entropy", "mode", "bimodality",
 * "bimodal", "truncated", "n_tokens"}: the fields of one scored response. */
json_t *score_result_json(const ScoreResult *r);

#endif
