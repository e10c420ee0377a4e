/* Shared by the tests that start the `oprm serve` binary: the binary to run
 * and the port it prints ("listening on http://127.0.0.1:PORT"). */
#ifndef OPRM_SERVE_TESTUTIL_H
#define OPRM_SERVE_TESTUTIL_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline const char *serve_test_bin(void) {
    const char *bin = getenv("OPRM_BIN");
    return bin ? bin : "build/asan/oprm";
}

/* Reads the "listening on http://127.0.0.1:PORT" line from fd (bounded wait). */
static inline int read_port(int fd) {
    char buf[512];
    size_t n = 0;
    for (int i = 0; i < 600 && n < sizeof buf - 1; i++) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r > 0) {
            n += (size_t)r;
            buf[n] = 0;
            const char *p = strstr(buf, "listening on http://127.0.0.1:");
            if (p && strchr(p, '\n')) return atoi(p + strlen("listening on http://127.0.0.1:"));
        } else if (r == 0) {
            return -1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return -1;
}

#endif
