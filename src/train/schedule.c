#include "train/schedule.h"

#include <math.h>
#include <string.h>

int schedule_kind_parse(const char *name, SchedKind *kind, OprmError *err) {
    if (!strcmp(name, "constant") || !strcmp(name, "constant_with_warmup")) *kind = SCHED_CONSTANT;
    else if (!strcmp(name, "linear")) *kind = SCHED_LINEAR;
    else if (!strcmp(name, "cosine")) *kind = SCHED_COSINE;
    else return oprm_fail(err, "unknown learning-rate schedule '%s' (expected constant, linear or cosine)", name);
    return 0;
}

const char *schedule_kind_name(SchedKind kind) {
    switch (kind) {
    case SCHED_LINEAR: return "linear";
    case SCHED_COSINE: return "cosine";
    default: return "constant";
    }
}

int64_t schedule_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps) {
    if (warmup_steps > 0) return warmup_steps;
    if (warmup_ratio <= 0) return 0;
    return (int64_t)ceil((double)total_steps * warmup_ratio);
}

static double max1(int64_t x) { return x > 1 ? (double)x : 1.0; }

double schedule_factor(const Schedule *s, int64_t step) {
    if (step < s->warmup_steps) return (double)step / max1(s->warmup_steps);
    switch (s->kind) {
    case SCHED_LINEAR: {
        double f = (double)(s->total_steps - step) / max1(s->total_steps - s->warmup_steps);
        return f > 0 ? f : 0.0;
    }
    case SCHED_COSINE: {
        double progress = (double)(step - s->warmup_steps) / max1(s->total_steps - s->warmup_steps);
        double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
        return f > 0 ? f : 0.0;
    }
    default: return 1.0;
    }
}

double schedule_lr(const Schedule *s, double base_lr, int64_t step) { return base_lr * schedule_factor(s, step); }
