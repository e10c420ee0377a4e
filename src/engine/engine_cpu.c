/* The CPU engine: src/model behind the engine interface, unchanged (same
 * weights, same kernels, same results; one copy of h_last per forward). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_impl.h"

typedef struct {
    Model *m;
    int own, train;
    float *h; /* h_last of the last forward [nseq * hidden] */
    size_t h_cap;
    int nseq;
} CpuEngine;

static int cpu_run(CpuEngine *c, const SeqBatch *b, int train, float *h_last, OprmError *err) {
    size_t need = (size_t)b->nseq * (size_t)model_config(c->m)->hidden;
    if (need > c->h_cap) {
        free(c->h);
        c->h = xmalloc(need * sizeof *c->h);
        c->h_cap = need;
    }
    c->nseq = 0;
    if (model_forward(c->m, b, train, c->h, err)) return -1;
    c->nseq = b->nseq;
    if (h_last) memcpy(h_last, c->h, need * sizeof *c->h);
    return 0;
}

static int cpu_forward(void *impl, const SeqBatch *b, float *h_last, OprmError *err) {
    CpuEngine *c = impl;
    return cpu_run(c, b, c->train, h_last, err);
}

/* Evaluation during training: the scoring forward (one set of activations). */
static int cpu_forward_eval(void *impl, const SeqBatch *b, float *h_last, OprmError *err) {
    return cpu_run(impl, b, 0, h_last, err);
}

static int cpu_head_rows(void *impl, const int32_t *rows, int nrows, float *logits, OprmError *err) {
    CpuEngine *c = impl;
    (void)err;
    model_head_rows_forward(c->m, c->h, c->nseq, rows, nrows, logits);
    return 0;
}

static int cpu_backward(void *impl, const float *dh_last, OprmError *err) {
    return model_backward(((CpuEngine *)impl)->m, dh_last, err);
}

static int cpu_head_backward(void *impl, const int32_t *rows, int nrows, const float *dlogits, OprmError *err) {
    CpuEngine *c = impl;
    size_t n = (size_t)c->nseq * (size_t)model_config(c->m)->hidden;
    float *dh = xcalloc(n ? n : 1, sizeof *dh);
    model_head_rows_backward(c->m, c->h, c->nseq, rows, nrows, dlogits, dh);
    int rc = model_backward(c->m, dh, err);
    free(dh);
    return rc;
}

static void cpu_zero_grad(void *impl) {
    model_zero_grad(((CpuEngine *)impl)->m);
}

static void cpu_free(void *impl) {
    CpuEngine *c = impl;
    if (c->own) model_free(c->m);
    free(c->h);
    free(c);
}

/* Host parameters: the trainer steps m's tensors itself (src/train/adamw.c). */
static const EngineOps CPU_OPS = {.forward = cpu_forward,
                                  .head_rows = cpu_head_rows,
                                  .backward = cpu_backward,
                                  .free = cpu_free,
                                  .head_backward = cpu_head_backward,
                                  .params_on_host = 1,
                                  .zero_grad = cpu_zero_grad};

/* By its vtable: a test engine (tests/engine_sim.h) may wrap a CPU one. */
Model *engine_cpu_model(Engine *e) {
    return e && e->ops == &CPU_OPS ? ((CpuEngine *)e->impl)->m : NULL;
}

int engine_cpu_init(Engine *e, Model *m, int own, const EngineOptions *opt, OprmError *err) {
    (void)err;
    CpuEngine *c = xcalloc(1, sizeof *c);
    c->m = m;
    c->own = own;
    c->train = opt->train;
    e->ops = &CPU_OPS;
    e->forward_eval = cpu_forward_eval;
    e->impl = c;
    e->cfg = *model_config(m);
    e->max_tokens = 0; /* the CPU arena grows to any batch */
    int t = opt->threads > 0 ? opt->threads : omp_get_max_threads();
    snprintf(e->desc, sizeof e->desc, "cpu (%d thread%s)", t, t == 1 ? "" : "s");
    return 0;
}
