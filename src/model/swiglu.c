/* SwiGLU MLP nonlinearity: a = silu(gate) * up. */
#include <math.h>

#include "model/layers.h"

void swiglu_forward(float *a, const float *g, const float *u, size_t n) {
    #pragma omp parallel for schedule(static) if (n > OMP_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + exp_fast(-g[i]));
        a[i] = g[i] * sg * u[i];
    }
}

void swiglu_backward(float *dg, float *du, const float *da, const float *g, const float *u, size_t n) {
    #pragma omp parallel for schedule(static) if (n > OMP_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + exp_fast(-g[i]));
        float silu = g[i] * sg;
        du[i] = da[i] * silu;
        dg[i] = da[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
}
