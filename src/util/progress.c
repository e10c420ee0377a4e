#include "util/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

double progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_start_at(Progress *p, const char *what, size_t total, size_t done0, int enabled) {
    p->what = what;
    p->total = total;
    p->done = p->done0 = done0;
    p->t0 = progress_now();
    p->last_draw = 0;
    p->drawn = 0;
    p->note[0] = 0;
    p->enabled = enabled < 0 ? isatty(STDERR_FILENO) : enabled;
}

void progress_start(Progress *p, const char *what, size_t total, int enabled) {
    progress_start_at(p, what, total, 0, enabled);
}

void progress_note(Progress *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->note, sizeof p->note, fmt, ap);
    va_end(ap);
}

static void format_secs(double s, char *buf, size_t size) {
    if (!(s >= 0) || s > 360000) {
        snprintf(buf, size, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

static void draw(Progress *p, double now) {
    enum { WIDTH = 30 };
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (frac > 1) frac = 1;
    char bar[WIDTH + 1];
    int fill = (int)(frac * WIDTH);
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = 0;
    double elapsed = now - p->t0;
    double rate = elapsed > 0 ? (double)(p->done - p->done0) / elapsed : 0;
    char eta[32], spent[32];
    format_secs(rate > 0 ? (double)(p->total - p->done) / rate : -1, eta, sizeof eta);
    format_secs(elapsed, spent, sizeof spent);
    fprintf(stderr, "\r[%s] %zu/%zu %s  %.2f/s  %s%s%s elapsed  ETA %s\033[K", bar, p->done, p->total, p->what,
            rate, p->note, p->note[0] ? "  " : "", spent, eta);
    fflush(stderr);
    p->last_draw = now;
    p->drawn = 1;
}

void progress_update(Progress *p, size_t done) {
    p->done = done;
    if (!p->enabled) return;
    double now = progress_now();
    if (now - p->last_draw >= 0.1 || done == p->total) draw(p, now);
}

void progress_break(Progress *p) {
    if (p->enabled && p->drawn) fputc('\n', stderr);
    p->drawn = 0;
}

void progress_finish(Progress *p) {
    if (!p->enabled) return;
    draw(p, progress_now());
    fputc('\n', stderr);
    p->drawn = 0;
}
