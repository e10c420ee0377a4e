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
} CudaEngine;

int fail_cuda(OprmError *err, const CudaEngine *c, cudaError_t e, const char *what);
int fail_lt(OprmError *err, const CudaEngine *c, cublasStatus_t s, const char *what);
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
