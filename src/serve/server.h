/* `oprm serve`: an HTTP reward server on libmicrohttpd (thread per
 * connection) in front of a dynamic batcher and a scoring backend. Routes
 * and their JSON shapes are documented in docs/serving.md. */
#ifndef OPRM_SERVE_SERVER_H
#define OPRM_SERVE_SERVER_H

#include <stddef.h>

#include "serve/backend.h"
#include "util/err.h"

typedef struct {
    const char *host;          /* IPv4/IPv6 literal or "localhost"; default 127.0.0.1 */
    int port;                  /* 0 = any free port (see serve_port) */
    const char *api_key;       /* NULL = no auth; else "Authorization: Bearer KEY" required */
    const char *model_name;    /* reported by /health and /v1/score/evaluation */
    size_t max_body_bytes;     /* 413 above */
    int max_request_items;     /* 413 above */
    long max_request_tokens;   /* 413 above (scoring-prompt tokens summed over items) */
    int max_queue_items;       /* 503 when a request does not fit */
    int max_batch_items;       /* items per scorer call */
    long max_batch_tokens;     /* tokens per scorer call */
    int batch_window_ms;       /* wait for more items after the first; 0 = score at once */
    int max_connections;       /* concurrent connections (each has a thread) */
    int connection_timeout_s;  /* idle connections are closed after this */
    int body_timeout_ms;       /* a request whose body stops arriving (shorter than its
                                  Content-Length) for this long is answered 400 and closed */
    int retry_after_s;         /* Retry-After of a 503 */
} ServeConfig;

void serve_config_defaults(ServeConfig *c);

typedef struct Server Server;

/* Binds, starts the batcher and the HTTP threads, returns at once. */
Server *serve_start(const ServeConfig *cfg, const ServeBackend *backend, OprmError *err);

int serve_port(const Server *s);
int serve_queue_depth(Server *s);
int serve_in_flight(Server *s);

/* Graceful stop: stops accepting connections, lets in-flight requests
 * finish (up to drain_timeout_ms), then stops every thread and frees s. */
void serve_shutdown(Server *s, int drain_timeout_ms);

#endif
