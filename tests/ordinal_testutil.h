/* Shared helpers for the ordinal tests: a small seeded PRNG and a
 * Richardson-extrapolated central finite-difference gradient. */
#ifndef OPRM_TESTS_ORDINAL_TESTUTIL_H
#define OPRM_TESTS_ORDINAL_TESTUTIL_H

#include <math.h>
#include <stdint.h>

/* splitmix64: tiny, seedable, good enough for tests and Monte Carlo. */
typedef struct {
    uint64_t s;
} TestRng;

static inline uint64_t rng_next(TestRng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_uniform(TestRng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static inline double rng_normal(TestRng *r) {
    double u = rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

typedef double (*FdFn)(const double *x, void *ctx);

/* Central differences at steps h and h/2, combined by Richardson extrapolation
 * (error O(h^4)). The step actually taken (x+h)-x is used, so large |x| is fine. */
static inline void fd_gradient(FdFn f, void *ctx, double *x, int n, double h, double *out) {
    for (int i = 0; i < n; i++) {
        double x0 = x[i], d[2];
        for (int s = 0; s < 2; s++) {
            double step = s == 0 ? h : h / 2;
            double xp = x0 + step, xm = x0 - step;
            x[i] = xp;
            double fp = f(x, ctx);
            x[i] = xm;
            double fm = f(x, ctx);
            d[s] = (fp - fm) / (xp - xm);
        }
        x[i] = x0;
        out[i] = (4.0 * d[1] - d[0]) / 3.0;
    }
}

/* max_i |g_i - ref_i| / max(max_i |g_i|, max_i |ref_i|): the gradient's relative
 * error measured against its own scale (a component far below the vector's
 * scale cannot be resolved by differencing the loss). Returns inf for a zero
 * scale, so the check fails rather than passing vacuously. */
static inline double grad_rel_error(const double *g, const double *ref, int n) {
    double scale = 0.0, diff = 0.0;
    for (int i = 0; i < n; i++) {
        if (fabs(g[i]) > scale) scale = fabs(g[i]);
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
        if (fabs(g[i] - ref[i]) > diff) diff = fabs(g[i] - ref[i]);
    }
    if (!(scale > 0.0) || !isfinite(diff)) return INFINITY;
    return diff / scale;
}

#endif
