/* A load generator for `oprm serve --load-test`: N client threads send a
 * fixed number of requests over loopback (one connection each) and the
 * latencies are summarised. Bounded in count and in time. */
#ifndef OPRM_SERVE_LOADGEN_H
#define OPRM_SERVE_LOADGEN_H

#include "util/err.h"

typedef struct {
    int clients;
    int requests;
    int timeout_ms;      /* per request */
    double max_seconds;  /* no new request starts after this */
} LoadConfig;

typedef struct {
    int sent, ok, errors; /* errors: sent but not answered 200 */
    int unsent;           /* not started because max_seconds ran out */
    double seconds, requests_per_s, p50_ms, p99_ms, mean_ms, max_ms;
    int first_error_status;
} LoadStats;

/* POSTs bodies[i % n_bodies] to path for i in 0..requests. Returns 0 (errors
 * are counted in stats, not failures of the run). requests_per_s counts
 * successful requests over the wall time of the run. */
int loadgen_run(const char *host, int port, const char *path, const char *const *bodies, int n_bodies,
                const LoadConfig *cfg, LoadStats *stats, OprmError *err);

#endif
