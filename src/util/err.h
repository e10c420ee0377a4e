/* Error reporting shared by every layer: a function that can fail takes an
 * OprmError* and returns -1 (or NULL) after filling it with a message that says
 * what went wrong and where (file, line, field), ready to print to the user. */
#ifndef OPRM_UTIL_ERR_H
#define OPRM_UTIL_ERR_H

#include <stddef.h>

typedef struct {
    char msg[1024];
} OprmError;

/* Formats the message into e (if non-NULL) and returns -1, so callers can
 * write `return oprm_fail(err, "bad %s", x);`. */
int oprm_fail(OprmError *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context ("reading foo.json: ") to an existing message. Returns -1. */
int oprm_prefix(OprmError *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation that aborts with a message on failure: out-of-memory is not a
 * recoverable condition for a trainer. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
