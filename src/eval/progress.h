/* A one-line progress bar on stderr with rate and ETA, drawn only when
 * stderr is a terminal (or when forced), at most ~10 times a second. */
#ifndef OPRM_EVAL_PROGRESS_H
#define OPRM_EVAL_PROGRESS_H

#include <stddef.h>

typedef struct {
    const char *what; /* unit shown after the counts, e.g. "records" */
    size_t total, done;
    double t0, last_draw;
    int enabled;
} Progress;

/* enabled: 1 on, 0 off, -1 = only when stderr is a terminal. */
void progress_start(Progress *p, const char *what, size_t total, int enabled);
void progress_update(Progress *p, size_t done);
/* Draws the final state and ends the line. */
void progress_finish(Progress *p);
double progress_now(void); /* monotonic seconds */

#endif
