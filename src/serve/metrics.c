#include "serve/metrics.h"

#include <string.h>

static const int CODES[METRICS_N_CODES] = {200, 400, 401, 404, 405, 413, 422, 500, 503, 0, 0, 0};
static const double LAT_BOUNDS[METRICS_N_LAT - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1.0,  2.5};
static const int BATCH_BOUNDS[METRICS_N_BATCH - 1] = {1, 2, 4, 8, 16, 32, 64, 128};

static const char *const ROUTE_NAMES[ROUTE_COUNT] = {
    "/get_reward", "/v1/score/evaluation", "/v1/score", "/v1/compare", "/health", "/metrics", "other",
};

const char *route_name(ServeRoute r) {
    return ROUTE_NAMES[r];
}

void metrics_init(ServeMetrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void metrics_destroy(ServeMetrics *m) {
    pthread_mutex_destroy(&m->mu);
}

static int code_slot(int code) {
    for (int i = 0; i < METRICS_N_CODES; i++)
        if (CODES[i] == code) return i;
    return METRICS_N_CODES - 1; /* "other" */
}

void metrics_request(ServeMetrics *m, ServeRoute r, int code, double seconds) {
    pthread_mutex_lock(&m->mu);
    m->requests[r][code_slot(code)]++;
    int b = 0;
    while (b < METRICS_N_LAT - 1 && seconds > LAT_BOUNDS[b]) b++;
    m->latency_bucket[b]++;
    m->latency_sum += seconds;
    m->latency_count++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_batch(ServeMetrics *m, int n_items, long n_tokens, int n_truncated, double seconds) {
    pthread_mutex_lock(&m->mu);
    int b = 0;
    while (b < METRICS_N_BATCH - 1 && n_items > BATCH_BOUNDS[b]) b++;
    m->batch_bucket[b]++;
    m->batch_sum += n_items;
    m->batch_count++;
    m->items_total += n_items;
    m->tokens_total += n_tokens;
    m->truncated_total += n_truncated;
    m->scorer_seconds += seconds;
    pthread_mutex_unlock(&m->mu);
}

void metrics_body_timeout(ServeMetrics *m) {
    pthread_mutex_lock(&m->mu);
    m->body_timeouts++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_queue_full(ServeMetrics *m) {
    pthread_mutex_lock(&m->mu);
    m->rejected_full++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_render(ServeMetrics *m, StrBuf *o, int queue_depth, int queue_capacity, int in_flight) {
    pthread_mutex_lock(&m->mu);
    long errors = 0;
    sb_puts(o, "# HELP oprm_requests_total HTTP requests by route and status code.\n"
               "# TYPE oprm_requests_total counter\n");
    for (int r = 0; r < ROUTE_COUNT; r++) {
        for (int c = 0; c < METRICS_N_CODES; c++) {
            long v = m->requests[r][c];
            if (!v) continue;
            if (CODES[c] >= 400 || CODES[c] == 0) errors += v;
            if (CODES[c])
                sb_printf(o, "oprm_requests_total{route=\"%s\",code=\"%d\"} %ld\n", ROUTE_NAMES[r], CODES[c], v);
            else
                sb_printf(o, "oprm_requests_total{route=\"%s\",code=\"other\"} %ld\n", ROUTE_NAMES[r], v);
        }
    }
    sb_printf(o,
              "# HELP oprm_errors_total Requests answered with a status >= 400.\n"
              "# TYPE oprm_errors_total counter\noprm_errors_total %ld\n",
              errors);
    sb_printf(o,
              "# HELP oprm_queue_rejected_total Requests refused with 503 because the queue was full.\n"
              "# TYPE oprm_queue_rejected_total counter\noprm_queue_rejected_total %ld\n",
              m->rejected_full);
    sb_printf(o,
              "# HELP oprm_queue_depth Items waiting for the scorer.\n"
              "# TYPE oprm_queue_depth gauge\noprm_queue_depth %d\n"
              "# HELP oprm_queue_capacity Items the queue holds before refusing with 503.\n"
              "# TYPE oprm_queue_capacity gauge\noprm_queue_capacity %d\n"
              "# HELP oprm_requests_in_flight Requests being received, queued or answered.\n"
              "# TYPE oprm_requests_in_flight gauge\noprm_requests_in_flight %d\n",
              queue_depth, queue_capacity, in_flight);
    sb_puts(o, "# HELP oprm_request_duration_seconds Request latency, from headers to response.\n"
               "# TYPE oprm_request_duration_seconds histogram\n");
    long cum = 0;
    for (int b = 0; b < METRICS_N_LAT; b++) {
        cum += m->latency_bucket[b];
        if (b < METRICS_N_LAT - 1)
            sb_printf(o, "oprm_request_duration_seconds_bucket{le=\"%g\"} %ld\n", LAT_BOUNDS[b], cum);
        else
            sb_printf(o, "oprm_request_duration_seconds_bucket{le=\"+Inf\"} %ld\n", cum);
    }
    sb_printf(o, "oprm_request_duration_seconds_sum %.6f\noprm_request_duration_seconds_count %ld\n",
              m->latency_sum, m->latency_count);
    sb_puts(o, "# HELP oprm_batch_items Items per scorer call (dynamic batching).\n"
               "# TYPE oprm_batch_items histogram\n");
    cum = 0;
    for (int b = 0; b < METRICS_N_BATCH; b++) {
        cum += m->batch_bucket[b];
        if (b < METRICS_N_BATCH - 1)
            sb_printf(o, "oprm_batch_items_bucket{le=\"%d\"} %ld\n", BATCH_BOUNDS[b], cum);
        else
            sb_printf(o, "oprm_batch_items_bucket{le=\"+Inf\"} %ld\n", cum);
    }
    sb_printf(o, "oprm_batch_items_sum %.0f\noprm_batch_items_count %ld\n", m->batch_sum, m->batch_count);
    sb_printf(o,
              "# HELP oprm_items_scored_total Items scored.\n"
              "# TYPE oprm_items_scored_total counter\noprm_items_scored_total %ld\n"
              "# HELP oprm_tokens_scored_total Tokens in the scoring prompts of scored items.\n"
              "# TYPE oprm_tokens_scored_total counter\noprm_tokens_scored_total %ld\n"
              "# HELP oprm_truncated_prompts_total Scored items whose scoring prompt was cut to max_len.\n"
              "# TYPE oprm_truncated_prompts_total counter\noprm_truncated_prompts_total %ld\n"
              "# HELP oprm_body_timeouts_total Requests answered 400 because their body stopped arriving.\n"
              "# TYPE oprm_body_timeouts_total counter\noprm_body_timeouts_total %ld\n"
              "# HELP oprm_scorer_seconds_total Time spent inside the scorer.\n"
              "# TYPE oprm_scorer_seconds_total counter\noprm_scorer_seconds_total %.6f\n"
              "# HELP oprm_tokens_per_second Tokens scored per second of scorer time.\n"
              "# TYPE oprm_tokens_per_second gauge\noprm_tokens_per_second %.3f\n",
              m->items_total, m->tokens_total, m->truncated_total, m->body_timeouts, m->scorer_seconds,
              m->scorer_seconds > 0 ? m->tokens_total / m->scorer_seconds : 0.0);
    pthread_mutex_unlock(&m->mu);
}
