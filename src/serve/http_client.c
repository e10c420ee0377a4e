#include "serve/http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_REPLY (64u << 20)

static int connect_to(const char *host, int port, int timeout_ms, OprmError *err) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return oprm_fail(err, "http: bad IPv4 address %s", host);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return oprm_fail(err, "http: socket: %s", strerror(errno));
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        return oprm_fail(err, "http: connect %s:%d: %s", host, port, strerror(e));
    }
    return fd;
}

/* Writes what it can; a server may answer (413) and close before reading
 * everything, so a failed write is not an error by itself. */
static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static int read_reply(int fd, HttpReply *out, OprmError *err) {
    StrBuf all = {0};
    char buf[16384];
    int timed_out = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            timed_out = 1;
            break;
        }
        if (r <= 0) break; /* EOF, or reset after a complete answer */
        if (all.n + (size_t)r > MAX_REPLY) break;
        sb_append(&all, buf, (size_t)r);
    }
    memset(out, 0, sizeof *out);
    const char *sep = all.s ? strstr(all.s, "\r\n\r\n") : NULL;
    if (!sep || sscanf(all.s, "HTTP/1.%*d %d", &out->status) != 1) {
        out->status = 0;
        sb_free(&all);
        return oprm_fail(err, timed_out ? "http: timed out waiting for a reply" : "http: no valid reply");
    }
    sb_append(&out->head, all.s, (size_t)(sep - all.s));
    sb_append(&out->body, sep + 4, all.n - (size_t)(sep + 4 - all.s));
    sb_free(&all);
    if (!out->body.s) sb_append(&out->body, "", 0);
    return 0;
}

int http_raw(const char *host, int port, const char *raw, size_t n, int timeout_ms, HttpReply *out, OprmError *err) {
    memset(out, 0, sizeof *out);
    int fd = connect_to(host, port, timeout_ms, err);
    if (fd < 0) return -1;
    send_all(fd, raw, n);
    shutdown(fd, SHUT_WR);
    int rc = read_reply(fd, out, err);
    close(fd);
    return rc;
}

int http_request(const char *host, int port, const char *method, const char *path, const char *extra_headers,
                 const char *body, size_t body_len, int timeout_ms, HttpReply *out, OprmError *err) {
    memset(out, 0, sizeof *out);
    StrBuf req = {0};
    sb_printf(&req, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n", method, path, host, port);
    if (body) sb_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    if (extra_headers) sb_puts(&req, extra_headers);
    sb_puts(&req, "\r\n");
    if (body) sb_append(&req, body, body_len);
    int fd = connect_to(host, port, timeout_ms, err);
    if (fd < 0) {
        sb_free(&req);
        return -1;
    }
    send_all(fd, req.s, req.n);
    sb_free(&req);
    int rc = read_reply(fd, out, err);
    close(fd);
    return rc;
}

const char *http_header(const HttpReply *r, const char *name, char *buf, size_t size) {
    if (!r->head.s) return NULL;
    size_t m = strlen(name);
    for (const char *line = strstr(r->head.s, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *p = line + 2;
        if (!strncasecmp(p, name, m) && p[m] == ':') {
            p += m + 1;
            while (*p == ' ') p++;
            const char *e = strstr(p, "\r\n");
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n >= size) n = size - 1;
            memcpy(buf, p, n);
            buf[n] = 0;
            return buf;
        }
    }
    return NULL;
}

void http_reply_free(HttpReply *r) {
    sb_free(&r->head);
    sb_free(&r->body);
}
