/* Growable arrays used across layers: token ids and byte strings. */
#ifndef OPRM_UTIL_VEC_H
#define OPRM_UTIL_VEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *v;
    size_t n, cap;
} IdVec;

void idvec_push(IdVec *a, int32_t x);
void idvec_extend(IdVec *a, const int32_t *x, size_t n);
void idvec_reserve(IdVec *a, size_t cap);
void idvec_free(IdVec *a);

/* Byte string, always NUL-terminated after any operation (s may hold NULs). */
typedef struct {
    char *s;
    size_t n, cap;
} StrBuf;

void sb_append(StrBuf *b, const char *s, size_t n);
void sb_puts(StrBuf *b, const char *s);
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_reserve(StrBuf *b, size_t cap);
void sb_clear(StrBuf *b);
void sb_free(StrBuf *b);

#endif
