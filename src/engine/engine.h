/* The engine seam: the one interface the rest of oprm scores through.
 *
 * An Engine is a model placed on a device. It runs a packed SeqBatch forward
 * to the final-normed hidden state at each sequence's LAST position, then the
 * few LM-head rows a head reads (the nine digit rows of the OPRM head). Two
 * implementations sit behind it: the CPU engine (src/model, wrapped as is) and
 * the CUDA engine (src/cuda, only in builds with the CUDA toolkit). Callers
 * (eval, serve, cli) include only this header, never a CUDA one.
 *
 * Training is not on this interface yet (the trainer still drives src/model
 * directly); engine_backward is its reserved entry: the CPU engine passes it
 * through to model_backward, the CUDA engine refuses it until part 2. */
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
    int train;                 /* reserved: 1 = keep what backward needs (CPU only for now) */
    int bf16;                  /* CPU: frozen BF16 weights and BF16 GEMMs (--weights bf16) */
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
/* logits[s * nrows + k] = h_last[s] . W_lm_head[rows[k]] for the last forward
 * (fp32 on every device). */
int engine_head_rows(Engine *e, const int32_t *rows, int nrows, float *logits, OprmError *err);
/* Reserved for training on the engine: dL/dh_last of the last forward. */
int engine_backward(Engine *e, const float *dh_last, OprmError *err);

/* The CPU model behind a CPU engine (NULL for other devices): for code that
 * still needs src/model directly (the trainer). */
Model *engine_cpu_model(Engine *e);

/* The vtable each implementation fills (engine_cpu.c, src/cuda/engine_cuda.cu). */
typedef struct {
    int (*forward)(void *impl, const SeqBatch *b, float *h_last, OprmError *err);
    int (*head_rows)(void *impl, const int32_t *rows, int nrows, float *logits, OprmError *err);
    int (*backward)(void *impl, const float *dh_last, OprmError *err);
    void (*free)(void *impl);
} EngineOps;

#endif
