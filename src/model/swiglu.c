/* SwiGLU MLP nonlinearity: a = silu(gate) * up. */
#include <math.h>

#include "model/fastexp.h"
#include "model/layers.h"

void swiglu_forward(float *restrict a, const float *restrict g, const float *restrict u, size_t n) {
    #pragma omp parallel for simd schedule(static) if (n > OMP_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + fast_expf(-g[i]));
        a[i] = g[i] * sg * u[i];
    }
}

void swiglu_backward(float *restrict dg, float *restrict du, const float *restrict da, const float *restrict g,
                     const float *restrict u, size_t n) {
    #pragma omp parallel for simd schedule(static) if (n > OMP_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + fast_expf(-g[i]));
        float silu = g[i] * sg;
        du[i] = da[i] * silu;
        dg[i] = da[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
}
