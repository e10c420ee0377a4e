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

/* The oprm kernel's pieces, single-threaded, for callers that run their own
 * parallelism (attention; only with bf16_gemm_backend() == BF16_OPRM).
 * A packed A holds M rows x K (k padded to even, rows to the 8-row tile), a
 * packed B K x N (columns padded to 32-column panels); the *_elems functions
 * give their sizes in uint16_t. bf16_pack_a_rows: row i is rows[i][0 .. K)
 * (fp32, k contiguous). bf16_gemm_packed multiplies the first K of the a_k
 * (b_k) values of k that ap (bp) were packed with: C[M, N] (+)= A . B, beta 0
 * or 1. With K < b_k, a B packed once serves products over a prefix of k (an
 * odd K reads one more k of B, which A's zero padding cancels). */
size_t bf16_packed_a_elems(int M, int K);
size_t bf16_packed_b_elems(int N, int K);
void bf16_pack_a(uint16_t *dst, int M, int K, GemmOp A);
void bf16_pack_a_rows(uint16_t *dst, int M, int K, const float *const *rows);
void bf16_pack_b(uint16_t *dst, int N, int K, GemmOp B);
/* B(k, j) = cols[j][k] (fp32): column j of B has its own address. */
void bf16_pack_b_rows(uint16_t *dst, int N, int K, const float *const *cols);
void bf16_gemm_packed(int M, int N, int K, const uint16_t *ap, int a_k, const uint16_t *bp, int b_k, float beta,
                      float *C, int ldc);

/* Pre-packed B operands (weights packed once, see bf16_prepack.c).
 * bf16_pack_b_same_size: a packed K x N B takes exactly N * K values (N a
 * multiple of 32, K even), so it can replace the matrix in place.
 * bf16_unpack_b inverts bf16_pack_b for a bf16 B(k, j) = dst[k * rs + j * cs].
 * bf16_gemm_multi: C_e[M, N_e] (+)= A[M, K] . B_e for segments e sharing one A
 * (packed once), each B_e packed with bf16_pack_b (K values of k); multi-
 * threaded like bf16_gemm; needs the oprm backend. */
#define BF16_MAX_SEGS 4
typedef struct {
    const uint16_t *bp; /* bf16_pack_b(bp, N, K, ...) */
    int N, ldc;
    float *C;
    float beta; /* 0 or 1 */
} Bf16Seg;
int bf16_pack_b_same_size(int N, int K);
void bf16_unpack_b(uint16_t *dst, ptrdiff_t rs, ptrdiff_t cs, const uint16_t *packed, int N, int K);
void bf16_gemm_multi(int M, int K, GemmOp A, int nseg, const Bf16Seg *seg);

#endif
