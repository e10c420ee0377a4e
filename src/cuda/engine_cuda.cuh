// The CUDA engine's state, shared by engine_cuda.cu (load, scoring forward)
// and train_cuda.cu (training forward, backward, optimizer).
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/gemm.cuh"
#include "cuda/kernels.cuh"
#include "engine/devmath.h"

extern "C" {
#include "engine/cuda_debug.h"
#include "engine/engine_impl.h"
}

#define GIB (1024.0 * 1024.0 * 1024.0)
#define HEAD_ROWS_MAX 16
#define N_LORA_SLOTS 7 // q, k, v, o, gate, up, down (model.h's LORA_* bits)

typedef struct {
    bf16 *wqkv, *wo, *wgu, *wdown;          // [W, D], [D, Q], [2F, D], [D, F]
    float *bqkv, *qn, *kn, *n1, *n2;        // NULL where the architecture has none
} DevLayer;

// One layer's activations kept for backward (training).
typedef struct {
    bf16 *h1, *qkv_raw, *qkv, *att, *h2, *gu, *a;
    float *rstd1, *lse, *x_mid, *rstd2;
} TrainActs;

// One LoRA adapter on the device: fp32 master/grad in the flat space, BF16
// copies for the products.
typedef struct {
    int on, in, out;
    size_t a_off, b_off; // flat offsets of A [r, in] and B [out, r]
} DevLora;

// A trainable tensor in model_params order: where its master, gradient and
// moments live (flat offset) and the BF16 copy AdamW refreshes (NULL: the
// forward reads the fp32 master itself).
typedef struct {
    char name[160];
    size_t off, numel;
    bf16 *copy;
} TrainTensor;

typedef struct {
    int on, lora, recompute;
    int rank;
    float lora_scale;
    size_t n;                      // flat trainable elements
    float *master, *grad, *m, *v;  // [n] each
    bf16 *lora_bf16;               // [n] (LoRA)
    DevLora *lora_of;              // [n_layers * N_LORA_SLOTS]
    TrainTensor *tt;
    int n_tt;
    char *pool;
    size_t pool_size, pool_used;
    float **x_in;                  // [n_layers] each layer's input residual [T, D]
    TrainActs *acts;               // n_layers sets, or one with recomputation
    float *pre_last, *dh, *dlogits, *dx, *dqkv_f, *Di, *prod;
    double *sq;
    bf16 *dres, *dhb, *dqkv, *datt, *dgu, *da, *xa, *dxa;
    CudaAttnTile *tiles_bwd;
    CudaAttnKTile *ktiles;
    CudaAttnTile *h_tiles_bwd;
    CudaAttnKTile *h_ktiles;
    int n_tiles, n_tiles_bwd, n_ktiles, T;
    int32_t *h_ids;                // the batch (host copy, for nothing but checks)
    int forwarded;                 // a training forward is there to go back through
} TrainState;

typedef struct {
    int dev;
    char name[256];
    ModelConfig cfg;
    cudaStream_t st;
    Gemm gemm;
    char *pool;
    size_t pool_size, pool_used;
    DevLayer *L;
    bf16 *embed, *lm_head;
    float *final_norm;
    double *inv_freq;
    float *x, *h_last, *logits;
    bf16 *h, *qkv, *att, *y, *gu, *a;
    int32_t *ids, *pos, *last, *rows;
    CudaAttnTile *tiles;
    int max_tokens, nseq;
    int attn_wmma; // 1: attention_wmma.cu (tensor cores), 0: attention.cu
    int32_t *h_pos, *h_lastidx; // host staging
    CudaAttnTile *h_tiles;
    TrainState tr;
    // OPRM_CUDA_SYNC=1 (read once at engine start): every launch site below
    // synchronizes and names the first kernel or cuBLASLt call that failed.
    int sync;
    int dbg_layer, dbg_T;  // the layer being run (-1: none) and the batch's tokens, for the messages
    char dbg_msg[640];     // the first failure a debug check saw ("": none); fail_cuda/fail_lt report it
    char pending[1024];    // an error of an op that cannot return one (zero_grad), reported by the next call
} CudaEngine;

// Both prefer the debug mode's message (the launch that failed) to `what` (the phase) and clear it.
int fail_cuda(OprmError *err, CudaEngine *c, cudaError_t e, const char *what);
int fail_lt(OprmError *err, CudaEngine *c, cublasStatus_t s, const char *what);
// Debug mode (c->sync): synchronizes the stream, then records the first CUDA
// error under `what` (a kernel or launcher name) with c->dbg_layer and the
// shapes. The error is peeked, not cleared, so the phase's own check still
// fails. Returns 1 on an error.
int cuda_dbg_check(CudaEngine *c, const char *what, const char *file, int line);
// A cuBLASLt call's status: a failure is recorded in any mode; in sync mode the
// stream is synchronized and checked too.
int cuda_dbg_lt(CudaEngine *c, cublasStatus_t s, const char *what, const char *file, int line);
// One test of an int when the mode is off.
#define KCHECK(c, what)                                                   \
    do {                                                                  \
        if ((c)->sync) cuda_dbg_check((c), (what), __FILE__, __LINE__);   \
    } while (0)
#define LTCHECK(c, s, what)                                                                          \
    do {                                                                                             \
        if ((s) != CUBLAS_STATUS_SUCCESS || (c)->sync) cuda_dbg_lt((c), (s), (what), __FILE__, __LINE__); \
    } while (0)
// An error a void op left (zero_grad): fails the next call with it.
int cuda_take_pending(CudaEngine *c, OprmError *err);
void *slot_base(CudaEngine *c, const CudaWeightSlot *w);
// The batch's index buffers and work lists on the device (shared by both forwards);
// returns total tokens or -1.
int cuda_stage_batch(CudaEngine *c, const SeqBatch *b, OprmError *err);
int cuda_head_rows(void *impl, const int32_t *rows, int nrows, float *logits, OprmError *err);
void cuda_free_impl(void *impl);

// train_cuda.cu
// Refuses (with the plan's advice) a training configuration that does not fit the free memory, and prints the plan.
int cuda_train_fits(CudaEngine *c, const Model *m, const EngineOptions *opt, OprmError *err);
int cuda_train_init(CudaEngine *c, const Model *m, const EngineOptions *opt, OprmError *err);
void cuda_train_free(CudaEngine *c);
extern const EngineOps CUDA_TRAIN_OPS;
