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

/* The seven linear layers of a block (LoRA targets, BF16 matrices). */
enum { SLOT_Q, SLOT_K, SLOT_V, SLOT_O, SLOT_GATE, SLOT_UP, SLOT_DOWN, N_SLOTS };

/* A layer's frozen matrices held in BF16 (NULL where held in fp32). */
typedef struct {
    const uint16_t *m[N_SLOTS];
} LayerBf16;

/* One LoRA adapter: A [r, in], B [out, r] and their gradients; a == NULL when
 * the slot is not a target. */
typedef struct {
    float *a, *b, *da, *db;
} LoraPair;

static inline float bf16_to_f32(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v = {(uint32_t)h << 16};
    return v.f;
}
/* Round to nearest even (NaN stays NaN). */
static inline uint16_t f32_to_bf16(float f) {
    union {
        float f;
        uint32_t u;
    } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}
void bf16_widen(float *dst, const uint16_t *src, size_t n);

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
    char *base_dir;      /* directory loaded from, NULL for random models */
    /* Trainable tensors live in param_buf (gradients in grad_buf, same layout);
     * frozen ones in frozen_buf (fp32) or bf16_buf. */
    float *param_buf, *grad_buf, *frozen_buf;
    uint16_t *bf16_buf;
    size_t n_floats, n_frozen, n_bf16; /* n_floats: trainable floats */
    int frozen_base, inference_only;   /* base tensors frozen (LoRA or inference) */
    WeightStorage storage;             /* of the frozen matrices */
    int bf16;                          /* BF16 compute in force */
    int bf16_packed;                   /* the BF16 layer matrices are packed in place (bf16_prepack.c) */
    LayerWeights *w, *gw;              /* fp32 pointers; gw entries NULL when frozen */
    LayerBf16 *wb;                     /* per layer: matrices held in BF16 */
    float *embed, *final_norm, *lm_head; /* lm_head == embed when tied; NULL when BF16 */
    const uint16_t *embed_bf16, *lm_head_bf16;
    float *d_embed, *d_final_norm, *d_lm_head;
    ModelParam *params;
    int n_params;

    /* LoRA: n_layers * N_SLOTS adapters. */
    int lora_rank;
    double lora_alpha;
    unsigned lora_targets;
    LoraPair *lora;
    float *wide; /* fp32 scratch for one widened BF16 matrix */
    size_t wide_cap;
    float *lora_tmp; /* [rows, r] x A^T and its gradient */
    size_t lora_tmp_cap;

    /* Rotary tables, grown to the longest sequence seen. */
    float *rope_cos, *rope_sin;
    int rope_len;

    /* Forward arena (grown, never shrunk: no allocation per step once sized). */
    float *arena;
    size_t arena_cap;
    int32_t *ids, *pos; /* packed rows (a shared prefix once): token, position in its sequence */
    /* The batch's layout (prefix.c), pointers into plan: */
    int32_t *plan;
    size_t plan_cap;
    int32_t *last_row, *last_pos, *seq_index, *ones; /* per sequence: its last packed row, position, s, 1 */
    AttnUnits units;      /* every layer but the last: prefixes and continuations, queries on all rows */
    AttnUnits units_last; /* last layer: one unit per sequence, its last row the only query */
    float *res[1]; /* scoring: the residual stream, updated in place */
    int ibuf_cap;
    LayerActs *acts; /* n_layers entries when training, 1 otherwise */
    float *x_last, *rstd_last; /* last rows before the final norm [nseq, hidden] */
    float *h_buf, *hq_buf, *a_buf, *rstd_tmp; /* shared by all layers: normed input, SwiGLU output */
    int n_rows, nseq, trained; /* trained: the last forward kept activations */
    AttnScratch attn; /* per-thread attention blocks (forward and backward) */

    /* Backward scratch. */
    float *bwd;
    size_t bwd_cap;
};

/* The fp32 weight of slot s of layer l: the stored matrix, or its BF16 copy
 * widened into m->wide (valid until the next call). */
const float *layer_weight(Model *m, int l, int s);
/* The stored weight of slot s without widening: *f (fp32) or *b (BF16) is set. */
void layer_weight_raw(const Model *m, int l, int s, const float **f, const uint16_t **b);
void slot_dims(const ModelConfig *c, int s, int *in, int *out);

/* bf16_prepack.c: packs the BF16 layer matrices in place for the kernel when
 * the model is inference-only with BF16 compute (returns 1 if packed now or
 * before); unpack restores the stored layout. */
int model_bf16_prepack(Model *m);
void model_bf16_unpack(Model *m);

/* Lays batch b out in m (prefix.c): m->ids, m->pos (a shared prefix once,
 * then each continuation), the attention units of both kinds, each sequence's
 * last row. Returns the packed row count. ids must fit m->ibuf_cap. */
int model_plan_batch(Model *m, const SeqBatch *b);

#endif
