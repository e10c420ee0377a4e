/* RMSNorm: y = x * rstd * w with rstd = 1/sqrt(mean(x^2) + eps), in fp32 like HF
 * but with the sum of squares accumulated in double. */
#include <math.h>

#include "model/layers.h"

/* Columns per task of the weight-gradient sum: 64 floats = 4 cache lines, so
 * tasks never share a line, and the inner loop is a 64-wide vector update. */
#define DW_COLS 64

void rmsnorm_forward(float *restrict y, float *restrict rstd, const float *restrict x, const float *restrict w,
                     int rows, int dim, double eps) {
    #pragma omp parallel for schedule(static) if ((size_t)rows * dim > OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double ss = 0;
        #pragma omp simd reduction(+ : ss)
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float rs = (float)(1.0 / sqrt(ss / dim + eps));
        rstd[r] = rs;
        #pragma omp simd
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * rs * w[i];
    }
}

/* With xhat = x*rstd: dx = rstd * (dy*w - xhat * mean(dy*w*xhat)); dw = sum_rows dy*xhat. */
void rmsnorm_backward(float *restrict dx, float *restrict dw, const float *restrict dy, const float *restrict x,
                      const float *restrict w, const float *restrict rstd, int rows, int dim) {
    int ncb = dw ? (dim + DW_COLS - 1) / DW_COLS : 0;
    #pragma omp parallel if ((size_t)rows * dim > OMP_MIN_WORK)
    {
        #pragma omp for schedule(static) nowait
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * dim, *dyr = dy + (size_t)r * dim;
            float *dxr = dx + (size_t)r * dim;
            float rs = rstd[r];
            double dot = 0;
            #pragma omp simd reduction(+ : dot)
            for (int i = 0; i < dim; i++) dot += (double)dyr[i] * w[i] * xr[i] * rs;
            float m = (float)(dot / dim);
            #pragma omp simd
            for (int i = 0; i < dim; i++) dxr[i] += rs * (dyr[i] * w[i] - xr[i] * rs * m);
        }
        /* Column sums of dy*x*rstd, row by row over a block of columns: each
         * block is one thread's alone (no reduction; the sum order does not
         * depend on the thread count). Independent of the loop above, hence
         * nowait. */
        #pragma omp for schedule(static)
        for (int cb = 0; cb < ncb; cb++) {
            int c0 = cb * DW_COLS, nc = dim - c0 < DW_COLS ? dim - c0 : DW_COLS;
            float acc[DW_COLS] = {0};
            for (int r = 0; r < rows; r++) {
                const float *dyr = dy + (size_t)r * dim + c0, *xr = x + (size_t)r * dim + c0;
                float rs = rstd[r];
                #pragma omp simd
                for (int i = 0; i < nc; i++) acc[i] += dyr[i] * xr[i] * rs;
            }
            for (int i = 0; i < nc; i++) dw[c0 + i] += acc[i];
        }
    }
}
