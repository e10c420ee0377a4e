/* Whole-model tests against the transformers fixtures of tools/gen_engine_fixtures.py:
 * digit logits (1e-4), the OPRM pair loss, every parameter gradient (1e-3
 * relative), batching independence, save/load round trips. */
#include <stdint.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "test.h"

#define FIX "tests/fixtures/engine/"

static float *fx_f32(const StFile *f, const char *name, size_t *n) {
    const StTensor *t = st_find(f, name);
    if (!t || t->dtype != ST_F32) return NULL;
    float *v = malloc(t->numel * sizeof(float));
    memcpy(v, t->data, t->numel * sizeof(float));
    if (n) *n = t->numel;
    return v;
}

static int32_t *fx_i32(const StFile *f, const char *name, size_t *n) {
    const StTensor *t = st_find(f, name);
    if (!t || t->dtype != ST_I32) return NULL;
    int32_t *v = malloc(t->numel * sizeof(int32_t));
    memcpy(v, t->data, t->numel * sizeof(int32_t));
    if (n) *n = t->numel;
    return v;
}

/* OPRM pair loss -log sum_{i>j} pc_i pr_j on two rows of nine logits, and its
 * gradient wrt the logits (independent of the ordinal module, in double). */
static double pair_loss(const float *logits, float *dlogits) {
    double p[2][9];
    for (int s = 0; s < 2; s++) {
        double mx = logits[s * 9], z = 0;
        for (int i = 1; i < 9; i++) mx = fmax(mx, logits[s * 9 + i]);
        for (int i = 0; i < 9; i++) z += p[s][i] = exp(logits[s * 9 + i] - mx);
        for (int i = 0; i < 9; i++) p[s][i] /= z;
    }
    double S = 0, gc[9] = {0}, gr[9] = {0};
    for (int i = 0; i < 9; i++)
        for (int j = 0; j < i; j++) {
            S += p[0][i] * p[1][j];
            gc[i] += p[1][j];
            gr[j] += p[0][i];
        }
    for (int i = 0; i < 9; i++) {
        gc[i] = -gc[i] / S;
        gr[i] = -gr[i] / S;
    }
    for (int s = 0; s < 2; s++) {
        double *g = s == 0 ? gc : gr, dot = 0;
        for (int i = 0; i < 9; i++) dot += p[s][i] * g[i];
        for (int i = 0; i < 9; i++) dlogits[s * 9 + i] = (float)(p[s][i] * (g[i] - dot));
    }
    return -log(S);
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double worst_grad_rel = 0, worst_logit_abs = 0;

static void check_model_fixture(const char *name, int with_grads) {
    char dir[256], exp_path[300];
    snprintf(dir, sizeof dir, FIX "%s", name);
    snprintf(exp_path, sizeof exp_path, "%s/expected.safetensors", dir);
    OprmError err = {{0}};
    Model *m = model_load(dir, NULL, &err);
    if (!m) fprintf(stderr, "load %s: %s\n", dir, err.msg);
    CHECK(m != NULL);
    StFile *ex = st_open(exp_path, &err);
    CHECK(ex != NULL);
    if (!m || !ex) {
        model_free(m);
        st_close(ex);
        return;
    }
    int32_t *digits = fx_i32(ex, "digits", NULL);
    int D = model_config(m)->hidden;
    for (int c = 0; c < 2; c++) {
        char key[200];
        snprintf(key, sizeof key, "case%d.lens", c);
        int32_t *lens = fx_i32(ex, key, NULL);
        snprintf(key, sizeof key, "case%d.ids", c);
        int32_t *ids = fx_i32(ex, key, NULL);
        snprintf(key, sizeof key, "case%d.logits", c);
        float *ref_logits = fx_f32(ex, key, NULL);
        snprintf(key, sizeof key, "case%d.h_last", c);
        float *ref_h = fx_f32(ex, key, NULL);
        snprintf(key, sizeof key, "case%d.loss", c);
        float *ref_loss = fx_f32(ex, key, NULL);
        CHECK(lens && ids && ref_logits && ref_h && ref_loss);
        if (!lens || !ids || !ref_logits || !ref_h || !ref_loss) break;

        SeqBatch b = {ids, lens, 2, NULL};
        float *h = calloc((size_t)2 * D, sizeof(float)), logits[18], dlogits[18];
        model_zero_grad(m);
        CHECK(model_forward(m, &b, 1, h, &err) == 0);
        for (int i = 0; i < 2 * D; i++) CHECK_NEAR(h[i], ref_h[i], 1e-4, 1e-4);
        model_head_rows_forward(m, h, 2, digits, 9, logits);
        for (int i = 0; i < 18; i++) {
            CHECK_NEAR(logits[i], ref_logits[i], 1e-4, 1e-4);
            worst_logit_abs = fmax(worst_logit_abs, fabs(logits[i] - ref_logits[i]));
        }
        double loss = pair_loss(logits, dlogits);
        CHECK_NEAR(loss, ref_loss[0], 1e-4, 1e-4);

        if (with_grads) {
            float *dh = calloc((size_t)2 * D, sizeof(float));
            model_head_rows_backward(m, h, 2, digits, 9, dlogits, dh);
            CHECK(model_backward(m, dh, &err) == 0);
            int np;
            ModelParam *ps = model_params(m, &np);
            int found = 0;
            for (int i = 0; i < np; i++) {
                snprintf(key, sizeof key, "case%d.grad.%s", c, ps[i].name);
                size_t n = 0;
                float *ref = fx_f32(ex, key, &n);
                if (!ref) {
                    fprintf(stderr, "no fixture gradient %s\n", key);
                    CHECK(ref != NULL);
                    continue;
                }
                found++;
                CHECK(n == ps[i].numel);
                /* Per element, relative to the tensor's own scale (tiny entries of a
                 * tensor carry the same absolute fp32 error as large ones). */
                double scale = max_abs(ref, n), worst = 0;
                for (size_t j = 0; j < n && j < ps[i].numel; j++)
                    worst = fmax(worst, fabs(ps[i].grad[j] - ref[j]) / (scale + 1e-30));
                if (worst > 1e-3) fprintf(stderr, "%s: max error %.3g of max |grad| %.3g\n", key, worst, scale);
                CHECK(worst <= 1e-3);
                worst_grad_rel = fmax(worst_grad_rel, worst);
                free(ref);
            }
            CHECK(found == np);
            free(dh);
        }
        free(h);
        free(lens);
        free(ids);
        free(ref_logits);
        free(ref_h);
        free(ref_loss);
    }
    free(digits);
    st_close(ex);
    model_free(m);
}

static void test_llama_gqa(void) { check_model_fixture("llama_gqa", 1); }
static void test_qwen2_tied_bf16(void) { check_model_fixture("qwen2_tied_bf16", 1); }
static void test_qwen3_qknorm(void) { check_model_fixture("qwen3_qknorm", 1); }
static void test_llama3_rope(void) { check_model_fixture("llama3_rope", 1); }
static void test_mistral_gqa(void) { check_model_fixture("mistral_gqa", 1); }

/* A sequence's last hidden state must not depend on what else is packed with it. */
static void test_batching_independence(void) {
    OprmError err;
    Model *m = model_load(FIX "qwen3_qknorm", NULL, &err);
    CHECK(m != NULL);
    if (!m) return;
    int D = model_config(m)->hidden, V = model_config(m)->vocab;
    int32_t lens[4] = {7, 1, 70, 12}, ids[90];
    for (int i = 0; i < 90; i++) ids[i] = (i * 37 + 11) % V;
    float packed[4 * 32], alone[32];
    SeqBatch b = {ids, lens, 4, NULL};
    CHECK(model_forward(m, &b, 0, packed, &err) == 0);
    int off = 0;
    for (int s = 0; s < 4; s++) {
        SeqBatch one = {ids + off, &lens[s], 1, NULL};
        CHECK(model_forward(m, &one, s % 2, alone, &err) == 0);
        for (int i = 0; i < D; i++) CHECK_NEAR(alone[i], packed[s * D + i], 1e-6, 0);
        off += lens[s];
    }
    /* Training mode gives the same values as scoring mode. */
    float packed_train[4 * 32];
    CHECK(model_forward(m, &b, 1, packed_train, &err) == 0);
    for (int i = 0; i < 4 * D; i++) CHECK_NEAR(packed_train[i], packed[i], 1e-6, 0);
    model_free(m);
}

static void test_bad_batch(void) {
    OprmError err = {{0}};
    Model *m = model_load(FIX "llama_gqa", NULL, &err);
    CHECK(m != NULL);
    if (!m) return;
    int32_t ids[3] = {1, 48, 2}, lens[1] = {3};
    float h[32];
    SeqBatch b = {ids, lens, 1, NULL};
    CHECK(model_forward(m, &b, 0, h, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "outside the vocabulary");
    int32_t zero[1] = {0};
    SeqBatch e = {ids, zero, 1, NULL};
    CHECK(model_forward(m, &e, 0, h, &err) == -1);
    CHECK(model_backward(m, h, &err) == -1); /* no training forward yet */
    model_free(m);
}

/* Backward accumulates: two forward+backward passes without zeroing give twice
 * the gradient of one. */
static void test_grad_accumulates(void) {
    OprmError err;
    Model *m = model_load(FIX "qwen2_tied_bf16", NULL, &err);
    CHECK(m != NULL);
    if (!m) return;
    int32_t ids[40], lens[2] = {3, 37}, rows[9] = {16, 17, 18, 19, 20, 21, 22, 23, 24};
    for (int i = 0; i < 40; i++) ids[i] = (i * 5 + 3) % 48;
    SeqBatch b = {ids, lens, 2, NULL};
    float h[64], logits[18], dl[18], dh[64];
    int np;
    ModelParam *ps = model_params(m, &np);
    size_t total = 0;
    for (int i = 0; i < np; i++) total += ps[i].numel;
    float *once = malloc(total * sizeof(float));
    for (int rep = 0; rep < 2; rep++) {
        CHECK(model_forward(m, &b, 1, h, &err) == 0);
        model_head_rows_forward(m, h, 2, rows, 9, logits);
        pair_loss(logits, dl);
        memset(dh, 0, sizeof dh);
        model_head_rows_backward(m, h, 2, rows, 9, dl, dh);
        CHECK(model_backward(m, dh, &err) == 0);
        if (rep == 0)
            for (int i = 0, o = 0; i < np; o += (int)ps[i].numel, i++) memcpy(once + o, ps[i].grad, ps[i].numel * 4);
    }
    int bad = 0;
    for (int i = 0, o = 0; i < np; o += (int)ps[i].numel, i++)
        for (size_t j = 0; j < ps[i].numel; j++)
            bad += fabsf(ps[i].grad[j] - 2 * once[o + j]) > 1e-6f + 1e-5f * fabsf(once[o + j]);
    CHECK(bad == 0);
    model_zero_grad(m);
    CHECK(ps[0].grad[0] == 0.0f && ps[np - 1].grad[0] == 0.0f);
    free(once);
    model_free(m);
}

/* Big enough that every OpenMP loop runs with a team: one thread and two
 * threads must give the same hidden states and gradients (a race would not). */
static void test_threads_agree(void) {
    ModelConfig cfg;
    OprmError err;
    CHECK(model_config_load(FIX "qwen3_qknorm/config.json", &cfg, &err) == 0);
    cfg.hidden = 128;
    cfg.ffn = 384;
    cfg.head_dim = 32;
    cfg.vocab = 64;
    Model *m = model_new_random(&cfg, NULL, 3, &err);
    CHECK(m != NULL);
    if (!m) return;
    int np;
    ModelParam *ps = model_params(m, &np);
    for (int i = 0; i < np; i++) /* larger weights than the 0.02 init, so the layers matter */
        if (ps[i].ndim == 2)
            for (size_t j = 0; j < ps[i].numel; j++) ps[i].data[j] *= 5.0f;
    enum { N = 340 };
    int32_t ids[N], lens[3] = {260, 1, 79}, rows[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int i = 0; i < N; i++) ids[i] = (i * 13 + 5) % 64;
    SeqBatch b = {ids, lens, 3, NULL};
    float h[2][3 * 128], logits[27], dl[27], dh[3 * 128];
    size_t total = 0;
    for (int i = 0; i < np; i++) total += ps[i].numel;
    float *grads[2] = {malloc(total * 4), malloc(total * 4)};
    for (int t = 0; t < 2; t++) {
        model_set_threads(t + 1);
        model_zero_grad(m);
        CHECK(model_forward(m, &b, 1, h[t], &err) == 0);
        model_head_rows_forward(m, h[t], 3, rows, 9, logits);
        for (int i = 0; i < 27; i++) dl[i] = logits[i] * 0.1f + (float)(i % 5) - 2.0f;
        memset(dh, 0, sizeof dh);
        model_head_rows_backward(m, h[t], 3, rows, 9, dl, dh);
        CHECK(model_backward(m, dh, &err) == 0);
        for (int i = 0, o = 0; i < np; o += (int)ps[i].numel, i++) memcpy(grads[t] + o, ps[i].grad, ps[i].numel * 4);
    }
    model_set_threads(0);
    for (int i = 0; i < 3 * 128; i++) CHECK_NEAR(h[1][i], h[0][i], 1e-5, 1e-5);
    double scale = max_abs(grads[0], total), worst = 0;
    for (size_t j = 0; j < total; j++) worst = fmax(worst, fabs(grads[1][j] - grads[0][j]));
    CHECK(scale > 0 && worst <= 1e-5 * scale);
    free(grads[0]);
    free(grads[1]);
    model_free(m);
}

/* Save then load gives the same parameters; a tied model stays tied. */
static void test_save_roundtrip(void) {
    const char *names[] = {"qwen2_tied_bf16", "llama_gqa", "qwen3_qknorm"};
    for (int k = 0; k < 3; k++) {
        OprmError err = {{0}};
        char src[200], dst[200];
        snprintf(src, sizeof src, FIX "%s", names[k]);
        snprintf(dst, sizeof dst, "/tmp/oprm_test_save_%d_%s", (int)getpid(), names[k]);
        Model *a = model_load(src, NULL, &err);
        CHECK(a != NULL);
        if (!a) continue;
        CHECK(model_save(a, dst, &err) == 0);
        Model *b = model_load(dst, NULL, &err);
        if (!b) fprintf(stderr, "reload: %s\n", err.msg);
        CHECK(b != NULL);
        if (b) {
            int na, nb;
            ModelParam *pa = model_params(a, &na), *pb = model_params(b, &nb);
            CHECK(na == nb);
            for (int i = 0; i < na && i < nb; i++) {
                CHECK(strcmp(pa[i].name, pb[i].name) == 0);
                CHECK(pa[i].numel == pb[i].numel && memcmp(pa[i].data, pb[i].data, pa[i].numel * 4) == 0);
            }
            CHECK(model_config(b)->tie_embeddings == model_config(a)->tie_embeddings);
            model_free(b);
        }
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dst);
        CHECK(system(cmd) == 0);
        model_free(a);
    }
}

/* Random models: deterministic in the seed, norms 1, and trainable end to end. */
static void test_random_model(void) {
    ModelConfig cfg;
    OprmError err;
    CHECK(model_config_load(FIX "qwen2_tied_bf16/config.json", &cfg, &err) == 0);
    Model *a = model_new_random(&cfg, NULL, 7, &err), *b = model_new_random(&cfg, NULL, 7, &err);
    CHECK(a && b);
    int na, nb;
    ModelParam *pa = model_params(a, &na), *pb = model_params(b, &nb);
    CHECK(na == nb && memcmp(pa[0].data, pb[0].data, pa[0].numel * 4) == 0);
    double ss = 0;
    for (size_t i = 0; i < pa[0].numel; i++) ss += (double)pa[0].data[i] * pa[0].data[i];
    CHECK_NEAR(sqrt(ss / pa[0].numel), 0.02, 0.002, 0);
    for (int i = 0; i < na; i++)
        if (strstr(pa[i].name, "norm")) CHECK(pa[i].data[0] == 1.0f);
    CHECK(model_num_params(a, 1) > 0);
    model_free(a);
    model_free(b);
}

int main(void) {
    RUN(test_llama_gqa);
    RUN(test_qwen2_tied_bf16);
    RUN(test_qwen3_qknorm);
    RUN(test_llama3_rope);
    RUN(test_mistral_gqa);
    RUN(test_batching_independence);
    RUN(test_bad_batch);
    RUN(test_grad_accumulates);
    RUN(test_threads_agree);
    RUN(test_save_roundtrip);
    RUN(test_random_model);
    fprintf(stderr, "worst logit abs error %.3g, worst gradient error (of tensor max) %.3g\n", worst_logit_abs,
            worst_grad_rel);
    return test_summary();
}
