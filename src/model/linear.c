/* Linear layers in HF layout (W is [out, in], row-major): one GEMM over all
 * packed rows, y = x . W^T, so no weight is ever transposed in memory. */
#include <cblas.h>

#include "model/layers.h"

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
        #pragma omp parallel for schedule(static) if ((size_t)rows * out > OMP_MIN_WORK)
        for (int o = 0; o < out; o++) {
            float s = 0;
            for (int r = 0; r < rows; r++) s += dy[(size_t)r * out + o];
            db[o] += s;
        }
    }
}
