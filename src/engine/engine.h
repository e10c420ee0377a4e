/* The engine seam: the one interface the rest of oprm scores through.
 *
 * An Engine is a model placed on a device. It runs a packed SeqBatch forward
 * to the final-normed hidden state at each sequence's LAST position, then the
 * few LM-head rows a head reads (the nine digit rows of the OPRM head). Two
 * implementations sit behind it: the CPU engine (src/model, wrapped as is) and
 * the CUDA engine (src/cuda, only in builds with the CUDA toolkit). Callers
 * (eval, serve, cli) include only this header, never a CUDA one.
 *
 * Training (issue 14) is on the same interface: a training engine is built
 * with EngineOptions.train = 1 by engine_from_model on the host Model the
 * trainer set up (full fine-tuning, or LoRA with its adapters); see the
 * "Training" section at the end. */
#ifndef OPRM_ENGINE_ENGINE_H
#define OPRM_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/device.h"
#include "model/model.h"
#include "util/err.h"

typedef struct Engine Engine;

typedef struct {
    Device device;             /* where to run (device_choose fills a default) */
    int threads;               /* CPU: OpenMP/OpenBLAS threads, 0 = all cores */
    int max_tokens_per_batch;  /* the most tokens one forward will get (CUDA sizes its buffers by it) */
    int train;                 /* 1 = keep what backward needs; trainable tensors get gradients */
    int bf16;                  /* CPU: frozen BF16 weights and BF16 GEMMs (--weights bf16) */
    int recompute;             /* train: recompute each layer's activations in backward
                                  (--gradient_checkpointing); CPU ignores it (keeps all) */
} EngineOptions;

/* Loads a Hugging Face model directory onto opt->device. The CPU engine keeps
 * exactly what model_load(dir, NULL) gives (fp32, as before); the CUDA engine
 * holds the weights in BF16 on the GPU. */
Engine *engine_load(const char *dir, const EngineOptions *opt, OprmError *err);
/* An engine on the weights of an existing CPU model (random-weight checks and
 * benchmarks compare devices on the same weights). CPU: borrows m (not freed by
 * engine_free); CUDA: copies the weights to the GPU, m may be freed afterwards. */
Engine *engine_from_model(Model *m, const EngineOptions *opt, OprmError *err);
void engine_free(Engine *e);

const ModelConfig *engine_config(const Engine *e);
Device engine_device(const Engine *e);
/* "cpu (2 threads)", "cuda:0 NVIDIA H200 (139.8 GiB)": for the line printed on stderr. */
const char *engine_describe(const Engine *e);

/* Forward of b. h_last (host, [nseq * hidden], may be NULL) receives the
 * final-normed hidden state of each sequence's last position; the engine keeps
 * it (on its device) for engine_head_rows. A batch over the engine's
 * max_tokens_per_batch is an error naming the flag. */
int engine_forward(Engine *e, const SeqBatch *b, float *h_last, OprmError *err);
/* engine_forward that keeps nothing for backward (evaluation during training,
 * like torch.no_grad()): h_last and engine_head_rows as after engine_forward;
 * engine_backward / engine_head_backward after it refuse. The CPU engine runs
 * model_forward(train = 0), exactly what scoring computes; other engines run
 * their forward (the entry sits in struct Engine, not in EngineOps, so the
 * vtable's positional initialisers stay as they are). */
int engine_forward_eval(Engine *e, const SeqBatch *b, float *h_last, OprmError *err);
/* logits[s * nrows + k] = h_last[s] . W_lm_head[rows[k]] for the last forward
 * (fp32 on every device). */
int engine_head_rows(Engine *e, const int32_t *rows, int nrows, float *logits, OprmError *err);
/* Backward from dL/dh_last [nseq * hidden] (host) of the last forward (made
 * with train = 1); ACCUMULATES into every trainable tensor's gradient. */
int engine_backward(Engine *e, const float *dh_last, OprmError *err);
/* Backward from dL/dlogits [nseq * nrows] (host) of the last engine_head_rows:
 * accumulates the gradient of the head rows (when lm_head is trainable), then
 * runs engine_backward from dh_last = sum_k dlogits[s,k] W_lm_head[rows[k]]. */
int engine_head_backward(Engine *e, const int32_t *rows, int nrows, const float *dlogits, OprmError *err);

/* The CPU model behind a CPU engine (NULL for other devices): for code that
 * still needs src/model directly (the trainer). */
Model *engine_cpu_model(Engine *e);

/* ---- Training ----
 * The trainable tensors are those of model_params(m) with grad != NULL, in
 * that order (m: the host Model given to engine_from_model). Two kinds of
 * engine hold them differently:
 *  - host parameters (CPU engine): data and grad are m's own host arrays; the
 *    trainer clips, all-reduces (src/dist) and steps them itself
 *    (src/train/adamw.c). The calls below that act on device state refuse.
 *  - device parameters (CUDA engine): fp32 master weights, fp32 gradients and
 *    fp32 AdamW moments live on the device (BF16 copies for the matmuls,
 *    llm.c's arrangement); the trainer drives them with the calls below and
 *    m's host arrays are only the checkpoint image, refreshed by
 *    engine_params_download. */
int engine_params_on_host(const Engine *e);

/* Sum of squares of every trainable gradient element (fp64 result). */
int engine_grad_sqnorm(Engine *e, double *sqnorm, OprmError *err);

/* One AdamW update of every trainable tensor, torch.optim.AdamW's algorithm
 * exactly as src/train/adamw.h states it (decoupled decay first, bias
 * correction with the 1-based step), after multiplying the gradients by
 * grad_scale (the clip factor); the gradients are zero afterwards.
 * decay[i] (per trainable tensor, in order) says whether weight decay applies. */
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    int64_t step;     /* 1-based: the optimizer steps taken including this one */
    double grad_scale;
    const int *decay;
} EngineAdamWStep;
int engine_adamw_step(Engine *e, const EngineAdamWStep *s, OprmError *err);
void engine_zero_grad(Engine *e);

/* Device parameters <-> host, for checkpoints: the master weights into each
 * trainable params[i].data (params: m's model_params with grad != NULL, in
 * order; n of them) and, where m1/v1 are not NULL, the AdamW moments into
 * m1[i], v1[i] (params[i].numel floats each). Upload is the reverse (resume).
 * Host-parameter engines: a no-op returning 0. */
int engine_params_download(Engine *e, ModelParam *params, int n, float *const *m1, float *const *v1, OprmError *err);
int engine_params_upload(Engine *e, const ModelParam *params, int n, const float *const *m1, const float *const *v1,
                         OprmError *err);

/* The vtable each implementation fills (engine_cpu.c, src/cuda/engine_cuda.cu). */
typedef struct {
    int (*forward)(void *impl, const SeqBatch *b, float *h_last, OprmError *err);
    int (*head_rows)(void *impl, const int32_t *rows, int nrows, float *logits, OprmError *err);
    int (*backward)(void *impl, const float *dh_last, OprmError *err);
    void (*free)(void *impl);
    /* training; NULL where the engine has none */
    int (*head_backward)(void *impl, const int32_t *rows, int nrows, const float *dlogits, OprmError *err);
    int params_on_host;
    int (*grad_sqnorm)(void *impl, double *sq, OprmError *err);
    int (*adamw_step)(void *impl, const EngineAdamWStep *s, OprmError *err);
    void (*zero_grad)(void *impl);
    int (*params_download)(void *impl, ModelParam *p, int n, float *const *m1, float *const *v1, OprmError *err);
    int (*params_upload)(void *impl, const ModelParam *p, int n, const float *const *m1, const float *const *v1,
                         OprmError *err);
} EngineOps;

#endif
