/* Learning-rate schedules with linear warmup, as the multipliers of
 * transformers' get_constant_schedule_with_warmup,
 * get_linear_schedule_with_warmup and get_cosine_schedule_with_warmup
 * (num_cycles = 0.5). The optimizer step with 0-based index `step` uses
 * lr = base_lr * schedule_factor(step), exactly as torch's LambdaLR does
 * (so the very first step of a warmup has lr 0, as in the HF Trainer). */
#ifndef OPRM_TRAIN_SCHEDULE_H
#define OPRM_TRAIN_SCHEDULE_H

#include <stdint.h>

#include "util/err.h"

typedef enum { SCHED_CONSTANT = 0, SCHED_LINEAR = 1, SCHED_COSINE = 2 } SchedKind;

typedef struct {
    SchedKind kind;
    int64_t warmup_steps;
    int64_t total_steps; /* number of optimizer steps of the whole run */
} Schedule;

/* "constant", "linear", "cosine" (the names of TRL's --lr_scheduler_type;
 * "constant_with_warmup" is accepted as constant). */
int schedule_kind_parse(const char *name, SchedKind *kind, OprmError *err);
const char *schedule_kind_name(SchedKind kind);

/* transformers' TrainingArguments.get_warmup_steps: warmup_steps if > 0,
 * else ceil(total_steps * warmup_ratio). */
int64_t schedule_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps);

/* The multiplier of the base learning rate at 0-based optimizer step. */
double schedule_factor(const Schedule *s, int64_t step);
double schedule_lr(const Schedule *s, double base_lr, int64_t step);

#endif
