/* GFLOP/s of OpenBLAS sgemm at the shapes and layouts one transformer layer of
 * the engine uses (src/model/linear.c, forward.c), for a config's dimensions:
 * forward y = x.W^T (NoTrans, Trans), input grad dx = dy.W (NoTrans, NoTrans),
 * weight grad dW = dy^T.x (Trans, NoTrans); plus fused variants (Q|K|V in one
 * GEMM, gate|up in one GEMM) to show what fusing small-output GEMMs would gain.
 * Not part of the library: bench/gemm.sh compiles and runs it.
 * usage: gemm_shapes ROWS HIDDEN Q_OUT KV_OUT FFN [REPS] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *buf(size_t n) {
    float *p = malloc(sizeof(float) * n);
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX - 0.5f;
    return p;
}

/* Best of reps: C[M,N] = op(A) op(B), row-major, leading dims as the engine passes them. */
static double run(const char *name, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, int reps) {
    float *a = buf((size_t)M * K), *b = buf((size_t)K * N), *c = buf((size_t)M * N);
    int lda = ta == CblasNoTrans ? K : M, ldb = tb == CblasNoTrans ? N : K;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 1.0f, c, N);
        t = now() - t;
        if (r && t < best) best = t; /* r = 0 warms up */
    }
    double g = 2.0 * M * N * K / best / 1e9;
    printf("| %s | %c%c | %d x %d x %d | %.3f | %.1f |\n", name, ta == CblasNoTrans ? 'N' : 'T',
           tb == CblasNoTrans ? 'N' : 'T', M, N, K, best * 1e3, g);
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: gemm_shapes ROWS HIDDEN Q_OUT KV_OUT FFN [REPS]\n");
        return 2;
    }
    int n = atoi(argv[1]), d = atoi(argv[2]), hq = atoi(argv[3]), hk = atoi(argv[4]), f = atoi(argv[5]);
    int reps = argc > 6 ? atoi(argv[6]) : 5;
    printf("| GEMM | layout | M x N x K | ms | GFLOP/s |\n|---|---|---|---|---|\n");
    double sep = 0, fused = 0;
    /* forward */
    sep += run("fwd q = h.Wq^T", CblasNoTrans, CblasTrans, n, hq, d, reps);
    sep += 2 * run("fwd k, v = h.Wk^T", CblasNoTrans, CblasTrans, n, hk, d, reps);
    fused += run("fwd qkv fused", CblasNoTrans, CblasTrans, n, hq + 2 * hk, d, reps);
    run("fwd o = att.Wo^T", CblasNoTrans, CblasTrans, n, d, hq, reps);
    sep += 2 * run("fwd gate, up = h.W^T", CblasNoTrans, CblasTrans, n, f, d, reps);
    fused += run("fwd gate|up fused", CblasNoTrans, CblasTrans, n, 2 * f, d, reps);
    run("fwd down = a.Wd^T", CblasNoTrans, CblasTrans, n, d, f, reps);
    /* backward: input gradients */
    run("bwd dh += dq.Wq", CblasNoTrans, CblasNoTrans, n, d, hq, reps);
    run("bwd dh += dk.Wk", CblasNoTrans, CblasNoTrans, n, d, hk, reps);
    run("bwd dh qkv fused", CblasNoTrans, CblasNoTrans, n, d, hq + 2 * hk, reps);
    run("bwd da = dx.Wd", CblasNoTrans, CblasNoTrans, n, f, d, reps);
    run("bwd dh += dg.Wg", CblasNoTrans, CblasNoTrans, n, d, f, reps);
    run("bwd dh gate|up fused", CblasNoTrans, CblasNoTrans, n, d, 2 * f, reps);
    /* backward: weight gradients */
    run("bwd dWq += dq^T.h", CblasTrans, CblasNoTrans, hq, d, n, reps);
    run("bwd dWk += dk^T.h", CblasTrans, CblasNoTrans, hk, d, n, reps);
    run("bwd dWgate += dg^T.h", CblasTrans, CblasNoTrans, f, d, n, reps);
    run("bwd dWdown += dx^T.a", CblasTrans, CblasNoTrans, d, f, n, reps);
    printf("\nforward q,k,v,gate,up: separate %.3f ms, fused %.3f ms (%.2fx)\n", sep * 1e3, fused * 1e3,
           sep / fused);
    return 0;
}
