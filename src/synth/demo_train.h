/* The demo's training run: a tiny OPRM trained from scratch on the synthetic
 * task's pairs with RgFT on a fraction of the labels (spec §2-§3), AdamW with a
 * cosine schedule, packed batches of chosen/rejected scoring prompts. It uses
 * the same engine, ordinal math, optimizer and schedule as `oprm train`, in a
 * deliberately small loop (no checkpoints, no resume): the demo must also run
 * where `oprm train`'s options would be a distraction. Saves the model and an
 * oprm.json (scoring template, chat format, digit ids) into the model
 * directory, so `oprm score` and the scorer use the prompt it was trained on. */
#ifndef OPRM_SYNTH_DEMO_TRAIN_H
#define OPRM_SYNTH_DEMO_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "util/err.h"

typedef struct {
    int steps;             /* optimizer steps (default 800) */
    int batch;             /* pairs per step (default 16) */
    double lr;             /* peak learning rate (default 5e-3) */
    double beta2;          /* AdamW beta2 (default 0.95; 0.999 stalls this tiny model, docs/demo.md) */
    double weight_decay;   /* default 0 */
    double max_grad_norm;  /* default 1 */
    int warmup;            /* linear warmup steps, then cosine decay (default 50) */
    double label_fraction; /* share of pairs whose labels RgFT uses (default 0.5) */
    uint64_t seed;         /* which pairs keep their labels */
    const char *template_path; /* scoring template file, NULL = default */
    FILE *progress;        /* progress lines (NULL = none) */
} DemoTrainOptions;

typedef struct {
    int steps, pairs_used, labelled_pairs;
    double seconds, tokens_per_s, final_loss; /* final_loss: mean over the last 50 steps */
    double final_batch_accuracy;              /* mean_c > mean_r on the last 50 batches */
} DemoTrainResult;

void demo_train_default_options(DemoTrainOptions *o);

/* Trains the model in model_dir in place on pairs_path (JSONL pairs with
 * chosen_label/rejected_label), reading steps*batch pairs in file order
 * (fewer pairs: it wraps around). */
int demo_train(const char *model_dir, const char *pairs_path, const DemoTrainOptions *o, DemoTrainResult *res,
               OprmError *err);

#endif
