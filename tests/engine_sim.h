/* A simulated device for the trainer's device-parameter path (tests only):
 * an engine with engine_params_on_host = 0 that keeps its OWN copy of the
 * model (loaded again from the host model's directory, then given the host
 * weights, as a CUDA engine copies them when it is built), its own fp32 AdamW
 * moments, and implements grad_sqnorm, adamw_step, zero_grad, download and
 * upload on that copy. The host Model the trainer holds is never trained by
 * it: a missing download shows as stale weights in a checkpoint, a missing
 * upload as lost weights or moments after a resume.
 *
 * Forward and backward run a CPU engine on the copy, and the optimizer is
 * src/train/adamw.c on the copy, so a correct trainer gives exactly the host
 * path's numbers. Switches make it wrong on purpose (download or upload a
 * no-op) to show that the tests catch it, and poison a weight after a given
 * step (NaN). Include in one test file; select it with
 * TrainConfig.make_engine = sim_make_engine, engine_ctx = a SimCtx. */
#ifndef OPRM_TESTS_ENGINE_SIM_H
#define OPRM_TESTS_ENGINE_SIM_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_impl.h"
#include "train/adamw.h"

typedef struct {
    ModelOptions mo;       /* how the trainer loaded its model (LoRA rank, targets, seed...) */
    int download_noop;     /* broken on purpose: download copies nothing */
    int upload_noop;       /* broken on purpose: upload copies nothing */
    int64_t poison_after;  /* > 0: from the first forward after this optimizer step, model.norm.weight[0] = NaN
                              on the device (after that step's checkpoint) */
    /* what happened (for assertions) */
    int engines, steps, downloads, uploads, sqnorms;
    EngineOptions opt;     /* the options the trainer built it with */
} SimCtx;

typedef struct {
    SimCtx *ctx;
    Model *own;          /* the device's model */
    Engine *cpu;         /* a CPU engine on own: forward and backward */
    ModelParam *tp;      /* own's trainable tensors, in order */
    int ntp;
    AdamW *opt;          /* the device's moments */
    int64_t last_step;   /* the step of the last adamw_step */
} SimEngine;

static int sim_forward(void *impl, const SeqBatch *b, float *h_last, OprmError *err) {
    SimEngine *s = impl;
    /* At the first forward after that step: its checkpoint is already saved. */
    if (s->ctx->poison_after > 0 && s->last_step == s->ctx->poison_after) {
        int n;
        ModelParam *p = model_params(s->own, &n);
        for (int i = 0; i < n; i++)
            if (!strcmp(p[i].name, "model.norm.weight")) p[i].data[0] = NAN;
    }
    return engine_forward(s->cpu, b, h_last, err);
}
static int sim_forward_eval(void *impl, const SeqBatch *b, float *h_last, OprmError *err) {
    return engine_forward_eval(((SimEngine *)impl)->cpu, b, h_last, err);
}
static int sim_head_rows(void *impl, const int32_t *rows, int nrows, float *logits, OprmError *err) {
    return engine_head_rows(((SimEngine *)impl)->cpu, rows, nrows, logits, err);
}
static int sim_backward(void *impl, const float *dh, OprmError *err) {
    return engine_backward(((SimEngine *)impl)->cpu, dh, err);
}
static int sim_head_backward(void *impl, const int32_t *rows, int nrows, const float *dl, OprmError *err) {
    return engine_head_backward(((SimEngine *)impl)->cpu, rows, nrows, dl, err);
}

static int sim_grad_sqnorm(void *impl, double *sq, OprmError *err) {
    SimEngine *s = impl;
    s->ctx->sqnorms++;
    *sq = grad_sum_squares(s->tp, s->ntp);
    return 0;
}

/* The contract's step: gradients times grad_scale, then torch's AdamW with
 * the given hyper-parameters, decay mask and 1-based step; gradients zeroed. */
static int sim_adamw_step(void *impl, const EngineAdamWStep *st, OprmError *err) {
    SimEngine *s = impl;
    s->opt->cfg = (AdamWConfig){st->beta1, st->beta2, st->eps, st->weight_decay};
    s->opt->step = st->step - 1;
    for (int i = 0; i < s->ntp; i++) s->opt->slots[i].decay = st->decay[i];
    if (st->grad_scale != 1.0) grads_scale(s->tp, s->ntp, (float)st->grad_scale);
    if (adamw_step_zero_grad(s->opt, s->tp, s->ntp, st->lr, err)) return -1;
    s->ctx->steps++;
    s->last_step = st->step;
    return 0;
}

static void sim_zero_grad(void *impl) {
    engine_zero_grad(((SimEngine *)impl)->cpu);
}

static int sim_match(const SimEngine *s, const ModelParam *p, int n, OprmError *err) {
    if (n != s->ntp) return oprm_fail(err, "sim engine: %d tensors given, it trains %d", n, s->ntp);
    for (int i = 0; i < n; i++)
        if (strcmp(p[i].name, s->tp[i].name) || p[i].numel != s->tp[i].numel)
            return oprm_fail(err, "sim engine: tensor %d is '%s', expected '%s'", i, p[i].name, s->tp[i].name);
    return 0;
}

static int sim_download(void *impl, ModelParam *p, int n, float *const *m1, float *const *v1, OprmError *err) {
    SimEngine *s = impl;
    if (sim_match(s, p, n, err)) return -1;
    s->ctx->downloads++;
    if (s->ctx->download_noop) return 0;
    for (int i = 0; i < n; i++) {
        memcpy(p[i].data, s->tp[i].data, p[i].numel * sizeof(float));
        if (m1) memcpy(m1[i], s->opt->slots[i].m, p[i].numel * sizeof(float));
        if (v1) memcpy(v1[i], s->opt->slots[i].v, p[i].numel * sizeof(float));
    }
    return 0;
}

static int sim_upload(void *impl, const ModelParam *p, int n, const float *const *m1, const float *const *v1,
                      OprmError *err) {
    SimEngine *s = impl;
    if (sim_match(s, p, n, err)) return -1;
    s->ctx->uploads++;
    if (s->ctx->upload_noop) return 0;
    for (int i = 0; i < n; i++) {
        memcpy(s->tp[i].data, p[i].data, p[i].numel * sizeof(float));
        if (m1) memcpy(s->opt->slots[i].m, m1[i], p[i].numel * sizeof(float));
        if (v1) memcpy(s->opt->slots[i].v, v1[i], p[i].numel * sizeof(float));
    }
    return 0;
}

static void sim_free(void *impl) {
    SimEngine *s = impl;
    engine_free(s->cpu);
    model_free(s->own);
    adamw_free(s->opt);
    free(s->tp);
    free(s);
}

static const EngineOps SIM_OPS = {.forward = sim_forward,
                                  .head_rows = sim_head_rows,
                                  .backward = sim_backward,
                                  .free = sim_free,
                                  .head_backward = sim_head_backward,
                                  .params_on_host = 0,
                                  .grad_sqnorm = sim_grad_sqnorm,
                                  .adamw_step = sim_adamw_step,
                                  .zero_grad = sim_zero_grad,
                                  .params_download = sim_download,
                                  .params_upload = sim_upload};

/* TrainConfig.make_engine: the device's own model, with every tensor of the
 * host model copied in (what engine_from_model does on a GPU). */
static Engine *sim_make_engine(void *vctx, Model *host, const EngineOptions *opt, OprmError *err) {
    SimCtx *ctx = vctx;
    ctx->opt = *opt;
    if (!opt->train) {
        oprm_fail(err, "sim engine: only for training");
        return NULL;
    }
    const char *dir = model_base_path(host);
    Model *own = dir ? model_load(dir, &ctx->mo, err) : NULL;
    if (!own) {
        if (!dir) oprm_fail(err, "sim engine: the host model has no directory");
        return NULL;
    }
    int nh, no;
    ModelParam *hp = model_params(host, &nh), *op = model_params(own, &no);
    if (nh != no) {
        model_free(own);
        oprm_fail(err, "sim engine: %d tensors on the host, %d in its own copy", nh, no);
        return NULL;
    }
    SimEngine *s = calloc(1, sizeof *s);
    s->ctx = ctx;
    s->own = own;
    s->tp = calloc((size_t)no, sizeof *s->tp);
    for (int i = 0; i < no; i++) {
        if (strcmp(hp[i].name, op[i].name) || hp[i].numel != op[i].numel || !hp[i].grad != !op[i].grad) {
            oprm_fail(err, "sim engine: tensor %d differs ('%s' vs '%s')", i, hp[i].name, op[i].name);
            sim_free(s);
            return NULL;
        }
        if (hp[i].data && op[i].data) memcpy(op[i].data, hp[i].data, op[i].numel * sizeof(float));
        if (op[i].grad) s->tp[s->ntp++] = op[i];
    }
    AdamWConfig ac = {0.9, 0.999, 1e-8, 0};
    s->opt = adamw_new(s->tp, s->ntp, &ac);
    EngineOptions co = *opt;
    co.device = (Device){DEVICE_CPU, 0};
    s->cpu = engine_from_model(own, &co, err);
    if (!s->cpu) {
        sim_free(s);
        return NULL;
    }
    Engine *e = calloc(1, sizeof *e);
    e->ops = &SIM_OPS;
    e->impl = s;
    e->cfg = *model_config(own);
    e->device = (Device){DEVICE_CUDA, 7};
    e->forward_eval = sim_forward_eval;
    snprintf(e->desc, sizeof e->desc, "sim:7 (test device: own weights and moments)");
    ctx->engines++;
    return e;
}

#endif
