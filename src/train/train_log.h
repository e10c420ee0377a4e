/* What the training loop keeps: the JSONL metrics log
 * (OUTPUT/train_log.jsonl, one object per line). The progress bar on a
 * terminal is util/progress.h. */
#ifndef OPRM_TRAIN_TRAIN_LOG_H
#define OPRM_TRAIN_TRAIN_LOG_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "util/err.h"

typedef struct {
    FILE *f;
    char *path;
} TrainLog;

/* Opens OUTPUT/name for appending. keep_upto_step < 0 starts an empty log;
 * otherwise (a resume) lines whose "step" is above keep_upto_step are dropped
 * first, so a run resumed from an earlier checkpoint does not log a step twice. */
int train_log_open(TrainLog *log, const char *output_dir, const char *name, int64_t keep_upto_step,
                   OprmError *err);
/* Writes obj as one line (doubles with 17 digits: they read back exactly)
 * and flushes. Takes the reference. */
int train_log_write(TrainLog *log, json_t *obj, OprmError *err);
void train_log_close(TrainLog *log);

#endif
