#include "eval/score_json.h"

#include "ordinal/ordinal.h"

json_t *score_result_json(const ScoreResult *r) {
    json_t *dist = json_array();
    for (int k = 0; k < OPRM_LEVELS; k++) json_array_append_new(dist, json_real(r->p[k]));
    return json_pack("{s:o, s:f, s:f, s:f, s:i, s:f, s:b, s:b, s:i}", "distribution", dist, "mean", r->mean, "std",
                     r->std, "entropy", r->entropy, "mode", r->mode, "bimodality", r->bimodality, "bimodal",
                     r->bimodality >= OPRM_BIMODAL_THRESHOLD, "truncated", r->truncated, "n_tokens", r->n_tokens);
}
