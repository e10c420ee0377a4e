/* Dynamic batching: request handlers hand their items to a bounded queue and
 * block; one worker thread gathers queued items for a short window (up to an
 * item count and a token budget), makes one backend call for all of them and
 * wakes each handler when its last item is done. A request whose items do
 * not all fit in the queue is refused at once (the caller answers 503). */
#ifndef OPRM_SERVE_BATCHER_H
#define OPRM_SERVE_BATCHER_H

#include <stdatomic.h>
#include <stddef.h>

#include "serve/backend.h"
#include "serve/metrics.h"

typedef struct {
    int queue_items;        /* capacity of the queue, in items */
    int max_batch_items;    /* items per backend call */
    long max_batch_tokens;  /* token budget per backend call (a lone larger item still goes) */
    int batch_window_ms;    /* how long to wait for more items after the first; 0 = none */
    long max_request_tokens; /* per request; over it the request fails with 413 */
    /* Optional: requests still being received that will queue items soon.
     * The window ends early when this is 0: nobody else is on the way, so
     * waiting would only add latency (under load, items pile up while the
     * scorer runs, and batches form without any wait). */
    const atomic_int *arriving;
} BatcherConfig;

typedef struct Batcher Batcher;

Batcher *batcher_start(const ServeBackend *backend, const BatcherConfig *cfg, ServeMetrics *metrics);

/* Scores items[0..n) into out; blocks until done. Returns an HTTP status:
 * 200, 413 (token limit), 500 (backend error) or 503 (queue full or
 * stopping); msg receives the reason for anything but 200. */
int batcher_score(Batcher *b, const ScoreRequest *items, int n, ScoreResult *out, char *msg, size_t msg_size);

int batcher_depth(Batcher *b);
int batcher_capacity(const Batcher *b);

/* Refuses new work, scores everything already queued, joins the worker and frees. */
void batcher_stop(Batcher *b);

#endif
