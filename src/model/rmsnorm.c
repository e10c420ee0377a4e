/* RMSNorm: y = x * rstd * w with rstd = 1/sqrt(mean(x^2) + eps), in fp32 like HF
 * but with the sum of squares accumulated in double. */
#include <math.h>

#include "model/layers.h"

void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int rows, int dim, double eps) {
    #pragma omp parallel for schedule(static) if ((size_t)rows * dim > OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float rs = (float)(1.0 / sqrt(ss / dim + eps));
        rstd[r] = rs;
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * rs * w[i];
    }
}

/* With xhat = x*rstd: dx = rstd * (dy*w - xhat * mean(dy*w*xhat)); dw = sum_rows dy*xhat. */
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                      int rows, int dim) {
    #pragma omp parallel for schedule(static) if ((size_t)rows * dim > OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim, *dyr = dy + (size_t)r * dim;
        float *dxr = dx + (size_t)r * dim;
        float rs = rstd[r];
        double dot = 0;
        for (int i = 0; i < dim; i++) dot += (double)dyr[i] * w[i] * xr[i] * rs;
        float m = (float)(dot / dim);
        for (int i = 0; i < dim; i++) dxr[i] += rs * (dyr[i] * w[i] - xr[i] * rs * m);
    }
    if (dw) {
        /* Column sums: threads split the columns, so no reduction is needed. */
        #pragma omp parallel for schedule(static) if ((size_t)rows * dim > OMP_MIN_WORK)
        for (int i = 0; i < dim; i++) {
            float s = 0;
            for (int r = 0; r < rows; r++) s += dy[(size_t)r * dim + i] * x[(size_t)r * dim + i] * rstd[r];
            dw[i] += s;
        }
    }
}
