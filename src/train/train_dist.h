/* Data-parallel training steps over src/dist (docs/distributed.md): the
 * gradient sum over ranks, the global-norm clip, and the optimizer step,
 * either replicated (every rank holds the whole AdamW state) or ZeRO-1
 * (--zero 1: the state is sharded over ranks; gradients are reduce-scattered,
 * each rank updates its shard of the weights, the weights are all-gathered).
 *
 * The trainable tensors are seen as one flat space (their concatenation in
 * parameter order); rank r owns the contiguous range [lo[r], lo[r+1]).
 * One process (dist_size() == 1) takes exactly the single-process path:
 * clip_grad_norm and adamw_step_zero_grad on the whole parameter list. */
#ifndef OPRM_TRAIN_TRAIN_DIST_H
#define OPRM_TRAIN_TRAIN_DIST_H

#include <stddef.h>

#include "model/model.h"
#include "train/adamw.h"
#include "util/err.h"

typedef struct {
    float *data, *grad;
    size_t numel, off; /* off: start in the flat space */
} DistTensor;

typedef struct {
    int zero;           /* ZeRO-1 active (requested and more than one rank) */
    int rank, size;
    DistTensor *t;
    int nt;
    size_t total;       /* trainable elements */
    size_t *lo;         /* size + 1 shard bounds */
    ModelParam *views;  /* ZeRO: this rank's shard as pieces of tensors */
    int nviews;
    float *buf;         /* communication bucket */
    size_t bucket;      /* floats per rank per bucket */
    double comm_s;      /* seconds in gradient/weight collectives (transfer) */
    double wait_s;      /* seconds waiting for the slowest rank before them */
} TrainDist;

/* zero: 1 = shard the optimizer state (ignored with one rank). */
void train_dist_init(TrainDist *d, const ModelParam *params, int nparams, int zero);
void train_dist_free(TrainDist *d);

/* The optimizer this rank holds: over every trainable tensor, or (ZeRO) over
 * its shard only. */
AdamW *train_dist_new_opt(TrainDist *d, const ModelParam *params, int nparams, const AdamWConfig *cfg);

/* Sums the gradients over ranks (ZeRO: only this rank's shard ends up summed,
 * the rest is cleared), then clips them to max_norm by the global norm.
 * Returns the norm before clipping, the same on every rank. */
double train_dist_grads(TrainDist *d, ModelParam *params, int nparams, double max_norm);

/* The AdamW step (gradients cleared after it); ZeRO: of this rank's shard,
 * then every rank receives the updated weights of the others. */
int train_dist_step(TrainDist *d, AdamW *opt, ModelParam *params, int nparams, double lr, OprmError *err);

/* Checkpoints hold the whole optimizer state whatever the rank count, so a
 * run resumes with any number of ranks. ZeRO: collective; rank 0 gets a
 * fresh full AdamW (free it), the others NULL. Without ZeRO: returns opt. */
AdamW *train_dist_full_opt(TrainDist *d, AdamW *opt, const ModelParam *params, int nparams);
/* ZeRO resume: copies this rank's shard out of a full state. */
void train_dist_take_shard(TrainDist *d, const AdamW *full, AdamW *shard);

/* Bytes of optimizer state (m and v) this rank holds. */
size_t train_dist_opt_bytes(const AdamW *opt);

#endif
