#include "serve/compare.h"

PairProbs serve_compare(const double pa[9], const double pb[9]) {
    PairProbs r = {0, 0, 0};
    double cdf_b = 0; /* F_b(k-1) while visiting level k */
    for (int k = 0; k < 9; k++) {
        r.a_better += pa[k] * cdf_b;
        r.tie += pa[k] * pb[k];
        cdf_b += pb[k];
    }
    /* b≻a computed directly rather than as 1 − rest, so rounding cannot push it below 0. */
    double cdf_a = 0;
    for (int k = 0; k < 9; k++) {
        r.b_better += pb[k] * cdf_a;
        cdf_a += pa[k];
    }
    return r;
}
