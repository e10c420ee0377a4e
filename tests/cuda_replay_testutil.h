/* Shared by the host replays of the CUDA engine (test_engine_cuda_ref.c: the
 * forward; test_cuda_train_ref.c: the training step): BF16 rounding where the
 * GPU stores BF16, the weights placed as the GPU holds them, and the
 * rounded-output GEMM of the fused matrices. */
#ifndef OPRM_TESTS_CUDA_REPLAY_TESTUTIL_H
#define OPRM_TESTS_CUDA_REPLAY_TESTUTIL_H

#include <stdlib.h>

#include "engine/cuda_plan.h"
#include "engine/devmath.h"
#include "model/model.h"

#define REPLAY_MAX_LAYERS 7

static int ROUND; /* 1: BF16 where the GPU stores BF16 */
static float rb(float x) {
    return ROUND ? dm_bf16_to_f32(dm_f32_to_bf16(x)) : x;
}
static float *fz(size_t n) {
    return calloc(n ? n : 1, sizeof(float));
}

typedef struct {
    float *buf[REPLAY_MAX_LAYERS + 1][CW_N_KINDS]; /* [layer + 1][kind], weights as the GPU holds them */
} Weights;

/* Every tensor of m where cuda_weight_slot puts it (BF16-rounded matrices
 * when ROUND); a tied lm_head points at the embedding. */
static Weights place_all(Model *m, const ModelConfig *c) {
    Weights w = {{{0}}};
    if (c->n_layers > REPLAY_MAX_LAYERS) abort(); /* the replays use small test models */
    int np;
    ModelParam *ps = model_params(m, &np);
    for (int i = 0; i < np; i++) {
        CudaWeightSlot s;
        if (cuda_weight_slot(c, ps[i].name, &s)) continue;
        float **b = &w.buf[s.layer + 1][s.kind];
        if (!*b) *b = fz(cuda_weight_numel(c, s.kind));
        for (size_t j = 0; j < ps[i].numel; j++) (*b)[s.offset + j] = s.bf16 ? rb(ps[i].data[j]) : ps[i].data[j];
    }
    if (c->tie_embeddings) w.buf[0][CW_LM_HEAD] = w.buf[0][CW_EMBED];
    return w;
}

/* y[T, N] = x[T, K] W[N, K]^T, fp32 accumulation, stored rounded. */
static void gemm_nt(float *y, const float *x, const float *W, int T, int N, int K) {
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            float acc = 0;
            for (int k = 0; k < K; k++) acc += x[(size_t)t * K + k] * W[(size_t)n * K + k];
            y[(size_t)t * N + n] = rb(acc);
        }
}

#endif
