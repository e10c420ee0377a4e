#include "serve/server.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve/batcher.h"
#include "serve/metrics.h"
#include "serve/routes.h"
#include "util/vec.h"

struct Server {
    ServeConfig cfg;
    char *api_key, *model_name;
    struct MHD_Daemon *daemon;
    Batcher *batcher;
    ServeMetrics metrics;
    RouteEnv env;
    int port;
    atomic_int in_flight;
    atomic_int draining;
    atomic_int arriving; /* scoring requests whose body is still being received or parsed */
    /* Requests whose body is still expected, watched for a stalled upload: MHD
     * only calls the handler when bytes arrive, so a body shorter than its
     * Content-Length would hold the connection until connection_timeout_s and
     * then close it without an answer. The watchdog answers those 400. */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    struct Request *waiting;
    pthread_t watchdog;
    int watchdog_started;
    atomic_int stopping;
};

/* Per-request state kept by MHD between calls of the access handler. */
typedef struct Request {
    ServeRoute route;
    double t0;
    int early_code; /* decided from the headers; answered once the body is drained */
    char early_msg[256];
    StrBuf body;
    int too_large;
    int arriving; /* counted in Server.arriving */
    int code;     /* status sent */
    /* Under Server.mu: */
    struct Request *prev, *next;
    int listed;       /* in Server.waiting */
    int timed_out;    /* answered 400 by the watchdog; the handler drops the rest */
    double last_data; /* when the headers or the last body bytes arrived */
    int fd;           /* the connection's socket (the watchdog writes the 400 on it) */
} Request;

void serve_config_defaults(ServeConfig *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8000;
    c->model_name = "oprm";
    c->max_body_bytes = 8u << 20;
    c->max_request_items = 512;
    c->max_request_tokens = 1L << 20;
    c->max_queue_items = 4096;
    c->max_batch_items = 64;
    c->max_batch_tokens = 32768;
    c->batch_window_ms = 5;
    c->max_connections = 256;
    c->connection_timeout_s = 120;
    c->body_timeout_ms = 10000;
    c->retry_after_s = 1;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static ServeRoute route_of(const char *url) {
    if (!strcmp(url, "/get_reward")) return ROUTE_GET_REWARD;
    if (!strcmp(url, "/v1/score/evaluation")) return ROUTE_SCORE_EVALUATION;
    if (!strcmp(url, "/v1/score")) return ROUTE_SCORE;
    if (!strcmp(url, "/v1/compare")) return ROUTE_COMPARE;
    if (!strcmp(url, "/health")) return ROUTE_HEALTH;
    if (!strcmp(url, "/metrics")) return ROUTE_METRICS;
    return ROUTE_OTHER;
}

static int route_is_post(ServeRoute r) {
    return r == ROUTE_GET_REWARD || r == ROUTE_SCORE_EVALUATION || r == ROUTE_SCORE || r == ROUTE_COMPARE;
}

static enum MHD_Result send_text(Server *s, struct MHD_Connection *c, Request *rq, int code, const char *ctype,
                                 char *text, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (code == 503) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", s->cfg.retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (code == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (code == 405) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, route_is_post(rq->route) ? "POST" : "GET");
    if (atomic_load(&s->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)code, resp);
    MHD_destroy_response(resp);
    rq->code = code;
    return ok;
}

static enum MHD_Result send_json(Server *s, struct MHD_Connection *c, Request *rq, int code, json_t *j) {
    char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (!text) return MHD_NO;
    return send_text(s, c, rq, code, "application/json", text, strlen(text));
}

static enum MHD_Result send_error(Server *s, struct MHD_Connection *c, Request *rq, int code, const char *msg) {
    return send_json(s, c, rq, code, json_pack("{s:s, s:i}", "error", msg, "code", code));
}

/* Constant-time comparison of the bearer token, so timing does not leak the key. */
static int auth_ok(const Server *s, struct MHD_Connection *c) {
    if (!s->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t n = strlen(h), m = strlen(s->api_key);
    unsigned diff = n != m;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)h[i] ^ (unsigned char)s->api_key[i % (m ? m : 1)];
    return diff == 0;
}

/* Decides, from the request line and headers alone, the errors that do not
 * need the body. Returns 1 if a response was queued at once (413 on a
 * declared oversize body, so it is never read). */
static int check_headers(Server *s, struct MHD_Connection *c, Request *rq, const char *method) {
    if (rq->route == ROUTE_OTHER) {
        rq->early_code = 404;
        snprintf(rq->early_msg, sizeof rq->early_msg,
                 "no such route; routes: POST /get_reward, /v1/score/evaluation, /v1/score, /v1/compare; GET "
                 "/health, /metrics");
    } else if (strcmp(method, route_is_post(rq->route) ? "POST" : "GET")) {
        rq->early_code = 405;
        snprintf(rq->early_msg, sizeof rq->early_msg, "%s does not accept %.16s; use %s", route_name(rq->route),
                 method, route_is_post(rq->route) ? "POST" : "GET");
    } else if (rq->route != ROUTE_HEALTH && !auth_ok(s, c)) {
        rq->early_code = 401;
        snprintf(rq->early_msg, sizeof rq->early_msg, "missing or wrong API key (Authorization: Bearer KEY)");
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg, "body of %.24s bytes exceeds the limit of %zu bytes (--max-body-bytes)", cl,
                 s->cfg.max_body_bytes);
        send_error(s, c, rq, 413, msg);
        return 1;
    }
    return 0;
}

static enum MHD_Result answer_get(Server *s, struct MHD_Connection *c, Request *rq) {
    if (rq->route == ROUTE_HEALTH) {
        int draining = atomic_load(&s->draining);
        json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i}", "status", draining ? "draining" : "ok", "model",
                              s->model_name, "queue_depth", batcher_depth(s->batcher), "queue_capacity",
                              batcher_capacity(s->batcher), "in_flight", atomic_load(&s->in_flight));
        return send_json(s, c, rq, draining ? 503 : 200, j);
    }
    StrBuf b = {0};
    metrics_render(&s->metrics, &b, batcher_depth(s->batcher), batcher_capacity(s->batcher),
                   atomic_load(&s->in_flight));
    size_t n = b.n;
    return send_text(s, c, rq, 200, "text/plain; version=0.0.4", b.s, n);
}

static void end_arrival(Server *s, Request *rq) {
    if (rq->arriving) atomic_fetch_sub(&s->arriving, 1);
    rq->arriving = 0;
}

static enum MHD_Result answer_post(Server *s, struct MHD_Connection *c, Request *rq) {
    json_error_t jerr;
    json_t *body = json_loadb(rq->body.s ? rq->body.s : "", rq->body.n, JSON_REJECT_DUPLICATES, &jerr);
    end_arrival(s, rq);
    if (!body) {
        char msg[300];
        /* Without JSON_ALLOW_NUL jansson refuses "\u0000": say so in the user's terms (every text is
         * a C string from here on, so a NUL would cut it silently; refusing is the only honest answer). */
        if (strstr(jerr.text, "\\u0000"))
            snprintf(msg, sizeof msg,
                     "body is not valid for oprm (line %d, column %d): a string contains \\u0000 (a NUL "
                     "character), which texts may not contain",
                     jerr.line, jerr.column);
        else
            snprintf(msg, sizeof msg, "body is not valid JSON (line %d, column %d): %s", jerr.line, jerr.column,
                     jerr.text);
        return send_error(s, c, rq, 400, msg);
    }
    RouteError e = {0, ""};
    json_t *out = NULL;
    switch (rq->route) {
    case ROUTE_GET_REWARD: out = route_get_reward(&s->env, body, &e); break;
    case ROUTE_SCORE_EVALUATION: out = route_score_evaluation(&s->env, body, &e); break;
    case ROUTE_SCORE: out = route_score(&s->env, body, &e); break;
    case ROUTE_COMPARE: out = route_compare(&s->env, body, &e); break;
    default: e.code = 500; snprintf(e.msg, sizeof e.msg, "unrouted"); break;
    }
    json_decref(body);
    if (!out) return send_error(s, c, rq, e.code ? e.code : 500, e.msg[0] ? e.msg : "could not build the response");
    return send_json(s, c, rq, 200, out);
}

/* ---- stalled bodies (Server.mu held) ---- */

static void list_add(Server *s, Request *rq) {
    rq->prev = NULL;
    rq->next = s->waiting;
    if (s->waiting) s->waiting->prev = rq;
    s->waiting = rq;
    rq->listed = 1;
}

static void list_remove(Server *s, Request *rq) {
    if (!rq->listed) return;
    if (rq->prev) rq->prev->next = rq->next;
    else s->waiting = rq->next;
    if (rq->next) rq->next->prev = rq->prev;
    rq->prev = rq->next = NULL;
    rq->listed = 0;
}

/* Answers 400 on the socket itself and shuts it down: MHD then sees the
 * connection end and closes it (on_completed records the 400). The handler
 * never queues a response for such a request (it checks timed_out under mu). */
static void answer_stalled(Server *s, Request *rq) {
    char msg[256], head[256];
    snprintf(msg, sizeof msg,
             "request body incomplete: %zu bytes received, then nothing for %d ms (shorter than its "
             "Content-Length?)",
             rq->body.n, s->cfg.body_timeout_ms);
    json_t *j = json_pack("{s:s, s:i}", "error", msg, "code", 400);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    size_t n = text ? strlen(text) : 0;
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      n);
    /* A few hundred bytes into an idle socket's send buffer: never blocks. */
    if (send(rq->fd, head, (size_t)hn, MSG_NOSIGNAL | MSG_DONTWAIT) == hn && n)
        (void)send(rq->fd, text, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(text);
    shutdown(rq->fd, SHUT_RDWR);
    rq->timed_out = 1;
    rq->code = 400;
    metrics_body_timeout(&s->metrics);
}

static void *watchdog_main(void *arg) {
    Server *s = arg;
    int period_ms = s->cfg.body_timeout_ms / 4;
    if (period_ms < 10) period_ms = 10;
    if (period_ms > 250) period_ms = 250;
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stopping)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = until.tv_nsec + period_ms * 1000000L;
        until.tv_sec += ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&s->wake, &s->mu, &until); /* serve_shutdown signals it */
        if (atomic_load(&s->stopping)) break;
        double now = now_s();
        for (Request *rq = s->waiting, *next; rq; rq = next) {
            next = rq->next;
            if ((now - rq->last_data) * 1e3 < s->cfg.body_timeout_ms) continue;
            list_remove(s, rq);
            answer_stalled(s, rq);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    Server *s = cls;
    Request *rq = *con_cls;
    if (!rq) {
        rq = xcalloc(1, sizeof *rq);
        rq->t0 = now_s();
        rq->route = route_of(url);
        *con_cls = rq;
        atomic_fetch_add(&s->in_flight, 1);
        if (!check_headers(s, c, rq, method) && !rq->early_code && route_is_post(rq->route)) {
            rq->arriving = 1;
            atomic_fetch_add(&s->arriving, 1);
        }
        if (!rq->code && s->cfg.body_timeout_ms > 0) {
            const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
            if (ci) {
                rq->fd = ci->connect_fd;
                rq->last_data = now_s();
                pthread_mutex_lock(&s->mu);
                list_add(s, rq);
                pthread_mutex_unlock(&s->mu);
            }
        }
        return MHD_YES;
    }
    if (s->cfg.body_timeout_ms > 0) {
        pthread_mutex_lock(&s->mu);
        int dead = rq->timed_out;
        if (!dead && *upload_data_size > 0) rq->last_data = now_s();
        else if (!dead) list_remove(s, rq); /* the whole body is here: no longer watched */
        pthread_mutex_unlock(&s->mu);
        if (dead) { /* answered 400 by the watchdog: close */
            *upload_data_size = 0;
            return MHD_NO;
        }
    }
    if (rq->code) { /* answered from the headers; discard whatever body arrives */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!rq->early_code && !rq->too_large) {
            if (rq->body.n + *upload_data_size > s->cfg.max_body_bytes) {
                rq->too_large = 1; /* e.g. chunked upload without Content-Length */
                sb_free(&rq->body);
            } else {
                sb_append(&rq->body, upload_data, *upload_data_size);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->early_code) return send_error(s, c, rq, rq->early_code, rq->early_msg);
    if (rq->too_large) {
        end_arrival(s, rq);
        char msg[128];
        snprintf(msg, sizeof msg, "body exceeds the limit of %zu bytes (--max-body-bytes)", s->cfg.max_body_bytes);
        return send_error(s, c, rq, 413, msg);
    }
    if (!route_is_post(rq->route)) return answer_get(s, c, rq);
    return answer_post(s, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    Server *s = cls;
    Request *rq = *con_cls;
    if (!rq) return;
    pthread_mutex_lock(&s->mu);
    list_remove(s, rq);
    pthread_mutex_unlock(&s->mu);
    end_arrival(s, rq); /* e.g. the client went away mid-body */
    if (rq->code) metrics_request(&s->metrics, rq->route, rq->code, now_s() - rq->t0);
    sb_free(&rq->body);
    free(rq);
    *con_cls = NULL;
    atomic_fetch_sub(&s->in_flight, 1);
}

Server *serve_start(const ServeConfig *cfg, const ServeBackend *backend, OprmError *err) {
    Server *s = xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->api_key = cfg->api_key && cfg->api_key[0] ? xstrdup(cfg->api_key) : NULL;
    s->model_name = xstrdup(cfg->model_name ? cfg->model_name : "oprm");
    s->cfg.api_key = s->api_key;
    s->cfg.model_name = s->model_name;
    metrics_init(&s->metrics);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);

    const char *host = cfg->host && cfg->host[0] ? cfg->host : "127.0.0.1";
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        oprm_fail(err, "--host %s: not an IPv4 or IPv6 address", host);
        goto fail;
    }
    if (cfg->port < 0 || cfg->port > 65535) {
        oprm_fail(err, "--port %d: must be 0..65535", cfg->port);
        goto fail;
    }
    if (cfg->max_request_items > cfg->max_queue_items) {
        oprm_fail(err, "--max-request-items %d exceeds --max-queue-items %d: such a request could never be queued",
                  cfg->max_request_items, cfg->max_queue_items);
        goto fail;
    }
    BatcherConfig bc = {
        .queue_items = cfg->max_queue_items,
        .max_batch_items = cfg->max_batch_items,
        .max_batch_tokens = cfg->max_batch_tokens,
        .batch_window_ms = cfg->batch_window_ms,
        .max_request_tokens = cfg->max_request_tokens,
        .arriving = &s->arriving,
    };
    s->batcher = batcher_start(backend, &bc, &s->metrics);
    if (!s->batcher) {
        oprm_fail(err, "cannot start the batching thread");
        goto fail;
    }
    s->env = (RouteEnv){s->batcher, cfg->max_request_items, s->model_name};
    s->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout_s,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        oprm_fail(err, "cannot listen on %s:%d (address in use or not available)", host, cfg->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    if (cfg->body_timeout_ms > 0) {
        if (pthread_create(&s->watchdog, NULL, watchdog_main, s)) {
            MHD_stop_daemon(s->daemon);
            oprm_fail(err, "cannot start the body-timeout thread");
            goto fail;
        }
        s->watchdog_started = 1;
    }
    return s;
fail:
    batcher_stop(s->batcher);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    metrics_destroy(&s->metrics);
    free(s->api_key);
    free(s->model_name);
    free(s);
    return NULL;
}

int serve_port(const Server *s) {
    return s->port;
}

int serve_queue_depth(Server *s) {
    return batcher_depth(s->batcher);
}

int serve_in_flight(Server *s) {
    return atomic_load(&s->in_flight);
}

void serve_shutdown(Server *s, int drain_timeout_ms) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    MHD_socket listen_fd = MHD_quiesce_daemon(s->daemon);
    double until = now_s() + drain_timeout_ms * 1e-3;
    while (atomic_load(&s->in_flight) > 0 && now_s() < until) usleep(2000);
    /* The watchdog stops first: MHD_stop_daemon frees the requests it watches. */
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stopping, 1);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->watchdog_started) pthread_join(s->watchdog, NULL);
    MHD_stop_daemon(s->daemon); /* closes idle keep-alive connections, joins their threads */
    if (listen_fd != MHD_INVALID_SOCKET) close(listen_fd);
    batcher_stop(s->batcher);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    metrics_destroy(&s->metrics);
    free(s->api_key);
    free(s->model_name);
    free(s);
}
