/* BF16 matrix products with fp32 accumulation (AVX512-BF16 `vdpbf16ps`), for
 * scoring with BF16 weights and the mixed-precision train step.
 *
 * C[M, N] = A[M, K] . B[K, N] (+ C when beta = 1). Each operand is described
 * by a pointer, its element type (fp32 or bf16) and the strides of element
 * (i, k) / (k, j), so the three products of a linear layer (x W^T, dy W,
 * dy^T x) need no transposed copy: the operands are packed once per call into
 * the kernel's layout, and fp32 operands are rounded to bf16 (nearest even)
 * in that pass, i.e. once per GEMM. Accumulation is fp32 throughout; C is fp32.
 *
 * Backends, chosen once per process by bf16_gemm_backend():
 *  - "oprm": this file's kernel, where the CPU reports AVX512F + AVX512_BF16
 *    (cpuid) and the OS saves the AVX-512 state;
 *  - "openblas": cblas_sbgemm when the linked OpenBLAS exports it (looked up
 *    with dlsym: Debian's 0.3.21 build does not) and OPRM_BF16=openblas;
 *  - none: callers fall back to fp32 sgemm. OPRM_BF16=0 (or off) forces this,
 *    so the fallback path can be exercised on any machine. */
#ifndef OPRM_MODEL_BF16_GEMM_H
#define OPRM_MODEL_BF16_GEMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const void *p;
    int bf16;      /* 1: uint16_t bfloat16 bits, 0: float */
    ptrdiff_t rs;  /* stride between rows (first index) */
    ptrdiff_t cs;  /* stride between columns (second index) */
} GemmOp;

typedef enum { BF16_NONE = 0, BF16_OPRM = 1, BF16_OPENBLAS = 2 } Bf16Backend;

/* The backend in force (probed on first use; OPRM_BF16 read then). */
Bf16Backend bf16_gemm_backend(void);
/* Re-reads OPRM_BF16 and the CPU (tests switch the backend with it). */
void bf16_gemm_reprobe(void);
/* One line saying what is used and why, e.g. "oprm kernel (cpu has avx512_bf16)". */
const char *bf16_gemm_describe(void);

/* beta is 0 or 1. Requires bf16_gemm_backend() != BF16_NONE. Runs on
 * omp_get_max_threads() threads; call it outside a parallel region. */
void bf16_gemm(int M, int N, int K, GemmOp A, GemmOp B, float beta, float *C, int ldc);

#endif
