/* oprm init: a fresh, randomly initialised Hugging Face model directory with
 * the demo tokenizer (src/synth/init_model.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "io/fileio.h"
#include "synth/init_model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: oprm init --arch llama|mistral|qwen2|qwen3 --output DIR [size options]\n\n"
            "Writes a fresh, randomly initialised Hugging Face model directory: config.json,\n"
            "model.safetensors (normal(0, 0.02) weights, norms 1, deterministic in --seed) and a\n"
            "small byte-level BPE tokenizer (tokenizer.json, tokenizer_config.json with a ChatML\n"
            "chat template, special_tokens_map.json) learned from the demo's synthetic task and the\n"
            "scoring prompt. Both oprm and Hugging Face transformers load the directory.\n\n"
            "options:\n"
            "  --arch NAME         llama, mistral, qwen2 (q/k/v biases) or qwen3 (q/k norms) (required)\n"
            "  --output DIR        directory to write (created; refuses an existing model unless --force)\n"
            "  --hidden N          hidden size (default 64)\n"
            "  --layers N          transformer layers (default 2)\n"
            "  --heads N           attention heads (default 4)\n"
            "  --kv-heads N        key/value heads (default: --heads)\n"
            "  --head-dim N        head dimension (default: hidden / heads)\n"
            "  --ffn N             MLP intermediate size (default 3 * hidden)\n"
            "  --vocab N           vocabulary rows (default: the tokenizer's size; larger pads)\n"
            "  --max-pos N         max_position_embeddings (default 512)\n"
            "  --rope-theta X      rotary base (default 10000)\n"
            "  --tie-embeddings    share the input embedding and the LM head\n"
            "  --seed N            weight seed (default 1)\n"
            "  --tokenizer-seed N  seed of the tokenizer's sample corpus (default 1)\n"
            "  --merges N          BPE merges to learn at most (default 400)\n"
            "  --force             overwrite an existing model directory\n"
            "  -h, --help          show this help\n");
}

static int parse_int(const char *flag, const char *v, long min, long *out) {
    return arg_long("init", flag, v, min, 1000000000L, out);
}

int cmd_init(int argc, char **argv) {
    InitOptions o;
    init_default_options(&o, ARCH_LLAMA);
    const char *output = NULL, *arch = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--tie-embeddings")) {
            o.tie_embeddings = 1;
            continue;
        }
        if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "oprm init: unknown option or missing value: %s\n\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        long x = 0;
        int bad = 0;
        if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "--output")) output = v;
        else if (!strcmp(a, "--hidden")) bad = parse_int(a, v, 1, &x), o.hidden = (int)x;
        else if (!strcmp(a, "--layers")) bad = parse_int(a, v, 1, &x), o.layers = (int)x;
        else if (!strcmp(a, "--heads")) bad = parse_int(a, v, 1, &x), o.heads = (int)x;
        else if (!strcmp(a, "--kv-heads")) bad = parse_int(a, v, 1, &x), o.kv_heads = (int)x;
        else if (!strcmp(a, "--head-dim")) bad = parse_int(a, v, 2, &x), o.head_dim = (int)x;
        else if (!strcmp(a, "--ffn")) bad = parse_int(a, v, 1, &x), o.ffn = (int)x;
        else if (!strcmp(a, "--vocab")) bad = parse_int(a, v, 1, &x), o.vocab = (int)x;
        else if (!strcmp(a, "--max-pos")) bad = parse_int(a, v, 1, &x), o.max_pos = (int)x;
        else if (!strcmp(a, "--seed")) bad = parse_int(a, v, 0, &x), o.seed = (uint64_t)x;
        else if (!strcmp(a, "--tokenizer-seed")) bad = parse_int(a, v, 0, &x), o.tokenizer_seed = (uint64_t)x;
        else if (!strcmp(a, "--merges")) bad = parse_int(a, v, 0, &x), o.merges = (int)x;
        else if (!strcmp(a, "--rope-theta")) {
            char *end;
            o.rope_theta = strtod(v, &end);
            if (end == v || *end || !(o.rope_theta > 0)) {
                fprintf(stderr, "oprm init: --rope-theta expects a positive number, got '%s'\n", v);
                bad = 1;
            }
        } else {
            fprintf(stderr, "oprm init: unknown option %s\n\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
        if (bad) return EXIT_USAGE;
    }
    if (!arch || !output) {
        fprintf(stderr, "oprm init: --arch and --output are required\n\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    OprmError err = {{0}};
    if (init_parse_arch(arch, &o.arch, &err)) {
        fprintf(stderr, "oprm init: %s\n", err.msg);
        return EXIT_USAGE;
    }
    char *cfg = path_join(output, "config.json");
    int exists = file_exists(cfg);
    free(cfg);
    if (exists && !force) {
        fprintf(stderr, "oprm init: %s already holds a model (config.json); pass --force to overwrite it\n", output);
        return EXIT_RUNTIME;
    }
    size_t n_params = 0;
    if (init_model_dir(output, &o, &n_params, &err)) {
        fprintf(stderr, "oprm init: %s\n", err.msg);
        return EXIT_RUNTIME;
    }
    printf("wrote %s: %s, %zu parameters (%.2f M), tokenizer + config.json + model.safetensors\n", output, arch,
           n_params, n_params / 1e6);
    return EXIT_OK;
}
