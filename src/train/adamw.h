/* AdamW over the engine's parameters (fp32 master weights), step for step the
 * algorithm of torch.optim.AdamW (torch 1.13, amsgrad off, not maximize):
 *   p -= lr * wd * p                      (decoupled weight decay, first)
 *   m  = beta1 * m + (1 - beta1) * g
 *   v  = beta2 * v + (1 - beta2) * g * g
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * with t the 1-based step count, elementwise in float32 like PyTorch.
 * Weight decay applies only to tensors adamw_param_decays() accepts (the HF
 * Trainer convention: no decay for biases and normalisation weights).
 * Tensors whose grad is NULL (frozen) have no state and are never touched. */
#ifndef OPRM_TRAIN_ADAMW_H
#define OPRM_TRAIN_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "util/err.h"

typedef struct {
    double beta1, beta2, eps, weight_decay;
} AdamWConfig;

/* Moments for one trainable tensor. */
typedef struct {
    char *name;
    size_t numel;
    int decay; /* 1 = weight decay applies */
    float *m, *v;
} AdamWSlot;

typedef struct {
    AdamWConfig cfg;
    int64_t step; /* optimizer steps taken */
    int nslots;
    AdamWSlot *slots;
} AdamW;

/* 1 if a tensor of this name gets weight decay: not when its name ends in
 * "bias" or contains "norm" (input_layernorm, post_attention_layernorm,
 * model.norm, q_norm, k_norm). */
int adamw_param_decays(const char *name);

/* One slot per parameter with grad != NULL, in order; moments start at 0. */
AdamW *adamw_new(const ModelParam *params, int nparams, const AdamWConfig *cfg);
void adamw_free(AdamW *opt);

/* One update with learning rate lr of every trainable tensor. Fails if params
 * do not match the tensors the optimizer was made for (name or size). */
int adamw_step(AdamW *opt, ModelParam *params, int nparams, double lr, OprmError *err);
/* adamw_step, then every trainable gradient is zero (cleared in the same pass
 * over memory, cheaper than model_zero_grad after the step). Call it only
 * where the gradients are no longer needed: after the last micro-batch of an
 * accumulated step. Parameters and moments are bitwise those of adamw_step. */
int adamw_step_zero_grad(AdamW *opt, ModelParam *params, int nparams, double lr, OprmError *err);

/* sqrt(sum of squared gradient elements) over trainable tensors, summed in
 * double in a fixed order (the result does not depend on the thread count). */
double grad_global_norm(const ModelParam *params, int nparams);
/* The sum under that root, the same double: the tensors' sums added in order,
 * so a list split in two (engine tensors, then the BT head) adds up to it. */
double grad_sum_squares(const ModelParam *params, int nparams);

/* torch.nn.utils.clip_grad_norm_: scales every gradient by
 * min(1, max_norm / (norm + 1e-6)) and returns the norm before clipping.
 * max_norm <= 0 only measures. A non-finite norm is returned unscaled. */
double clip_grad_norm(ModelParam *params, int nparams, double max_norm);

/* g *= scale for every trainable tensor (e.g. 1/accumulation_steps). */
void grads_scale(ModelParam *params, int nparams, float scale);

/* Optimizer state file (see docs/training.md, "optimizer.bin"): header with
 * step, config and per-tensor name/size, then m and v as little-endian fp32,
 * then an FNV-1a 64 checksum of everything before it. Written in one stream
 * (no whole copy in memory), fsynced. adamw_load checks magic, version,
 * checksum and that every tensor matches opt by name, size and order. */
int adamw_save(const AdamW *opt, const char *path, OprmError *err);
int adamw_load(AdamW *opt, const char *path, OprmError *err);

#endif
