#include "train/train_device.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int train_device_init(TrainDevice *d, Engine *e, const ModelParam *params, int nmodel, AdamW *opt, OprmError *err) {
    memset(d, 0, sizeof *d);
    d->e = e;
    size_t cap = (size_t)(nmodel > 0 ? nmodel : 1);
    d->params = xcalloc(cap, sizeof *d->params);
    d->decay = xcalloc(cap, sizeof *d->decay);
    d->m1 = xcalloc(cap, sizeof *d->m1);
    d->v1 = xcalloc(cap, sizeof *d->v1);
    for (int i = 0; i < nmodel; i++) {
        if (!params[i].grad) continue;
        int k = d->n;
        /* The host AdamW was made over the same list: its slot k is tensor k. */
        if (k >= opt->nslots || strcmp(opt->slots[k].name, params[i].name) || opt->slots[k].numel != params[i].numel)
            return oprm_fail(err, "device training: parameter '%s' does not match the optimizer state",
                             params[i].name);
        d->params[k] = params[i];
        d->decay[k] = opt->slots[k].decay;
        d->m1[k] = opt->slots[k].m;
        d->v1[k] = opt->slots[k].v;
        d->n++;
    }
    return 0;
}

void train_device_free(TrainDevice *d) {
    free(d->params);
    free(d->decay);
    free(d->m1);
    free(d->v1);
    memset(d, 0, sizeof *d);
}

int train_device_check_ranks(int nranks, const char *device, OprmError *err) {
    if (nranks <= 1) return 0;
    return oprm_fail(err, "data parallel training on %s (%d MPI ranks) is not available yet: the gradients live "
                          "on the device and are not all-reduced across ranks (NCCL is later work). Run one "
                          "process (no mpirun), or train data parallel with --device cpu", device, nranks);
}

int train_device_grads(TrainDevice *d, ModelParam *host, int nhost, double max_norm, double *norm, double *scale,
                       OprmError *err) {
    double sq = 0;
    if (engine_grad_sqnorm(d->e, &sq, err)) return -1;
    /* Added after the engine's sum, as the host path adds the BT head last. */
    if (nhost > 0) sq += grad_sum_squares(host, nhost);
    *norm = sqrt(sq);
    *scale = 1.0;
    if (max_norm > 0 && isfinite(*norm)) {
        double coef = max_norm / (*norm + 1e-6);
        if (coef < 1.0) {
            *scale = coef;
            if (nhost > 0) grads_scale(host, nhost, (float)coef);
        }
    }
    return 0;
}

int train_device_step(TrainDevice *d, AdamW *opt, ModelParam *host, int nhost, double lr, double scale,
                      OprmError *err) {
    const AdamWConfig *c = &opt->cfg;
    EngineAdamWStep s = {.lr = lr,
                         .beta1 = c->beta1,
                         .beta2 = c->beta2,
                         .eps = c->eps,
                         .weight_decay = c->weight_decay,
                         .step = opt->step + 1,
                         .grad_scale = scale,
                         .decay = d->decay};
    if (engine_adamw_step(d->e, &s, err)) return -1;
    if (nhost > 0) {
        /* The host tensors' slots follow the engine's: a view of them. */
        AdamW rest = *opt;
        rest.slots = opt->slots + d->n;
        rest.nslots = opt->nslots - d->n;
        if (adamw_step_zero_grad(&rest, host, nhost, lr, err)) return -1;
    }
    opt->step = s.step;
    return 0;
}

int train_device_download(TrainDevice *d, int moments, OprmError *err) {
    return engine_params_download(d->e, d->params, d->n, moments ? d->m1 : NULL, moments ? d->v1 : NULL, err);
}

int train_device_upload(TrainDevice *d, OprmError *err) {
    return engine_params_upload(d->e, d->params, d->n, (const float *const *)d->m1, (const float *const *)d->v1, err);
}
