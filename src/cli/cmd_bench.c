/* oprm bench: train-step and scoring throughput on random weights from a
 * config.json, as one JSON line (the workload and FLOP count: src/train/bench.h). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/device_flag.h"
#include "model/bf16_gemm.h"
#include "train/bench.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: oprm bench --config FILE --seq N [--steps N] [--warmup N] [--threads N] [--mode train|score|both]\n"
            "                  [--weights f32|bf16] [--compute f32|bf16] [--lora-rank R] [--seed S]\n"
            "                  [--device cpu|cuda|cuda:N] [--nseq N] [--gradient_checkpointing 0|1]\n\n"
            "Random weights from a Hugging Face config.json; one chosen and one rejected sequence\n"
            "of N random tokens each, packed in one batch. The train step is forward, the nine\n"
            "digit logits (rows 16..24 of the LM head), the OPRM pair loss, backward and AdamW;\n"
            "scoring is the forward pass alone. --warmup untimed steps, then --steps timed ones.\n"
            "Prints one JSON line: tokens/s, GFLOP/s and a per-phase breakdown (ms per step).\n\n"
            "options:\n"
            "  --config FILE    config.json (e.g. ../shared/bench/configs/qwen2-small.json)\n"
            "  --seq N          tokens per sequence (required)\n"
            "  --steps N        timed steps (default 5)\n"
            "  --warmup N       untimed steps first (default 1; 0 for a memory measurement)\n"
            "  --threads N      OpenMP/OpenBLAS threads (default 0 = all cores)\n"
            "  --mode M         train, score or both (default both)\n"
            "  --weights W      storage of frozen weights: f32 (default) or bf16 (LoRA base, or\n"
            "                   --mode score)\n"
            "  --compute C      GEMM precision: f32, or bf16 (bf16 operands, fp32 accumulation,\n"
            "                   fp32 master weights and AdamW: the mixed-precision train step).\n"
            "                   Default bf16 with --weights bf16, else f32. Falls back to f32 with\n"
            "                   a notice where the CPU has no avx512_bf16 (or OPRM_BF16=0)\n"
            "  --lora-rank R    LoRA of rank R on q,k,v,o,gate,up,down (alpha 2R) instead of\n"
            "                   full fine-tuning\n"
            "  --seed S         weights and tokens (default 0)\n"
            "  --device D       cpu (default) or cuda[:N]: --mode score (BF16 weights) or --mode train\n"
            "                   (the CUDA training engine: fp32 master weights and AdamW on the GPU)\n"
            "  --nseq N         sequences per batch (default 2; --mode score, or an even count for\n"
            "                   --device cuda --mode train: pairs)\n"
            "  --gradient_checkpointing B  1: recompute activations in backward (--device cuda --mode train)\n"
            "  -h, --help       show this help\n\n"
            "FLOPs: 6 x non-embedding params x tokens (train), 2 x (score), plus causal\n"
            "attention 2 x layers x heads x head_dim x T(T+1) per sequence (x3 for train).\n");
}

static int parse_int(const char *flag, const char *s, long lo, long hi, long *out) {
    return arg_long("bench", flag, s, lo, hi, out);
}

/* Four significant digits: enough for a ratio, short enough to read. */
static json_t *sig4(double v) {
    if (v == 0 || !isfinite(v)) return json_real(v);
    double scale = pow(10.0, 3 - floor(log10(fabs(v))));
    return json_real(round(v * scale) / scale);
}

int cmd_bench(int argc, char **argv) {
    BenchOptions o = {.steps = 5, .warmup = 1, .mode = BENCH_BOTH, .weights = WEIGHTS_F32};
    long v;
    int compute = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return EXIT_OK;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "oprm bench: unknown option or missing value: '%s'\n\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
        const char *val = argv[++i];
        if (!strcmp(a, "--config")) {
            o.config_path = val;
        } else if (!strcmp(a, "--seq")) {
            if (parse_int(a, val, 1, 1 << 20, &v)) return EXIT_USAGE;
            o.seq = (int)v;
        } else if (!strcmp(a, "--steps")) {
            if (parse_int(a, val, 1, 1000000, &v)) return EXIT_USAGE;
            o.steps = (int)v;
        } else if (!strcmp(a, "--warmup")) {
            if (parse_int(a, val, 0, 1000000, &v)) return EXIT_USAGE;
            o.warmup = (int)v;
        } else if (!strcmp(a, "--threads")) {
            if (parse_int(a, val, 0, 4096, &v)) return EXIT_USAGE;
            o.threads = (int)v;
        } else if (!strcmp(a, "--lora-rank")) {
            if (parse_int(a, val, 0, 65536, &v)) return EXIT_USAGE;
            o.lora_rank = (int)v;
        } else if (!strcmp(a, "--seed")) {
            if (parse_int(a, val, 0, 0x7fffffffL, &v)) return EXIT_USAGE;
            o.seed = (uint64_t)v;
        } else if (!strcmp(a, "--nseq")) {
            if (parse_int(a, val, 1, 1 << 20, &v)) return EXIT_USAGE;
            o.nseq = (int)v;
        } else if (!strcmp(a, "--gradient_checkpointing") || !strcmp(a, "--gradient-checkpointing")) {
            if (parse_int(a, val, 0, 1, &v)) return EXIT_USAGE;
            o.recompute = (int)v;
        } else if (!strcmp(a, "--device")) {
            DeviceFlag df = {"bench", &o.device, 0};
            if (device_flag_parse(&df, a, val)) return EXIT_USAGE;
        } else if (!strcmp(a, "--mode")) {
            if (!strcmp(val, "train")) o.mode = BENCH_TRAIN;
            else if (!strcmp(val, "score")) o.mode = BENCH_SCORE;
            else if (!strcmp(val, "both")) o.mode = BENCH_BOTH;
            else {
                fprintf(stderr, "oprm bench: --mode must be train, score or both, got '%s'\n", val);
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--weights")) {
            if (!strcmp(val, "f32")) o.weights = WEIGHTS_F32;
            else if (!strcmp(val, "bf16")) o.weights = WEIGHTS_BF16;
            else {
                fprintf(stderr, "oprm bench: --weights must be f32 or bf16, got '%s'\n", val);
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--compute")) {
            if (!strcmp(val, "f32")) compute = 0;
            else if (!strcmp(val, "bf16")) compute = 1;
            else {
                fprintf(stderr, "oprm bench: --compute must be f32 or bf16, got '%s'\n", val);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "oprm bench: unknown option '%s'\n\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!o.config_path || !o.seq) {
        fprintf(stderr, "oprm bench: --config and --seq are required\n\n");
        usage(stderr);
        return EXIT_USAGE;
    }

    o.bf16_compute = compute >= 0 ? compute : o.weights == WEIGHTS_BF16;

    BenchResult r;
    OprmError err = {{0}};
    if (bench_run(&o, &r, &err)) {
        fprintf(stderr, "oprm bench: %s\n", err.msg);
        return EXIT_RUNTIME;
    }
    json_t *j = json_object();
    json_object_set_new(j, "impl", json_string("oprm-" OPRM_VERSION));
    json_object_set_new(j, "arch", json_string(r.cfg.architecture));
    json_object_set_new(j, "threads", json_integer(r.threads));
    json_object_set_new(j, "params_M", sig4(r.params_total / 1e6));
    json_object_set_new(j, "trainable_params_M", sig4(r.params_trainable / 1e6));
    json_object_set_new(j, "non_embedding_params_M", sig4(r.params_non_embedding / 1e6));
    json_object_set_new(j, "seq", json_integer(o.seq));
    json_object_set_new(j, "steps", json_integer(o.steps));
    json_object_set_new(j, "weights", json_string(o.weights == WEIGHTS_BF16 ? "bf16" : "f32"));
    json_object_set_new(j, "lora_rank", json_integer(o.lora_rank));
    if ((o.mode & BENCH_SCORE) || o.device.kind == DEVICE_CUDA) {
        json_object_set_new(j, "device", json_string(r.device));
        json_object_set_new(j, "nseq", json_integer(o.nseq > 0 ? o.nseq : 2));
    }
    json_object_set_new(j, "compute", json_string(r.bf16_active ? "bf16" : "f32"));
    if (o.bf16_compute) json_object_set_new(j, "bf16_backend", json_string(bf16_gemm_describe()));
    if (o.mode & BENCH_TRAIN) {
        json_object_set_new(j, "train_tokens_per_s", sig4(r.train_tokens_per_s));
        json_object_set_new(j, "train_gflops", sig4(r.train_gflops));
        json_object_set_new(j, "train_gflop_per_step", sig4(r.train_flops_per_step / 1e9));
        json_object_set_new(j, "train_step_ms", sig4(r.train_step_ms));
        json_object_set_new(j, "train_step_ms_min", sig4(r.train_step_ms_min));
        json_object_set_new(j, "train_cpu_ms", sig4(r.train_cpu_ms));
        json_object_set_new(j, "train_tokens_per_cpu_s", sig4((double)(o.nseq > 0 ? o.nseq : 2) * o.seq / (r.train_cpu_ms * 1e-3)));
        json_object_set_new(j, "forward_ms", sig4(r.fwd_ms));
        json_object_set_new(j, "head_loss_ms", sig4(r.head_ms));
        json_object_set_new(j, "backward_ms", sig4(r.bwd_ms));
        json_object_set_new(j, "optimizer_ms", sig4(r.opt_ms));
        json_object_set_new(j, "loss", json_real(r.last_loss));
        json_object_set_new(j, "train_window_s", json_pack("[ff]", r.train_window[0], r.train_window[1]));
    }
    if (o.mode & BENCH_SCORE) {
        json_object_set_new(j, "score_tokens_per_s", sig4(r.score_tokens_per_s));
        json_object_set_new(j, "score_gflops", sig4(r.score_gflops));
        json_object_set_new(j, "score_gflop_per_step", sig4(r.score_flops_per_step / 1e9));
        json_object_set_new(j, "score_step_ms", sig4(r.score_step_ms));
        json_object_set_new(j, "score_step_ms_min", sig4(r.score_step_ms_min));
        json_object_set_new(j, "score_cpu_ms", sig4(r.score_cpu_ms));
        json_object_set_new(j, "score_tokens_per_cpu_s", sig4((double)(o.nseq > 0 ? o.nseq : 2) * o.seq / (r.score_cpu_ms * 1e-3)));
        json_object_set_new(j, "score_window_s", json_pack("[ff]", r.score_window[0], r.score_window[1]));
    }
    char *line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!line) return EXIT_RUNTIME;
    printf("%s\n", line);
    free(line);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
}
