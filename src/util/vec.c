#include "util/vec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

void idvec_reserve(IdVec *a, size_t cap) {
    if (cap <= a->cap) return;
    size_t c = a->cap ? a->cap : 16;
    while (c < cap) c *= 2;
    a->v = xrealloc(a->v, c * sizeof *a->v);
    a->cap = c;
}

void idvec_push(IdVec *a, int32_t x) {
    idvec_reserve(a, a->n + 1);
    a->v[a->n++] = x;
}

void idvec_extend(IdVec *a, const int32_t *x, size_t n) {
    if (!n) return;
    idvec_reserve(a, a->n + n);
    memcpy(a->v + a->n, x, n * sizeof *x);
    a->n += n;
}

void idvec_free(IdVec *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

void sb_reserve(StrBuf *b, size_t cap) {
    if (cap + 1 <= b->cap) return;
    size_t c = b->cap ? b->cap : 64;
    while (c < cap + 1) c *= 2;
    b->s = xrealloc(b->s, c);
    b->cap = c;
}

void sb_append(StrBuf *b, const char *s, size_t n) {
    sb_reserve(b, b->n + n);
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void sb_puts(StrBuf *b, const char *s) {
    sb_append(b, s, strlen(s));
}

void sb_printf(StrBuf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    sb_reserve(b, b->n + (size_t)n);
    vsnprintf(b->s + b->n, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->n += (size_t)n;
}

void sb_clear(StrBuf *b) {
    b->n = 0;
    if (b->s) b->s[0] = 0;
}

void sb_free(StrBuf *b) {
    free(b->s);
    b->s = NULL;
    b->n = b->cap = 0;
}
