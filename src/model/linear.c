/* Linear layers in HF layout (W is [out, in], row-major): one GEMM over all
 * packed rows, y = x . W^T, so no weight is ever transposed in memory. */
#include <cblas.h>

#include "model/layers.h"

#define BIAS_COLS 64

void linear_forward(float *y, const float *x, const float *w, const float *b, int rows, int in, int out) {
    if (b) {
        #pragma omp parallel for schedule(static) if ((size_t)rows * out > OMP_MIN_WORK)
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < out; o++) y[(size_t)r * out + o] = b[o];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y,
                out);
}

void linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int rows,
                     int in, int out) {
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db) {
        /* Column sums in 64-column blocks: each row contributes one contiguous
         * 64-float vector add instead of a stride-`out` scalar walk. */
        int nblk = (out + BIAS_COLS - 1) / BIAS_COLS;
        #pragma omp parallel for schedule(static) if ((size_t)rows * out > OMP_MIN_WORK)
        for (int bk = 0; bk < nblk; bk++) {
            int o0 = bk * BIAS_COLS, ncol = out - o0 < BIAS_COLS ? out - o0 : BIAS_COLS;
            float acc[BIAS_COLS] = {0};
            for (int r = 0; r < rows; r++) {
                const float *d = dy + (size_t)r * out + o0;
                for (int j = 0; j < ncol; j++) acc[j] += d[j];
            }
            for (int j = 0; j < ncol; j++) db[o0 + j] += acc[j];
        }
    }
}
