/* A one-line progress bar on stderr with count, rate and ETA, drawn only when
 * stderr is a terminal (or when forced), at most ~10 times a second. Shared by
 * training (steps, with loss and tokens/s in the note) and the scoring
 * commands (records). */
#ifndef OPRM_UTIL_PROGRESS_H
#define OPRM_UTIL_PROGRESS_H

#include <stddef.h>

typedef struct {
    const char *what;  /* unit shown after the counts, e.g. "records" */
    size_t total, done;
    size_t done0;      /* work already done at the start (a resumed run): not in the rate */
    double t0, last_draw;
    int enabled, drawn;
    char note[160];    /* extra text after the rate, e.g. "loss 0.6931  acc 0.625" */
} Progress;

/* enabled: 1 on, 0 off, -1 = only when stderr is a terminal. */
void progress_start(Progress *p, const char *what, size_t total, int enabled);
/* The same for work that resumes at done0 of total. */
void progress_start_at(Progress *p, const char *what, size_t total, size_t done0, int enabled);
void progress_note(Progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void progress_update(Progress *p, size_t done);
/* Ends the line if one is drawn, so other output can follow; the next update
 * draws a fresh line. */
void progress_break(Progress *p);
/* Draws the final state and ends the line. */
void progress_finish(Progress *p);
double progress_now(void); /* monotonic seconds */

#endif
