/* The speed-motivated kernel pieces against plain references: fast_expf
 * against exp() in double, the fused AdamW step + gradient clearing against
 * the unfused step (bitwise, on 1 and 2 threads, tensors split mid-way between
 * threads), and the rmsnorm weight gradient's column-block sum against a
 * double reference. The layers' full gradients are checked by finite
 * differences in test_model_layers and against PyTorch in test_model. */
#include <omp.h>
#include <stdint.h>

#include "model/fastexp.h"
#include "model/layers.h"
#include "test.h"
#include "train/adamw.h"

static void test_fast_expf_accuracy(void) {
    double worst = 0, worst_x = 0;
    for (double x = -87.0; x <= 88.0; x += 1.0 / 1024) {
        float xf = (float)x;
        double ref = exp((double)xf), e = fabs(fast_expf(xf) - ref) / ref;
        if (!(e <= worst)) worst = e, worst_x = xf;
    }
    fprintf(stderr, "  fast_expf: max relative error %.3g at x = %g\n", worst, worst_x);
    CHECK(worst <= 2.5e-7); /* ~2 ulp */
    CHECK(fast_expf(0.0f) == 1.0f);
    /* Clamped ends stay finite and tiny / huge; NaN propagates. */
    CHECK(fast_expf(-1000.0f) > 0 && fast_expf(-1000.0f) < 1.3e-38f);
    CHECK(fast_expf(-INFINITY) < 1.3e-38f);
    CHECK(isfinite(fast_expf(1000.0f)) && fast_expf(1000.0f) > 1.6e38f);
    CHECK(isnan(fast_expf(NAN)));
}

/* A vectorised loop over fast_expf gives the same values as single calls. */
static void test_fast_expf_vector_loop(void) {
    enum { N = 1000 };
    float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = -80.0f + 0.161f * (float)i;
    #pragma omp simd
    for (int i = 0; i < N; i++) y[i] = fast_expf(x[i]);
    int same = 1;
    for (int i = 0; i < N; i++) {
        volatile float xi = x[i];
        if (y[i] != fast_expf(xi)) same = 0;
    }
    CHECK(same);
}

static void fill(float *x, size_t n, uint32_t seed, float scale) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = scale * ((float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
}

/* Tensors of awkward sizes (one big enough to be split between threads at an
 * unaligned offset), one frozen (grad NULL), decay on some. */
static void test_adamw_fused_zero_grad(void) {
    const char *names[4] = {"a.weight", "b.bias", "frozen.weight", "c.weight"};
    size_t sizes[4] = {70001, 37, 500, 123457};
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        ModelParam pa[4], pb[4];
        for (int i = 0; i < 4; i++) {
            size_t n = sizes[i];
            pa[i] = (ModelParam){.name = names[i], .data = malloc(n * 4), .grad = i == 2 ? NULL : malloc(n * 4),
                                 .numel = n, .ndim = 1, .shape = {(int64_t)n, 0}};
            pb[i] = pa[i];
            pb[i].data = malloc(n * 4);
            pb[i].grad = i == 2 ? NULL : malloc(n * 4);
            fill(pa[i].data, n, 7 + i, 1.0f);
            memcpy(pb[i].data, pa[i].data, n * 4);
        }
        AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.1};
        AdamW *oa = adamw_new(pa, 4, &cfg), *ob = adamw_new(pb, 4, &cfg);
        OprmError err;
        int same = 1, zero = 1;
        for (int step = 0; step < 3; step++) {
            for (int i = 0; i < 4; i++) {
                if (!pa[i].grad) continue;
                fill(pa[i].grad, sizes[i], 100 * step + i, 0.01f);
                memcpy(pb[i].grad, pa[i].grad, sizes[i] * 4);
            }
            CHECK(adamw_step(oa, pa, 4, 1e-3, &err) == 0);
            CHECK(adamw_step_zero_grad(ob, pb, 4, 1e-3, &err) == 0);
            for (int i = 0; i < 4; i++) {
                if (memcmp(pa[i].data, pb[i].data, sizes[i] * 4)) same = 0;
                if (!pb[i].grad) continue;
                for (size_t j = 0; j < sizes[i]; j++)
                    if (pb[i].grad[j] != 0.0f) zero = 0;
            }
        }
        CHECK(same);
        CHECK(zero);
        for (int k = 0; k < 3; k++) {
            CHECK(!memcmp(oa->slots[k].m, ob->slots[k].m, oa->slots[k].numel * 4));
            CHECK(!memcmp(oa->slots[k].v, ob->slots[k].v, oa->slots[k].numel * 4));
        }
        /* The parameters moved: the comparison above is not between two no-ops. */
        float first[1];
        fill(first, 1, 7, 1.0f);
        CHECK(pa[0].data[0] != first[0]);
        adamw_free(oa);
        adamw_free(ob);
        for (int i = 0; i < 4; i++) {
            free(pa[i].data);
            free(pa[i].grad);
            free(pb[i].data);
            free(pb[i].grad);
        }
    }
    omp_set_num_threads(1);
}

/* grad_global_norm (one parallel loop over the chunks of all tensors) is the
 * same bit for bit on 1 and 2 threads and matches a double reference;
 * grads_scale (one region over all tensors) scales every element exactly. */
static void test_grad_norm_and_scale(void) {
    const char *names[3] = {"a.weight", "frozen.weight", "b.weight"};
    size_t sizes[3] = {100003, 64, 40000};
    ModelParam p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = (ModelParam){.name = names[i], .data = calloc(sizes[i], 4), .grad = i == 1 ? NULL : malloc(sizes[i] * 4),
                            .numel = sizes[i], .ndim = 1, .shape = {(int64_t)sizes[i], 0}};
        if (p[i].grad) fill(p[i].grad, sizes[i], 11 + i, 0.5f);
    }
    double ref = 0;
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; p[i].grad && j < sizes[i]; j++) ref += (double)p[i].grad[j] * p[i].grad[j];
    ref = sqrt(ref);
    omp_set_num_threads(1);
    double n1 = grad_global_norm(p, 3);
    omp_set_num_threads(2);
    double n2 = grad_global_norm(p, 3);
    CHECK(n1 == n2);
    CHECK_NEAR(n1, ref, 0, 1e-12);
    float before = p[2].grad[39999];
    grads_scale(p, 3, 0.25f);
    CHECK(p[2].grad[39999] == before * 0.25f);
    CHECK_NEAR(grad_global_norm(p, 3), ref * 0.25, 0, 1e-12);
    omp_set_num_threads(1);
    for (int i = 0; i < 3; i++) {
        free(p[i].data);
        free(p[i].grad);
    }
}

/* dw of rmsnorm_backward (column blocks, one more column than a multiple of
 * the block) accumulates onto what dw held, as sum_rows dy * x * rstd. */
static void test_rmsnorm_dw_blocks(void) {
    int rows = 97, dim = 129;
    size_t n = (size_t)rows * dim;
    float *x = malloc(n * 4), *dy = malloc(n * 4), *dx = calloc(n, 4), *w = malloc(dim * 4), *rstd = malloc(rows * 4),
          *y = malloc(n * 4), *dw = malloc(dim * 4);
    fill(x, n, 1, 1.0f);
    fill(dy, n, 2, 1.0f);
    fill(w, dim, 3, 1.0f);
    fill(dw, dim, 4, 1.0f);
    float *dw0 = malloc(dim * 4);
    memcpy(dw0, dw, dim * 4);
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        memcpy(dw, dw0, dim * 4);
        rmsnorm_forward(y, rstd, x, w, rows, dim, 1e-6);
        rmsnorm_backward(dx, dw, dy, x, w, rstd, rows, dim);
        double worst = 0;
        for (int i = 0; i < dim; i++) {
            double ref = dw0[i];
            for (int r = 0; r < rows; r++) ref += (double)dy[(size_t)r * dim + i] * x[(size_t)r * dim + i] * rstd[r];
            double e = fabs(dw[i] - ref) / (1 + fabs(ref));
            if (!(e <= worst)) worst = e;
        }
        CHECK(worst <= 1e-5);
    }
    omp_set_num_threads(1);
    free(x), free(dy), free(dx), free(w), free(rstd), free(y), free(dw), free(dw0);
}

int main(void) {
    RUN(test_fast_expf_accuracy);
    RUN(test_fast_expf_vector_loop);
    RUN(test_adamw_fused_zero_grad);
    RUN(test_rmsnorm_dw_blocks);
    RUN(test_grad_norm_and_scale);
    return test_summary();
}
