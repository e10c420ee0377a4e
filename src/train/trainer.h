/* The training loop of `oprm train`: records -> scoring prompts -> packed
 * forward -> digit logits -> OPRM/RgFT (or Bradley-Terry) loss -> backward ->
 * AdamW, with checkpoints, resume, eval, a JSONL log and a progress bar.
 * Details (batching, data stream, label fraction, BT head file, exact
 * resume) in docs/training.md, "The training loop". */
#ifndef OPRM_TRAIN_TRAINER_H
#define OPRM_TRAIN_TRAINER_H

#include <stdint.h>

#include "data/record.h"
#include "engine/engine.h"
#include "model/model.h"
#include "ordinal/rgft.h"
#include "train/schedule.h"
#include "util/err.h"

#define TRAIN_MAX_DATA_FILES 16
#define TRAIN_LOG_FILE "train_log.jsonl"
#define BT_HEAD_FILE "bt_head.safetensors"
/* LoRA runs: the PEFT adapter beside the merged weights (DIR/adapter/). */
#define LORA_ADAPTER_DIR "adapter"
#define BT_HEAD_TENSOR "score.weight"

typedef enum { TRAIN_LOSS_OPRM = 0, TRAIN_LOSS_BT = 1 } TrainLoss;

typedef struct TrainConfig TrainConfig;

/* The settings a run records (oprm.json "training_args", the chat format and
 * scoring template) and a resumed run takes back from it: one bit each in
 * TrainConfig.unset. */
typedef enum {
    TRAIN_SET_MODEL, TRAIN_SET_DATA, TRAIN_SET_LEARNING_RATE, TRAIN_SET_EPOCHS, TRAIN_SET_MAX_STEPS,
    TRAIN_SET_BATCH_SIZE, TRAIN_SET_GRAD_ACCUM, TRAIN_SET_MAX_LENGTH, TRAIN_SET_WARMUP_STEPS, TRAIN_SET_WARMUP_RATIO,
    TRAIN_SET_SCHEDULER, TRAIN_SET_WEIGHT_DECAY, TRAIN_SET_MAX_GRAD_NORM, TRAIN_SET_SEED, TRAIN_SET_ADAM_BETA1,
    TRAIN_SET_ADAM_BETA2, TRAIN_SET_ADAM_EPSILON, TRAIN_SET_LOSS, TRAIN_SET_RGFT_MODE, TRAIN_SET_RGFT_HALFWIDTH,
    TRAIN_SET_RGFT_FLOOR, TRAIN_SET_LABEL_FRACTION, TRAIN_SET_LORA_RANK, TRAIN_SET_LORA_ALPHA, TRAIN_SET_LORA_TARGETS,
    TRAIN_SET_CHAT_FORMAT, TRAIN_SET_TEMPLATE, TRAIN_SET_GRADIENT_CHECKPOINTING, TRAIN_SET_COUNT
} TrainSetting;
#define TRAIN_SET_BIT(s) (UINT64_C(1) << (s))
#define TRAIN_SET_ALL (TRAIN_SET_BIT(TRAIN_SET_COUNT) - 1)

/* Called after every completed optimizer step (after its log line and any
 * checkpoint of that step). Tests use it to raise SIGINT, poison weights or
 * limit file sizes. Returning non-zero stops the run like Ctrl-C. model is
 * the host Model; with a device-parameter engine (CUDA) its weights are only
 * the image of the last checkpoint, and changing them changes nothing. */
typedef int (*TrainStepHook)(void *ctx, int64_t step, void *model);

struct TrainConfig {
    const char *model_dir;
    const char *data[TRAIN_MAX_DATA_FILES];
    int n_data;
    const char *eval_data; /* NULL = none */
    const char *output_dir;
    DataOptions data_opt;

    double learning_rate;     /* 1e-5 */
    double num_train_epochs;  /* 1 (used when max_steps <= 0) */
    int64_t max_steps;        /* 0 = from epochs */
    int batch_size;           /* records per micro-batch (per_device_train_batch_size), 8 */
    int grad_accum;           /* micro-batches per optimizer step, 1 */
    int max_length;           /* tokens per scoring prompt; 0 = min(1024, max_position_embeddings) */
    int64_t warmup_steps;     /* 0 */
    double warmup_ratio;      /* 0 */
    SchedKind scheduler;      /* linear */
    double weight_decay;      /* 0 */
    double max_grad_norm;     /* 1.0 (<= 0: no clipping) */
    uint64_t seed;            /* 42 */
    int threads;              /* 0 = all cores */
    Device device;            /* where the engine trains: cpu (the default) or cuda:N (--device) */
    int gradient_checkpointing; /* recompute each layer's activations in backward (EngineOptions.recompute;
                                   the CPU engine keeps them all and ignores it) */
    int no_prefix_sharing;    /* 1: compute each sequence's prompt again (--no-prefix-sharing) */
    double adam_beta1, adam_beta2, adam_epsilon; /* 0.9, 0.999, 1e-8 */
    int64_t logging_steps;    /* 1 */
    int64_t eval_steps;       /* 0 = only at start and end */
    int64_t save_steps;       /* 500; 0 = no intermediate checkpoints */
    int save_total_limit;     /* 0 = keep all */
    const char *resume;       /* NULL = fresh; "latest" or a checkpoint dir */
    /* Resume: the settings left unset (bits TRAIN_SET_BIT(TrainSetting)) are
     * taken from the run; a set one that contradicts the run is refused
     * (a larger max_steps / num_train_epochs extends it). 0 = every setting
     * counts as set (callers then repeat the run's settings). */
    uint64_t unset;
    int overwrite_output_dir; /* start over in an output dir that holds a run */

    TrainLoss loss;
    int rgft_enabled;         /* 0 with --rgft-mode none: labels ignored */
    RgftConfig rgft;
    double label_fraction;    /* 1 = keep every label */

    const char *chat_format;  /* NULL = from the tokenizer */
    const char *template_path;/* NULL = built-in scoring template */
    int lora_rank;            /* 0 = full fine-tuning */
    int bf16;                 /* mixed precision: BF16 GEMMs, fp32 master weights and AdamW */
    double lora_alpha;        /* 0 = 2 x rank */
    const char *lora_targets; /* NULL = all-linear */

    int zero;                 /* 1: ZeRO-1, the AdamW state sharded over MPI ranks [0] */
    int dataloader_num_workers; /* 0: build batches inline; >= 1: one prefetch thread [1] */
    int progress;             /* -1 auto (isatty(stderr)), 0 off, 1 on */
    int quiet;                /* no per-step lines on a non-terminal */

    TrainStepHook hook;       /* tests */
    void *hook_ctx;
    /* Tests: called once per optimizer step with the accumulated gradients
     * (every micro-batch of the step, before clipping); params are the
     * trainable tensors (the BT head last with --loss bt). Only with an
     * engine that keeps its parameters on the host (the CPU engine): a
     * device's gradients never come to the host. */
    void (*grad_hook)(void *ctx, int64_t step, const ModelParam *params, int n);
    /* Tests: builds the training engine on the host model in place of
     * engine_from_model (tests/engine_sim.h: a device-parameter engine
     * simulated on the CPU). ctx = engine_ctx. */
    Engine *(*make_engine)(void *ctx, Model *m, const EngineOptions *opt, OprmError *err);
    void *engine_ctx;
};

void train_config_default(TrainConfig *c);

typedef struct {
    int64_t steps;             /* optimizer steps completed (global) */
    double first_loss, last_loss;
    double eval_loss_start, eval_loss_end; /* NaN when no eval data */
    double eval_acc_start, eval_acc_end;
    int64_t truncated;         /* scoring prompts cut to max_length (whole run) */
    int64_t contradictions;    /* pairs skipped: labels contradict the preference */
    double tokens_per_s;       /* training tokens per second of step time */
    double tokenize_s, step_s; /* time building prompts; whole step time (prompts included) */
    double engine_s;           /* forward + loss + backward time */
    double wait_s;             /* time the loop waited for batches (inline building or prefetch) */
    int64_t tokens;            /* tokens trained on in this process */
    int interrupted;           /* signal number that stopped the run, 0 if none */
} TrainResult;

/* Runs training. Resuming a run that has already trained every planned
 * step prints so, changes nothing and returns 0 (result->steps = its step).
 * Returns 0 on success, 1 on a runtime error (err set: bad
 * data, NaN loss, failed save, ...), 130/143 when stopped by SIGINT/SIGTERM
 * (or a hook) after saving a checkpoint. result may be NULL. */
int train_run(const TrainConfig *cfg, TrainResult *result, OprmError *err);

/* Checks the numeric settings (learning rate > 0, batch >= 1, ...); returns
 * -1 with a message naming the flag. The CLI maps this to exit 2. */
int train_config_check(const TrainConfig *cfg, OprmError *err);

#endif
