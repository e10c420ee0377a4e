#include "serve/batcher.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

typedef struct {
    const ScoreRequest *items;
    int n;
    ScoreResult *out;
    int *tokens;  /* per item, filled when the worker first sees the job */
    int counted;
    int remaining; /* items not yet scored */
    int status;
    double t_enqueued; /* the batching window runs from here */
    char *msg;
    size_t msg_size;
    pthread_cond_t done;
} Job;

typedef struct {
    Job *job;
    int index;
} ItemRef;

struct Batcher {
    ServeBackend backend;
    BatcherConfig cfg;
    ServeMetrics *metrics;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* queue gained items, or stop */
    ItemRef *ring;
    int head, count;
    int stopping;
    pthread_t worker;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static ItemRef *ring_at(Batcher *b, int i) {
    return &b->ring[(b->head + i) % b->cfg.queue_items];
}

static void ring_pop(Batcher *b) {
    b->head = (b->head + 1) % b->cfg.queue_items;
    b->count--;
}

static void finish_item(Job *j, int status, const char *msg) {
    if (status != 200 && j->status == 200) {
        j->status = status;
        snprintf(j->msg, j->msg_size, "%s", msg);
    }
    if (--j->remaining == 0) pthread_cond_signal(&j->done);
}

/* Counts the tokens of every item of the job at the front of the queue and
 * enforces the per-request budget. Called with the lock held (only the
 * worker uses the backend, so this is safe). Returns 0, or -1 after
 * failing the job and removing its items from the queue. */
static int count_front_job(Batcher *b) {
    Job *j = ring_at(b, 0)->job;
    j->counted = 1;
    long total = 0;
    OprmError err = {{0}};
    for (int i = 0; i < j->n; i++) {
        int t = b->backend.count_tokens(b->backend.ctx, &j->items[i], &err);
        if (t < 0) {
            j->status = 500;
            snprintf(j->msg, j->msg_size, "counting tokens of item %d: %s", i, err.msg);
            break;
        }
        j->tokens[i] = t;
        total += t;
    }
    if (j->status == 200 && b->cfg.max_request_tokens > 0 && total > b->cfg.max_request_tokens) {
        j->status = 413;
        snprintf(j->msg, j->msg_size,
                 "request has %ld tokens in its scoring prompts; the limit is %ld (--max-request-tokens)",
                 total, b->cfg.max_request_tokens);
    }
    if (j->status == 200) return 0;
    /* A job's items are queued together and none has been taken yet. */
    for (int i = 0; i < j->n; i++) ring_pop(b);
    j->remaining = 0;
    pthread_cond_signal(&j->done);
    return -1;
}

static void *worker_main(void *arg) {
    Batcher *b = arg;
    int cap = b->cfg.max_batch_items;
    ItemRef *batch = xmalloc((size_t)cap * sizeof *batch);
    ScoreRequest *reqs = xmalloc((size_t)cap * sizeof *reqs);
    ScoreResult *res = xmalloc((size_t)cap * sizeof *res);
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->count == 0 && !b->stopping) pthread_cond_wait(&b->wake, &b->mu);
        if (b->count == 0 && b->stopping) break;
        /* The window counts from when the oldest item was queued, not from now:
         * items that already waited while the scorer was busy go at once. */
        double deadline = ring_at(b, 0)->job->t_enqueued + b->cfg.batch_window_ms * 1e-3;
        int n = 0;
        long tokens = 0;
        for (;;) {
            int full = 0;
            while (b->count > 0 && n < cap) {
                ItemRef *r = ring_at(b, 0);
                if (!r->job->counted && count_front_job(b) < 0) continue;
                int t = r->job->tokens[r->index];
                if (n > 0 && b->cfg.max_batch_tokens > 0 && tokens + t > b->cfg.max_batch_tokens) {
                    full = 1;
                    break;
                }
                batch[n++] = *r;
                tokens += t;
                ring_pop(b);
            }
            if (n == cap || full || b->stopping || b->cfg.batch_window_ms <= 0) break;
            if (b->cfg.arriving && atomic_load(b->cfg.arriving) <= 0) break;
            double left = deadline - now_s();
            if (left <= 0) break;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            long ns = until.tv_nsec + (long)(left * 1e9);
            until.tv_sec += ns / 1000000000L;
            until.tv_nsec = ns % 1000000000L;
            int rc = pthread_cond_timedwait(&b->wake, &b->mu, &until);
            if (rc == ETIMEDOUT && b->count == 0) break;
        }
        if (n == 0) continue; /* every front job failed its limits */
        pthread_mutex_unlock(&b->mu);

        for (int i = 0; i < n; i++) reqs[i] = batch[i].job->items[batch[i].index];
        OprmError err = {{0}};
        double t0 = now_s();
        int rc = b->backend.score(b->backend.ctx, reqs, n, res, &err);
        double dt = now_s() - t0;
        long scored_tokens = 0;
        int truncated = 0;
        for (int i = 0; rc == 0 && i < n; i++) {
            scored_tokens += res[i].n_tokens;
            truncated += res[i].truncated != 0;
        }
        metrics_batch(b->metrics, n, rc == 0 ? scored_tokens : 0, truncated, dt);

        pthread_mutex_lock(&b->mu);
        for (int i = 0; i < n; i++) {
            Job *j = batch[i].job;
            if (rc == 0) {
                j->out[batch[i].index] = res[i];
                finish_item(j, 200, "");
            } else {
                char msg[1100];
                snprintf(msg, sizeof msg, "scorer failed: %s", err.msg);
                finish_item(j, 500, msg);
            }
        }
    }
    pthread_mutex_unlock(&b->mu);
    free(batch);
    free(reqs);
    free(res);
    return NULL;
}

Batcher *batcher_start(const ServeBackend *backend, const BatcherConfig *cfg, ServeMetrics *metrics) {
    Batcher *b = xcalloc(1, sizeof *b);
    b->backend = *backend;
    b->cfg = *cfg;
    if (b->cfg.queue_items < 1) b->cfg.queue_items = 1;
    if (b->cfg.max_batch_items < 1) b->cfg.max_batch_items = 1;
    b->metrics = metrics;
    b->ring = xcalloc((size_t)b->cfg.queue_items, sizeof *b->ring);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->wake, NULL);
    if (pthread_create(&b->worker, NULL, worker_main, b) != 0) {
        free(b->ring);
        free(b);
        return NULL;
    }
    return b;
}

int batcher_score(Batcher *b, const ScoreRequest *items, int n, ScoreResult *out, char *msg, size_t msg_size) {
    if (n == 0) return 200;
    Job j = {.items = items, .n = n, .out = out, .remaining = n, .status = 200, .msg = msg, .msg_size = msg_size};
    j.tokens = xcalloc((size_t)n, sizeof *j.tokens);
    pthread_cond_init(&j.done, NULL);
    pthread_mutex_lock(&b->mu);
    if (b->stopping || b->count + n > b->cfg.queue_items) {
        int stopping = b->stopping;
        pthread_mutex_unlock(&b->mu);
        pthread_cond_destroy(&j.done);
        free(j.tokens);
        if (stopping) {
            snprintf(msg, msg_size, "server is shutting down");
        } else {
            metrics_queue_full(b->metrics);
            snprintf(msg, msg_size, "queue full (%d items, --max-queue-items); retry later", b->cfg.queue_items);
        }
        return 503;
    }
    j.t_enqueued = now_s();
    for (int i = 0; i < n; i++) {
        ItemRef *r = &b->ring[(b->head + b->count) % b->cfg.queue_items];
        r->job = &j;
        r->index = i;
        b->count++;
    }
    pthread_cond_signal(&b->wake);
    while (j.remaining > 0) pthread_cond_wait(&j.done, &b->mu);
    pthread_mutex_unlock(&b->mu);
    pthread_cond_destroy(&j.done);
    free(j.tokens);
    return j.status;
}

int batcher_depth(Batcher *b) {
    pthread_mutex_lock(&b->mu);
    int n = b->count;
    pthread_mutex_unlock(&b->mu);
    return n;
}

int batcher_capacity(const Batcher *b) {
    return b->cfg.queue_items;
}

void batcher_stop(Batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->wake);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->worker, NULL);
    pthread_cond_destroy(&b->wake);
    pthread_mutex_destroy(&b->mu);
    free(b->ring);
    free(b);
}
