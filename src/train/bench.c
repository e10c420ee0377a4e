#include "train/bench.h"

#include <math.h>
#include <stdio.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ordinal/ordinal.h"
#include "train/adamw.h"
#include "train/rng.h"

#define DIGIT_FIRST 16 /* the digit rows torch_oprm_ref.py reads: ids 16..24 */

static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

double bench_non_embedding_params(const ModelConfig *c, double total_params) {
    double table = (double)c->vocab * c->hidden;
    return total_params - table * (c->tie_embeddings ? 1 : 2);
}

double bench_attention_flops(const ModelConfig *c, int seq, int nseq) {
    return 2.0 * c->n_layers * c->n_heads * c->head_dim * (double)seq * (seq + 1) * nseq;
}

typedef struct {
    Model *m;
    Engine *engine; /* scoring goes through the engine (the CPU one wraps m) */
    int nseq;
    AdamW *opt;
    ModelParam *params;
    int nparams, hidden;
    SeqBatch batch;
    int32_t rows[OPRM_LEVELS];
    float *h_last, *dh_last;
    float *logits, dlogits[2 * OPRM_LEVELS];
    Engine *train_engine; /* --device cuda --mode train: the device-parameter engine */
    float *dlogits_all;   /* [nseq * 9]: one pair loss per (chosen, rejected) couple */
    int *decay;           /* per trainable tensor (adamw_param_decays) */
    int64_t opt_steps;
} BenchState;

typedef struct {
    double fwd, head, bwd, opt;
} TrainPhases;

static int train_step(BenchState *s, TrainPhases *ph, double *loss, OprmError *err) {
    double t0 = now_ms();
    if (model_forward(s->m, &s->batch, 1, s->h_last, err)) return -1;
    double t1 = now_ms();
    model_head_rows_forward(s->m, s->h_last, 2, s->rows, OPRM_LEVELS, s->logits);
    double zc[OPRM_LEVELS], zr[OPRM_LEVELS], gc[OPRM_LEVELS], gr[OPRM_LEVELS];
    for (int k = 0; k < OPRM_LEVELS; k++) {
        zc[k] = s->logits[k];
        zr[k] = s->logits[OPRM_LEVELS + k];
    }
    if (ordinal_pair_loss(zc, zr, loss, gc, gr, err)) return -1;
    for (int k = 0; k < OPRM_LEVELS; k++) {
        s->dlogits[k] = (float)gc[k];
        s->dlogits[OPRM_LEVELS + k] = (float)gr[k];
    }
    memset(s->dh_last, 0, sizeof(float) * 2 * (size_t)s->hidden);
    model_head_rows_backward(s->m, s->h_last, 2, s->rows, OPRM_LEVELS, s->dlogits, s->dh_last);
    double t2 = now_ms();
    if (model_backward(s->m, s->dh_last, err)) return -1;
    double t3 = now_ms();
    /* torch zeroes before backward; the fused step clears the gradients in its own pass */
    if (adamw_step_zero_grad(s->opt, s->params, s->nparams, 1e-5, err)) return -1;
    double t4 = now_ms();
    ph->fwd += t1 - t0;
    ph->head += t2 - t1;
    ph->bwd += t3 - t2;
    ph->opt += t4 - t3;
    return 0;
}

/* The train step on a device-parameter engine (CUDA): nseq/2 pairs packed in
 * one batch (sequence 2p chosen, 2p + 1 rejected), the mean pair loss, the
 * head backward, AdamW on the device. The logits come back to the host, so
 * the step's time includes the device's work. */
static int engine_train_step(BenchState *s, TrainPhases *ph, double *loss, OprmError *err) {
    double t0 = now_ms();
    if (engine_forward(s->train_engine, &s->batch, NULL, err) ||
        engine_head_rows(s->train_engine, s->rows, OPRM_LEVELS, s->logits, err))
        return -1;
    double t1 = now_ms(), sum = 0;
    int pairs = s->nseq / 2;
    for (int p = 0; p < pairs; p++) {
        double zc[OPRM_LEVELS], zr[OPRM_LEVELS], gc[OPRM_LEVELS], gr[OPRM_LEVELS], l;
        for (int k = 0; k < OPRM_LEVELS; k++) {
            zc[k] = s->logits[(2 * p) * OPRM_LEVELS + k];
            zr[k] = s->logits[(2 * p + 1) * OPRM_LEVELS + k];
        }
        if (ordinal_pair_loss(zc, zr, &l, gc, gr, err)) return -1;
        sum += l;
        for (int k = 0; k < OPRM_LEVELS; k++) {
            s->dlogits_all[(2 * p) * OPRM_LEVELS + k] = (float)(gc[k] / pairs);
            s->dlogits_all[(2 * p + 1) * OPRM_LEVELS + k] = (float)(gr[k] / pairs);
        }
    }
    *loss = sum / pairs;
    double t2 = now_ms();
    if (engine_head_backward(s->train_engine, s->rows, OPRM_LEVELS, s->dlogits_all, err)) return -1;
    double t3 = now_ms();
    EngineAdamWStep st = {1e-5, 0.9, 0.999, 1e-8, 0.01, ++s->opt_steps, 1.0, s->decay};
    if (engine_adamw_step(s->train_engine, &st, err)) return -1;
    double t4 = now_ms();
    ph->fwd += t1 - t0;
    ph->head += t2 - t1;
    ph->bwd += t3 - t2;
    ph->opt += t4 - t3;
    return 0;
}

/* The logits come back to the host, so the step's time includes the device's work. */
static int score_step(BenchState *s, OprmError *err) {
    if (engine_forward(s->engine, &s->batch, NULL, err)) return -1;
    return engine_head_rows(s->engine, s->rows, OPRM_LEVELS, s->logits, err);
}

/* Warm-up, then the timed train steps of either engine into res. */
typedef int (*TrainStepFn)(BenchState *s, TrainPhases *ph, double *loss, OprmError *err);
static int time_train(BenchState *s, TrainStepFn step, const BenchOptions *o, int N, BenchResult *res,
                      OprmError *err) {
    TrainPhases ph = {0};
    for (int i = 0; i < o->warmup; i++)
        if (step(s, &ph, &res->last_loss, err)) return -1;
    memset(&ph, 0, sizeof ph);
    double total = 0, best = INFINITY;
    res->train_window[0] = now_ms() * 1e-3;
    double cpu0 = cpu_ms();
    for (int i = 0; i < o->steps; i++) {
        double t = now_ms();
        if (step(s, &ph, &res->last_loss, err)) return -1;
        double dt = now_ms() - t;
        total += dt;
        if (dt < best) best = dt;
    }
    res->train_window[1] = now_ms() * 1e-3;
    res->train_cpu_ms = (cpu_ms() - cpu0) / o->steps;
    res->train_step_ms = total / o->steps;
    res->train_step_ms_min = best;
    res->fwd_ms = ph.fwd / o->steps;
    res->head_ms = ph.head / o->steps;
    res->bwd_ms = ph.bwd / o->steps;
    res->opt_ms = ph.opt / o->steps;
    res->train_tokens_per_s = N / (res->train_step_ms * 1e-3);
    res->train_gflops = res->train_flops_per_step / (res->train_step_ms * 1e-3) / 1e9;
    return 0;
}

static int check_options(const BenchOptions *o, const ModelConfig *c, OprmError *err) {
    if (o->seq < 1) return oprm_fail(err, "--seq must be >= 1 (got %d)", o->seq);
    if (o->steps < 1) return oprm_fail(err, "--steps must be >= 1 (got %d)", o->steps);
    if (o->warmup < 0) return oprm_fail(err, "--warmup must be >= 0 (got %d)", o->warmup);
    if (o->lora_rank < 0) return oprm_fail(err, "--lora-rank must be >= 0 (got %d)", o->lora_rank);
    if (o->weights == WEIGHTS_BF16 && o->lora_rank == 0 && (o->mode & BENCH_TRAIN))
        return oprm_fail(err, "--weights bf16 stores frozen weights: it needs --lora-rank R for training, "
                              "or --mode score (full fine-tuning keeps fp32 master weights)");
    int cuda_train = o->device.kind == DEVICE_CUDA && (o->mode & BENCH_TRAIN);
    if (cuda_train && o->mode != BENCH_TRAIN)
        return oprm_fail(err, "--device cuda: pick --mode train or --mode score (the two build different engines)");
    if (cuda_train && o->weights == WEIGHTS_BF16 && o->lora_rank == 0)
        return oprm_fail(err, "--weights bf16 with --device cuda --mode train needs --lora-rank R");
    if (cuda_train && (o->nseq < 0 || o->nseq % 2))
        return oprm_fail(err, "--nseq must be even for --device cuda --mode train (chosen, rejected pairs)");
    if (!cuda_train && (o->nseq < 0 || (o->nseq && o->nseq != 2 && (o->mode & BENCH_TRAIN))))
        return oprm_fail(err, "--nseq other than 2 is for --mode score (the CPU train step scores one pair)");
    if (c->vocab < DIGIT_FIRST + OPRM_LEVELS)
        return oprm_fail(err, "%s: vocab_size %d is smaller than the digit rows %d..%d the benchmark reads",
                         o->config_path, c->vocab, DIGIT_FIRST, DIGIT_FIRST + OPRM_LEVELS - 1);
    return 0;
}

int bench_run(const BenchOptions *o, BenchResult *res, OprmError *err) {
    memset(res, 0, sizeof *res);
    if (model_config_load(o->config_path, &res->cfg, err)) return -1;
    const ModelConfig *c = &res->cfg;
    if (check_options(o, c, err)) return -1;

    model_set_threads(o->threads);
    res->threads = omp_get_max_threads();
    ModelOptions mo = {0};
    mo.frozen_storage = o->weights;
    if (o->device.kind == DEVICE_CUDA && !(o->mode & BENCH_TRAIN)) { /* the GPU holds BF16 weights: build them so once */
        mo.frozen_storage = WEIGHTS_BF16;
        mo.inference_only = 1;
    }
    if (o->device.kind == DEVICE_CUDA && (o->mode & BENCH_TRAIN) && o->lora_rank > 0)
        mo.frozen_storage = WEIGHTS_BF16; /* the frozen base: BF16 on the GPU anyway */
    mo.lora_rank = o->lora_rank;
    mo.bf16_compute = o->bf16_compute;
    mo.lora_alpha = 2.0 * o->lora_rank;
    mo.lora_targets = o->lora_rank ? (LORA_Q | LORA_K | LORA_V | LORA_O | LORA_GATE | LORA_UP | LORA_DOWN) : 0;
    BenchState s = {0};
    s.m = model_new_random(c, &mo, o->seed, err);
    if (!s.m) return oprm_prefix(err, "%s: ", o->config_path);
    s.hidden = c->hidden;
    res->bf16_active = model_bf16_compute(s.m);
    s.params = model_params(s.m, &s.nparams);
    res->params_total = (double)model_num_params(s.m, 0);
    res->params_trainable = (double)model_num_params(s.m, 1);
    res->params_non_embedding = bench_non_embedding_params(c, res->params_total);

    int nseq = o->nseq > 0 ? o->nseq : 2;
    s.nseq = nseq;
    int N = nseq * o->seq;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)N);
    int32_t *lens = xmalloc(sizeof(int32_t) * (size_t)nseq);
    for (int i = 0; i < nseq; i++) lens[i] = o->seq;
    Rng rng;
    rng_seed(&rng, o->seed ^ 0x6f70726d62656e63ULL);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)rng_below(&rng, (uint64_t)c->vocab);
    s.batch = (SeqBatch){.ids = ids, .lens = lens, .nseq = nseq};
    s.logits = xmalloc(sizeof(float) * (size_t)nseq * OPRM_LEVELS);
    for (int k = 0; k < OPRM_LEVELS; k++) s.rows[k] = DIGIT_FIRST + k;
    s.h_last = xmalloc(sizeof(float) * 2 * (size_t)c->hidden);
    s.dh_last = xmalloc(sizeof(float) * 2 * (size_t)c->hidden);

    double attn = bench_attention_flops(c, o->seq, nseq);
    res->train_flops_per_step = 6.0 * res->params_non_embedding * N + 3.0 * attn;
    res->score_flops_per_step = 2.0 * res->params_non_embedding * N + attn;

    int rc = -1;
    if ((o->mode & BENCH_TRAIN) && o->device.kind == DEVICE_CUDA) {
        EngineOptions eo = {.device = o->device, .max_tokens_per_batch = N, .train = 1, .recompute = o->recompute};
        s.train_engine = engine_from_model(s.m, &eo, err);
        if (!s.train_engine) goto done;
        snprintf(res->device, sizeof res->device, "%s", engine_describe(s.train_engine));
        s.dlogits_all = xcalloc((size_t)nseq * OPRM_LEVELS, sizeof(float));
        s.decay = xcalloc((size_t)(s.nparams ? s.nparams : 1), sizeof(int));
        for (int i = 0, k = 0; i < s.nparams; i++)
            if (s.params[i].grad) s.decay[k++] = adamw_param_decays(s.params[i].name);
        if (time_train(&s, engine_train_step, o, N, res, err)) goto done;
    } else if (o->mode & BENCH_TRAIN) {
        AdamWConfig ac = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
        s.opt = adamw_new(s.params, s.nparams, &ac);
        if (time_train(&s, train_step, o, N, res, err)) goto done;
    }
    if (o->mode & BENCH_SCORE) {
        EngineOptions eo = {.device = o->device, .threads = o->threads, .max_tokens_per_batch = N};
        if (eo.device.kind == DEVICE_AUTO) eo.device.kind = DEVICE_CPU;
        s.engine = engine_from_model(s.m, &eo, err);
        if (!s.engine) goto done;
        snprintf(res->device, sizeof res->device, "%s", engine_describe(s.engine));
        for (int i = 0; i < o->warmup; i++)
            if (score_step(&s, err)) goto done;
        double total = 0, best = INFINITY;
        res->score_window[0] = now_ms() * 1e-3;
        double cpu0 = cpu_ms();
        for (int i = 0; i < o->steps; i++) {
            double t = now_ms();
            if (score_step(&s, err)) goto done;
            double dt = now_ms() - t;
            total += dt;
            if (dt < best) best = dt;
        }
        res->score_window[1] = now_ms() * 1e-3;
        res->score_cpu_ms = (cpu_ms() - cpu0) / o->steps;
        res->score_step_ms = total / o->steps;
        res->score_step_ms_min = best;
        res->score_tokens_per_s = N / (res->score_step_ms * 1e-3);
        res->score_gflops = res->score_flops_per_step / (res->score_step_ms * 1e-3) / 1e9;
    }
    rc = 0;
done:
    engine_free(s.train_engine);
    free(s.dlogits_all);
    free(s.decay);
    engine_free(s.engine);
    adamw_free(s.opt);
    free(lens);
    free(s.logits);
    model_free(s.m);
    free(ids);
    free(s.h_last);
    free(s.dh_last);
    return rc;
}
