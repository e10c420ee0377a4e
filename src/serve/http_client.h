/* A minimal HTTP/1.1 client over plain sockets (one request per
 * connection, "Connection: close"), for the server's tests and its load
 * generator. Bounded: every read and write has a timeout, and the reply is
 * capped at 64 MiB. */
#ifndef OPRM_SERVE_HTTP_CLIENT_H
#define OPRM_SERVE_HTTP_CLIENT_H

#include <stddef.h>

#include "util/err.h"
#include "util/vec.h"

typedef struct {
    int status;   /* 0 when no status line arrived */
    StrBuf head;  /* status line and headers */
    StrBuf body;
} HttpReply;

/* Sends method path with body (may be NULL) and extra header lines
 * (each ending in \r\n, may be NULL); fills out. Returns 0, or -1 on a
 * connection/timeout error. */
int http_request(const char *host, int port, const char *method, const char *path, const char *extra_headers,
                 const char *body, size_t body_len, int timeout_ms, HttpReply *out, OprmError *err);

/* Sends raw bytes as they are and reads the reply until the server closes. */
int http_raw(const char *host, int port, const char *raw, size_t n, int timeout_ms, HttpReply *out, OprmError *err);

/* The value of a header (case-insensitive name) copied into buf, or NULL. */
const char *http_header(const HttpReply *r, const char *name, char *buf, size_t size);

void http_reply_free(HttpReply *r);

#endif
