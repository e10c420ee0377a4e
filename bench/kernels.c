/* Per-kernel CPU time of the engine's non-GEMM layer kernels and of the AdamW
 * step at the shapes of one config (2 sequences of SEQ tokens), for A/B runs of
 * two builds on a shared machine: CPU time (not wall) and the minimum over
 * repetitions, so time the scheduler gives to other processes does not count.
 * Built and run by bench/kernels.sh against build/release/liboprm.a (or LIB=).
 * -DNO_FUSED_ZERO builds against a library without adamw_step_zero_grad.
 * usage: kernels CONFIG SEQ [REPS] */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/layers.h"
#include "model/model.h"
#include "train/adamw.h"

static double cpu_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static float *randv(size_t n, unsigned *seed, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = scale * ((float)(*seed >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    return x;
}

#define TIME(name, reps, stmt)                                                                 \
    do {                                                                                       \
        double best = INFINITY, sum = 0;                                                       \
        for (int r_ = 0; r_ < (reps); r_++) {                                                  \
            double t0_ = cpu_us();                                                             \
            stmt;                                                                              \
            double dt_ = cpu_us() - t0_;                                                       \
            sum += dt_;                                                                        \
            if (dt_ < best) best = dt_;                                                        \
        }                                                                                      \
        printf("%-22s min %9.1f us  mean %9.1f us (CPU)\n", name, best, sum / (reps));         \
        fflush(stdout);                                                                        \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CONFIG SEQ [REPS]\n", argv[0]);
        return 2;
    }
    int seq = atoi(argv[2]), reps = argc > 3 ? atoi(argv[3]) : 20;
    OprmError err;
    ModelConfig c;
    if (model_config_load(argv[1], &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int N = 2 * seq, D = c.hidden, F = c.ffn, H = c.n_heads, KV = c.n_kv_heads, hd = c.head_dim;
    unsigned seed = 1;
    printf("# %s rows=%d hidden=%d ffn=%d heads=%d/%d hd=%d threads=%d\n", argv[1], N, D, F, H, KV, hd,
           omp_get_max_threads());

    float *x = randv((size_t)N * D, &seed, 1), *y = randv((size_t)N * D, &seed, 1), *w = randv(D, &seed, 1);
    float *dy = randv((size_t)N * D, &seed, 1), *dx = randv((size_t)N * D, &seed, 1), *dw = randv(D, &seed, 1);
    float *rstd = randv(N, &seed, 1);
    TIME("rmsnorm_forward", reps, rmsnorm_forward(y, rstd, x, w, N, D, 1e-6));
    TIME("rmsnorm_backward", reps, rmsnorm_backward(dx, dw, dy, x, w, rstd, N, D));

    size_t nf = (size_t)N * F;
    float *g = randv(nf, &seed, 3), *u = randv(nf, &seed, 1), *a = randv(nf, &seed, 1), *da = randv(nf, &seed, 1);
    float *dg = randv(nf, &seed, 1), *du = randv(nf, &seed, 1);
    TIME("swiglu_forward", reps, swiglu_forward(a, g, u, nf));
    TIME("swiglu_backward", reps, swiglu_backward(dg, du, da, g, u, nf));

    int32_t *pos = malloc(sizeof(int32_t) * N), off[2] = {0, seq}, len[2] = {seq, seq};
    for (int i = 0; i < N; i++) pos[i] = i % seq;
    float *cs = malloc(sizeof(float) * seq * hd / 2), *sn = malloc(sizeof(float) * seq * hd / 2);
    rope_tables(cs, sn, seq, hd, c.rope_theta, 0, 0, 0, 0);
    float *q = randv((size_t)N * H * hd, &seed, 1);
    TIME("rope_forward(q)", reps, rope_forward(q, N, H, hd, pos, cs, sn));

    float *k = randv((size_t)N * KV * hd, &seed, 1), *v = randv((size_t)N * KV * hd, &seed, 1);
    float *out = randv((size_t)N * H * hd, &seed, 1), *lse = randv((size_t)N * H, &seed, 1);
    float *dout = randv((size_t)N * H * hd, &seed, 1), *dq = randv((size_t)N * H * hd, &seed, 1);
    float *dk = randv((size_t)N * KV * hd, &seed, 1), *dv = randv((size_t)N * KV * hd, &seed, 1);
    float *dkh = randv((size_t)N * H * hd, &seed, 1), *dvh = randv((size_t)N * H * hd, &seed, 1);
    int threads = omp_get_max_threads();
    AttnScratch sc = {malloc(sizeof(float) * attention_scratch_floats(seq) * threads), attention_scratch_floats(seq),
                      threads};
    TIME("attention_forward", reps, attention_forward(out, lse, &sc, q, k, v, off, len, NULL, NULL, 2, H, KV, hd));
    TIME("attention_backward", reps,
         attention_backward(dq, dk, dv, dkh, dvh, &sc, dout, lse, q, k, v, off, len, NULL, NULL, 2, H, KV, hd));

    ModelOptions mo = {0};
    Model *m = model_new_random(&c, &mo, 1, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int np;
    ModelParam *params = model_params(m, &np);
    AdamWConfig ac = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    AdamW *opt = adamw_new(params, np, &ac);
    int oreps = reps / 4 > 3 ? reps / 4 : 3;
    TIME("adamw_step+zero_grad", oreps, {
        adamw_step(opt, params, np, 1e-5, &err);
        model_zero_grad(m);
    });
#ifndef NO_FUSED_ZERO
    TIME("adamw_step_zero_grad", oreps, adamw_step_zero_grad(opt, params, np, 1e-5, &err));
#endif
    adamw_free(opt);
    model_free(m);
    return 0;
}
