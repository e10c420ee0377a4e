/* LoRA and BF16 weight storage, against the PyTorch fixture lora_qwen2 of
 * tools/gen_engine_fixtures.py (logits 1e-4, adapter gradients 1e-3 of each
 * tensor's max), plus exact equalities: BF16 vs fp32 storage of the same
 * values, a fresh adapter (B = 0) vs the base, adapter save/load round trips;
 * merged saves reload within 1e-5; frozen tensors stay untouched by a step. */
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "train/adamw.h"
#include "test.h"

#define FIX "tests/fixtures/engine/"
#define LORA_DIR FIX "lora_qwen2"
#define ADAPTER_DIR FIX "lora_qwen2/adapter"
#define ALL_TARGETS (LORA_Q | LORA_K | LORA_V | LORA_O | LORA_GATE | LORA_UP | LORA_DOWN)

static const float *fx(const StFile *f, const char *name, StDtype dt, size_t *n) {
    const StTensor *t = st_find(f, name);
    if (!t || t->dtype != dt) return NULL;
    if (n) *n = t->numel;
    return (const float *)t->data;
}

/* Same pair loss as test_model.c (double, independent of the ordinal module). */
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
    for (int s = 0; s < 2; s++) {
        double *g = s == 0 ? gc : gr, dot = 0;
        for (int i = 0; i < 9; i++) g[i] = -g[i] / S;
        for (int i = 0; i < 9; i++) dot += p[s][i] * g[i];
        for (int i = 0; i < 9; i++) dlogits[s * 9 + i] = (float)(p[s][i] * (g[i] - dot));
    }
    return -log(S);
}

static Model *load_lora(WeightStorage st, int with_adapter) {
    OprmError err = {{0}};
    ModelOptions o = {.frozen_storage = st, .lora_rank = 4, .lora_alpha = 1, .lora_targets = ALL_TARGETS,
                      .lora_seed = 5};
    Model *m = model_load(LORA_DIR, &o, &err);
    if (!m) fprintf(stderr, "load: %s\n", err.msg);
    if (m && with_adapter && model_load_adapter(m, ADAPTER_DIR, &err) != 0) {
        fprintf(stderr, "adapter: %s\n", err.msg);
        model_free(m);
        return NULL;
    }
    return m;
}

/* Forward (+ backward when dh) of case c; logits[18]. */
static int run_case(Model *m, const StFile *ex, int c, float *h, float *logits, int backward) {
    char key[64];
    OprmError err = {{0}};
    snprintf(key, sizeof key, "case%d.lens", c);
    const int32_t *lens = (const int32_t *)fx(ex, key, ST_I32, NULL);
    snprintf(key, sizeof key, "case%d.ids", c);
    const int32_t *ids = (const int32_t *)fx(ex, key, ST_I32, NULL);
    const int32_t *digits = (const int32_t *)fx(ex, "digits", ST_I32, NULL);
    if (!lens || !ids || !digits) return -1;
    SeqBatch b = {ids, lens, 2, NULL};
    if (model_forward(m, &b, backward, h, &err) != 0) return -1;
    model_head_rows_forward(m, h, 2, digits, 9, logits);
    if (!backward) return 0;
    float dlogits[18];
    pair_loss(logits, dlogits);
    int D = model_config(m)->hidden;
    float *dh = calloc((size_t)2 * D, sizeof(float));
    model_zero_grad(m);
    model_head_rows_backward(m, h, 2, digits, 9, dlogits, dh);
    int rc = model_backward(m, dh, &err);
    free(dh);
    return rc;
}

static void test_lora_against_torch(void) {
    OprmError err = {{0}};
    StFile *ex = st_open(LORA_DIR "/expected.safetensors", &err);
    Model *m32 = load_lora(WEIGHTS_F32, 1), *m16 = load_lora(WEIGHTS_BF16, 1);
    CHECK(ex && m32 && m16);
    if (!ex || !m32 || !m16) goto out;
    int D = model_config(m32)->hidden;
    float *h32 = calloc((size_t)2 * D, 4), *h16 = calloc((size_t)2 * D, 4);
    double worst = 0;
    for (int c = 0; c < 2; c++) {
        float l32[18], l16[18];
        CHECK(run_case(m32, ex, c, h32, l32, 1) == 0);
        CHECK(run_case(m16, ex, c, h16, l16, 1) == 0);
        char key[200];
        snprintf(key, sizeof key, "case%d.logits", c);
        const float *ref = fx(ex, key, ST_F32, NULL);
        snprintf(key, sizeof key, "case%d.loss", c);
        const float *ref_loss = fx(ex, key, ST_F32, NULL);
        CHECK(ref && ref_loss);
        if (!ref || !ref_loss) break;
        for (int i = 0; i < 18; i++) CHECK_NEAR(l32[i], ref[i], 1e-4, 1e-4);
        float dl[18];
        CHECK_NEAR(pair_loss(l32, dl), ref_loss[0], 1e-4, 1e-4);
        /* BF16 storage of the same (bf16-representable) values: identical. */
        CHECK(memcmp(l32, l16, sizeof l32) == 0);
        CHECK(memcmp(h32, h16, sizeof(float) * 2 * D) == 0);
        int n32, n16, adapters = 0;
        ModelParam *p32 = model_params(m32, &n32), *p16 = model_params(m16, &n16);
        CHECK(n32 == n16);
        for (int i = 0; i < n32 && i < n16; i++) {
            int is_adapter = strstr(p32[i].name, ".lora_") != NULL;
            CHECK(is_adapter == (p32[i].grad != NULL));
            CHECK(is_adapter == (p16[i].grad != NULL));
            if (!is_adapter) {
                /* Frozen: 2-D matrices held in BF16 under BF16 storage, fp32 otherwise. */
                CHECK(p32[i].data != NULL && p32[i].data_bf16 == NULL);
                CHECK((p16[i].ndim == 2) == (p16[i].data_bf16 != NULL));
                continue;
            }
            adapters++;
            CHECK(memcmp(p32[i].grad, p16[i].grad, p32[i].numel * 4) == 0);
            snprintf(key, sizeof key, "case%d.grad.%s", c, p32[i].name);
            size_t n = 0;
            const float *g = fx(ex, key, ST_F32, &n);
            CHECK(g != NULL && n == p32[i].numel);
            if (!g || n != p32[i].numel) continue;
            double scale = 0, w = 0;
            for (size_t j = 0; j < n; j++) scale = fmax(scale, fabs(g[j]));
            for (size_t j = 0; j < n; j++) w = fmax(w, fabs(p32[i].grad[j] - g[j]) / (scale + 1e-30));
            if (w > 1e-3) fprintf(stderr, "%s: error %.3g of max %.3g\n", key, w, scale);
            CHECK(w <= 1e-3);
            worst = fmax(worst, w);
        }
        CHECK(adapters == 2 * 7 * 2); /* A and B, seven targets, two layers */
    }
    fprintf(stderr, "LoRA: worst adapter gradient error (of tensor max) %.3g\n", worst);
    /* Trainable parameters: the adapters only. */
    size_t want = 0;
    int np;
    ModelParam *ps = model_params(m32, &np);
    for (int i = 0; i < np; i++)
        if (ps[i].grad) want += ps[i].numel;
    CHECK(model_num_params(m32, 1) == want && want > 0 && model_num_params(m32, 0) > want);
    free(h32);
    free(h16);
out:
    model_free(m32);
    model_free(m16);
    st_close(ex);
}

/* A fresh adapter (B = 0) leaves the model exactly as it was; A follows
 * PEFT's kaiming-uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)). */
static void test_fresh_adapter(void) {
    OprmError err = {{0}};
    StFile *ex = st_open(LORA_DIR "/expected.safetensors", &err);
    Model *base = model_load(LORA_DIR, NULL, &err), *m = load_lora(WEIGHTS_BF16, 0);
    CHECK(ex && base && m);
    if (ex && base && m) {
        int D = model_config(m)->hidden;
        float h0[64], h1[64], l0[18], l1[18];
        CHECK(D <= 32);
        CHECK(run_case(base, ex, 1, h0, l0, 0) == 0);
        CHECK(run_case(m, ex, 1, h1, l1, 0) == 0);
        CHECK(memcmp(l0, l1, sizeof l0) == 0);
        int np;
        ModelParam *ps = model_params(m, &np);
        for (int i = 0; i < np; i++) {
            if (strstr(ps[i].name, ".lora_B.")) {
                for (size_t j = 0; j < ps[i].numel; j++) CHECK(ps[i].data[j] == 0.0f);
            }
            if (strstr(ps[i].name, ".lora_A.")) {
                double bound = 1 / sqrt((double)ps[i].shape[1]), ss = 0, mx = 0;
                for (size_t j = 0; j < ps[i].numel; j++) {
                    ss += (double)ps[i].data[j] * ps[i].data[j];
                    mx = fmax(mx, fabs(ps[i].data[j]));
                }
                CHECK(mx <= bound && mx > 0.5 * bound);
                CHECK_NEAR(sqrt(ss / ps[i].numel), bound / sqrt(3.0), 0.25 * bound, 0);
            }
        }
        CHECK(strcmp(ps[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") == 0);
    }
    model_free(base);
    model_free(m);
    st_close(ex);
}

/* One backward + AdamW step changes the adapters and nothing else. */
static void test_frozen_after_step(void) {
    OprmError err = {{0}};
    StFile *ex = st_open(LORA_DIR "/expected.safetensors", &err);
    Model *m = load_lora(WEIGHTS_BF16, 1);
    CHECK(ex && m);
    if (!ex || !m) goto out;
    int np, D = model_config(m)->hidden;
    ModelParam *ps = model_params(m, &np);
    void **copy = calloc((size_t)np, sizeof *copy);
    for (int i = 0; i < np; i++) {
        size_t bytes = ps[i].numel * (ps[i].data ? 4 : 2);
        copy[i] = malloc(bytes);
        memcpy(copy[i], ps[i].data ? (const void *)ps[i].data : (const void *)ps[i].data_bf16, bytes);
    }
    float *h = calloc((size_t)2 * D, 4), logits[18];
    CHECK(run_case(m, ex, 1, h, logits, 1) == 0);
    AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.1};
    AdamW *opt = adamw_new(ps, np, &cfg);
    CHECK(opt->nslots == 28);
    CHECK(adamw_step(opt, ps, np, 1e-2, &err) == 0);
    int changed = 0;
    for (int i = 0; i < np; i++) {
        size_t bytes = ps[i].numel * (ps[i].data ? 4 : 2);
        int same = memcmp(copy[i], ps[i].data ? (const void *)ps[i].data : (const void *)ps[i].data_bf16, bytes) == 0;
        if (ps[i].grad) changed += !same;
        else CHECK(same);
        free(copy[i]);
    }
    CHECK(changed == 28);
    adamw_free(opt);
    free(copy);
    free(h);
out:
    model_free(m);
    st_close(ex);
}

/* Merged save -> plain load gives the same logits (1e-5); adapter save ->
 * load_adapter gives identical ones; the adapter config is PEFT's. */
static void test_saves(void) {
    OprmError err = {{0}};
    char merged[200], adapter[200];
    snprintf(merged, sizeof merged, "/tmp/oprm_test_lora_merged_%d", (int)getpid());
    snprintf(adapter, sizeof adapter, "/tmp/oprm_test_lora_adapter_%d", (int)getpid());
    StFile *ex = st_open(LORA_DIR "/expected.safetensors", &err);
    Model *m = load_lora(WEIGHTS_BF16, 1);
    CHECK(ex && m);
    if (!ex || !m) goto out;
    float h[64], ref[18], got[18];
    CHECK(run_case(m, ex, 1, h, ref, 0) == 0);
    CHECK(model_save(m, merged, &err) == 0);
    Model *plain = model_load(merged, NULL, &err);
    CHECK(plain != NULL);
    if (plain) {
        CHECK(run_case(plain, ex, 1, h, got, 0) == 0);
        for (int i = 0; i < 18; i++) CHECK_NEAR(got[i], ref[i], 1e-5, 1e-5);
        int np;
        model_params(plain, &np);
        CHECK(np == 1 + 2 * 12 + 1); /* embed, 12 tensors per layer (biases), final norm; tied head */
        model_free(plain);
    }
    CHECK(model_save_adapter(m, adapter, &err) == 0);
    Model *again = load_lora(WEIGHTS_F32, 0);
    CHECK(again && model_load_adapter(again, adapter, &err) == 0);
    if (again) {
        CHECK(run_case(again, ex, 1, h, got, 0) == 0);
        CHECK(memcmp(got, ref, sizeof got) == 0);
        model_free(again);
    }
    char path[300];
    snprintf(path, sizeof path, "%s/adapter_config.json", adapter);
    json_t *cfg = json_load_file(path, 0, NULL);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK(!strcmp(json_string_value(json_object_get(cfg, "peft_type")), "LORA"));
        CHECK(!strcmp(json_string_value(json_object_get(cfg, "task_type")), "CAUSAL_LM"));
        CHECK(!strcmp(json_string_value(json_object_get(cfg, "bias")), "none"));
        CHECK(json_integer_value(json_object_get(cfg, "r")) == 4);
        CHECK(json_number_value(json_object_get(cfg, "lora_alpha")) == 6.0);
        CHECK(json_number_value(json_object_get(cfg, "lora_dropout")) == 0.0);
        json_t *t = json_object_get(cfg, "target_modules");
        CHECK(json_array_size(t) == 7 && !strcmp(json_string_value(json_array_get(t, 6)), "down_proj"));
        CHECK(strstr(json_string_value(json_object_get(cfg, "base_model_name_or_path")), "lora_qwen2") != NULL);
        json_decref(cfg);
    }
    /* A mismatching rank is refused with the file named. */
    ModelOptions o = {.lora_rank = 2, .lora_alpha = 1, .lora_targets = ALL_TARGETS};
    Model *r2 = model_load(LORA_DIR, &o, &err);
    CHECK(r2 && model_load_adapter(r2, adapter, &err) != 0);
    CHECK_STR_CONTAINS(err.msg, "adapter_config.json");
    model_free(r2);
    /* Saving an adapter of a model without one fails. */
    Model *base = model_load(LORA_DIR, NULL, &err);
    CHECK(base && model_save_adapter(base, adapter, &err) != 0);
    model_free(base);
    char cmd[500];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", merged, adapter);
    CHECK(system(cmd) == 0);
out:
    model_free(m);
    st_close(ex);
}

/* Scoring with BF16 storage equals fp32 scoring of the same weights rounded
 * to bf16 (bitwise), for an F32 file and a BF16 file. */
static void test_inference_bf16(void) {
    const char *names[] = {"llama_gqa", "qwen2_tied_bf16", "qwen3_qknorm"};
    for (int k = 0; k < 3; k++) {
        OprmError err = {{0}};
        char dir[200], exp_path[300];
        snprintf(dir, sizeof dir, FIX "%s", names[k]);
        snprintf(exp_path, sizeof exp_path, "%s/expected.safetensors", dir);
        ModelOptions o = {.frozen_storage = WEIGHTS_BF16, .inference_only = k != 1}; /* k == 1: implied by BF16 without LoRA */
        Model *ref = model_load(dir, NULL, &err), *m = model_load(dir, &o, &err);
        StFile *ex = st_open(exp_path, &err);
        CHECK(ref && m && ex);
        if (ref && m && ex) {
            int np;
            ModelParam *ps = model_params(ref, &np), *pm = model_params(m, &np);
            for (int i = 0; i < np; i++) {
                CHECK(pm[i].grad == NULL);
                CHECK((pm[i].ndim == 2) == (pm[i].data == NULL));
                if (ps[i].ndim != 2) continue;
                for (size_t j = 0; j < ps[i].numel; j++) { /* round to nearest even, as the engine */
                    union { float f; uint32_t u; } v = {ps[i].data[j]};
                    v.u = (v.u + 0x7fffu + ((v.u >> 16) & 1)) & 0xffff0000u;
                    ps[i].data[j] = v.f;
                }
            }
            CHECK(model_num_params(m, 1) == 0);
            int D = model_config(m)->hidden;
            float *h0 = calloc((size_t)2 * D, 4), *h1 = calloc((size_t)2 * D, 4), l0[18], l1[18];
            CHECK(run_case(ref, ex, 1, h0, l0, 0) == 0);
            CHECK(run_case(m, ex, 1, h1, l1, 0) == 0);
            CHECK(memcmp(h0, h1, sizeof(float) * 2 * D) == 0);
            CHECK(memcmp(l0, l1, sizeof l0) == 0);
            /* Full logits too (generation path). */
            float *f0 = malloc(sizeof(float) * model_config(m)->vocab), *f1 = malloc(sizeof(float) * model_config(m)->vocab);
            model_logits_full(ref, h0, f0);
            model_logits_full(m, h1, f1);
            for (int v = 0; v < model_config(m)->vocab; v++) CHECK_NEAR(f1[v], f0[v], 1e-5, 1e-5);
            /* Training a scoring model is refused. */
            SeqBatch b = {(const int32_t *)fx(ex, "case1.ids", ST_I32, NULL), (const int32_t *)fx(ex, "case1.lens", ST_I32, NULL), 2, NULL};
            CHECK(model_forward(m, &b, 1, h1, &err) == 0);
            CHECK(model_backward(m, h1, &err) != 0);
            CHECK_STR_CONTAINS(err.msg, "inference");
            free(f0);
            free(f1);
            free(h0);
            free(h1);
        }
        model_free(ref);
        model_free(m);
        st_close(ex);
    }
}

/* Random LoRA models with a BF16 base train end to end; init does not depend
 * on the thread count. */
static void test_random_lora(void) {
    OprmError err = {{0}};
    ModelConfig cfg;
    CHECK(model_config_load(LORA_DIR "/config.json", &cfg, &err) == 0);
    ModelOptions o = {.frozen_storage = WEIGHTS_BF16, .lora_rank = 2, .lora_alpha = 4, .lora_targets = LORA_Q | LORA_DOWN,
                      .lora_seed = 3};
    Model *m = model_new_random(&cfg, &o, 9, &err);
    CHECK(m != NULL);
    if (!m) return;
    int32_t ids[12], lens[2] = {5, 7};
    for (int i = 0; i < 12; i++) ids[i] = (i * 7 + 3) % cfg.vocab;
    SeqBatch b = {ids, lens, 2, NULL};
    float h[64], dh[64];
    CHECK(model_forward(m, &b, 1, h, &err) == 0);
    for (int i = 0; i < 2 * cfg.hidden; i++) dh[i] = (float)((i % 5) - 2) * 0.1f;
    model_zero_grad(m);
    CHECK(model_backward(m, dh, &err) == 0);
    int np, nonzero = 0;
    ModelParam *ps = model_params(m, &np);
    for (int i = 0; i < np; i++)
        if (ps[i].grad && strstr(ps[i].name, "lora_B"))
            for (size_t j = 0; j < ps[i].numel; j++) nonzero += ps[i].grad[j] != 0;
    CHECK(nonzero > 0);
    /* Per layer: q (A 2x32, B 32x2) and down (A 2x48, B 32x2); two layers. */
    CHECK(model_num_params(m, 1) == 2 * (2 * 32 + 32 * 2 + 2 * 48 + 32 * 2));
    model_free(m);
}

int main(void) {
    RUN(test_lora_against_torch);
    RUN(test_fresh_adapter);
    RUN(test_frozen_after_step);
    RUN(test_saves);
    RUN(test_inference_bf16);
    RUN(test_random_lora);
    return test_summary();
}
