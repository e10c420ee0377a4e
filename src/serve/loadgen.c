#include "serve/loadgen.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/http_client.h"

typedef struct {
    const char *host, *path;
    int port;
    const char *const *bodies;
    int n_bodies;
    const LoadConfig *cfg;
    atomic_int next;
    atomic_int errors, first_error;
    double t_start;
    double *latency_ms; /* per request, -1 = not sent */
} Shared;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *client_main(void *arg) {
    Shared *sh = arg;
    for (;;) {
        int i = atomic_fetch_add(&sh->next, 1);
        if (i >= sh->cfg->requests) break;
        if (sh->cfg->max_seconds > 0 && now_s() - sh->t_start > sh->cfg->max_seconds) break;
        const char *body = sh->bodies[i % sh->n_bodies];
        HttpReply r;
        OprmError err = {{0}};
        double t0 = now_s();
        int rc = http_request(sh->host, sh->port, "POST", sh->path, NULL, body, strlen(body), sh->cfg->timeout_ms, &r,
                              &err);
        sh->latency_ms[i] = (now_s() - t0) * 1e3;
        int status = rc == 0 ? r.status : 0;
        if (rc == 0) http_reply_free(&r);
        if (status != 200) {
            atomic_fetch_add(&sh->errors, 1);
            int zero = -1;
            atomic_compare_exchange_strong(&sh->first_error, &zero, status);
        }
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int loadgen_run(const char *host, int port, const char *path, const char *const *bodies, int n_bodies,
                const LoadConfig *cfg, LoadStats *st, OprmError *err) {
    if (cfg->clients < 1 || cfg->requests < 1 || n_bodies < 1)
        return oprm_fail(err, "load test: clients, requests and bodies must be >= 1");
    Shared sh = {.host = host, .path = path, .port = port, .bodies = bodies, .n_bodies = n_bodies, .cfg = cfg};
    atomic_init(&sh.next, 0);
    atomic_init(&sh.errors, 0);
    atomic_init(&sh.first_error, -1);
    sh.latency_ms = xmalloc((size_t)cfg->requests * sizeof *sh.latency_ms);
    for (int i = 0; i < cfg->requests; i++) sh.latency_ms[i] = -1;
    pthread_t *t = xmalloc((size_t)cfg->clients * sizeof *t);
    sh.t_start = now_s();
    int started = 0;
    for (; started < cfg->clients; started++)
        if (pthread_create(&t[started], NULL, client_main, &sh) != 0) break;
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    double seconds = now_s() - sh.t_start;
    free(t);
    memset(st, 0, sizeof *st);
    int sent = 0;
    double sum = 0;
    for (int i = 0; i < cfg->requests; i++)
        if (sh.latency_ms[i] >= 0) {
            sh.latency_ms[sent++] = sh.latency_ms[i];
            sum += sh.latency_ms[i];
        }
    qsort(sh.latency_ms, (size_t)sent, sizeof *sh.latency_ms, cmp_double);
    st->sent = sent;
    st->errors = atomic_load(&sh.errors);
    st->unsent = cfg->requests - sent;
    st->ok = sent - atomic_load(&sh.errors);
    st->first_error_status = atomic_load(&sh.first_error);
    st->seconds = seconds;
    st->requests_per_s = seconds > 0 ? st->ok / seconds : 0;
    if (sent > 0) {
        /* nearest-rank percentiles */
        int i50 = (int)(0.50 * sent + 0.999999) - 1, i99 = (int)(0.99 * sent + 0.999999) - 1;
        st->p50_ms = sh.latency_ms[i50 < 0 ? 0 : i50];
        st->p99_ms = sh.latency_ms[i99 < 0 ? 0 : i99];
        st->mean_ms = sum / sent;
        st->max_ms = sh.latency_ms[sent - 1];
    }
    free(sh.latency_ms);
    return 0;
}
