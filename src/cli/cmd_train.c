/* oprm train: flags (TRL / OpenRLHF names, '-' or '_' spellings) -> TrainConfig -> train_run. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "data/flags.h"
#include "dist/dist.h"
#include "train/trainer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: oprm train --model DIR --data FILE [--data FILE2 ...] --output DIR [options]\n\n"
            "Trains an ordinal probabilistic reward model (or the Bradley-Terry baseline) on\n"
            "preference pairs, optionally labelled (RgFT), and point-wise labelled responses.\n"
            "Writes OUTPUT/checkpoint-STEP/ every --save_steps, the final model into OUTPUT\n"
            "itself, and the metrics log OUTPUT/train_log.jsonl. Ctrl-C saves a checkpoint\n"
            "(exit 130); --resume continues exactly where it stopped.\n\n"
            "Model and data:\n"
            "  --model DIR                       Hugging Face model directory to start from\n"
            "  --data FILE                       training data (repeat for several files)\n"
            "  --eval-data FILE                  evaluated at the start, every --eval_steps and at the end\n"
            "  --output DIR                      where checkpoints and the final model go\n"
            "  --max_length N (--max-len)        tokens per scoring prompt; longer ones are truncated\n"
            "                                    (spec §6) and counted [1024]\n"
            "  --chat-format NAME                chatml|llama3|llama2|mistral|plain [from the tokenizer]\n"
            "  --template FILE                   scoring template file [built-in]\n"
            "Optimisation:\n"
            "  --learning_rate X                 [1e-5]\n"
            "  --num_train_epochs X              [1] (used when --max_steps is not given)\n"
            "  --max_steps N                     optimizer steps [from epochs]\n"
            "  --per_device_train_batch_size N   records per micro-batch (--batch-size) [8]\n"
            "  --gradient_accumulation_steps N   micro-batches per optimizer step [1]\n"
            "  --lr_scheduler_type T             constant|linear|cosine [linear]\n"
            "  --warmup_steps N, --warmup_ratio X  linear warmup [0]\n"
            "  --weight_decay X                  [0]\n"
            "  --max_grad_norm X                 clipping, 0 = off [1.0]\n"
            "  --adam_beta1 X, --adam_beta2 X, --adam_epsilon X  [0.9, 0.999, 1e-8]\n"
            "  --seed N                          data order, label fraction, BT head init [42]\n"
            "  --threads N                       engine threads, 0 = all cores [0]\n"
            "  --zero 1                          ZeRO-1 under mpirun: shard the AdamW state over ranks [0]\n"
            "  --dataloader_num_workers N        0: build batches inline; 1: prefetch the next step's\n"
            "                                    batches in a thread while the engine runs [1]\n"
            "Loss:\n"
            "  --loss oprm|bt                    ordinal pair loss or the Bradley-Terry baseline [oprm]\n"
            "  --rgft-mode triangle|hard|none    how quality labels weight the loss [triangle]\n"
            "  --rgft-halfwidth H                triangle half-width [3]\n"
            "  --rgft-floor EPS                  landscape floor [0.01]\n"
            "  --label-fraction F                keep labels of a seeded fraction F of the pairs [1]\n"
            "LoRA (the base stays frozen in its stored precision, F32 or BF16):\n"
            "  --lora-rank N                     adapter rank, 0 = full fine-tuning [0]\n"
            "  --lora-alpha X                    scaling alpha/rank [2 x rank]\n"
            "  --lora-targets LIST               all-linear or q,k,v,o,gate,up,down [all-linear]\n"
            "                                    saves merged weights + DIR/adapter/ (PEFT)\n"
            "Logging and checkpoints:\n"
            "  --logging_steps N                 [1]\n"
            "  --eval_steps N                    0 = only at start and end [0]\n"
            "  --save_steps N                    0 = no intermediate checkpoints [500]\n"
            "  --save_total_limit N              keep at most N checkpoints, 0 = all [0]\n"
            "  --resume [latest|DIR]             continue a run from OUTPUT's latest checkpoint or DIR\n"
            "  --overwrite_output_dir            start over in an OUTPUT that already holds a run\n"
            "  --no-progress, --quiet            no progress bar; no per-step lines\n"
            "  -h, --help                        show this help\n\n"
            "%s",
            DATA_FLAGS_HELP);
}

/* "--learning-rate" and "--learning_rate" are the same flag. */
static int name_is(const char *arg, size_t n, const char *name) {
    if (strlen(name) != n) return 0;
    for (size_t i = 0; i < n; i++) {
        char a = arg[i] == '_' ? '-' : arg[i];
        char b = name[i] == '_' ? '-' : name[i];
        if (a != b) return 0;
    }
    return 1;
}

static int parse_double(const char *flag, const char *v, double *out) {
    return arg_double("train", flag, v, -HUGE_VAL, HUGE_VAL, out);
}

/* long is 64-bit on the platforms oprm builds for (LP64). */
static int parse_i64(const char *flag, const char *v, int64_t *out) {
    long x;
    if (arg_long("train", flag, v, LONG_MIN, LONG_MAX, &x)) return -1;
    *out = x;
    return 0;
}

static int parse_int(const char *flag, const char *v, int *out) {
    long x;
    if (arg_long("train", flag, v, INT_MIN, INT_MAX, &x)) return -1;
    *out = (int)x;
    return 0;
}

int cmd_train(int argc, char **argv) {
    TrainConfig c;
    train_config_default(&c);
    OprmError err = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            return EXIT_OK;
        }
        int used = data_flag_parse(&c.data_opt, argc, argv, i, &err);
        if (used < 0) {
            fprintf(stderr, "oprm train: %s\n", err.msg);
            return EXIT_USAGE;
        }
        if (used > 0) {
            i += used - 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "oprm train: unexpected argument '%s' (see oprm train --help)\n", arg);
            return EXIT_USAGE;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        /* Flags without a value. */
        if (!eq && name_is(name, n, "overwrite-output-dir")) { c.overwrite_output_dir = 1; continue; }
        if (!eq && name_is(name, n, "no-progress")) { c.progress = 0; continue; }
        if (!eq && name_is(name, n, "quiet")) { c.quiet = 1; c.progress = 0; continue; }
        if (!eq && name_is(name, n, "resume") && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
            c.resume = "latest";
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (!v) {
            fprintf(stderr, "oprm train: %s needs a value (see oprm train --help)\n", arg);
            return EXIT_USAGE;
        }
        if (!eq) i++;
        int bad = 0;
        if (name_is(name, n, "model")) c.model_dir = v;
        else if (name_is(name, n, "data")) {
            if (c.n_data == TRAIN_MAX_DATA_FILES) {
                fprintf(stderr, "oprm train: at most %d --data files\n", TRAIN_MAX_DATA_FILES);
                return EXIT_USAGE;
            }
            c.data[c.n_data++] = v;
        } else if (name_is(name, n, "eval-data")) c.eval_data = v;
        else if (name_is(name, n, "output") || name_is(name, n, "output-dir")) c.output_dir = v;
        else if (name_is(name, n, "learning-rate") || name_is(name, n, "lr")) bad = parse_double(arg, v, &c.learning_rate);
        else if (name_is(name, n, "num-train-epochs") || name_is(name, n, "epochs")) bad = parse_double(arg, v, &c.num_train_epochs);
        else if (name_is(name, n, "max-steps")) bad = parse_i64(arg, v, &c.max_steps);
        else if (name_is(name, n, "per-device-train-batch-size") || name_is(name, n, "batch-size") ||
                 name_is(name, n, "micro-train-batch-size")) bad = parse_int(arg, v, &c.batch_size);
        else if (name_is(name, n, "gradient-accumulation-steps")) bad = parse_int(arg, v, &c.grad_accum);
        else if (name_is(name, n, "max-length") || name_is(name, n, "max-len")) bad = parse_int(arg, v, &c.max_length);
        else if (name_is(name, n, "warmup-steps")) bad = parse_i64(arg, v, &c.warmup_steps);
        else if (name_is(name, n, "warmup-ratio")) bad = parse_double(arg, v, &c.warmup_ratio);
        else if (name_is(name, n, "lr-scheduler-type")) {
            if (schedule_kind_parse(v, &c.scheduler, &err)) {
                fprintf(stderr, "oprm train: %s: %s\n", arg, err.msg);
                return EXIT_USAGE;
            }
        } else if (name_is(name, n, "weight-decay")) bad = parse_double(arg, v, &c.weight_decay);
        else if (name_is(name, n, "max-grad-norm")) bad = parse_double(arg, v, &c.max_grad_norm);
        else if (name_is(name, n, "seed")) {
            int64_t s;
            bad = parse_i64(arg, v, &s);
            c.seed = (uint64_t)s;
        } else if (name_is(name, n, "threads")) bad = parse_int(arg, v, &c.threads);
        else if (name_is(name, n, "dataloader-num-workers")) bad = parse_int(arg, v, &c.dataloader_num_workers);
        else if (name_is(name, n, "zero")) bad = parse_int(arg, v, &c.zero);
        else if (name_is(name, n, "adam-beta1")) bad = parse_double(arg, v, &c.adam_beta1);
        else if (name_is(name, n, "adam-beta2")) bad = parse_double(arg, v, &c.adam_beta2);
        else if (name_is(name, n, "adam-epsilon")) bad = parse_double(arg, v, &c.adam_epsilon);
        else if (name_is(name, n, "logging-steps")) bad = parse_i64(arg, v, &c.logging_steps);
        else if (name_is(name, n, "eval-steps")) bad = parse_i64(arg, v, &c.eval_steps);
        else if (name_is(name, n, "save-steps")) bad = parse_i64(arg, v, &c.save_steps);
        else if (name_is(name, n, "save-total-limit")) bad = parse_int(arg, v, &c.save_total_limit);
        else if (name_is(name, n, "resume") || name_is(name, n, "resume-from-checkpoint")) c.resume = v;
        else if (name_is(name, n, "loss")) {
            if (!strcmp(v, "oprm")) c.loss = TRAIN_LOSS_OPRM;
            else if (!strcmp(v, "bt")) c.loss = TRAIN_LOSS_BT;
            else {
                fprintf(stderr, "oprm train: --loss must be oprm or bt, got '%s'\n", v);
                return EXIT_USAGE;
            }
        } else if (name_is(name, n, "rgft-mode")) {
            if (!strcmp(v, "none")) c.rgft_enabled = 0;
            else if (rgft_parse_mode(v, &c.rgft.mode, &err)) {
                fprintf(stderr, "oprm train: --rgft-mode must be triangle, hard or none: %s\n", err.msg);
                return EXIT_USAGE;
            } else c.rgft_enabled = 1;
        } else if (name_is(name, n, "rgft-halfwidth")) bad = parse_double(arg, v, &c.rgft.halfwidth);
        else if (name_is(name, n, "rgft-floor")) bad = parse_double(arg, v, &c.rgft.floor);
        else if (name_is(name, n, "label-fraction")) bad = parse_double(arg, v, &c.label_fraction);
        else if (name_is(name, n, "chat-format")) c.chat_format = v;
        else if (name_is(name, n, "template")) c.template_path = v;
        else if (name_is(name, n, "lora-rank")) bad = parse_int(arg, v, &c.lora_rank);
        else if (name_is(name, n, "lora-alpha")) bad = parse_double(arg, v, &c.lora_alpha);
        else if (name_is(name, n, "lora-targets") || name_is(name, n, "target-modules")) c.lora_targets = v;
        else {
            fprintf(stderr, "oprm train: unknown option '%.*s' (see oprm train --help)\n", (int)(n + 2), arg);
            return EXIT_USAGE;
        }
        if (bad) return EXIT_USAGE;
    }
    if (train_config_check(&c, &err)) {
        fprintf(stderr, "oprm train: %s (see oprm train --help)\n", err.msg);
        return EXIT_USAGE;
    }
    TrainResult res;
    int rc = train_run(&c, &res, &err);
    if (rc == 1 && dist_rank() == 0) fprintf(stderr, "oprm train: %s\n", err.msg);
    return rc;
}
