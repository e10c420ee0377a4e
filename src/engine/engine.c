/* Device dispatch of the engine interface. */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_impl.h"

static EngineOptions resolved(const EngineOptions *opt) {
    EngineOptions o = {0};
    if (opt) o = *opt;
    if (o.device.kind == DEVICE_AUTO) o.device = device_choose(o.device, NULL, 0);
    return o;
}

/* A training engine needs backward and, where it keeps the parameters on its
 * device, the optimizer and checkpoint calls too. One built without them (a
 * CUDA engine without training kernels) is refused here, when the trainer
 * sets up, not at its first step. */
static int check_train_ops(const Engine *e, OprmError *err) {
    const EngineOps *o = e->ops;
    int ok = o->backward && o->head_backward && o->zero_grad;
    if (!o->params_on_host) ok = ok && o->grad_sqnorm && o->adamw_step && o->params_download && o->params_upload;
    if (ok) return 0;
    char d[32];
    return oprm_fail(err, "training on %s is not available in this build (its engine has no %s yet); train with "
                          "--device cpu", device_str(e->device, d, sizeof d),
                     o->backward && o->head_backward ? "optimizer on the device" : "backward pass");
}

static Engine *trained_or_refused(Engine *e, const EngineOptions *o, OprmError *err) {
    if (!o->train || !check_train_ops(e, err)) return e;
    engine_free(e);
    return NULL;
}

Engine *engine_load(const char *dir, const EngineOptions *opt_in, OprmError *err) {
    EngineOptions o = resolved(opt_in);
    Engine *e = xcalloc(1, sizeof *e);
    e->device = o.device;
    if (o.device.kind == DEVICE_CPU) {
        if (o.threads > 0) model_set_threads(o.threads);
        /* fp32, exactly as scoring always loaded, unless --weights bf16: then
         * frozen BF16 weights and BF16 GEMMs (the scorer never trains). */
        ModelOptions bf = {.inference_only = 1, .frozen_storage = WEIGHTS_BF16, .bf16_compute = 1};
        Model *m = model_load(dir, o.bf16 ? &bf : NULL, err);
        if (!m || engine_cpu_init(e, m, 1, &o, err)) {
            if (m) model_free(m);
            free(e);
            return NULL;
        }
        return trained_or_refused(e, &o, err);
    }
    /* CUDA: read the checkpoint on the host in BF16 (stored BF16 kept as is,
     * F32/F16 rounded once), copy to the GPU, drop the host copy. */
    ModelOptions mo = {.frozen_storage = WEIGHTS_BF16, .inference_only = 1};
    Model *m = model_load(dir, &mo, err);
    if (!m) {
        free(e);
        return NULL;
    }
    int rc = engine_cuda_init(e, m, &o, err);
    model_free(m);
    if (rc) {
        free(e);
        return NULL;
    }
    return trained_or_refused(e, &o, err);
}

Engine *engine_from_model(Model *m, const EngineOptions *opt_in, OprmError *err) {
    EngineOptions o = resolved(opt_in);
    Engine *e = xcalloc(1, sizeof *e);
    e->device = o.device;
    int rc = o.device.kind == DEVICE_CPU ? engine_cpu_init(e, m, 0, &o, err) : engine_cuda_init(e, m, &o, err);
    if (rc) {
        free(e);
        return NULL;
    }
    return trained_or_refused(e, &o, err);
}

void engine_free(Engine *e) {
    if (!e) return;
    if (e->ops) e->ops->free(e->impl);
    free(e);
}

const ModelConfig *engine_config(const Engine *e) {
    return &e->cfg;
}
Device engine_device(const Engine *e) {
    return e->device;
}
const char *engine_describe(const Engine *e) {
    return e->desc;
}

static int forward_checked(Engine *e, const SeqBatch *b, float *h_last, int eval, OprmError *err) {
    e->nseq_last = 0;
    e->eval_last = 0;
    if (b->nseq <= 0) return oprm_fail(err, "engine_forward: empty batch");
    if (e->max_tokens > 0) {
        long total = 0;
        for (int s = 0; s < b->nseq; s++) total += b->lens[s];
        if (total > e->max_tokens)
            return oprm_fail(err, "a batch of %ld tokens exceeds --max_tokens_per_batch %d of %s (raise it, or "
                                  "shorten the sequences with --max-len)", total, e->max_tokens, e->desc);
    }
    int (*fwd)(void *, const SeqBatch *, float *, OprmError *) =
        eval && e->forward_eval ? e->forward_eval : e->ops->forward;
    if (fwd(e->impl, b, h_last, err)) return -1;
    e->nseq_last = b->nseq;
    e->eval_last = eval;
    return 0;
}

int engine_forward(Engine *e, const SeqBatch *b, float *h_last, OprmError *err) {
    return forward_checked(e, b, h_last, 0, err);
}

int engine_forward_eval(Engine *e, const SeqBatch *b, float *h_last, OprmError *err) {
    return forward_checked(e, b, h_last, 1, err);
}

static int no_backward_after_eval(const Engine *e, const char *what, OprmError *err) {
    if (!e->eval_last) return 0;
    return oprm_fail(err, "%s: the last forward was engine_forward_eval (nothing kept to go back through)", what);
}

int engine_head_rows(Engine *e, const int32_t *rows, int nrows, float *logits, OprmError *err) {
    if (e->nseq_last <= 0) return oprm_fail(err, "engine_head_rows: no forward pass to read");
    for (int k = 0; k < nrows; k++)
        if (rows[k] < 0 || rows[k] >= e->cfg.vocab)
            return oprm_fail(err, "engine_head_rows: row %d outside the vocabulary [0, %d)", rows[k], e->cfg.vocab);
    return e->ops->head_rows(e->impl, rows, nrows, logits, err);
}

int engine_backward(Engine *e, const float *dh_last, OprmError *err) {
    if (!e->ops->backward) {
        char d[32];
        return oprm_fail(err, "backward is not available on %s yet (CUDA training is part 2); use --device cpu",
                         device_str(e->device, d, sizeof d));
    }
    if (no_backward_after_eval(e, "engine_backward", err)) return -1;
    return e->ops->backward(e->impl, dh_last, err);
}

int engine_head_backward(Engine *e, const int32_t *rows, int nrows, const float *dlogits, OprmError *err) {
    if (e->nseq_last <= 0) return oprm_fail(err, "engine_head_backward: no forward pass to differentiate");
    if (!e->ops->head_backward) {
        char d[32];
        return oprm_fail(err, "backward is not available on %s; use --device cpu", device_str(e->device, d, sizeof d));
    }
    if (no_backward_after_eval(e, "engine_head_backward", err)) return -1;
    return e->ops->head_backward(e->impl, rows, nrows, dlogits, err);
}

int engine_params_on_host(const Engine *e) {
    return e->ops->params_on_host;
}

static int no_device_params(const Engine *e, const char *what, OprmError *err) {
    char d[32];
    return oprm_fail(err, "%s: %s keeps its parameters on the host (the trainer steps them itself)", what,
                     device_str(e->device, d, sizeof d));
}

int engine_grad_sqnorm(Engine *e, double *sqnorm, OprmError *err) {
    if (!e->ops->grad_sqnorm) return no_device_params(e, "engine_grad_sqnorm", err);
    return e->ops->grad_sqnorm(e->impl, sqnorm, err);
}

int engine_adamw_step(Engine *e, const EngineAdamWStep *s, OprmError *err) {
    if (!e->ops->adamw_step) return no_device_params(e, "engine_adamw_step", err);
    if (s->step < 1) return oprm_fail(err, "engine_adamw_step: step %lld (the count is 1-based)", (long long)s->step);
    return e->ops->adamw_step(e->impl, s, err);
}

void engine_zero_grad(Engine *e) {
    if (e->ops->zero_grad) e->ops->zero_grad(e->impl);
}

int engine_params_download(Engine *e, ModelParam *params, int n, float *const *m1, float *const *v1, OprmError *err) {
    if (e->ops->params_on_host || !e->ops->params_download) return 0;
    return e->ops->params_download(e->impl, params, n, m1, v1, err);
}

int engine_params_upload(Engine *e, const ModelParam *params, int n, const float *const *m1, const float *const *v1,
                         OprmError *err) {
    if (e->ops->params_on_host || !e->ops->params_upload) return 0;
    return e->ops->params_upload(e->impl, params, n, m1, v1, err);
}
