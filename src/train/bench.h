/* Throughput benchmark of the OPRM train step and of scoring on random weights
 * (what `oprm bench` runs). The workload mirrors ../shared/bench/torch_oprm_ref.py:
 * one chosen and one rejected sequence of `seq` random tokens packed into one
 * batch, the nine digit rows 16..24 of the LM head, the pair loss -log P(c > r),
 * AdamW (lr 1e-5, betas 0.9/0.999, eps 1e-8, weight decay 0.01).
 *
 * FLOPs (the team's convention, ../shared/bench/README.md):
 *   P     = non-embedding parameters (everything but the embedding table and,
 *           when untied, the LM head: the OPRM head reads only 9 of its rows);
 *   train = 6 * P * tokens + 3 * attn,   score = 2 * P * tokens + attn,
 *   attn  = per layer and sequence of length T, the causal half of QK^T and
 *           of P.V: 2 products * 2 FLOP * n_heads * head_dim * T(T+1)/2
 *         = 2 * n_layers * n_heads * head_dim * T * (T+1).
 * Recomputation inside backward is not counted (useful work only). */
#ifndef OPRM_TRAIN_BENCH_H
#define OPRM_TRAIN_BENCH_H

#include <stdint.h>

#include "engine/engine.h"
#include "model/model.h"
#include "util/err.h"

typedef enum { BENCH_TRAIN = 1, BENCH_SCORE = 2, BENCH_BOTH = 3 } BenchMode;

typedef struct {
    const char *config_path;   /* a Hugging Face config.json */
    int seq;                   /* tokens per sequence (two sequences per batch) */
    int steps;                 /* timed steps */
    int warmup;                /* untimed steps before them (arenas, optimizer state) */
    int threads;               /* 0 = all cores */
    BenchMode mode;
    WeightStorage weights;     /* storage of frozen weights (BF16: LoRA base or scoring) */
    int lora_rank;             /* 0 = full fine-tuning */
    int bf16_compute;          /* BF16 GEMMs (ModelOptions.bf16_compute) */
    uint64_t seed;
    Device device;             /* scoring device (zero = cpu here: a benchmark never picks silently) */
    int nseq;                  /* sequences per batch (0 = 2: one pair; --device cuda --mode train: any even count) */
    int recompute;             /* --device cuda --mode train: recompute activations in backward */
} BenchOptions;

typedef struct {
    ModelConfig cfg;
    double params_total, params_trainable, params_non_embedding;
    int threads;
    int bf16_active; /* BF16 compute in force (asked for and supported) */
    double train_flops_per_step, score_flops_per_step;
    /* Means over the timed steps, milliseconds. */
    double train_step_ms, train_step_ms_min;
    double fwd_ms, head_ms, bwd_ms, opt_ms; /* phases of the train step */
    double score_step_ms, score_step_ms_min;
    /* Process CPU time per step (all threads), ms: on a machine shared with other
     * work, tokens per CPU-second of a 1-thread run is the throughput the step
     * would have alone (wall time counts the time the scheduler gave away). */
    double train_cpu_ms, score_cpu_ms;
    double train_tokens_per_s, score_tokens_per_s, train_gflops, score_gflops;
    double last_loss;
    /* CLOCK_MONOTONIC seconds around the timed steps (to cut a profile, e.g.
     * `perf record -k CLOCK_MONOTONIC` then `perf report --time A,B`). */
    double train_window[2], score_window[2];
    char device[256]; /* the scoring engine, in words */
} BenchResult;

/* Counts for the FLOP formula above. */
double bench_non_embedding_params(const ModelConfig *c, double total_params);
double bench_attention_flops(const ModelConfig *c, int seq, int nseq);

int bench_run(const BenchOptions *opt, BenchResult *res, OprmError *err);

#endif
