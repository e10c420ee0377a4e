/* BF16 GEMM with fp32 accumulation (see bf16_gemm.h).
 *
 * Layout (GotoBLAS style, sized for a 32 KB L1 / 1 MB L2 core):
 *  - B is packed into panels of NR = 32 columns; within a panel, for each pair
 *    of k (2kp, 2kp+1) the 32 columns' two values are interleaved, so one
 *    64-byte load gives the `vdpbf16ps` operand of 16 columns x 2 k twice;
 *  - A is packed into blocks of MR = 8 rows; for each pair of k the 8 rows'
 *    two values sit side by side, a 32-bit broadcast each;
 *  - the micro-kernel keeps an 8 x 32 fp32 tile in 16 zmm registers and walks
 *    KCP pairs of k at a time (B panel slice 16 KB: stays in L1 while the
 *    row blocks of the same chunk stream past it).
 * Edges are zero-padded in the packed copies and masked on the store. Work is
 * split over (column panel, chunk of row blocks) tasks, so every task writes
 * its own part of C. */
#include "model/bf16_gemm.h"

#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

#include "model/model_internal.h"
#include "util/err.h"

#define MR 8
#define NR 32
#define KCP 128 /* pairs of k per pass: 256 values of k */
#define MBC 16  /* row blocks per task (128 rows) */

typedef void (*SbgemmFn)(int order, int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                         const uint16_t *B, int ldb, float beta, float *C, int ldc);

static int probed;
static Bf16Backend backend;
static SbgemmFn sbgemm_fn;
static char describe[200];

static int cpu_has_bf16(const char **why) {
#if HAVE_X86
    __builtin_cpu_init();
    /* avx512f here also means the OS saves the zmm state (libgcc checks XCR0). */
    if (!__builtin_cpu_supports("avx512f")) {
        *why = "the CPU (or OS) has no AVX-512";
        return 0;
    }
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) {
        *why = "the CPU has no avx512_bf16";
        return 0;
    }
    return 1;
#else
    *why = "not an x86-64 CPU";
    return 0;
#endif
}

void bf16_gemm_reprobe(void) {
    const char *env = getenv("OPRM_BF16");
    const char *why = "";
    int cpu = cpu_has_bf16(&why);
    sbgemm_fn = (SbgemmFn)(uintptr_t)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
    const char *blas = sbgemm_fn ? "cblas_sbgemm found" : "the linked OpenBLAS has no cblas_sbgemm";
    backend = BF16_NONE;
    if (env && (!strcmp(env, "0") || !strcmp(env, "off"))) {
        snprintf(describe, sizeof describe, "off (OPRM_BF16=%s)", env);
    } else if (!cpu) {
        snprintf(describe, sizeof describe, "unavailable: %s", why);
    } else if (env && !strcmp(env, "openblas")) {
        if (sbgemm_fn) {
            backend = BF16_OPENBLAS;
            snprintf(describe, sizeof describe, "OpenBLAS cblas_sbgemm (OPRM_BF16=openblas)");
        } else {
            snprintf(describe, sizeof describe, "unavailable: OPRM_BF16=openblas but %s", blas);
        }
    } else {
        backend = BF16_OPRM;
        snprintf(describe, sizeof describe, "oprm avx512_bf16 kernel (%s)", blas);
    }
    probed = 1;
}

Bf16Backend bf16_gemm_backend(void) {
    if (!probed) bf16_gemm_reprobe();
    return backend;
}

const char *bf16_gemm_describe(void) {
    if (!probed) bf16_gemm_reprobe();
    return describe;
}

/* Packed copies, grown and kept (one GEMM at a time: the mutex). */
static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;
static uint16_t *buf_a, *buf_b;
static size_t cap_a, cap_b;

static uint16_t *grow(uint16_t **p, size_t *cap, size_t n) {
    if (n > *cap) {
        free(*p);
        size_t bytes = (n * sizeof(uint16_t) + 63) / 64 * 64;
        *p = aligned_alloc(64, bytes);
        if (!*p) {
            fprintf(stderr, "oprm: out of memory (%zu bytes for a BF16 GEMM)\n", bytes);
            abort();
        }
        *cap = n;
    }
    return *p;
}

static inline uint16_t op_get(const GemmOp *o, ptrdiff_t r, ptrdiff_t c) {
    ptrdiff_t off = r * o->rs + c * o->cs;
    return o->bf16 ? ((const uint16_t *)o->p)[off] : f32_to_bf16(((const float *)o->p)[off]);
}

/* Packs R "rows" (rows of A, columns of B) of an operand into units: unit
 * (kp, r) = the bf16 pair (elem(r, 2kp), elem(r, 2kp+1)), stored at
 * dst[2 * (kp * R + r)]. elem(r, k) = p[r * sr + k * sk] (p already offset to
 * the block); rows >= rv and k >= K are zero. Vector paths for the two layouts
 * a linear layer has (k contiguous, or r contiguous), a scalar one otherwise. */
static inline uint16_t elem(const void *p, int bf16, ptrdiff_t off) {
    return bf16 ? ((const uint16_t *)p)[off] : f32_to_bf16(((const float *)p)[off]);
}

static void pack_scalar(uint16_t *dst, const void *p, int bf16, ptrdiff_t sr, ptrdiff_t sk, int rv, int R, int K,
                        int Kp) {
    for (int kp = 0; kp < Kp; kp++) {
        uint16_t *d = dst + (size_t)kp * 2 * R;
        int k0 = 2 * kp, k1 = 2 * kp + 1;
        for (int r = 0; r < R; r++) {
            d[2 * r] = r < rv ? elem(p, bf16, r * sr + k0 * sk) : 0;
            d[2 * r + 1] = r < rv && k1 < K ? elem(p, bf16, r * sr + k1 * sk) : 0;
        }
    }
}

#if HAVE_X86
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
/* The 16 units (bf16 pairs of k) of values [k, k + 32) of one row, zero past K. */
T512 static inline __m512i row_units(const void *row, int bf16, int k, int K) {
    int n = K - k < 32 ? K - k : 32;
    if (bf16) {
        __mmask32 m = n == 32 ? 0xFFFFFFFFu : (__mmask32)((1u << n) - 1);
        return _mm512_maskz_loadu_epi16(m, (const uint16_t *)row + k);
    }
    const float *f = (const float *)row + k;
    int n0 = n < 16 ? n : 16, n1 = n - n0;
    __m512 lo = _mm512_maskz_loadu_ps((__mmask16)((1u << n0) - 1), f);
    __m512 hi = n1 ? _mm512_maskz_loadu_ps((__mmask16)((1u << n1) - 1), f + 16) : _mm512_setzero_ps();
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* k contiguous: 8 rows at a time (rows[i], the first nrows real, the rest
 * zero), each 32-value chunk of k an 8 x 16 transpose of units, so that unit
 * (kp, i) lands at du[kp * R + i] with 256-bit stores instead of scalar ones. */
T512 static void pack_group8(uint32_t *du, const void *const *rows, int nrows, int bf16, int R, int K, int Kp) {
    for (int k = 0; k < K; k += 32) {
        __m512i x[8];
        for (int i = 0; i < 8; i++) x[i] = i < nrows ? row_units(rows[i], bf16, k, K) : _mm512_setzero_si512();
        __m512i t[8], q[8], o[8];
        for (int i = 0; i < 4; i++) { /* t[2i], t[2i+1]: rows 2i, 2i+1 interleaved */
            t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
        }
        /* q[j] (rows 0-3) and q[j + 4] (rows 4-7): unit 4l + j in 128-bit lane l */
        for (int h = 0; h < 2; h++) {
            q[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
            q[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
            q[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
            q[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
        }
        /* o[m]: units 2m (low half) and 2m + 1 (high half), rows 0-7 each */
        for (int j = 0; j < 2; j++) {
            __m512i a0 = _mm512_shuffle_i32x4(q[2 * j], q[2 * j + 4], _MM_SHUFFLE(1, 0, 1, 0));
            __m512i b0 = _mm512_shuffle_i32x4(q[2 * j + 1], q[2 * j + 5], _MM_SHUFFLE(1, 0, 1, 0));
            __m512i a1 = _mm512_shuffle_i32x4(q[2 * j], q[2 * j + 4], _MM_SHUFFLE(3, 2, 3, 2));
            __m512i b1 = _mm512_shuffle_i32x4(q[2 * j + 1], q[2 * j + 5], _MM_SHUFFLE(3, 2, 3, 2));
            o[j] = _mm512_shuffle_i32x4(a0, b0, _MM_SHUFFLE(2, 0, 2, 0));
            o[j + 2] = _mm512_shuffle_i32x4(a0, b0, _MM_SHUFFLE(3, 1, 3, 1));
            o[j + 4] = _mm512_shuffle_i32x4(a1, b1, _MM_SHUFFLE(2, 0, 2, 0));
            o[j + 6] = _mm512_shuffle_i32x4(a1, b1, _MM_SHUFFLE(3, 1, 3, 1));
        }
        int u0 = k / 2, nu = Kp - u0 < 16 ? Kp - u0 : 16;
        for (int m = 0; m < 8; m++) {
            if (2 * m < nu) _mm256_storeu_si256((__m256i *)(du + (size_t)(u0 + 2 * m) * R), _mm512_castsi512_si256(o[m]));
            if (2 * m + 1 < nu)
                _mm256_storeu_si256((__m256i *)(du + (size_t)(u0 + 2 * m + 1) * R), _mm512_extracti64x4_epi64(o[m], 1));
        }
    }
}

/* k contiguous (sk == 1): row r at p + r * sr. */
T512 static void pack_kcontig(uint16_t *dst, const void *p, int bf16, ptrdiff_t sr, int rv, int R, int K, int Kp) {
    for (int g = 0; g < R; g += 8) {
        const void *rows[8];
        int n = rv - g < 0 ? 0 : rv - g < 8 ? rv - g : 8;
        for (int i = 0; i < n; i++)
            rows[i] = bf16 ? (const void *)((const uint16_t *)p + (g + i) * sr) : (const void *)((const float *)p + (g + i) * sr);
        pack_group8((uint32_t *)dst + g, rows, n, bf16, R, K, Kp);
    }
}

/* r contiguous (sr == 1): rows k0 and k1 interleaved, R (8 or 32) units at a time. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void pack_rcontig(uint16_t *dst, const void *p, int bf16,
                                                                               ptrdiff_t sk, int rv, int R, int K,
                                                                               int Kp) {
    for (int kp = 0; kp < Kp; kp++) {
        int k0 = 2 * kp, k1 = 2 * kp + 1;
        for (int r = 0; r < R; r += 16) {
            int n = rv - r < 16 ? (rv - r > 0 ? rv - r : 0) : 16;
            __mmask16 m = R - r < 16 ? (__mmask16)((1u << (R - r)) - 1) : 0xFFFF; /* R = 8: half a vector */
            __mmask16 mv = (__mmask16)((1u << n) - 1);
            __m512i a, b = _mm512_setzero_si512();
            if (bf16) {
                const uint16_t *h = (const uint16_t *)p;
                a = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mv, h + k0 * sk + r));
                if (k1 < K) b = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mv, h + k1 * sk + r));
            } else {
                const float *f = (const float *)p;
                a = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mv, f + k0 * sk + r)));
                if (k1 < K)
                    b = _mm512_cvtepu16_epi32(
                        (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mv, f + k1 * sk + r)));
            }
            __m512i units = _mm512_or_si512(a, _mm512_slli_epi32(b, 16));
            _mm512_mask_storeu_epi32((void *)(dst + ((size_t)kp * R + r) * 2), m, units);
        }
    }
}
#endif

#if HAVE_X86
/* As pack_kcontig for fp32 rows that each have their own address (stacked
 * attention queries: rows of several heads). */
T512 static void pack_rows_f32(uint16_t *dst, const float *const *rows, int rv, int R, int K, int Kp) {
    for (int g = 0; g < R; g += 8) {
        const void *r8[8];
        int n = rv - g < 0 ? 0 : rv - g < 8 ? rv - g : 8;
        for (int i = 0; i < n; i++) r8[i] = rows[g + i];
        pack_group8((uint32_t *)dst + g, r8, n, 0, R, K, Kp);
    }
}
#endif

static void pack_block(uint16_t *dst, const void *p, int bf16, ptrdiff_t sr, ptrdiff_t sk, int rv, int R, int K,
                       int Kp) {
#if HAVE_X86
    if (sk == 1) return pack_kcontig(dst, p, bf16, sr, rv, R, K, Kp);
    if (sr == 1) return pack_rcontig(dst, p, bf16, sk, rv, R, K, Kp);
#endif
    pack_scalar(dst, p, bf16, sr, sk, rv, R, K, Kp);
}

static const void *op_at(const GemmOp *o, ptrdiff_t off) {
    return o->bf16 ? (const void *)((const uint16_t *)o->p + off) : (const void *)((const float *)o->p + off);
}

static void pack_a_block(uint16_t *dst, const GemmOp *A, int i0, int M, int K, int Kp) {
    int mr = M - i0 < MR ? M - i0 : MR;
    pack_block(dst, op_at(A, i0 * A->rs), A->bf16, A->rs, A->cs, mr, MR, K, Kp);
}

static void pack_b_panel(uint16_t *dst, const GemmOp *B, int j0, int N, int K, int Kp) {
    int nr = N - j0 < NR ? N - j0 : NR;
    pack_block(dst, op_at(B, j0 * B->cs), B->bf16, B->cs, B->rs, nr, NR, K, Kp);
}

#if HAVE_X86
__attribute__((target("avx512f,avx512bf16"))) static void bf16_kernel(const uint16_t *ap, const uint16_t *bp, int npairs,
                                                                   float *c, int ldc, int mr, int nr, int add) {
    __m512 c0[MR], c1[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int kp = 0; kp < npairs; kp++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(bp + (size_t)kp * 2 * NR));
        __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(bp + (size_t)kp * 2 * NR + NR));
        const uint16_t *a = ap + (size_t)kp * 2 * MR;
        #pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            uint32_t pair;
            memcpy(&pair, a + 2 * i, sizeof pair);
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
            c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
        }
    }
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc;
        __m512 v0 = c0[i], v1 = c1[i];
        if (add) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
            if (m1) v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
        }
        _mm512_mask_storeu_ps(ci, m0, v0);
        if (m1) _mm512_mask_storeu_ps(ci + 16, m1, v1);
    }
}
#endif

static void gemm_oprm(int M, int N, int K, const GemmOp *A, const GemmOp *B, float beta, float *C, int ldc) {
#if HAVE_X86
    int Kp = (K + 1) / 2, mb = (M + MR - 1) / MR, np = (N + NR - 1) / NR, nmc = (mb + MBC - 1) / MBC;
    uint16_t *ap = grow(&buf_a, &cap_a, (size_t)mb * Kp * 2 * MR);
    uint16_t *bp = grow(&buf_b, &cap_b, (size_t)np * Kp * 2 * NR);
    double work = 2.0 * M * N * K;
    #pragma omp parallel if (work > 4e6)
    {
        #pragma omp for schedule(static) nowait
        for (int b = 0; b < mb; b++) pack_a_block(ap + (size_t)b * Kp * 2 * MR, A, b * MR, M, K, Kp);
        #pragma omp for schedule(static)
        for (int p = 0; p < np; p++) pack_b_panel(bp + (size_t)p * Kp * 2 * NR, B, p * NR, N, K, Kp);
        #pragma omp for schedule(static)
        for (int t = 0; t < np * nmc; t++) {
            int p = t / nmc, mc = t % nmc;
            int b0 = mc * MBC, b1 = b0 + MBC < mb ? b0 + MBC : mb;
            int nr = N - p * NR < NR ? N - p * NR : NR;
            for (int k0 = 0; k0 < Kp; k0 += KCP) {
                int npairs = Kp - k0 < KCP ? Kp - k0 : KCP;
                int add = beta != 0.0f || k0 > 0;
                const uint16_t *bpp = bp + ((size_t)p * Kp + k0) * 2 * NR;
                for (int b = b0; b < b1; b++) {
                    int mr = M - b * MR < MR ? M - b * MR : MR;
                    bf16_kernel(ap + ((size_t)b * Kp + k0) * 2 * MR, bpp, npairs, C + (size_t)b * MR * ldc + p * NR, ldc,
                           mr, nr, add);
                }
            }
        }
    }
#else
    (void)M, (void)N, (void)K, (void)A, (void)B, (void)beta, (void)C, (void)ldc;
#endif
}

/* ---- Packed operands for callers that run their own threads ---- */

size_t bf16_packed_a_elems(int M, int K) { return (size_t)((M + MR - 1) / MR) * (size_t)((K + 1) / 2) * 2 * MR; }
size_t bf16_packed_b_elems(int N, int K) { return (size_t)((N + NR - 1) / NR) * (size_t)((K + 1) / 2) * 2 * NR; }

void bf16_pack_a(uint16_t *dst, int M, int K, GemmOp A) {
    int Kp = (K + 1) / 2, mb = (M + MR - 1) / MR;
    for (int b = 0; b < mb; b++) pack_a_block(dst + (size_t)b * Kp * 2 * MR, &A, b * MR, M, K, Kp);
}

void bf16_pack_a_rows(uint16_t *dst, int M, int K, const float *const *rows) {
    int Kp = (K + 1) / 2, mb = (M + MR - 1) / MR;
    for (int b = 0; b < mb; b++) {
        int rv = M - b * MR < MR ? M - b * MR : MR;
#if HAVE_X86
        pack_rows_f32(dst + (size_t)b * Kp * 2 * MR, rows + (size_t)b * MR, rv, MR, K, Kp);
#else
        (void)rv, (void)rows;
#endif
    }
}

void bf16_pack_b_rows(uint16_t *dst, int N, int K, const float *const *cols) {
    int Kp = (K + 1) / 2, np = (N + NR - 1) / NR;
    for (int p = 0; p < np; p++) {
        int nv = N - p * NR < NR ? N - p * NR : NR;
#if HAVE_X86
        pack_rows_f32(dst + (size_t)p * Kp * 2 * NR, cols + (size_t)p * NR, nv, NR, K, Kp);
#else
        (void)nv, (void)cols;
#endif
    }
}

void bf16_pack_b(uint16_t *dst, int N, int K, GemmOp B) {
    int Kp = (K + 1) / 2, np = (N + NR - 1) / NR;
    for (int p = 0; p < np; p++) pack_b_panel(dst + (size_t)p * Kp * 2 * NR, &B, p * NR, N, K, Kp);
}

void bf16_gemm_packed(int M, int N, int K, const uint16_t *ap, int a_k, const uint16_t *bp, int b_k, float beta,
                      float *C, int ldc) {
#if HAVE_X86
    int Kp = (K + 1) / 2, akp = (a_k + 1) / 2, bkp = (b_k + 1) / 2, mb = (M + MR - 1) / MR, np = (N + NR - 1) / NR;
    for (int p = 0; p < np; p++) {
        int nr = N - p * NR < NR ? N - p * NR : NR;
        for (int k0 = 0; k0 < Kp; k0 += KCP) {
            int npairs = Kp - k0 < KCP ? Kp - k0 : KCP, add = beta != 0.0f || k0 > 0;
            const uint16_t *bpp = bp + ((size_t)p * bkp + k0) * 2 * NR;
            for (int b = 0; b < mb; b++) {
                int mr = M - b * MR < MR ? M - b * MR : MR;
                bf16_kernel(ap + ((size_t)b * akp + k0) * 2 * MR, bpp, npairs, C + (size_t)b * MR * ldc + p * NR, ldc,
                            mr, nr, add);
            }
        }
    }
#else
    (void)M, (void)N, (void)K, (void)ap, (void)a_k, (void)bp, (void)b_k, (void)beta, (void)C, (void)ldc;
#endif
}

int bf16_pack_b_same_size(int N, int K) { return bf16_packed_b_elems(N, K) == (size_t)N * (size_t)K; }

void bf16_unpack_b(uint16_t *dst, ptrdiff_t rs, ptrdiff_t cs, const uint16_t *packed, int N, int K) {
    int Kp = (K + 1) / 2, np = (N + NR - 1) / NR;
    for (int p = 0; p < np; p++)
        for (int kp = 0; kp < Kp; kp++) {
            const uint16_t *u = packed + ((size_t)p * Kp + kp) * 2 * NR;
            for (int r = 0; r < NR && p * NR + r < N; r++) {
                int j = p * NR + r, k0 = 2 * kp;
                dst[k0 * rs + j * cs] = u[2 * r];
                if (k0 + 1 < K) dst[(k0 + 1) * rs + j * cs] = u[2 * r + 1];
            }
        }
}

/* A packed once, then every panel of every segment; tasks as in gemm_oprm. */
static void gemm_multi(int M, int K, const GemmOp *A, int nseg, const Bf16Seg *seg) {
#if HAVE_X86
    int Kp = (K + 1) / 2, mb = (M + MR - 1) / MR, nmc = (mb + MBC - 1) / MBC;
    int pstart[BF16_MAX_SEGS + 1];
    double work = 0;
    pstart[0] = 0;
    for (int e = 0; e < nseg; e++) {
        pstart[e + 1] = pstart[e] + (seg[e].N + NR - 1) / NR;
        work += 2.0 * M * seg[e].N * K;
    }
    int np = pstart[nseg];
    uint16_t *ap = grow(&buf_a, &cap_a, (size_t)mb * Kp * 2 * MR);
    #pragma omp parallel if (work > 4e6)
    {
        #pragma omp for schedule(static)
        for (int b = 0; b < mb; b++) pack_a_block(ap + (size_t)b * Kp * 2 * MR, A, b * MR, M, K, Kp);
        #pragma omp for schedule(static)
        for (int t = 0; t < np * nmc; t++) {
            int gp = t / nmc, mc = t % nmc, e = 0;
            while (gp >= pstart[e + 1]) e++;
            int p = gp - pstart[e], N = seg[e].N, ldc = seg[e].ldc;
            int b0 = mc * MBC, b1 = b0 + MBC < mb ? b0 + MBC : mb;
            int nr = N - p * NR < NR ? N - p * NR : NR;
            for (int k0 = 0; k0 < Kp; k0 += KCP) {
                int npairs = Kp - k0 < KCP ? Kp - k0 : KCP;
                int add = seg[e].beta != 0.0f || k0 > 0;
                const uint16_t *bpp = seg[e].bp + ((size_t)p * Kp + k0) * 2 * NR;
                for (int b = b0; b < b1; b++) {
                    int mr = M - b * MR < MR ? M - b * MR : MR;
                    bf16_kernel(ap + ((size_t)b * Kp + k0) * 2 * MR, bpp, npairs, seg[e].C + (size_t)b * MR * ldc + p * NR,
                                ldc, mr, nr, add);
                }
            }
        }
    }
#else
    (void)M, (void)K, (void)A, (void)nseg, (void)seg;
#endif
}

void bf16_gemm_multi(int M, int K, GemmOp A, int nseg, const Bf16Seg *seg) {
    if (M <= 0 || nseg <= 0) return;
    if (bf16_gemm_backend() != BF16_OPRM || nseg > BF16_MAX_SEGS || K <= 0) {
        fprintf(stderr, "oprm: bf16_gemm_multi needs the oprm kernel, 1..%d segments, K > 0 (%s)\n", BF16_MAX_SEGS,
                describe);
        abort();
    }
    pthread_mutex_lock(&buf_lock);
    gemm_multi(M, K, &A, nseg, seg);
    pthread_mutex_unlock(&buf_lock);
}

/* cblas_sbgemm takes plain row-major bf16 matrices: convert both operands. */
static void gemm_openblas(int M, int N, int K, const GemmOp *A, const GemmOp *B, float beta, float *C, int ldc) {
    uint16_t *a = grow(&buf_a, &cap_a, (size_t)M * K), *b = grow(&buf_b, &cap_b, (size_t)K * N);
    #pragma omp parallel for schedule(static) if ((size_t)M * K > 32768)
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) a[(size_t)i * K + k] = op_get(A, i, k);
    #pragma omp parallel for schedule(static) if ((size_t)K * N > 32768)
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) b[(size_t)k * N + j] = op_get(B, k, j);
    sbgemm_fn(101 /* CblasRowMajor */, 111 /* CblasNoTrans */, 111, M, N, K, 1.0f, a, K, b, N, beta, C, ldc);
}

void bf16_gemm(int M, int N, int K, GemmOp A, GemmOp B, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    Bf16Backend be = bf16_gemm_backend();
    if (be == BF16_NONE) { /* a caller bug: they check bf16_gemm_backend() first */
        fprintf(stderr, "oprm: bf16_gemm called without a BF16 backend (%s)\n", describe);
        abort();
    }
    pthread_mutex_lock(&buf_lock);
    if (be == BF16_OPENBLAS) gemm_openblas(M, N, K, &A, &B, beta, C, ldc);
    else gemm_oprm(M, N, K, &A, &B, beta, C, ldc);
    pthread_mutex_unlock(&buf_lock);
}
