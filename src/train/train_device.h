/* The optimizer step of a training engine that keeps its parameters on its
 * device (engine_params_on_host(e) == 0, the CUDA engine): the same step as
 * the host path (src/train/train_dist.c with one rank), split between the
 * engine and the host.
 *
 *  - norm: engine_grad_sqnorm, plus the host tensors' sum of squares (the
 *    --loss bt head, a hidden-sized vector the trainer keeps on the host);
 *  - clip: the factor min(1, max_norm / (norm + 1e-6)) of clip_grad_norm,
 *    given to engine_adamw_step as grad_scale (1 exactly when not clipping);
 *  - step: engine_adamw_step with the decay mask of adamw_param_decays and the
 *    1-based step of the host AdamW, whose moments of the host tensors it
 *    steps itself; the host AdamW stays the checkpoint image of the state;
 *  - checkpoints: engine_params_download into the host tensors and the AdamW
 *    slots before a save, engine_params_upload after a resume, so the files
 *    are those of the host path.
 * Every call fails with the engine's message; nothing here touches MPI. */
#ifndef OPRM_TRAIN_TRAIN_DEVICE_H
#define OPRM_TRAIN_TRAIN_DEVICE_H

#include "engine/engine.h"
#include "model/model.h"
#include "train/adamw.h"
#include "util/err.h"

typedef struct {
    Engine *e;
    ModelParam *params; /* the engine's trainable tensors (grad != NULL), in model_params order */
    int n;
    int *decay;         /* per tensor: weight decay applies (adamw_param_decays) */
    float **m1, **v1;   /* the host AdamW's moments of those tensors (its first n slots) */
} TrainDevice;

/* params[0, nmodel): the model's parameters (frozen ones included, as
 * model_params lists them); opt: the host AdamW over those plus any host
 * tensors after them (its first slots are the model's trainable tensors). */
int train_device_init(TrainDevice *d, Engine *e, const ModelParam *params, int nmodel, AdamW *opt, OprmError *err);
void train_device_free(TrainDevice *d);

/* Data parallel training with device parameters needs the gradients
 * all-reduced on the device (NCCL), which is not there yet: refused with
 * nranks > 1. device: "cuda:0", for the message. */
int train_device_check_ranks(int nranks, const char *device, OprmError *err);

/* The global gradient norm before clipping over the engine's tensors and the
 * host tensors host[0, nhost) (their grad arrays); *scale gets the clip factor
 * and the host gradients are multiplied by it (as grads_scale, only when < 1). */
int train_device_grads(TrainDevice *d, ModelParam *host, int nhost, double max_norm, double *norm, double *scale,
                       OprmError *err);

/* One AdamW step at lr of every trainable tensor: the engine's with gradient
 * factor scale, the host tensors by opt itself (its slots after the first
 * d->n); opt->step counts it. The gradients are zero afterwards. */
int train_device_step(TrainDevice *d, AdamW *opt, ModelParam *host, int nhost, double lr, double scale,
                      OprmError *err);

/* The device state into the host image: weights, and with moments != 0 the
 * AdamW moments too (a checkpoint; the final model needs only the weights). */
int train_device_download(TrainDevice *d, int moments, OprmError *err);
/* The host image (weights and moments, after a resume) onto the device. */
int train_device_upload(TrainDevice *d, OprmError *err);

#endif
