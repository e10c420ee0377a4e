/* The transformer engine: Hugging Face Llama / Mistral / Qwen2 / Qwen3
 * checkpoints, forward and backward on the CPU.
 *
 * The engine stops at the final hidden state of the LAST position of each
 * sequence (after the final RMSNorm). Heads sit on top of that:
 *  - the OPRM head reads only the nine LM-head rows of the digit tokens
 *    (model_head_rows_*), never the full vocabulary;
 *  - the Bradley-Terry baseline puts its own scalar head on the same vector;
 *  - generation (tests) uses model_logits_full on one position.
 * Sequences of a batch are packed back to back with no padding. */
#ifndef OPRM_MODEL_MODEL_H
#define OPRM_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_QWEN3 } ModelArch;

typedef struct {
    ModelArch arch;
    char architecture[64]; /* as in config.json, e.g. "Qwen2ForCausalLM" */
    int hidden, n_layers, n_heads, n_kv_heads, head_dim, ffn, vocab, max_pos;
    double rope_theta, rms_eps;
    int tie_embeddings, qkv_bias, qk_norm;
    /* Llama-3 rope_scaling (type "llama3"); factor 0 = none. */
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int bos_id, eos_id; /* -1 when absent */
} ModelConfig;

/* Parses config.json (file path). Refuses unsupported architectures/options
 * (e.g. a configured sliding window) with an error naming them. */
int model_config_load(const char *path, ModelConfig *cfg, OprmError *err);

typedef struct Model Model;

typedef enum { WEIGHTS_F32 = 0, WEIGHTS_BF16 = 1 } WeightStorage;

/* Modes:
 *  - full fine-tuning (default, all zero): every tensor trainable, fp32;
 *  - LoRA (lora_rank > 0): adapters A [r, in] (kaiming-uniform a=sqrt(5), as
 *    PEFT; seeded by lora_seed) and B [out, r] (zero) on the chosen targets,
 *    y = x W^T + (lora_alpha / r) (x A^T) B^T, dropout 0. Every base tensor
 *    (embedding and lm_head included) is frozen: grad NULL, no gradient memory;
 *  - inference only (inference_only = 1, or frozen_storage = WEIGHTS_BF16 with
 *    lora_rank 0): every tensor frozen, no gradient memory, model_backward
 *    refuses. For scoring.
 * Frozen weight matrices (the 2-D tensors: projections, embedding, lm_head)
 * are kept in frozen_storage: WEIGHTS_BF16 holds them as bfloat16 (stored BF16
 * bits kept as is, F32/F16 rounded to nearest even once at load) and widens one
 * matrix at a time into an fp32 scratch for each GEMM; norms and biases stay
 * fp32. frozen_storage is ignored for full fine-tuning (fp32 master weights). */
typedef struct {
    WeightStorage frozen_storage; /* storage of frozen base weights (LoRA, inference) */
    int lora_rank;                /* 0 = full fine-tuning */
    double lora_alpha;
    unsigned lora_targets;        /* bitmask of LORA_* below */
    int inference_only;           /* 1 = no training at all (lora_rank must be 0) */
    uint64_t lora_seed;           /* initialisation of the A matrices */
    /* BF16 compute (1): every projection GEMM (forward and backward) rounds
     * its two operands to bf16 once and accumulates in fp32 (src/model/
     * bf16_gemm.h); fp32 master weights, gradients, optimizer, attention,
     * norms and the head are unchanged. Where the CPU lacks avx512_bf16 (or
     * OPRM_BF16=0) the model computes in fp32 and says so once on stderr;
     * model_bf16_compute tells which is in force. */
    int bf16_compute;
} ModelOptions;

enum { LORA_Q = 1, LORA_K = 2, LORA_V = 4, LORA_O = 8, LORA_GATE = 16, LORA_UP = 32, LORA_DOWN = 64 };

/* dir: a Hugging Face model directory (config.json + model.safetensors or a
 * sharded model.safetensors.index.json). opt may be NULL (full fp32). */
Model *model_load(const char *dir, const ModelOptions *opt, OprmError *err);
/* Fresh random weights (normal(0, 0.02), norms = 1), deterministic in seed. */
Model *model_new_random(const ModelConfig *cfg, const ModelOptions *opt, uint64_t seed, OprmError *err);
void model_free(Model *m);
const ModelConfig *model_config(const Model *m);

/* Writes config.json + model.safetensors (atomically) into dir. LoRA models
 * write merged weights; model_save_adapter writes a PEFT-style adapter. */
int model_save(const Model *m, const char *dir, OprmError *err);
int model_save_adapter(const Model *m, const char *dir, OprmError *err);
/* Merged saves (model_save of a LoRA model) are written in fp32 (torch_dtype
 * "float32") whatever the base was stored in: W + (alpha/r) B A, a plain HF
 * checkpoint that loads without LoRA.
 * model_save_adapter writes dir/adapter_config.json (peft_type LORA, r,
 * lora_alpha, target_modules as HF module names, lora_dropout 0, bias "none",
 * task_type CAUSAL_LM, base_model_name_or_path from model_base_path() or "")
 * and dir/adapter_model.safetensors (fp32 A and B with PEFT names).
 * model_load_adapter reads such a directory into a LoRA model whose rank and
 * targets match (it takes lora_alpha from the file): resume, or scoring with
 * an adapter on top of its base. */
int model_load_adapter(Model *m, const char *dir, OprmError *err);
/* The directory model_load read (NULL for random models). */
const char *model_base_path(const Model *m);
/* lora_alpha of a LoRA model (the adapters' scale is alpha / rank), 0 without LoRA. */
double model_lora_alpha(const Model *m);

/* nseq sequences packed back to back: sequence s is ids[off_s .. off_s+lens[s]).
 *
 * Prompt-prefix sharing (optional; group NULL = none, exactly the unshared
 * pass): group[s] names the group of sequence s; each run of consecutive
 * sequences with the same value is a group. A group of two or more shares its
 * longest common prefix of token ids, capped so that every member keeps at
 * least one token of its own, when that prefix has MODEL_PREFIX_MIN tokens or
 * more: the engine computes the prefix once, then each continuation attending
 * to the prefix and to itself (positions continuing from the prefix), and in
 * backward sums the continuations' key/value gradients into the prefix rows
 * before the prefix's own backward. Outputs (h_last, gradients) are those of
 * the unshared batch up to float rounding. Any grouping is exact; it only
 * changes what is saved. */
typedef struct {
    const int32_t *ids;
    const int32_t *lens;
    int nseq;
    const int32_t *group;
} SeqBatch;

/* Shorter common prefixes are computed per sequence: below this the gain is
 * within noise and the attention GEMMs would fragment into tiny shapes
 * (sweep in docs/performance.md, "Minimum shared length"). */
#ifndef MODEL_PREFIX_MIN /* overridable only to measure the threshold (bench/prefix_share.sh --sweep) */
#define MODEL_PREFIX_MIN 16
#endif

/* Tokens of b that sharing would not compute again (0 when b->group is NULL). */
int64_t model_prefix_saved(const SeqBatch *b);
/* Groups consecutive sequences greedily by common prefix into group[nseq]
 * (for batches without a natural grouping, e.g. the records of a scoring
 * batch): a sequence joins the open group while that does not lower the
 * group's saving, k * P' >= (k - 1) * P. */
void model_prefix_groups(const int32_t *ids, const int32_t *lens, int nseq, int32_t *group);

/* Forward pass; writes the final-normed hidden state at the last position of
 * each sequence into h_last[nseq * hidden]. train != 0 keeps what backward
 * needs (until the next forward). Ids out of range are an error. */
int model_forward(Model *m, const SeqBatch *b, int train, float *h_last, OprmError *err);

/* Backward from dL/dh_last[nseq * hidden] of the last training forward;
 * ACCUMULATES into the gradients of every trainable parameter. */
int model_backward(Model *m, const float *dh_last, OprmError *err);

/* logits[s*nrows + k] = h_last[s] . W_lm_head[rows[k]]. */
void model_head_rows_forward(const Model *m, const float *h_last, int nseq, const int32_t *rows,
                             int nrows, float *logits);
/* Accumulates dW_lm_head[rows[k]] (if trainable) and ADDS dL/dh_last into dh_last. */
void model_head_rows_backward(Model *m, const float *h_last, int nseq, const int32_t *rows, int nrows,
                              const float *dlogits, float *dh_last);
/* Full-vocabulary logits of one final-normed hidden vector (generation, tests). */
void model_logits_full(const Model *m, const float *h, float *logits /* vocab */);

/* Parameters, for the optimizer and checkpoints. Names are the Hugging Face
 * tensor names (LoRA: PEFT names). grad is NULL for frozen tensors. */
typedef struct {
    const char *name;
    float *data; /* NULL when the tensor is held in BF16 (then data_bf16) */
    float *grad;
    size_t numel;
    int ndim;
    int64_t shape[2];
    const uint16_t *data_bf16; /* frozen BF16 storage, else NULL */
} ModelParam;

/* LoRA models list their adapters first (trainable), then the frozen base
 * tensors (HF names, grad NULL). */
ModelParam *model_params(Model *m, int *count);
void model_zero_grad(Model *m);
size_t model_num_params(const Model *m, int trainable_only);

/* 1 when the model's GEMMs run in BF16 (asked for and supported). */
int model_bf16_compute(const Model *m);

/* OpenMP/OpenBLAS threads used by the engine (0 = all cores). */
void model_set_threads(int n);

#endif
