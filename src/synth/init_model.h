/* `oprm init`: a fresh, randomly initialised Hugging Face model directory
 * (config.json + model.safetensors from the engine) with the demo tokenizer
 * (synth/bpe.h), which oprm and Hugging Face both load. The default size is the
 * demo's tiny model (docs/demo.md). */
#ifndef OPRM_SYNTH_INIT_MODEL_H
#define OPRM_SYNTH_INIT_MODEL_H

#include <stdint.h>

#include "model/model.h"
#include "util/err.h"

typedef struct {
    ModelArch arch;
    int hidden, layers, heads, kv_heads, head_dim, ffn;
    int vocab;      /* 0 = the tokenizer's size; larger leaves unused rows */
    int max_pos;
    double rope_theta, rms_eps;
    int tie_embeddings;
    uint64_t seed;  /* weights */
    uint64_t tokenizer_seed;
    int merges;     /* BPE merges to learn at most (0 = default) */
} InitOptions;

/* Defaults: hidden 64, 2 layers, 4 heads (all KV), head_dim hidden/heads,
 * FFN 3*hidden, max_pos 512, rope_theta 10000, rms_eps 1e-6, untied, seed 1. */
void init_default_options(InitOptions *o, ModelArch arch);

/* Parses "llama", "mistral", "qwen2", "qwen3"; -1 with err otherwise. */
int init_parse_arch(const char *name, ModelArch *out, OprmError *err);

/* Writes the tokenizer files, config.json and model.safetensors into dir
 * (created if needed). *n_params (may be NULL) receives the parameter count. */
int init_model_dir(const char *dir, const InitOptions *o, size_t *n_params, OprmError *err);

#endif
