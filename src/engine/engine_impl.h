/* Internals shared by the engine implementations (not for other layers). */
#ifndef OPRM_ENGINE_ENGINE_IMPL_H
#define OPRM_ENGINE_ENGINE_IMPL_H

#include "engine/engine.h"

struct Engine {
    const EngineOps *ops;
    void *impl;
    ModelConfig cfg;
    Device device;
    char desc[256];
    int max_tokens; /* 0 = no limit (CPU) */
    int nseq_last;  /* sequences of the last forward; 0 = none yet */
    int eval_last;  /* the last forward was engine_forward_eval: nothing to go back through */
    /* engine_forward_eval where the engine has its own (CPU: train = 0); NULL =
     * ops->forward. Outside EngineOps so that positional vtable initialisers
     * (src/cuda/engine_cuda.cu) need no new entry. */
    int (*forward_eval)(void *impl, const SeqBatch *b, float *h_last, OprmError *err);
};

/* CPU engine on m; owns m when own != 0. */
int engine_cpu_init(Engine *e, Model *m, int own, const EngineOptions *opt, OprmError *err);
/* CUDA engine: copies m's weights to opt->device (m stays the caller's).
 * Builds without CUDA get engine_cuda_stub.c, which refuses with a message. */
int engine_cuda_init(Engine *e, const Model *m, const EngineOptions *opt, OprmError *err);

#endif
