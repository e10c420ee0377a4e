/* trainer_state.json: where a run stands, so that --resume continues it as if
 * it had never stopped (same data order, same RNG stream, same step count).
 * The optimizer moments live beside it in optimizer.bin (train/adamw.h). */
#ifndef OPRM_TRAIN_TRAINER_STATE_H
#define OPRM_TRAIN_TRAINER_STATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "train/rng.h"
#include "util/err.h"

#define TRAINER_STATE_FILE "trainer_state.json"
#define TRAINER_STATE_VERSION 1

typedef struct {
    int64_t global_step;   /* optimizer steps completed */
    int64_t max_steps;     /* planned total (for the schedule), 0 = unknown */
    int64_t epoch;         /* 0-based epoch the next batch belongs to */
    int64_t data_position; /* index into data_order of the next example */
    int64_t *data_order;   /* this epoch's permutation of example indices */
    size_t data_count;
    uint64_t seed;
    Rng rng;               /* state after the last completed step */
    double *loss_history;  /* training loss of each completed step (NaN stored as null) */
    size_t loss_count;
    json_t *extra;         /* free-form object for the loop (e.g. best eval metric), may be NULL */
} TrainerState;

void trainer_state_push_loss(TrainerState *st, double loss);
/* Copies order[0..n) into st->data_order. */
void trainer_state_set_order(TrainerState *st, const int64_t *order, size_t n);

int trainer_state_write(const TrainerState *st, const char *path, OprmError *err);
/* Fills *st (zeroed first; free with trainer_state_free). Checks types, that
 * data_order is a permutation of 0..n-1 and data_position lies in [0, n]. */
int trainer_state_read(const char *path, TrainerState *st, OprmError *err);
void trainer_state_free(TrainerState *st);

#endif
