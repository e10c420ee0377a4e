#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int arg_long(const char *cmd, const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "oprm %s: %s expects an integer in [%ld, %ld], got '%s'\n", cmd, flag, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int arg_double(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || !(x >= lo && x <= hi)) {
        if (isinf(lo) && isinf(hi))
            fprintf(stderr, "oprm %s: %s expects a number, got '%s'\n", cmd, flag, v);
        else
            fprintf(stderr, "oprm %s: %s expects a number in [%g, %g], got '%s'\n", cmd, flag, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}
