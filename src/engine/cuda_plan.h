/* Host-side planning of the CUDA engine, plain C so the normal test suite
 * checks it on machines without a GPU: device memory for a model and a token
 * budget, the packed layouts the kernels read, the attention work list. */
#ifndef OPRM_ENGINE_CUDA_PLAN_H
#define OPRM_ENGINE_CUDA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* Query rows per attention block (one block: QT queries of one head of one
 * sequence) and keys per shared-memory tile. */
#define CUDA_ATTN_QT 16
#define CUDA_ATTN_QT_WMMA 64 /* the tensor-core kernel's blocks */
#define CUDA_ATTN_KT 32
#define CUDA_MAX_HEAD_DIM 256
#define CUDA_GEMM_WORKSPACE ((size_t)32 << 20)

typedef struct {
    /* Device weights: BF16 matrices (the fused [q;k;v] and [gate;up] blocks,
     * o, down, embedding, untied lm_head) and fp32 norms and biases. */
    size_t weights_bf16, weights_f32, weights;
    /* Activations for max_tokens packed rows: fp32 residual stream, BF16
     * normed input, qkv, attention output, projection output, gate|up, SwiGLU
     * output; per-sequence and index buffers. */
    size_t activations, index;
    size_t workspace; /* cuBLASLt */
    size_t total;
} CudaMemPlan;

/* Per-layer element counts of the fused blocks. */
size_t cuda_qkv_width(const ModelConfig *c); /* (heads + 2 kv heads) * head_dim */
void cuda_mem_plan(const ModelConfig *c, int max_tokens, CudaMemPlan *p);
/* Checks the shape is one the kernels handle (head_dim even and <= 256,
 * heads a multiple of kv heads); message names the limit. */
int cuda_shape_check(const ModelConfig *c, char *msg, size_t n);

/* Where a Hugging Face tensor goes on the device: a buffer of the model
 * (layer -1) or of one layer, and the element offset inside it (q, k, v share
 * the fused [W, D] matrix and bias, gate and up the [2F, D] one). */
typedef enum {
    CW_EMBED, CW_LM_HEAD, CW_FINAL_NORM, /* model */
    CW_QKV, CW_QKV_BIAS, CW_O, CW_Q_NORM, CW_K_NORM, CW_GATE_UP, CW_DOWN, CW_NORM1, CW_NORM2, /* layer */
    CW_N_KINDS
} CudaWeightKind;
typedef struct {
    CudaWeightKind kind;
    int layer;     /* -1 for model tensors */
    size_t offset; /* elements */
    int bf16;      /* 1: a BF16 matrix, 0: fp32 */
} CudaWeightSlot;
/* 0 and *slot filled, or -1 when the name is not a tensor of this config. */
int cuda_weight_slot(const ModelConfig *c, const char *name, CudaWeightSlot *slot);
/* Elements of each buffer kind (per layer for layer kinds; 0 where absent). */
size_t cuda_weight_numel(const ModelConfig *c, CudaWeightKind k);
/* How many tensors a config has (what cuda_weight_slot must place). */
int cuda_weight_count(const ModelConfig *c);

/* Attention work list: one entry per block of up to CUDA_ATTN_QT consecutive
 * query positions of one sequence: {first packed row of the sequence, first
 * query position, queries}. Returns the count written (at most
 * cuda_attn_tiles_max(total tokens, nseq)). */
typedef struct {
    int32_t seq_row, q_pos, q_n;
} CudaAttnTile;
int cuda_attn_tiles_max(int total_tokens, int nseq);
int cuda_attn_tiles(const int32_t *lens, int nseq, CudaAttnTile *tiles);
/* The same with qt queries per entry (qt >= CUDA_ATTN_QT: fits the same buffer). */
int cuda_attn_tiles_qt(const int32_t *lens, int nseq, int qt, CudaAttnTile *tiles);

/* The attention backward's key-side work list: one entry per block of up to
 * kt consecutive key positions of one sequence, with the sequence's length
 * (the block's keys are read by the queries [k_pos, seq_len)). Returns the
 * count written (at most cuda_attn_tiles_max(total tokens, nseq) for
 * kt >= CUDA_ATTN_QT). */
#define CUDA_ATTN_KT_BWD 16
#define CUDA_ATTN_KT_BWD_WMMA 64 /* the tensor-core backward's key tiles */
typedef struct {
    int32_t seq_row, k_pos, k_n, seq_len;
} CudaAttnKTile;
int cuda_attn_ktiles(const int32_t *lens, int nseq, int kt, CudaAttnKTile *tiles);

/* ---- Training (issue 14) ----
 * Full fine-tuning keeps every tensor's fp32 master copy, gradient and AdamW
 * moments on the device in one flat index space each ("train layout"): the
 * regions of the device buffers in order (per layer: CW_QKV .. CW_NORM2, then
 * CW_EMBED, CW_LM_HEAD, CW_FINAL_NORM), each region laid out like its BF16 /
 * fp32 compute buffer, so every Hugging Face tensor is one contiguous range
 * and the fused q|k|v and gate|up gradients are single matrices. */
size_t cuda_train_region(const ModelConfig *c, int layer, CudaWeightKind k); /* first element of a region */
size_t cuda_train_numel(const ModelConfig *c);                              /* all of them */

typedef struct {
    int lora_rank;         /* 0: full fine-tuning */
    unsigned lora_targets; /* LORA_* bits (model.h) */
    int recompute;         /* --gradient_checkpointing */
    int zero_ranks;        /* > 1: AdamW moments sharded over that many ranks (ZeRO-1), for planning */
} CudaTrainMode;

/* The training mode of a host model (the CUDA engine trains every tensor, or
 * LoRA adapters alone): 0 and *m filled (recompute as given), or -1 and msg
 * says what is not supported (nothing trainable, adapters beside a trainable
 * base, a partly frozen base). */
int cuda_train_mode_of(Model *model, int recompute, CudaTrainMode *m, char *msg, size_t n);
/* "base_model.model.model.layers.L.MODULE.lora_A.weight" -> layer, slot (LORA_* bit index), B?; -1 if not one. */
int cuda_lora_name(const char *name, int *layer, int *slot, int *is_b);

typedef struct {
    CudaMemPlan base;   /* the scoring engine underneath (weights, forward buffers, workspace) */
    size_t trainable;   /* parameters with a gradient */
    size_t master;      /* fp32 master copies (LoRA: adapters, with their BF16 copies) */
    size_t grads;       /* fp32 gradients */
    size_t optimizer;   /* fp32 AdamW m and v (per rank with zero_ranks) */
    size_t saved;       /* activations kept for backward: every layer's input + the layer sets */
    size_t layer_set;   /* one layer's saved set (recomputation keeps one, else n_layers) */
    size_t scratch;     /* backward buffers */
    size_t total;
} CudaTrainPlan;
/* Bytes of one layer's saved activations for T rows (the carve of
 * src/cuda/train_cuda.cu: h1, rstd1, qkv_raw, qkv, att, lse, x_mid, h2, rstd2,
 * gu, a; each buffer 256-byte aligned). */
size_t cuda_train_layer_bytes(const ModelConfig *c, int T);
size_t cuda_train_scratch_bytes(const ModelConfig *c, int T, int lora_rank);
void cuda_train_plan(const ModelConfig *c, int max_tokens, const CudaTrainMode *m, CudaTrainPlan *p);
/* One line per part ("weights ... GiB, ..."), for the start of training. */
void cuda_train_plan_describe(const CudaTrainPlan *p, const CudaTrainMode *m, int max_tokens, char *out, size_t n);
/* 0 when the plan fits in avail bytes; else -1 and msg names the device, the
 * bytes needed and available, and what would fit (a smaller
 * --max_tokens_per_batch, --gradient_checkpointing, LoRA, --zero with more
 * ranks), each with the bytes it would need. */
int cuda_train_plan_check(const ModelConfig *c, int max_tokens, const CudaTrainMode *m, size_t avail,
                          const char *device, char *msg, size_t n);

/* The row-major product of src/cuda/gemm.cu's gemm_ex,
 *   C[M, N] (ldc) = op(A)[M, K] op(B)[K, N]   (op(A) = A stored [M, K] with lda, or A^T of a stored [K, M]
 *                                              when ta; the same for B),
 * as the column-major call cuBLASLt gets: D (m x n, ldc) = op1(first) op2(second) with first = our B's
 * storage, second = our A's (a row-major [r, c] buffer is a column-major [c, r] one with the same ld).
 * Plain C so the host tests run it against a direct row-major product. */
typedef struct {
    int op1, op2;       /* 1: transposed */
    int m, n, k;
    int rows1, cols1, ld1; /* first operand's column-major layout (our B) */
    int rows2, cols2, ld2; /* second operand's (our A) */
    int rowsc, colsc, ldc;
} CudaLtCall;
void cuda_gemm_map(int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc, CudaLtCall *out);

/* For a packed batch: pos[t] (position in its sequence) and last[s] (packed
 * row of sequence s's last token). Returns total tokens. */
int cuda_pack_index(const int32_t *lens, int nseq, int32_t *pos, int32_t *last);

#endif
