/* Prompt-prefix sharing is exact: for the same batch, with and without
 * SeqBatch.group, the digit distributions, the loss and every trainable
 * parameter's gradient agree within 1e-5 (fp32; gradients relative to each
 * tensor's largest entry when that exceeds 1), on the Llama (GQA), Qwen2
 * (biases, tied) and Qwen3 (qk-norm) fixtures and a 3-layer random model whose
 * sequences cross the attention block size, in full fine-tuning and with LoRA
 * adapters (B made non-zero so every adapter gradient is live). Cases: a pair,
 * a group of 8 with continuations of 1 to 90 tokens, several groups packed
 * with a lone sequence, a member equal to the prefix of another, a pair with
 * no common prefix and one with a prefix under MODEL_PREFIX_MIN (both fall
 * back to the unshared layout: nothing saved). */
#include <stdint.h>

#include "model/model.h"
#include "test.h"

#define FIX "tests/fixtures/engine/"
#define ALL_TARGETS (LORA_Q | LORA_K | LORA_V | LORA_O | LORA_GATE | LORA_UP | LORA_DOWN)
#define MAXSEQ 16
#define MAXTOK 4096

static uint64_t rng_state = 12345;
static int rnd(int n) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int)((rng_state >> 33) % (uint64_t)n);
}

typedef struct {
    int32_t ids[MAXTOK], lens[MAXSEQ], group[MAXSEQ];
    int nseq, n;
} Case;

/* Appends a group: a common prefix of `pre` tokens then continuations of
 * cont[i] tokens whose first tokens all differ (so the common prefix is
 * exactly `pre`). */
static void add_group(Case *c, int vocab, int pre, const int *cont, int k, int gid) {
    int32_t prefix[1024];
    for (int t = 0; t < pre; t++) prefix[t] = rnd(vocab);
    for (int i = 0; i < k; i++) {
        memcpy(c->ids + c->n, prefix, sizeof(int32_t) * (size_t)pre);
        c->n += pre;
        for (int t = 0; t < cont[i]; t++) c->ids[c->n++] = t == 0 ? (i * 5 + 1) % vocab : rnd(vocab);
        c->lens[c->nseq] = pre + cont[i];
        c->group[c->nseq++] = gid;
    }
}

static const int32_t digits[9] = {3, 5, 7, 11, 13, 17, 19, 23, 29};

/* Loss: cross-entropy of each sequence's digit distribution against a fixed
 * target distribution; fills p[nseq*9], returns L; with backward, the
 * gradients are accumulated into the model. */
static double run(Model *m, const Case *c, int shared, int backward, double *p) {
    OprmError err = {{0}};
    int D = model_config(m)->hidden;
    SeqBatch b = {c->ids, c->lens, c->nseq, shared ? c->group : NULL};
    float *h = calloc((size_t)c->nseq * D, sizeof(float)), *dh = calloc((size_t)c->nseq * D, sizeof(float));
    float logits[MAXSEQ * 9], dlogits[MAXSEQ * 9];
    if (model_forward(m, &b, backward, h, &err) != 0) {
        fprintf(stderr, "forward: %s\n", err.msg);
        free(h);
        free(dh);
        return NAN;
    }
    model_head_rows_forward(m, h, c->nseq, digits, 9, logits);
    double L = 0;
    for (int s = 0; s < c->nseq; s++) {
        double mx = logits[s * 9], z = 0, tgt[9], tsum = 0;
        for (int k = 1; k < 9; k++) mx = fmax(mx, logits[s * 9 + k]);
        for (int k = 0; k < 9; k++) z += exp(logits[s * 9 + k] - mx);
        for (int k = 0; k < 9; k++) tsum += tgt[k] = 1.0 + ((s * 7 + k * 3) % 5);
        for (int k = 0; k < 9; k++) {
            double pk = exp(logits[s * 9 + k] - mx) / z, t = tgt[k] / tsum;
            p[s * 9 + k] = pk;
            L -= t * (logits[s * 9 + k] - mx - log(z));
            dlogits[s * 9 + k] = (float)(pk - t);
        }
    }
    if (backward) {
        model_head_rows_backward(m, h, c->nseq, digits, 9, dlogits, dh);
        if (model_backward(m, dh, &err) != 0) {
            fprintf(stderr, "backward: %s\n", err.msg);
            L = NAN;
        }
    }
    free(h);
    free(dh);
    return L;
}

static double worst_p = 0, worst_g = 0;

/* Compares the shared and unshared passes of case c on m. */
static void compare(Model *m, const Case *c, int64_t expect_saved, const char *what) {
    SeqBatch b = {c->ids, c->lens, c->nseq, c->group};
    CHECK(model_prefix_saved(&b) == expect_saved);
    int np = 0;
    ModelParam *ps = model_params(m, &np);
    float **ref = calloc((size_t)np, sizeof(float *));
    double p0[MAXSEQ * 9], p1[MAXSEQ * 9];
    model_zero_grad(m);
    double L0 = run(m, c, 0, 1, p0);
    for (int i = 0; i < np; i++) {
        if (!ps[i].grad) continue;
        ref[i] = malloc(ps[i].numel * sizeof(float));
        memcpy(ref[i], ps[i].grad, ps[i].numel * sizeof(float));
    }
    model_zero_grad(m);
    double L1 = run(m, c, 1, 1, p1);
    CHECK_NEAR(L1, L0, 1e-5, 0);
    double wp = 0, wg = 0;
    for (int i = 0; i < c->nseq * 9; i++) wp = fmax(wp, fabs(p1[i] - p0[i]));
    int n_live = 0;
    for (int i = 0; i < np; i++) {
        if (!ref[i]) continue;
        double mx = 0, d = 0;
        for (size_t j = 0; j < ps[i].numel; j++) {
            mx = fmax(mx, fabs(ref[i][j]));
            d = fmax(d, fabs(ps[i].grad[j] - ref[i][j]));
        }
        n_live += mx > 0;
        double rel = d / fmax(1.0, mx);
        if (rel > 1e-5) fprintf(stderr, "  %s %s: grad diff %.3g (max %.3g)\n", what, ps[i].name, d, mx);
        wg = fmax(wg, rel);
        free(ref[i]);
    }
    CHECK(n_live > 0);
    CHECK(wp <= 1e-5);
    CHECK(wg <= 1e-5);
    /* Scoring (no training) takes the same path. */
    double p2[MAXSEQ * 9];
    run(m, c, 1, 0, p2);
    for (int i = 0; i < c->nseq * 9; i++) wp = fmax(wp, fabs(p2[i] - p0[i]));
    CHECK(wp <= 1e-5);
    worst_p = fmax(worst_p, wp);
    worst_g = fmax(worst_g, wg);
    free(ref);
}

static void all_cases(Model *m, const char *what) {
    int V = model_config(m)->vocab;
    Case c;
    /* A pair. */
    memset(&c, 0, sizeof c);
    add_group(&c, V, 40, (int[]){7, 25}, 2, 0);
    compare(m, &c, 40, what);
    /* A group of 8 with very different continuations, two of one token. */
    memset(&c, 0, sizeof c);
    add_group(&c, V, 30, (int[]){1, 3, 90, 8, 1, 20, 70, 2}, 8, 0);
    compare(m, &c, 7 * 30, what);
    /* Packing: two groups and a lone sequence (group ids reused in runs). */
    memset(&c, 0, sizeof c);
    add_group(&c, V, 20, (int[]){5, 9}, 2, 0);
    add_group(&c, V, 33, (int[]){12}, 1, 1);
    add_group(&c, V, 70, (int[]){4, 1, 30}, 3, 0);
    compare(m, &c, 20 + 2 * 70, what);
    /* One member is the whole prefix of the other: the shared part is capped
     * so that it keeps one token of its own. */
    memset(&c, 0, sizeof c);
    add_group(&c, V, 24, (int[]){0, 6}, 2, 0);
    compare(m, &c, 23, what);
    /* No common prefix, and one shorter than MODEL_PREFIX_MIN: unshared. */
    memset(&c, 0, sizeof c);
    add_group(&c, V, 0, (int[]){15, 22}, 2, 0);
    compare(m, &c, 0, what);
    memset(&c, 0, sizeof c);
    add_group(&c, V, MODEL_PREFIX_MIN - 1, (int[]){10, 4}, 2, 0);
    compare(m, &c, 0, what);
}

/* Non-zero adapter B matrices, so the A gradients are not all zero. */
static void randomize_lora_b(Model *m) {
    int np = 0;
    ModelParam *ps = model_params(m, &np);
    for (int i = 0; i < np; i++)
        if (ps[i].grad && strstr(ps[i].name, "lora_B"))
            for (size_t j = 0; j < ps[i].numel; j++) ps[i].data[j] = 0.05f * (rnd(2001) - 1000) / 1000.0f;
}

static void check_fixture(const char *name, int lora) {
    char dir[256], what[300];
    snprintf(dir, sizeof dir, FIX "%s", name);
    snprintf(what, sizeof what, "%s%s", name, lora ? "+lora" : "");
    OprmError err = {{0}};
    ModelOptions o = {.lora_rank = 4, .lora_alpha = 8, .lora_targets = ALL_TARGETS, .lora_seed = 3};
    Model *m = model_load(dir, lora ? &o : NULL, &err);
    CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "%s: %s\n", dir, err.msg);
        return;
    }
    if (lora) randomize_lora_b(m);
    all_cases(m, what);
    model_free(m);
}

static void test_llama(void) { check_fixture("llama_gqa", 0); check_fixture("llama_gqa", 1); }
static void test_qwen2(void) { check_fixture("qwen2_tied_bf16", 0); check_fixture("qwen2_tied_bf16", 1); }
static void test_qwen3(void) { check_fixture("qwen3_qknorm", 0); check_fixture("qwen3_qknorm", 1); }

/* Three layers (two with prefix units), qk-norm, 1 KV head for 4 query heads. */
static void test_random_deeper(void) {
    ModelConfig c = {.arch = ARCH_QWEN3, .hidden = 32, .n_layers = 3, .n_heads = 4, .n_kv_heads = 1, .head_dim = 8,
                     .ffn = 48, .vocab = 64, .max_pos = 512, .rope_theta = 10000, .rms_eps = 1e-6, .qk_norm = 1,
                     .bos_id = -1, .eos_id = -1};
    snprintf(c.architecture, sizeof c.architecture, "Qwen3ForCausalLM");
    OprmError err = {{0}};
    Model *m = model_new_random(&c, NULL, 77, &err);
    CHECK(m != NULL);
    if (!m) return;
    all_cases(m, "random3");
    /* More threads than cores: the per-cluster backward tasks really interleave. */
    model_set_threads(3);
    all_cases(m, "random3/3 threads");
    model_set_threads(0);
    model_free(m);
}

/* Gradient accumulation: a shared pass adds onto the gradients already there. */
static void test_accumulates(void) {
    OprmError err = {{0}};
    Model *m = model_load(FIX "llama_gqa", NULL, &err);
    CHECK(m != NULL);
    if (!m) return;
    Case c;
    memset(&c, 0, sizeof c);
    add_group(&c, model_config(m)->vocab, 30, (int[]){6, 2, 11}, 3, 0);
    double p[MAXSEQ * 9];
    int np = 0;
    ModelParam *ps = model_params(m, &np);
    model_zero_grad(m);
    run(m, &c, 0, 1, p);
    size_t n = ps[0].numel;
    float *once = malloc(n * sizeof(float));
    memcpy(once, ps[0].grad, n * sizeof(float));
    run(m, &c, 1, 1, p);
    double d = 0, mx = 0;
    for (size_t j = 0; j < n; j++) {
        d = fmax(d, fabs(ps[0].grad[j] - 2 * once[j]));
        mx = fmax(mx, fabs(once[j]));
    }
    CHECK(mx > 0);
    CHECK(d <= 1e-5 * fmax(1, mx));
    free(once);
    model_free(m);
}

/* The greedy grouping of scoring batches. */
static void test_groups(void) {
    Case c;
    memset(&c, 0, sizeof c);
    add_group(&c, 50, 40, (int[]){5, 5, 5}, 3, 0); /* one prompt, three responses */
    add_group(&c, 50, 30, (int[]){5, 5}, 2, 1);    /* another prompt */
    int32_t g[MAXSEQ];
    model_prefix_groups(c.ids, c.lens, c.nseq, g);
    CHECK(g[0] == g[1] && g[1] == g[2]);
    CHECK(g[3] != g[2] && g[3] == g[4]);
    /* A third response sharing only 20 tokens with a pair sharing 100 starts a
     * new group (joining would save 40 instead of 100). */
    memset(&c, 0, sizeof c);
    add_group(&c, 50, 100, (int[]){5, 5}, 2, 0);
    memcpy(c.ids + c.n, c.ids, 20 * sizeof(int32_t));
    for (int t = 20; t < 60; t++) c.ids[c.n + t] = 49;
    c.lens[c.nseq++] = 60;
    model_prefix_groups(c.ids, c.lens, c.nseq, g);
    CHECK(g[0] == g[1] && g[2] != g[1]);
}

int main(void) {
    RUN(test_llama);
    RUN(test_qwen2);
    RUN(test_qwen3);
    RUN(test_random_deeper);
    RUN(test_accumulates);
    RUN(test_groups);
    fprintf(stderr, "worst |dp| %.3g, worst gradient difference %.3g\n", worst_p, worst_g);
    return test_summary();
}
