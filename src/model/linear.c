/* Linear layers in HF layout (W is [out, in], row-major): one GEMM over all
 * packed rows, y = x . W^T, so no weight is ever transposed in memory. */
#include <cblas.h>

#include "model/bf16_gemm.h"
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

/* W [out, in] as the GEMM operand W^T (k = in, j = out) or W (k = out, j = in). */
static GemmOp weight_op(const float *w, const uint16_t *wb, int in, int transposed) {
    GemmOp o = {w ? (const void *)w : (const void *)wb, w == NULL, transposed ? 1 : in, transposed ? in : 1};
    return o;
}

void linear_bias_fill(float *y, const float *b, int rows, int out) {
    if (!b) return;
    #pragma omp parallel for schedule(static) if ((size_t)rows * out > OMP_MIN_WORK)
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) y[(size_t)r * out + o] = b[o];
}

void linear_forward_bf16(float *y, const float *x, const float *w, const uint16_t *wb, const float *b, int rows,
                         int in, int out, int accumulate) {
    if (!accumulate) linear_bias_fill(y, b, rows, out);
    GemmOp xa = {x, 0, in, 1};
    bf16_gemm(rows, out, in, xa, weight_op(w, wb, in, 1), accumulate || b ? 1.0f : 0.0f, y, out);
}

void linear_backward_bf16(float *dx, int dx_add, float *dw, const float *dy, const float *x, const float *w,
                          const uint16_t *wb, int rows, int in, int out) {
    if (dx) {
        GemmOp d = {dy, 0, out, 1};
        bf16_gemm(rows, in, out, d, weight_op(w, wb, in, 0), dx_add ? 1.0f : 0.0f, dx, in);
    }
    if (dw) {
        GemmOp dt = {dy, 0, 1, out}, xb = {x, 0, in, 1}; /* dW[out, in] += dy^T x */
        bf16_gemm(out, in, rows, dt, xb, 1.0f, dw, in);
    }
}
