/* oprm train: flags (TRL / OpenRLHF names; the options table of
 * src/cli/options.h) -> TrainConfig -> train_run. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "cli/device_flag.h"
#include "cli/options.h"
#include "cli/score_args.h"
#include "data/flags.h"
#include "dist/dist.h"
#include "train/trainer.h"

static const char USAGE[] =
    "usage: oprm train --model DIR --data FILE [--data FILE2 ...] --output DIR [options]\n"
    "       oprm train --resume [latest|DIR] --output DIR [flags that extend the run]\n\n"
    "Trains an ordinal probabilistic reward model (or the Bradley-Terry baseline) on\n"
    "preference pairs, optionally labelled (RgFT), and point-wise labelled responses.\n"
    "Writes OUTPUT/checkpoint-STEP/ every --save_steps, the final model into OUTPUT\n"
    "itself, and the metrics log OUTPUT/train_log.jsonl. Ctrl-C saves a checkpoint\n"
    "(exit 130); --resume continues exactly where it stopped, with every training\n"
    "setting taken from the run (a flag that contradicts the run is refused; a larger\n"
    "--max_steps or --num_train_epochs extends it; a finished run is left untouched).\n\n";

#define TAG(s) ((s) + 1) /* Option.tag: the TrainSetting a row sets, 0 = none */

static int parse_loss(void *ctx, const char *flag, const char *v) {
    TrainConfig *c = ctx;
    if (!strcmp(v, "oprm")) c->loss = TRAIN_LOSS_OPRM;
    else if (!strcmp(v, "bt")) c->loss = TRAIN_LOSS_BT;
    else {
        fprintf(stderr, "oprm train: %s must be oprm or bt, got '%s'\n", flag, v);
        return -1;
    }
    return 0;
}

static int parse_rgft_mode(void *ctx, const char *flag, const char *v) {
    TrainConfig *c = ctx;
    OprmError err = {{0}};
    if (!strcmp(v, "none")) {
        c->rgft_enabled = 0;
        return 0;
    }
    if (rgft_parse_mode(v, &c->rgft.mode, &err)) {
        fprintf(stderr, "oprm train: %s must be triangle, hard or none: %s\n", flag, err.msg);
        return -1;
    }
    c->rgft_enabled = 1;
    return 0;
}

static int parse_scheduler(void *ctx, const char *flag, const char *v) {
    TrainConfig *c = ctx;
    OprmError err = {{0}};
    if (schedule_kind_parse(v, &c->scheduler, &err)) {
        fprintf(stderr, "oprm train: %s: %s\n", flag, err.msg);
        return -1;
    }
    return 0;
}

/* transformers' booleans: --flag alone, or --flag true|false (1|0, yes|no). */
static int parse_bool(void *ctx, const char *flag, const char *v) {
    int *dst = ctx;
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")) *dst = 1;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")) *dst = 0;
    else {
        fprintf(stderr, "oprm train: %s must be true or false, got '%s'\n", flag, v);
        return -1;
    }
    return 0;
}

/* seed: --seed is parsed as int64 and stored into the config's uint64 after. */
static void add_rows(Options *o, TrainConfig *c, int64_t *seed) {
    options_section(o, "Model and data:");
    options_add(o, OPT(OPT_NAMES_MODEL, "DIR", "Hugging Face model directory to start from [resume: the run's]",
                            OPT_STRING, &c->model_dir, .tag = TAG(TRAIN_SET_MODEL)));
    options_add(o, OPT(OPT_NAMES_DATA, "FILE", "training data (repeat for several files) [resume: the run's]",
                            OPT_LIST, c->data, .ival = TRAIN_MAX_DATA_FILES, .count = &c->n_data,
                            .tag = TAG(TRAIN_SET_DATA)));
    options_add(o, OPT("--eval-data", "FILE", "evaluated at the start, every --eval_steps and at the end",
                            OPT_STRING, &c->eval_data));
    options_add(o, OPT(OPT_NAMES_OUTPUT, "DIR", "where checkpoints and the final model go", OPT_STRING,
                            &c->output_dir));
    options_add(o, OPT(OPT_NAMES_MAX_LEN, "N",
                            "tokens per scoring prompt; longer ones are truncated (spec §6)\n"
                            "and counted [min(1024, max_position_embeddings); above it is refused]",
                            OPT_INT, &c->max_length, 16, INT_MAX, .tag = TAG(TRAIN_SET_MAX_LENGTH)));
    options_add(o, OPT(OPT_NAMES_CHAT_FORMAT, "NAME", "chatml|llama3|llama2|mistral|plain [from the tokenizer]",
                            OPT_STRING, &c->chat_format, .tag = TAG(TRAIN_SET_CHAT_FORMAT)));
    options_add(o, OPT(OPT_NAMES_TEMPLATE, "FILE", "scoring template file [built-in]", OPT_STRING,
                            &c->template_path, .tag = TAG(TRAIN_SET_TEMPLATE)));
    options_section(o, "Optimisation:");
    options_add(o, OPT("--learning_rate|--lr", "X", "[1e-5]", OPT_DOUBLE, &c->learning_rate, -HUGE_VAL, HUGE_VAL,
                            .tag = TAG(TRAIN_SET_LEARNING_RATE)));
    options_add(o, OPT("--num_train_epochs|--epochs", "X", "[1] (used when --max_steps is not given)", OPT_DOUBLE,
                            &c->num_train_epochs, -HUGE_VAL, HUGE_VAL, .tag = TAG(TRAIN_SET_EPOCHS)));
    options_add(o, OPT("--max_steps", "N", "optimizer steps [from epochs]", OPT_I64, &c->max_steps, -9.3e18, 9.3e18,
                            .tag = TAG(TRAIN_SET_MAX_STEPS)));
    options_add(o, OPT("--per_device_train_batch_size|--batch-size|--micro_train_batch_size", "N",
                            "records per micro-batch [8]", OPT_INT, &c->batch_size, INT_MIN, INT_MAX,
                            .tag = TAG(TRAIN_SET_BATCH_SIZE)));
    options_add(o, OPT("--gradient_accumulation_steps", "N", "micro-batches per optimizer step [1]", OPT_INT,
                            &c->grad_accum, INT_MIN, INT_MAX, .tag = TAG(TRAIN_SET_GRAD_ACCUM)));
    options_add(o, OPT("--lr_scheduler_type", "T", "constant|linear|cosine [linear]", OPT_CUSTOM,
                            .parse = parse_scheduler, .ctx = c, .tag = TAG(TRAIN_SET_SCHEDULER)));
    options_add(o, OPT("--warmup_steps", "N", "linear warmup steps [0]", OPT_I64, &c->warmup_steps, -9.3e18, 9.3e18,
                            .tag = TAG(TRAIN_SET_WARMUP_STEPS)));
    options_add(o, OPT("--warmup_ratio", "X", "linear warmup as a fraction of the steps [0]", OPT_DOUBLE,
                            &c->warmup_ratio, -HUGE_VAL, HUGE_VAL, .tag = TAG(TRAIN_SET_WARMUP_RATIO)));
    options_add(o, OPT("--weight_decay", "X", "[0]", OPT_DOUBLE, &c->weight_decay, -HUGE_VAL, HUGE_VAL,
                            .tag = TAG(TRAIN_SET_WEIGHT_DECAY)));
    options_add(o, OPT("--max_grad_norm", "X", "clipping, 0 = off [1.0]", OPT_DOUBLE, &c->max_grad_norm,
                            -HUGE_VAL, HUGE_VAL, .tag = TAG(TRAIN_SET_MAX_GRAD_NORM)));
    options_add(o, OPT("--adam_beta1", "X", "[0.9]", OPT_DOUBLE, &c->adam_beta1, -HUGE_VAL, HUGE_VAL,
                            .tag = TAG(TRAIN_SET_ADAM_BETA1)));
    options_add(o, OPT("--adam_beta2", "X", "[0.999]", OPT_DOUBLE, &c->adam_beta2, -HUGE_VAL, HUGE_VAL,
                            .tag = TAG(TRAIN_SET_ADAM_BETA2)));
    options_add(o, OPT("--adam_epsilon", "X", "[1e-8]", OPT_DOUBLE, &c->adam_epsilon, -HUGE_VAL, HUGE_VAL,
                            .tag = TAG(TRAIN_SET_ADAM_EPSILON)));
    options_add(o, OPT("--seed", "N", "data order, label fraction, BT head init [42]", OPT_I64, seed,
                            -9.3e18, 9.3e18, .tag = TAG(TRAIN_SET_SEED)));
    options_add(o, OPT(OPT_NAMES_THREADS, "N", "engine threads, 0 = all cores [0]", OPT_INT, &c->threads, INT_MIN,
                            INT_MAX));
    /* The flag parser of every command; the train default stays cpu (a GPU is used when asked for). */
    static DeviceFlag train_device_flag;
    train_device_flag = (DeviceFlag){"train", &c->device, 0};
    options_add(o, OPT(OPT_NAMES_DEVICE, "D",
                            "cpu, cuda or cuda:N: where the engine trains (a GPU keeps\n"
                            "weights, gradients and AdamW state; same checkpoints) [cpu]",
                            OPT_CUSTOM, .parse = device_flag_parse, .ctx = &train_device_flag));
    options_add(o, OPT("--gradient_checkpointing", "BOOL",
                            "recompute each layer's activations in backward: less GPU\n"
                            "memory, same results; no effect on the CPU [false]",
                            OPT_CUSTOM, .parse = parse_bool, .ctx = &c->gradient_checkpointing,
                            .optional_value = "true", .tag = TAG(TRAIN_SET_GRADIENT_CHECKPOINTING)));
    options_add(o, OPT("--bf16", NULL,
                            "mixed precision: BF16 matmuls (fp32 accumulation), fp32\n"
                            "master weights and optimizer; needs avx512_bf16, else fp32\n"
                            "with a notice [off]",
                            OPT_FLAG, &c->bf16, .ival = 1));
    options_add(o, OPT(OPT_NAMES_NO_PREFIX_SHARING, NULL,
                            "compute a pair's common prompt once per sequence instead\n"
                            "of once per pair (same results; docs/engine.md) [shared]",
                            OPT_FLAG, &c->no_prefix_sharing, .ival = 1));
    options_add(o, OPT("--zero", "1", "ZeRO-1 under mpirun: shard the AdamW state over ranks [0]", OPT_INT, &c->zero, 0, 1));
    options_add(o, OPT("--dataloader_num_workers", "N",
                            "0: build batches inline; 1: prefetch the next step's\n"
                            "batches in a thread while the engine runs [1]",
                            OPT_INT, &c->dataloader_num_workers, INT_MIN, INT_MAX));
    options_section(o, "Loss:");
    options_add(o, OPT("--loss", "oprm|bt", "ordinal pair loss or the Bradley-Terry baseline [oprm]", OPT_CUSTOM,
                            .parse = parse_loss, .ctx = c, .tag = TAG(TRAIN_SET_LOSS)));
    options_add(o, OPT("--rgft-mode", "MODE", "triangle|hard|none: how quality labels weight the loss [triangle]",
                            OPT_CUSTOM, .parse = parse_rgft_mode, .ctx = c, .tag = TAG(TRAIN_SET_RGFT_MODE)));
    options_add(o, OPT("--rgft-halfwidth", "H", "triangle half-width [3]", OPT_DOUBLE, &c->rgft.halfwidth,
                            -HUGE_VAL, HUGE_VAL, .tag = TAG(TRAIN_SET_RGFT_HALFWIDTH)));
    options_add(o, OPT("--rgft-floor", "EPS", "landscape floor [0.01]", OPT_DOUBLE, &c->rgft.floor, -HUGE_VAL,
                            HUGE_VAL, .tag = TAG(TRAIN_SET_RGFT_FLOOR)));
    options_add(o, OPT("--label-fraction", "F", "keep labels of a seeded fraction F of the pairs [1]", OPT_DOUBLE,
                            &c->label_fraction, -HUGE_VAL, HUGE_VAL, .tag = TAG(TRAIN_SET_LABEL_FRACTION)));
    options_section(o, "LoRA (the base stays frozen in its stored precision, F32 or BF16):");
    options_add(o, OPT(OPT_NAMES_LORA_R, "N", "adapter rank, 0 = full fine-tuning [0]", OPT_INT, &c->lora_rank,
                            INT_MIN, INT_MAX, .tag = TAG(TRAIN_SET_LORA_RANK)));
    options_add(o, OPT(OPT_NAMES_LORA_ALPHA, "X", "scaling alpha/rank [2 x rank]", OPT_DOUBLE, &c->lora_alpha,
                            -HUGE_VAL, HUGE_VAL, .tag = TAG(TRAIN_SET_LORA_ALPHA)));
    options_add(o, OPT(OPT_NAMES_LORA_TARGETS, "LIST",
                            "all-linear or PEFT module names q_proj,k_proj,v_proj,o_proj,\n"
                            "gate_proj,up_proj,down_proj (or q,k,v,...) [all-linear];\n"
                            "saves merged weights + DIR/adapter/ (PEFT)",
                            OPT_STRING, &c->lora_targets, .tag = TAG(TRAIN_SET_LORA_TARGETS)));
    options_section(o, "Logging and checkpoints:");
    options_add(o, OPT("--logging_steps", "N", "[1]", OPT_I64, &c->logging_steps, -9.3e18, 9.3e18));
    options_add(o, OPT("--eval_steps", "N", "0 = only at start and end [0]", OPT_I64, &c->eval_steps, -9.3e18,
                            9.3e18));
    options_add(o, OPT("--save_steps", "N", "0 = no intermediate checkpoints [500]", OPT_I64, &c->save_steps,
                            -9.3e18, 9.3e18));
    options_add(o, OPT("--save_total_limit", "N", "keep at most N checkpoints, 0 = all [0]", OPT_INT,
                            &c->save_total_limit, INT_MIN, INT_MAX));
    options_add(o, OPT("--resume|--resume_from_checkpoint", "latest|DIR",
                            "continue a run from OUTPUT's latest checkpoint or DIR", OPT_STRING, &c->resume,
                            .optional_value = "latest"));
    options_add(o, OPT("--overwrite_output_dir", NULL, "start over in an OUTPUT that already holds a run", OPT_FLAG,
                            &c->overwrite_output_dir, .ival = 1));
    options_add(o, OPT(OPT_NAMES_NO_PROGRESS, NULL, "no progress bar", OPT_FLAG, &c->progress, .ival = 0));
    options_add(o, OPT("--quiet", NULL, "no progress bar, no per-step lines", OPT_FLAG, &c->quiet, .ival = 1));
}

int cmd_train(int argc, char **argv) {
    TrainConfig c;
    train_config_default(&c);
    int64_t seed = (int64_t)c.seed;
    Options o;
    options_init(&o, "train");
    o.usage = USAGE;
    add_rows(&o, &c, &seed);
    DataFlagsCtx dctx = {"train", &c.data_opt};
    o.fallback = options_data_flags;
    o.fallback_ctx = &dctx;
    o.fallback_help = DATA_FLAGS_HELP;
    int prc = options_parse_or_help(&o, argc, argv);
    if (prc) return prc == OPTIONS_HELP ? EXIT_OK : EXIT_USAGE;
    c.seed = (uint64_t)seed;
    if (c.quiet) c.progress = 0;
    /* What the command line set; a resume takes the rest from the run. */
    c.unset = TRAIN_SET_ALL;
    for (int i = 0; i < o.n; i++)
        if (o.rows[i].tag && o.rows[i].seen) c.unset &= ~TRAIN_SET_BIT(o.rows[i].tag - 1);
    OprmError err = {{0}};
    if (!c.resume && train_config_check(&c, &err)) {
        fprintf(stderr, "oprm train: %s (see oprm train --help)\n", err.msg);
        return EXIT_USAGE;
    }
    TrainResult res;
    int rc = train_run(&c, &res, &err);
    if (rc == 1 && dist_rank() == 0) fprintf(stderr, "oprm train: %s\n", err.msg);
    return rc;
}
