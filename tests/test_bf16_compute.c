/* BF16 compute (src/model/bf16_gemm.c and the engine's use of it):
 *  - the kernel against a double product of the bf16-rounded operands, for the
 *    three operand layouts of a linear layer, fp32 and bf16 sources, ragged
 *    edges (M, N, K not multiples of the 8 x 32 tile or of 2) and beta 0 / 1;
 *  - OPRM_BF16=0 forces the fp32 fallback: the model says bf16 is off and
 *    gives bit-identical results to an fp32 model;
 *  - scoring the real story-llama model with BF16 weights and BF16 compute:
 *    digit probabilities within 1e-2 of fp32 scoring;
 *  - the mixed-precision train step: every weight gradient has cosine >= 0.999
 *    with the fp32 gradient (BF16 operands carry 8 significant bits; the
 *    products accumulate in fp32), and differs from it (the BF16 path ran).
 * On a CPU without avx512_bf16 the kernel checks are replaced by checks that
 * the model falls back (no SKIP: that is the behaviour to test there). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/bf16_gemm.h"
#include "model/layers.h"
#include "model/model.h"
#include "model/model_internal.h"
#include "test.h"
#include "tok/tokenizer.h"
#include "util/vec.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static double rnd(float f) { return bf16_to_f32(f32_to_bf16(f)); }

/* One layout: A(i,k) = a[i*ars + k*acs], B(k,j) = b[k*brs + j*bcs]. */
static void check_gemm(int M, int N, int K, int a_t, int b_t, int a_bf16, int b_bf16, int beta1, unsigned seed) {
    size_t na = (size_t)M * K, nb = (size_t)K * N;
    float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
    uint16_t *ab = malloc(na * 2), *bb = malloc(nb * 2);
    float *c = malloc((size_t)M * (N + 3) * sizeof(float));
    for (size_t i = 0; i < na; i++) ab[i] = f32_to_bf16(a[i] = frand(&seed));
    for (size_t i = 0; i < nb; i++) bb[i] = f32_to_bf16(b[i] = frand(&seed));
    int ldc = N + 3; /* ldc > N: the kernel must not touch the gap */
    for (size_t i = 0; i < (size_t)M * ldc; i++) c[i] = 0.25f * (float)(i % 7);
    ptrdiff_t ars = a_t ? 1 : K, acs = a_t ? M : 1, brs = b_t ? 1 : N, bcs = b_t ? K : 1;
    GemmOp A = {a_bf16 ? (const void *)ab : (const void *)a, a_bf16, ars, acs};
    GemmOp B = {b_bf16 ? (const void *)bb : (const void *)b, b_bf16, brs, bcs};
    bf16_gemm(M, N, K, A, B, beta1 ? 1.0f : 0.0f, c, ldc);
    double worst = 0;
    int gap_ok = 1;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double ref = beta1 ? 0.25 * (double)(((size_t)i * ldc + j) % 7) : 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double p = rnd(a[i * ars + k * acs]) * rnd(b[k * brs + j * bcs]);
                ref += p;
                mag += fabs(p);
            }
            double e = fabs(c[(size_t)i * ldc + j] - ref) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
        for (int j = N; j < ldc; j++) gap_ok &= c[(size_t)i * ldc + j] == 0.25f * (float)(((size_t)i * ldc + j) % 7);
    }
    /* fp32 accumulation of K products: relative to sum |p|, ~K * 2^-24 at worst. */
    if (!(worst <= 1e-5)) fprintf(stderr, "gemm M%d N%d K%d a_t%d b_t%d: worst %.3g\n", M, N, K, a_t, b_t, worst);
    CHECK(worst <= 1e-5);
    CHECK(gap_ok);
    free(a), free(b), free(ab), free(bb), free(c);
}

static void test_kernel(void) {
    bf16_gemm_reprobe();
    if (bf16_gemm_backend() == BF16_NONE) {
        CHECK_STR_CONTAINS(bf16_gemm_describe(), "unavailable");
        return;
    }
    CHECK_STR_CONTAINS(bf16_gemm_describe(), "kernel");
    static const int shapes[][3] = {{1, 1, 1}, {8, 32, 2}, {9, 33, 3}, {37, 45, 33}, {3, 100, 300}, {70, 17, 513}};
    unsigned seed = 11;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int lay = 0; lay < 4; lay++)
            check_gemm(shapes[s][0], shapes[s][1], shapes[s][2], lay & 1, lay >> 1, (int)(s & 1), (int)((s >> 1) & 1),
                       (int)(s % 3 == 1), seed++);
}

/* BF16 attention (scoring) against the fp32 kernel on the same units: plain
 * sequences crossing the 64-row query blocks, a shared prefix read by two
 * continuations, and one query per sequence (the last layer). hd 40 leaves a
 * partial 32-column panel; q, k, v uniform in +-1.5. Bounds: bf16 rounding of
 * q and k moves a score by ~|q||k| 2^-9 / sqrt(hd), p and v add 2^-9 each, so
 * outputs (|v| <= 1.5) stay within 2e-2 and lse within 2e-2 of fp32. */
static void check_attention_bf16(const AttnUnits *u, int n_rows, int q_rows, int max_len, int H, int KV, int hd,
                                 unsigned seed, const char *what) {
    size_t nq = (size_t)q_rows * H * hd, nk = (size_t)n_rows * KV * hd;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *o32 = calloc(nq, 4), *o16 = calloc(nq, 4), *l32 = calloc((size_t)q_rows * H, 4),
          *l16 = calloc((size_t)q_rows * H, 4);
    for (size_t i = 0; i < nq; i++) q[i] = 1.5f * frand(&seed);
    for (size_t i = 0; i < nk; i++) k[i] = 1.5f * frand(&seed), v[i] = 1.5f * frand(&seed);
    size_t a = attention_scratch_floats(max_len), b = attention_bf16_scratch_floats(max_len, H / KV, hd);
    AttnScratch sc = {NULL, a > b ? a : b, 2};
    sc.buf = malloc(2 * sc.per_thread * sizeof(float));
    attention_forward_units(o32, l32, &sc, q, k, v, u, H, KV, hd);
    attention_forward_units_bf16(o16, l16, &sc, q, k, v, u, H, KV, hd);
    double worst = 0, sum = 0, worst_l = 0;
    for (size_t i = 0; i < nq; i++) {
        double e = fabs((double)o16[i] - o32[i]);
        worst = fmax(worst, e);
        sum += e;
    }
    for (size_t i = 0; i < (size_t)q_rows * H; i++) worst_l = fmax(worst_l, fabs((double)l16[i] - l32[i]));
    printf("bf16 attention, %s: max |out diff| %.3g (mean %.3g), max |lse diff| %.3g\n", what, worst, sum / nq,
           worst_l);
    CHECK(worst <= 2e-2);
    CHECK(sum / nq <= 3e-3);
    CHECK(worst > 0); /* the BF16 path ran */
    CHECK(worst_l <= 2e-2);
    free(q), free(k), free(v), free(o32), free(o16), free(l32), free(l16), free(sc.buf);
}

static void test_attention_bf16(void) {
    bf16_gemm_reprobe();
    if (bf16_gemm_backend() != BF16_OPRM) {
        CHECK(bf16_gemm_backend() == BF16_NONE || bf16_gemm_backend() == BF16_OPENBLAS);
        return;
    }
    /* Two sequences, 70 and 130 rows (blocks of 64, 6 and 2 rows). */
    int32_t off[3] = {0, 70}, len[3] = {70, 130};
    AttnUnits plain = {.n = 2, .off = off, .len = len};
    check_attention_bf16(&plain, 200, 200, 130, 4, 2, 40, 3, "two sequences, hd 40");
    check_attention_bf16(&plain, 200, 200, 130, 6, 1, 64, 4, "two sequences, 6 heads on 1 KV head, hd 64");
    /* A 20-row prefix (its own unit) read by continuations of 50 and 90 rows. */
    int32_t poff[3] = {0, 20, 70}, plen[3] = {20, 50, 90}, pre_off[3] = {0, 0, 0}, pre_len[3] = {0, 20, 20};
    AttnUnits pre = {.n = 3, .off = poff, .len = plen, .pre_off = pre_off, .pre_len = pre_len};
    check_attention_bf16(&pre, 160, 160, 110, 4, 2, 64, 5, "shared prefix");
    /* One query per sequence (the last layer): query rows 0..2. */
    int32_t q_off[3] = {0, 1, 2}, q_len[3] = {1, 1, 1};
    AttnUnits last = {.n = 3, .off = poff, .len = plen, .pre_off = pre_off, .pre_len = pre_len, .q_off = q_off,
                      .q_len = q_len};
    check_attention_bf16(&last, 160, 3, 110, 4, 2, 64, 6, "last rows only");
}

/* A small Qwen2 (biases) with GQA; weights scaled up so every layer matters. */
static Model *small_model(int bf16, uint64_t seed) {
    ModelConfig c = {0};
    c.arch = ARCH_QWEN2;
    strcpy(c.architecture, "Qwen2ForCausalLM");
    c.hidden = 96, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 24, c.ffn = 160, c.vocab = 80;
    c.max_pos = 512, c.rope_theta = 10000, c.rms_eps = 1e-6, c.qkv_bias = 1, c.bos_id = c.eos_id = -1;
    ModelOptions o = {0};
    o.bf16_compute = bf16;
    OprmError err;
    Model *m = model_new_random(&c, &o, seed, &err);
    if (!m) return NULL;
    int np;
    ModelParam *ps = model_params(m, &np);
    for (int i = 0; i < np; i++)
        if (ps[i].ndim == 2)
            for (size_t j = 0; j < ps[i].numel; j++) ps[i].data[j] *= 4.0f;
    return m;
}

enum { NTOK = 150 };
static const int32_t LENS[3] = {90, 1, 59}, ROWS[9] = {10, 11, 12, 13, 14, 15, 16, 17, 18};

/* Forward + digit head + backward of a fixed loss; h_last [3 * hidden]. */
static int run_step(Model *m, float *h_last) {
    int32_t ids[NTOK];
    for (int i = 0; i < NTOK; i++) ids[i] = (i * 37 + 5) % 80;
    SeqBatch b = {ids, LENS, 3, NULL};
    OprmError err;
    if (model_forward(m, &b, 1, h_last, &err)) return -1;
    float logits[27], dl[27], dh[3 * 96];
    model_head_rows_forward(m, h_last, 3, ROWS, 9, logits);
    for (int k = 0; k < 27; k++) dl[k] = 0.3f * sinf((float)k) + 0.01f * logits[k];
    memset(dh, 0, sizeof dh);
    model_head_rows_backward(m, h_last, 3, ROWS, 9, dl, dh);
    return model_backward(m, dh, &err);
}

static void test_forced_off(void) {
    setenv("OPRM_BF16", "0", 1);
    bf16_gemm_reprobe();
    CHECK(bf16_gemm_backend() == BF16_NONE);
    CHECK_STR_CONTAINS(bf16_gemm_describe(), "OPRM_BF16=0");
    Model *a = small_model(0, 5), *b = small_model(1, 5);
    CHECK(a && b);
    if (a && b) {
        CHECK(model_bf16_compute(b) == 0);
        float ha[3 * 96], hb[3 * 96];
        CHECK(run_step(a, ha) == 0 && run_step(b, hb) == 0);
        CHECK(!memcmp(ha, hb, sizeof ha));
        int na, nb;
        ModelParam *pa = model_params(a, &na), *pb = model_params(b, &nb);
        int same = na == nb;
        for (int i = 0; same && i < na; i++) same = !memcmp(pa[i].grad, pb[i].grad, pa[i].numel * sizeof(float));
        CHECK(same);
    }
    model_free(a);
    model_free(b);
    unsetenv("OPRM_BF16");
    bf16_gemm_reprobe();
}

/* Pre-packed BF16 weights (bf16_prepack.c) on an inference-only BF16 model
 * whose shapes allow it (out multiples of 32): scoring gives the very same
 * h_last as without pre-packing (OPRM_BF16_PREPACK=0), the matrices are
 * packed after the forward, and model_params() hands back the stored layout
 * bit for bit (the next forward packs again, same result). */
static void test_prepacked_weights(void) {
    bf16_gemm_reprobe();
    if (bf16_gemm_backend() != BF16_OPRM) {
        CHECK(bf16_gemm_backend() == BF16_NONE || bf16_gemm_backend() == BF16_OPENBLAS);
        return;
    }
    ModelConfig c = {0};
    c.arch = ARCH_QWEN2;
    strcpy(c.architecture, "Qwen2ForCausalLM");
    c.hidden = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.ffn = 96, c.vocab = 80;
    c.max_pos = 512, c.rope_theta = 10000, c.rms_eps = 1e-6, c.qkv_bias = 1, c.bos_id = c.eos_id = -1;
    ModelOptions o = {0};
    o.bf16_compute = 1, o.frozen_storage = WEIGHTS_BF16, o.inference_only = 1;
    OprmError err;
    Model *m = model_new_random(&c, &o, 9, &err);
    CHECK(m != NULL);
    if (!m) return;
    int np;
    ModelParam *ps = model_params(m, &np);
    size_t total = 0;
    for (int i = 0; i < np; i++) total += ps[i].data_bf16 ? ps[i].numel : 0;
    uint16_t *snap = malloc(total * 2), *p = snap;
    for (int i = 0; i < np; i++)
        if (ps[i].data_bf16) memcpy(p, ps[i].data_bf16, ps[i].numel * 2), p += ps[i].numel;
    int32_t ids[NTOK];
    for (int i = 0; i < NTOK; i++) ids[i] = (i * 37 + 5) % 80;
    SeqBatch b = {ids, LENS, 3, NULL};
    float h0[3 * 64], h1[3 * 64], h2[3 * 64];
    setenv("OPRM_BF16_PREPACK", "0", 1);
    CHECK(model_forward(m, &b, 0, h0, &err) == 0);
    CHECK(m->bf16_packed == 0);
    unsetenv("OPRM_BF16_PREPACK");
    CHECK(model_forward(m, &b, 0, h1, &err) == 0);
    CHECK(m->bf16_packed == 1);
    CHECK(!memcmp(h0, h1, sizeof h0));
    ps = model_params(m, &np);
    CHECK(m->bf16_packed == 0);
    int same = 1;
    p = snap;
    for (int i = 0; i < np; i++)
        if (ps[i].data_bf16) same &= !memcmp(p, ps[i].data_bf16, ps[i].numel * 2), p += ps[i].numel;
    CHECK(same);
    CHECK(model_forward(m, &b, 0, h2, &err) == 0);
    CHECK(m->bf16_packed == 1 && !memcmp(h0, h2, sizeof h0));
    /* A BF16 product really ran: fp32 scoring of the same weights differs a little. */
    double worst = 0;
    setenv("OPRM_BF16", "0", 1);
    bf16_gemm_reprobe();
    Model *f = model_new_random(&c, &(ModelOptions){.frozen_storage = WEIGHTS_BF16, .inference_only = 1}, 9, &err);
    float hf[3 * 64];
    CHECK(f && model_forward(f, &b, 0, hf, &err) == 0);
    for (int i = 0; i < 3 * 64; i++) worst = fmax(worst, fabs((double)hf[i] - h0[i]));
    CHECK(worst > 0 && worst < 0.1);
    unsetenv("OPRM_BF16");
    bf16_gemm_reprobe();
    model_free(f);
    model_free(m);
    free(snap);
}

static double cosine(const float *x, const float *y, size_t n) {
    double xy = 0, xx = 0, yy = 0;
    for (size_t i = 0; i < n; i++) xy += (double)x[i] * y[i], xx += (double)x[i] * x[i], yy += (double)y[i] * y[i];
    return xy / sqrt(xx * yy + 1e-300);
}

static void test_train_step_grads(void) {
    bf16_gemm_reprobe();
    Model *a = small_model(0, 9), *b = small_model(1, 9);
    CHECK(a && b);
    if (!a || !b) return;
    if (bf16_gemm_backend() == BF16_NONE) {
        CHECK(model_bf16_compute(b) == 0);
        model_free(a), model_free(b);
        return;
    }
    CHECK(model_bf16_compute(b) == 1);
    float ha[3 * 96], hb[3 * 96];
    CHECK(run_step(a, ha) == 0 && run_step(b, hb) == 0);
    CHECK(cosine(ha, hb, 3 * 96) >= 0.999);
    int na, nb;
    ModelParam *pa = model_params(a, &na), *pb = model_params(b, &nb);
    CHECK(na == nb);
    double worst = 1;
    int differs = 0;
    for (int i = 0; i < na && i < nb; i++) {
        if (pa[i].ndim != 2) continue;
        double cs = cosine(pa[i].grad, pb[i].grad, pa[i].numel);
        if (cs < worst) worst = cs;
        differs |= memcmp(pa[i].grad, pb[i].grad, pa[i].numel * sizeof(float)) != 0;
        if (cs < 0.999) fprintf(stderr, "  %s: cosine %.6f\n", pa[i].name, cs);
    }
    printf("bf16 train step: worst weight-gradient cosine %.6f\n", worst);
    CHECK(worst >= 0.999);
    CHECK(differs);
    model_free(a);
    model_free(b);
}

/* Softmax over the nine digit logits at the last position of each sequence. */
static int digit_probs(const char *dir, int bf16, const SeqBatch *b, const int32_t *digits, double *p) {
    ModelOptions o = {0};
    o.inference_only = 1;
    o.frozen_storage = bf16 ? WEIGHTS_BF16 : WEIGHTS_F32;
    o.bf16_compute = bf16;
    OprmError err;
    Model *m = model_load(dir, &o, &err);
    if (!m) return fprintf(stderr, "%s\n", err.msg), -1;
    if (bf16 && bf16_gemm_backend() != BF16_NONE && !model_bf16_compute(m)) return model_free(m), -1;
    int H = model_config(m)->hidden;
    float *h = malloc(sizeof(float) * (size_t)H * b->nseq), z[9 * 8];
    int rc = model_forward(m, b, 0, h, &err);
    if (!rc) {
        model_head_rows_forward(m, h, b->nseq, digits, 9, z);
        for (int s = 0; s < b->nseq; s++) {
            double mx = -INFINITY, sum = 0;
            for (int k = 0; k < 9; k++) mx = fmax(mx, z[s * 9 + k]);
            for (int k = 0; k < 9; k++) sum += exp(z[s * 9 + k] - mx);
            for (int k = 0; k < 9; k++) p[s * 9 + k] = exp(z[s * 9 + k] - mx) / sum;
        }
    }
    free(h);
    model_free(m);
    return rc;
}

static void test_story_llama_scoring(void) {
    bf16_gemm_reprobe();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/story-llama", shared_data_dir());
    OprmError err;
    Tokenizer *t = tok_load(dir, &err);
    if (!t) {
        SKIP("no story-llama model at %s: %s", dir, err.msg);
        return;
    }
    int32_t digits[9];
    CHECK(tok_digit_ids(t, digits, &err) == 0);
    static const char *texts[3] = {
        "Once upon a time there was a little girl who loved the sea. Rate the story from 1 to 9: ",
        "The dog ran to the park and found a big red ball. He was so happy. Score: ",
        "Tom and Lily built a castle of sand, and the waves came. They laughed and built it again, "
        "bigger than before, with a tower and a flag on top. How good is this story? ",
    };
    IdVec all = {0};
    int32_t lens[3];
    for (int s = 0; s < 3; s++) {
        IdVec one = {0};
        CHECK(tok_encode(t, texts[s], strlen(texts[s]), 1, &one, &err) == 0);
        lens[s] = (int32_t)one.n;
        idvec_extend(&all, one.v, one.n);
        idvec_free(&one);
    }
    SeqBatch b = {all.v, lens, 3, NULL};
    double p32[27], p16[27];
    CHECK(digit_probs(dir, 0, &b, digits, p32) == 0);
    CHECK(digit_probs(dir, 1, &b, digits, p16) == 0);
    double worst = 0;
    for (int i = 0; i < 27; i++) worst = fmax(worst, fabs(p16[i] - p32[i]));
    printf("story-llama BF16 vs fp32 digit probabilities: max |diff| %.3g (%s)\n", worst, bf16_gemm_describe());
    CHECK(worst <= 1e-2);
    idvec_free(&all);
    tok_free(t);
}

int main(void) {
    RUN(test_kernel);
    RUN(test_attention_bf16);
    RUN(test_prepacked_weights);
    RUN(test_forced_off);
    RUN(test_train_step_grads);
    RUN(test_story_llama_scoring);
    return test_summary();
}
