/* Server counters rendered in Prometheus text format for GET /metrics:
 * requests by route and status code, latency and batch-size histograms,
 * tokens and scorer time (tokens/s). Thread-safe. */
#ifndef OPRM_SERVE_METRICS_H
#define OPRM_SERVE_METRICS_H

#include <pthread.h>

#include "util/vec.h"

typedef enum {
    ROUTE_GET_REWARD,
    ROUTE_SCORE_EVALUATION,
    ROUTE_SCORE,
    ROUTE_COMPARE,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_OTHER,
    ROUTE_COUNT
} ServeRoute;

#define METRICS_N_CODES 12
#define METRICS_N_LAT 12
#define METRICS_N_BATCH 9

typedef struct {
    pthread_mutex_t mu;
    long requests[ROUTE_COUNT][METRICS_N_CODES];
    long latency_bucket[METRICS_N_LAT]; /* cumulative at render time, stored per bucket */
    double latency_sum;
    long latency_count;
    long batch_bucket[METRICS_N_BATCH];
    double batch_sum;
    long batch_count;
    long items_total, tokens_total, truncated_total, rejected_full;
    long body_timeouts; /* requests answered 400 because their body stopped arriving */
    double scorer_seconds;
} ServeMetrics;

const char *route_name(ServeRoute r);
void metrics_init(ServeMetrics *m);
void metrics_destroy(ServeMetrics *m);
void metrics_request(ServeMetrics *m, ServeRoute r, int code, double seconds);
/* n_truncated: items of the batch whose scoring prompt was cut to max_len. */
void metrics_batch(ServeMetrics *m, int n_items, long n_tokens, int n_truncated, double seconds);
void metrics_body_timeout(ServeMetrics *m);
void metrics_queue_full(ServeMetrics *m);
void metrics_render(ServeMetrics *m, StrBuf *out, int queue_depth, int queue_capacity, int in_flight);

#endif
