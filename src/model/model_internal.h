/* Internals shared by the engine's files (not for other layers). */
#ifndef OPRM_MODEL_MODEL_INTERNAL_H
#define OPRM_MODEL_MODEL_INTERNAL_H

#include <jansson.h>

#include "model/layers.h"
#include "model/model.h"

int model_config_from_json(json_t *root, const char *path, ModelConfig *cfg, OprmError *err);
json_t *model_config_to_json(const ModelConfig *cfg);

/* Pointers into the parameter (or gradient) buffer for one layer; NULL where
 * the architecture has no such tensor. */
typedef struct {
    float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *q_norm, *k_norm, *gate, *up, *down, *norm1, *norm2;
} LayerWeights;

/* What one layer's forward keeps for backward (pointers into the arena). */
typedef struct {
    float *x_in, *rstd1;
    float *q_raw, *k_raw, *rstd_q, *rstd_k; /* qk_norm only */
    float *q, *k, *v, *lse, *att;
    float *x_mid, *rstd2, *g, *u;
} LayerActs;

struct Model {
    ModelConfig cfg;
    json_t *config_json; /* config.json as loaded (saved back as is); NULL for random models */
    float *param_buf, *grad_buf;
    size_t n_floats;
    LayerWeights *w, *gw;
    float *embed, *final_norm, *lm_head; /* lm_head == embed when tied */
    float *d_embed, *d_final_norm, *d_lm_head;
    ModelParam *params;
    int n_params;

    /* Rotary tables, grown to the longest sequence seen. */
    float *rope_cos, *rope_sin;
    int rope_len;

    /* Forward arena (grown, never shrunk: no allocation per step once sized). */
    float *arena;
    size_t arena_cap;
    int32_t *ids, *pos, *off, *len;
    int32_t *last_row, *last_pos, *seq_index, *ones; /* per sequence: its last packed row, position, s, 1 */
    float *res[2]; /* scoring: ping-pong residual buffers */
    int ibuf_cap, sbuf_cap;
    LayerActs *acts; /* n_layers entries when training, 1 otherwise */
    float *x_last, *rstd_last; /* last rows before the final norm [nseq, hidden] */
    float *h_buf, *hq_buf, *a_buf, *rstd_tmp; /* shared by all layers: normed input, SwiGLU output */
    int n_rows, nseq, trained; /* trained: the last forward kept activations */
    AttnScratch attn; /* per-thread attention blocks (forward and backward) */

    /* Backward scratch. */
    float *bwd;
    size_t bwd_cap;
};

#endif
