/* The device check's driver (tools/cuda_check.sh; needs a GPU). Prints one
 * JSON line per check with its numbers and "pass".
 *
 *   cuda_check fixture DIR        the CUDA engine against a PyTorch fixture
 *                                 (tests/fixtures/engine/NAME/expected.safetensors)
 *   cuda_check random CONFIG      CPU and CUDA engines on the same random BF16
 *                                 weights of a config.json: nine digit probs, mean
 *   cuda_check scorer MODEL_DIR   `oprm score`'s scorer on cpu and on cuda, same items
 *   cuda_check grad DIR           the CUDA training engine's gradients (full fine-tuning, or
 *                                 LoRA for a fixture with adapter/) against the PyTorch
 *                                 fixture's, with and without recomputation; then one
 *                                 device AdamW step + download against src/train/adamw.c
 *
 * Tolerances (BF16 activations on the GPU against fp32 ones):
 *   fixture: h_last and digit logits |d| <= 0.05 + 0.02 |ref|; probs <= 2e-2;
 *   random, scorer: the nine probabilities and the mean within 2e-2;
 *   grad: per tensor cosine >= 0.999 and |g - ref| / |ref| <= 1e-2 (issue 14), loss within
 *         2e-2 + 2e-2 |ref|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "eval/scorer.h"
#include "io/fileio.h"
#include "io/safetensors.h"
#include "ordinal/ordinal.h"
#include "train/adamw.h"

/* train_cuda.cu's hook for this check (CUDA builds only). */
int cuda_engine_grad_download(Engine *e, const ModelParam *p, int n, float *const *g, OprmError *err);

/* An error message as a JSON string body (quotes and backslashes replaced). */
static const char *j(char *msg) {
    for (char *c = msg; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '\'';
    return msg;
}

static void softmax9(const float *z, double *p) {
    double mx = z[0], s = 0;
    for (int i = 1; i < 9; i++) mx = fmax(mx, z[i]);
    for (int i = 0; i < 9; i++) s += p[i] = exp(z[i] - mx);
    for (int i = 0; i < 9; i++) p[i] /= s;
}
static double mean9(const double *p) {
    double m = 0;
    for (int i = 0; i < 9; i++) m += (i + 1) * p[i];
    return m;
}

static const void *tensor(const StFile *f, const char *name, StDtype dt) {
    const StTensor *t = st_find(f, name);
    return t && t->dtype == dt ? t->data : NULL;
}

static int check_fixture(const char *dir_arg) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", dir_arg);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = 0;
    const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    char *adapter = path_join(dir, "adapter");
    int lora = file_exists(adapter);
    free(adapter);
    if (lora) {
        printf("{\"check\":\"fixture\",\"name\":\"%s\",\"skipped\":\"LoRA adapter: the CUDA engine scores merged "
               "models\",\"pass\":true}\n", name);
        return 0;
    }
    OprmError err = {{0}};
    char *exp_path = path_join(dir, "expected.safetensors");
    StFile *ex = st_open(exp_path, &err);
    free(exp_path);
    EngineOptions eo = {.device = {DEVICE_CUDA, 0}, .max_tokens_per_batch = 4096};
    Engine *e = ex ? engine_load(dir, &eo, &err) : NULL;
    if (!e) {
        printf("{\"check\":\"fixture\",\"name\":\"%s\",\"error\":\"%s\",\"pass\":false}\n", name, j(err.msg));
        st_close(ex);
        return 1;
    }
    const int32_t *digits = tensor(ex, "digits", ST_I32);
    int D = engine_config(e)->hidden, ok = 1;
    double dh = 0, dl = 0, dp = 0;
    for (int c = 0; c < 2; c++) {
        char k[64];
        snprintf(k, sizeof k, "case%d.lens", c);
        const int32_t *lens = tensor(ex, k, ST_I32);
        snprintf(k, sizeof k, "case%d.ids", c);
        const int32_t *ids = tensor(ex, k, ST_I32);
        snprintf(k, sizeof k, "case%d.h_last", c);
        const float *rh = tensor(ex, k, ST_F32);
        snprintf(k, sizeof k, "case%d.logits", c);
        const float *rl = tensor(ex, k, ST_F32);
        if (!lens || !ids || !rh || !rl || !digits) {
            ok = 0;
            break;
        }
        SeqBatch b = {ids, lens, 2, NULL};
        float *h = malloc(sizeof(float) * 2 * D), lg[18];
        if (engine_forward(e, &b, h, &err) || engine_head_rows(e, digits, 9, lg, &err)) {
            printf("{\"check\":\"fixture\",\"name\":\"%s\",\"error\":\"%s\",\"pass\":false}\n", name, j(err.msg));
            free(h);
            ok = -1;
            break;
        }
        for (int i = 0; i < 2 * D; i++) {
            double d = fabs(h[i] - rh[i]);
            dh = fmax(dh, d);
            if (d > 0.05 + 0.02 * fabs(rh[i])) ok = 0;
        }
        for (int s = 0; s < 2; s++) {
            double p[9], rp[9];
            softmax9(lg + 9 * s, p);
            softmax9(rl + 9 * s, rp);
            for (int i = 0; i < 9; i++) {
                double d = fabs(lg[9 * s + i] - rl[9 * s + i]);
                dl = fmax(dl, d);
                if (d > 0.05 + 0.02 * fabs(rl[9 * s + i])) ok = 0;
                dp = fmax(dp, fabs(p[i] - rp[i]));
            }
        }
        free(h);
    }
    if (dp > 2e-2) ok = 0;
    if (ok >= 0)
        printf("{\"check\":\"fixture\",\"name\":\"%s\",\"device\":\"%s\",\"max_abs_h_last\":%.3g,\"max_abs_logit\":%.3g,"
               "\"max_abs_prob\":%.3g,\"tol\":\"|d|<=0.05+0.02|ref| (h, logits), probs<=2e-2\",\"pass\":%s}\n",
               name, engine_describe(e), dh, dl, dp, ok ? "true" : "false");
    engine_free(e);
    st_close(ex);
    return ok == 1 ? 0 : 1;
}

/* Same random BF16 weights on both engines; 8 sequences of mixed lengths. */
static int check_random(const char *config) {
    OprmError err = {{0}};
    ModelConfig c;
    if (model_config_load(config, &c, &err)) {
        printf("{\"check\":\"random\",\"config\":\"%s\",\"error\":\"%s\",\"pass\":false}\n", config, j(err.msg));
        return 1;
    }
    ModelOptions mo = {.frozen_storage = WEIGHTS_BF16, .inference_only = 1};
    Model *m = model_new_random(&c, &mo, 1234, &err);
    int lens[8] = {7, 130, 512, 33, 1, 257, 64, 1000}, N = 0;
    for (int s = 0; s < 8; s++) N += lens[s];
    int32_t *ids = malloc(sizeof(int32_t) * N), L[8], rows[9];
    uint32_t st = 42;
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((st = st * 1664525u + 1013904223u) >> 8) % c.vocab;
    for (int s = 0; s < 8; s++) L[s] = lens[s];
    for (int k = 0; k < 9; k++) rows[k] = 16 + k;
    SeqBatch b = {ids, L, 8, NULL};
    EngineOptions cpu = {.device = {DEVICE_CPU, 0}}, gpu = {.device = {DEVICE_CUDA, 0}, .max_tokens_per_batch = N};
    Engine *ec = m ? engine_from_model(m, &cpu, &err) : NULL, *eg = ec ? engine_from_model(m, &gpu, &err) : NULL;
    float lc[72], lg[72];
    int rc = eg ? 0 : -1;
    if (!rc) rc = engine_forward(ec, &b, NULL, &err) || engine_head_rows(ec, rows, 9, lc, &err) ||
                  engine_forward(eg, &b, NULL, &err) || engine_head_rows(eg, rows, 9, lg, &err);
    if (rc) {
        printf("{\"check\":\"random\",\"config\":\"%s\",\"error\":\"%s\",\"pass\":false}\n", config, j(err.msg));
    } else {
        double dp = 0, dm = 0, dl = 0;
        for (int s = 0; s < 8; s++) {
            double pc[9], pg[9];
            softmax9(lc + 9 * s, pc);
            softmax9(lg + 9 * s, pg);
            for (int i = 0; i < 9; i++) {
                dp = fmax(dp, fabs(pc[i] - pg[i]));
                dl = fmax(dl, fabs(lc[9 * s + i] - lg[9 * s + i]));
            }
            dm = fmax(dm, fabs(mean9(pc) - mean9(pg)));
        }
        rc = !(dp <= 2e-2 && dm <= 2e-2);
        printf("{\"check\":\"random\",\"config\":\"%s\",\"arch\":\"%s\",\"tokens\":%d,\"device\":\"%s\",\"max_abs_logit\":%.3g,"
               "\"max_abs_prob\":%.3g,\"max_abs_mean\":%.3g,\"tol\":\"probs and mean <= 2e-2\",\"pass\":%s}\n",
               config, c.architecture, N, engine_describe(eg), dl, dp, dm, rc ? "false" : "true");
    }
    engine_free(eg);
    engine_free(ec);
    model_free(m);
    free(ids);
    return rc ? 1 : 0;
}

/* The whole scoring path (prompt, tokenizer, batching, ordinal math). */
static int check_scorer(const char *dir) {
    static const char *resp[] = {"The cat sat on the mat and looked at the sun.",
                                 "Once there was a small dog who loved to run in the park with his friends.",
                                 "no", "Lily found a shiny red ball under the big tree. She was very happy."};
    ScoreTurn turn = {"user", "Tell me a short story about a pet."};
    ScoreRequest items[4];
    for (int i = 0; i < 4; i++) items[i] = (ScoreRequest){&turn, 1, resp[i]};
    ScoreResult rc_[4], rg[4];
    OprmError err = {{0}};
    ScorerOptions oc = {.device = {DEVICE_CPU, 0}}, og = {.device = {DEVICE_CUDA, 0}};
    Scorer *sc = scorer_open(dir, &oc, &err), *sg = sc ? scorer_open(dir, &og, &err) : NULL;
    int rc = !sg || scorer_score(sc, items, 4, rc_, &err) || scorer_score(sg, items, 4, rg, &err);
    if (rc) {
        printf("{\"check\":\"scorer\",\"model\":\"%s\",\"error\":\"%s\",\"pass\":false}\n", dir, j(err.msg));
    } else {
        double dp = 0, dm = 0;
        for (int s = 0; s < 4; s++) {
            for (int i = 0; i < 9; i++) dp = fmax(dp, fabs(rc_[s].p[i] - rg[s].p[i]));
            dm = fmax(dm, fabs(rc_[s].mean - rg[s].mean));
        }
        rc = !(dp <= 2e-2 && dm <= 2e-2);
        printf("{\"check\":\"scorer\",\"model\":\"%s\",\"device\":\"%s\",\"max_abs_prob\":%.3g,\"max_abs_mean\":%.3g,"
               "\"tol\":\"probs and mean <= 2e-2\",\"pass\":%s}\n", dir, scorer_device(sg), dp, dm, rc ? "false" : "true");
    }
    scorer_close(sg);
    scorer_close(sc);
    return rc;
}

/* Gradients of the CUDA training engine against the fixture's (transformers, float64). */
static int check_grad_mode(const char *dir, const char *name, int recompute) {
    OprmError err = {{0}};
    char *adapter = path_join(dir, "adapter");
    int lora = file_exists(adapter);
    ModelOptions lo = {.lora_rank = 4, .lora_alpha = 1, .lora_seed = 5,
                       .lora_targets = LORA_Q | LORA_K | LORA_V | LORA_O | LORA_GATE | LORA_UP | LORA_DOWN};
    Model *m = model_load(dir, lora ? &lo : NULL, &err);
    if (m && lora && model_load_adapter(m, adapter, &err)) {
        model_free(m);
        m = NULL;
    }
    free(adapter);
    char *exp_path = path_join(dir, "expected.safetensors");
    StFile *ex = m ? st_open(exp_path, &err) : NULL;
    free(exp_path);
    EngineOptions eo = {.device = {DEVICE_CUDA, 0}, .max_tokens_per_batch = 256, .train = 1, .recompute = recompute};
    Engine *e = ex ? engine_from_model(m, &eo, &err) : NULL;
    if (!e) {
        printf("{\"check\":\"grad\",\"name\":\"%s\",\"recompute\":%d,\"error\":\"%s\",\"pass\":false}\n", name,
               recompute, j(err.msg));
        st_close(ex);
        model_free(m);
        return 1;
    }
    int np = 0, nt = 0;
    ModelParam *ps = model_params(m, &np);
    ModelParam *tp = calloc((size_t)np, sizeof *tp);
    for (int i = 0; i < np; i++)
        if (ps[i].grad) tp[nt++] = ps[i];
    float **g = calloc((size_t)nt, sizeof *g);
    for (int i = 0; i < nt; i++) g[i] = malloc(sizeof(float) * tp[i].numel);
    const int32_t *digits = tensor(ex, "digits", ST_I32);
    int D = engine_config(e)->hidden, ok = 1, missing = 0;
    double worst_cos = 1, worst_rel = 0, dloss = 0, worst_norm = 0, max_norm = 0;
    char worst_name[200] = "";
    for (int cse = 0; cse < 2 && ok >= 0; cse++) {
        char k[300];
        snprintf(k, sizeof k, "case%d.lens", cse);
        const int32_t *lens = tensor(ex, k, ST_I32);
        snprintf(k, sizeof k, "case%d.ids", cse);
        const int32_t *ids = tensor(ex, k, ST_I32);
        snprintf(k, sizeof k, "case%d.loss", cse);
        const float *rloss = tensor(ex, k, ST_F32);
        if (!lens || !ids || !digits || !rloss) {
            ok = -1;
            snprintf(err.msg, sizeof err.msg, "fixture lacks case%d tensors", cse);
            break;
        }
        SeqBatch b = {ids, lens, 2, NULL};
        float *h = malloc(sizeof(float) * 2 * D), lg[18], dl[18];
        double zc[9], zr[9], gc[9], gr[9], loss = 0;
        engine_zero_grad(e);
        int rc = engine_forward(e, &b, h, &err) || engine_head_rows(e, digits, 9, lg, &err);
        for (int i = 0; i < 9; i++) zc[i] = lg[i], zr[i] = lg[9 + i];
        if (!rc) rc = ordinal_pair_loss(zc, zr, &loss, gc, gr, &err);
        for (int i = 0; i < 9; i++) dl[i] = (float)gc[i], dl[9 + i] = (float)gr[i];
        if (!rc) rc = engine_head_backward(e, digits, 9, dl, &err) || cuda_engine_grad_download(e, tp, nt, g, &err);
        free(h);
        if (rc) {
            ok = -1;
            break;
        }
        dloss = fmax(dloss, fabs(loss - rloss[0]));
        if (fabs(loss - rloss[0]) > 2e-2 + 2e-2 * fabs(rloss[0])) ok = 0;
        for (int i = 0; i < nt; i++) {
            snprintf(k, sizeof k, "case%d.grad.%s", cse, tp[i].name);
            const StTensor *t = st_find(ex, k);
            if (!t || t->dtype != ST_F32 || t->numel != tp[i].numel) {
                missing++;
                continue;
            }
            const float *ref = (const float *)t->data;
            double dot = 0, na = 0, nr = 0, nd = 0;
            for (size_t q = 0; q < tp[i].numel; q++) {
                double a = g[i][q], r = ref[q];
                dot += a * r, na += a * a, nr += r * r, nd += (a - r) * (a - r);
            }
            double cs = nr > 0 && na > 0 ? dot / sqrt(na * nr) : (na == nr ? 1 : 0);
            double rel = nr > 0 ? sqrt(nd / nr) : sqrt(nd);
            if (cs < worst_cos) worst_cos = cs;
            if (rel > worst_rel) {
                worst_rel = rel;
                worst_norm = sqrt(nr);
                snprintf(worst_name, sizeof worst_name, "%s", tp[i].name);
            }
            if (sqrt(nr) > max_norm) max_norm = sqrt(nr);
            if (cs < 0.999 || rel > 1e-2) ok = 0;
        }
    }
    if (missing) ok = 0;
    int adamw_bad = 0;
    /* One AdamW step on the device (full fine-tuning or adapters) against src/train/adamw.c on the same
     * gradients (those of the last case, still on the device), then download: the same float
     * operations, so the master weights and moments should agree to the last bit. */
    if (ok >= 0 && !recompute) {
        float **hp = calloc((size_t)nt, sizeof *hp), **m1 = calloc((size_t)nt, sizeof *m1),
              **v1 = calloc((size_t)nt, sizeof *v1);
        ModelParam *hpar = calloc((size_t)nt, sizeof *hpar);
        int *decay = calloc((size_t)nt, sizeof *decay);
        for (int i = 0; i < nt; i++) {
            hp[i] = malloc(sizeof(float) * tp[i].numel);
            m1[i] = malloc(sizeof(float) * tp[i].numel);
            v1[i] = malloc(sizeof(float) * tp[i].numel);
            memcpy(hp[i], tp[i].data, sizeof(float) * tp[i].numel);
            hpar[i] = tp[i];
            hpar[i].data = hp[i];
            hpar[i].grad = g[i];
            decay[i] = adamw_param_decays(tp[i].name);
        }
        AdamWConfig ac = {0.9, 0.999, 1e-8, 0.01};
        AdamW *opt = adamw_new(hpar, nt, &ac);
        EngineAdamWStep stp = {1e-3, 0.9, 0.999, 1e-8, 0.01, 1, 1.0, decay};
        int rc = adamw_step(opt, hpar, nt, 1e-3, &err) || engine_adamw_step(e, &stp, &err) ||
                 engine_params_download(e, tp, nt, m1, v1, &err);
        double dp = 0, dmv = 0;
        size_t differ = 0, total = 0;
        for (int i = 0; !rc && i < nt; i++)
            for (size_t q = 0; q < tp[i].numel; q++, total++) {
                double d = fabs((double)tp[i].data[q] - hp[i][q]);
                dp = fmax(dp, d);
                dmv = fmax(dmv, fmax(fabs((double)m1[i][q] - opt->slots[i].m[q]), fabs((double)v1[i][q] - opt->slots[i].v[q])));
                differ += tp[i].data[q] != hp[i][q];
            }
        int aok = !rc && dp <= 1e-6 && dmv <= 1e-9;
        if (rc)
            printf("{\"check\":\"adamw\",\"name\":\"%s\",\"error\":\"%s\",\"pass\":false}\n", name, j(err.msg));
        else
            printf("{\"check\":\"adamw\",\"name\":\"%s\",\"mode\":\"%s\",\"elements\":%zu,\"differ_bitwise\":%zu,"
                   "\"max_abs_param\":%.3g,\"max_abs_moment\":%.3g,\"tol\":\"params <= 1e-6, moments <= 1e-9 "
                   "(same float ops: expected 0)\",\"pass\":%s}\n",
                   name, lora ? "lora" : "full", total, differ, dp, dmv, aok ? "true" : "false");
        adamw_bad = !aok;
        adamw_free(opt);
        for (int i = 0; i < nt; i++) free(hp[i]), free(m1[i]), free(v1[i]);
        free(hp), free(m1), free(v1), free(hpar), free(decay);
    }
    if (ok < 0)
        printf("{\"check\":\"grad\",\"name\":\"%s\",\"recompute\":%d,\"error\":\"%s\",\"pass\":false}\n", name,
               recompute, j(err.msg));
    else
        printf("{\"check\":\"grad\",\"name\":\"%s\",\"mode\":\"%s\",\"recompute\":%d,\"tensors\":%d,\"missing\":%d,"
               "\"worst_cosine\":%.6f,\"worst_rel_norm_err\":%.3g,\"worst_tensor\":\"%s\",\"worst_tensor_norm_of_largest\":%.3g,"
               "\"max_abs_loss\":%.3g,"
               "\"tol\":\"cosine>=0.999, rel<=1e-2 per tensor; loss<=2e-2+2e-2|ref|\",\"device\":\"%s\",\"pass\":%s}\n",
               name, lora ? "lora" : "full", recompute, nt, missing, worst_cos, worst_rel, worst_name,
               worst_norm / (max_norm + 1e-30), dloss,
               engine_describe(e), ok ? "true" : "false");
    for (int i = 0; i < nt; i++) free(g[i]);
    free(g);
    free(tp);
    engine_free(e);
    st_close(ex);
    model_free(m);
    return ok == 1 && !adamw_bad ? 0 : 1;
}

static int check_grad(const char *dir_arg) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", dir_arg);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = 0;
    const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    return check_grad_mode(dir, name, 0) | check_grad_mode(dir, name, 1);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: cuda_check fixture DIR | random CONFIG | scorer MODEL_DIR | grad DIR\n");
        return 2;
    }
    int bad = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[1], "fixture")) bad |= check_fixture(argv[i]);
        else if (!strcmp(argv[1], "random")) bad |= check_random(argv[i]);
        else if (!strcmp(argv[1], "scorer")) bad |= check_scorer(argv[i]);
        else if (!strcmp(argv[1], "grad")) bad |= check_grad(argv[i]);
        else return 2;
        fflush(stdout);
    }
    return bad;
}
