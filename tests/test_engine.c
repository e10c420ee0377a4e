/* The engine seam and the CUDA engine's host-side logic, on the CPU: device
 * flag parsing and the default, the CPU engine against src/model (bitwise),
 * token-budget batching, the CUDA memory plan (the two sizing claims),
 * the attention work list and packed index, and the __host__ __device__ math
 * helpers against the CPU engine's own (bf16 rounding, RoPE incl. Llama-3
 * scaling, the online-softmax merge). Nothing here needs a GPU; where this
 * binary has the CUDA engine, asking for it must fail with a clear message on
 * a machine without a GPU driver. */
#include <stdint.h>
#include <sys/wait.h>

#include "engine/batching.h"
#include "engine/cuda_plan.h"
#include "engine/devmath.h"
#include "engine/engine.h"
#include "model/layers.h"
#include "model/model_internal.h"
#include "test.h"
#include "util/vec.h"

static void test_device_parse(void) {
    OprmError err = {{0}};
    Device d;
    CHECK(device_parse("cpu", &d, &err) == 0 && d.kind == DEVICE_CPU);
    CHECK(device_parse("cuda", &d, &err) == 0 && d.kind == DEVICE_CUDA && d.index == 0);
    CHECK(device_parse("cuda:3", &d, &err) == 0 && d.kind == DEVICE_CUDA && d.index == 3);
    CHECK(device_parse("gpu", &d, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "expected cpu, cuda or cuda:N");
    CHECK(device_parse("cuda:", &d, &err) == -1);
    CHECK(device_parse("cuda:1x", &d, &err) == -1);
    CHECK(device_parse("cuda:-1", &d, &err) == -1);
    char buf[32];
    CHECK(!strcmp(device_str((Device){DEVICE_CUDA, 2}, buf, sizeof buf), "cuda:2"));
}

/* This machine has no GPU driver: the default must be the CPU, with a reason. */
static void test_device_default_without_gpu(void) {
    char why[256] = "";
    Device d = device_choose((Device){DEVICE_AUTO, 0}, why, sizeof why);
    if (cuda_device_count(NULL, 0) > 0) {
        CHECK(d.kind == DEVICE_CUDA); /* a GPU machine: the default is cuda */
        return;
    }
    CHECK(d.kind == DEVICE_CPU);
    CHECK(why[0] != 0);
    Device c = device_choose((Device){DEVICE_CUDA, 1}, NULL, 0);
    CHECK(c.kind == DEVICE_CUDA && c.index == 1); /* an explicit choice is kept */
}

static ModelConfig small_cfg(ModelArch arch) {
    ModelConfig c = {0};
    c.arch = arch;
    snprintf(c.architecture, sizeof c.architecture, "%s", arch == ARCH_QWEN3 ? "Qwen3ForCausalLM" : "Qwen2ForCausalLM");
    c.hidden = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.ffn = 48, c.vocab = 40;
    c.max_pos = 256, c.rope_theta = 10000, c.rms_eps = 1e-6, c.tie_embeddings = 1;
    c.qkv_bias = arch == ARCH_QWEN2, c.qk_norm = arch == ARCH_QWEN3;
    c.bos_id = c.eos_id = -1;
    return c;
}

/* The CPU engine is src/model: same h_last and logits, bit for bit. */
static void test_cpu_engine_matches_model(void) {
    for (int a = 0; a < 2; a++) {
        ModelConfig c = small_cfg(a ? ARCH_QWEN3 : ARCH_QWEN2);
        OprmError err = {{0}};
        Model *m = model_new_random(&c, NULL, 7, &err);
        CHECK(m != NULL);
        if (!m) return;
        int32_t ids[] = {1, 5, 9, 3, 7, 2, 30, 11, 4, 8, 19}, lens[] = {4, 7}, rows[9];
        for (int k = 0; k < 9; k++) rows[k] = 20 + k;
        SeqBatch b = {ids, lens, 2, NULL};
        float h_ref[64], lg_ref[18], h[64], lg[18];
        CHECK(model_forward(m, &b, 0, h_ref, &err) == 0);
        model_head_rows_forward(m, h_ref, 2, rows, 9, lg_ref);
        EngineOptions eo = {.device = {DEVICE_CPU, 0}};
        Engine *e = engine_from_model(m, &eo, &err);
        CHECK(e != NULL);
        if (e) {
            CHECK(engine_device(e).kind == DEVICE_CPU);
            CHECK_STR_CONTAINS(engine_describe(e), "cpu");
            CHECK(engine_head_rows(e, rows, 9, lg, &err) == -1); /* no forward yet */
            CHECK(engine_forward(e, &b, h, &err) == 0);
            CHECK(engine_head_rows(e, rows, 9, lg, &err) == 0);
            CHECK(memcmp(h, h_ref, sizeof h) == 0);
            CHECK(memcmp(lg, lg_ref, sizeof lg) == 0);
            int32_t bad = 40;
            CHECK(engine_head_rows(e, &bad, 1, lg, &err) == -1);
            CHECK_STR_CONTAINS(err.msg, "outside the vocabulary");
            CHECK(engine_backward(e, h, &err) == -1); /* inference model: model_backward refuses */
            engine_free(e);
        }
        model_free(m);
    }
}

/* A training CPU engine: engine_forward_eval is the scoring forward
 * (model_forward with train = 0), bit for bit, and nothing can go back
 * through it; engine_forward then can. */
static void test_cpu_engine_eval_forward(void) {
    ModelConfig c = small_cfg(ARCH_QWEN2);
    OprmError err = {{0}};
    Model *m = model_new_random(&c, NULL, 9, &err);
    CHECK(m != NULL);
    if (!m) return;
    int32_t ids[] = {1, 5, 9, 3, 7, 2, 30, 11, 4, 8, 19}, lens[] = {4, 7}, rows[9];
    for (int k = 0; k < 9; k++) rows[k] = 20 + k;
    SeqBatch b = {ids, lens, 2, NULL};
    float h_ref[64], h[64], lg[18], dl[18];
    CHECK(model_forward(m, &b, 0, h_ref, &err) == 0);
    EngineOptions eo = {.device = {DEVICE_CPU, 0}, .train = 1};
    Engine *e = engine_from_model(m, &eo, &err);
    CHECK(e != NULL && engine_params_on_host(e) == 1);
    if (e) {
        CHECK(engine_forward_eval(e, &b, h, &err) == 0);
        CHECK(memcmp(h, h_ref, sizeof h) == 0);
        CHECK(engine_head_rows(e, rows, 9, lg, &err) == 0);
        for (int i = 0; i < 18; i++) dl[i] = 0.1f * (float)(i % 5) - 0.2f;
        CHECK(engine_head_backward(e, rows, 9, dl, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "engine_forward_eval");
        CHECK(engine_backward(e, h, &err) == -1);
        CHECK(engine_forward(e, &b, h, &err) == 0);
        CHECK(engine_head_rows(e, rows, 9, lg, &err) == 0);
        CHECK(engine_head_backward(e, rows, 9, dl, &err) == 0);
        /* host parameters: the device-side calls refuse, download/upload are no-ops */
        double sq;
        CHECK(engine_grad_sqnorm(e, &sq, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "host");
        CHECK(engine_params_download(e, NULL, 0, NULL, NULL, &err) == 0);
        engine_free(e);
    }
    model_free(m);
}

/* Asking for CUDA where there is none fails at load, naming what to do. */
static void test_cuda_refused_without_gpu(void) {
    if (cuda_device_count(NULL, 0) > 0) return;
    ModelConfig c = small_cfg(ARCH_QWEN2);
    OprmError err = {{0}};
    Model *m = model_new_random(&c, NULL, 1, &err);
    EngineOptions eo = {.device = {DEVICE_CUDA, 0}, .max_tokens_per_batch = 64};
    Engine *e = engine_from_model(m, &eo, &err);
    CHECK(e == NULL);
    CHECK_STR_CONTAINS(err.msg, "--device cpu");
    CHECK_STR_CONTAINS(err.msg, cuda_built() ? "cuda:0" : "built without CUDA");
    eo.train = 1; /* training is refused the same way, naming the device and --device cpu */
    CHECK(engine_from_model(m, &eo, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "--device cpu");
    CHECK_STR_CONTAINS(err.msg, "cuda:0");
    model_free(m);
}

static void test_batching(void) {
    size_t lens[] = {5, 5, 5, 20, 3, 2};
    int first = 0, got[8], n = 0;
    while (first < 6) {
        got[n] = batch_next(lens, 6, first, 10);
        first += got[n++];
    }
    CHECK(n == 4);
    CHECK(got[0] == 2 && got[1] == 1 && got[2] == 1 && got[3] == 2); /* 5+5 | 5 | 20 alone | 3+2 */
    CHECK(batch_next(lens, 6, 0, 1000) == 6);
}

/* Real shapes (config.json of Qwen2.5-7B and -14B). */
static ModelConfig qwen25(int size) {
    ModelConfig c = {0};
    c.arch = ARCH_QWEN2;
    c.n_heads = 28, c.n_kv_heads = 4, c.head_dim = 128, c.vocab = 152064, c.qkv_bias = 1;
    if (size == 7) c.hidden = 3584, c.n_layers = 28, c.ffn = 18944, c.n_heads = 28, c.n_kv_heads = 4;
    else c.hidden = 5120, c.n_layers = 48, c.ffn = 13824, c.n_heads = 40, c.n_kv_heads = 8;
    return c;
}

static void test_mem_plan(void) {
    CudaMemPlan p7, p14, p14s;
    ModelConfig c7 = qwen25(7), c14 = qwen25(14);
    cuda_mem_plan(&c7, 4096, &p7);
    cuda_mem_plan(&c14, 4096, &p14);
    /* BF16 weights are 2 bytes a parameter: 7.6154e9 and 14.770e9 parameters
     * (the published counts), 0.1% for norms and biases held in fp32. */
    CHECK_NEAR((double)p7.weights, 2 * 7.6154e9, 0, 2e-3);
    CHECK_NEAR((double)p14.weights, 2 * 14.770e9, 0, 2e-3);
    /* Issue 13: the 7B shape scores 4,096-token sequences on one 80 GB GPU
     * (leave 2 GB for the CUDA context), the 14B shape fits one 141 GB GPU. */
    CHECK(p7.total < 78e9);
    CHECK(p14.total < 139e9);
    fprintf(stderr, "  plan 7B@4096: %.2f GB (weights %.2f, activations %.2f); 14B@4096: %.2f GB\n", p7.total / 1e9,
            p7.weights / 1e9, p7.activations / 1e9, p14.total / 1e9);
    /* Activations scale with the token budget, weights do not. */
    cuda_mem_plan(&c14, 8192, &p14s);
    CHECK(p14s.weights == p14.weights);
    CHECK(p14s.activations == 2 * p14.activations);
    /* The exact count on a tiny shape: T * (4 D + 2 (D + W + Q + D + 3 F)). */
    ModelConfig t = small_cfg(ARCH_QWEN2);
    CudaMemPlan pt;
    cuda_mem_plan(&t, 10, &pt);
    CHECK(cuda_qkv_width(&t) == (size_t)(4 + 4) * 8);
    CHECK(pt.activations == 10u * (4 * 32 + 2 * (32 + 64 + 32 + 32 + 3 * 48)));
    CHECK(pt.weights_bf16 == 2u * (2 * (64 * 32 + 32 * 32 + 2 * 48 * 32 + 32 * 48) + 40 * 32));
    char msg[256];
    CHECK(cuda_shape_check(&c7, msg, sizeof msg) == 0);
    ModelConfig odd = c7;
    odd.head_dim = 512;
    CHECK(cuda_shape_check(&odd, msg, sizeof msg) == -1);
    CHECK_STR_CONTAINS(msg, "head_dim 512");
}

/* Every tensor of each architecture has one place on the device; the places
 * of a fused buffer tile it exactly (q|k|v, gate|up), nothing overlaps. */
static void test_weight_slots(void) {
    for (int a = 0; a < 3; a++) {
        ModelConfig c = small_cfg(a == 0 ? ARCH_QWEN2 : ARCH_QWEN3);
        if (a == 2) { /* Llama, untied, no bias */
            c.arch = ARCH_LLAMA;
            c.qkv_bias = 0;
            c.tie_embeddings = 0;
        }
        OprmError err = {{0}};
        Model *m = model_new_random(&c, NULL, 3, &err);
        CHECK(m != NULL);
        if (!m) continue;
        int np, placed = 0, ok = 1;
        ModelParam *ps = model_params(m, &np);
        /* covered[layer+1][kind]: elements placed, and a per-element mark for overlap. */
        size_t covered[4][CW_N_KINDS] = {{0}};
        unsigned char *mark[4][CW_N_KINDS] = {{0}};
        for (int i = 0; i < np; i++) {
            CudaWeightSlot w;
            if (cuda_weight_slot(&c, ps[i].name, &w) != 0) {
                fprintf(stderr, "  no slot for %s\n", ps[i].name);
                ok = 0;
                continue;
            }
            placed++;
            size_t cap = cuda_weight_numel(&c, w.kind);
            CHECK(w.offset + ps[i].numel <= cap);
            CHECK(w.bf16 == (ps[i].ndim == 2));
            unsigned char **mk = &mark[w.layer + 1][w.kind];
            if (!*mk) *mk = calloc(cap, 1);
            for (size_t j = 0; j < ps[i].numel && w.offset + j < cap; j++) ok &= !(*mk)[w.offset + j]++;
            covered[w.layer + 1][w.kind] += ps[i].numel;
        }
        CHECK(ok);
        CHECK(placed == cuda_weight_count(&c));
        CHECK(placed == np);
        for (int l = 0; l < 3; l++)
            for (int k = 0; k < CW_N_KINDS; k++) {
                int layer_kind = k >= CW_QKV;
                if ((l == 0) == layer_kind) continue;
                CHECK(covered[l][k] == cuda_weight_numel(&c, (CudaWeightKind)k));
                free(mark[l][k]);
            }
        CudaWeightSlot w;
        CHECK(cuda_weight_slot(&c, "model.layers.2.mlp.up_proj.weight", &w) == -1); /* no layer 2 */
        CHECK(cuda_weight_slot(&c, "model.layers.0.mlp.up_proj.weight", &w) == 0 && w.kind == CW_GATE_UP &&
              w.offset == (size_t)c.ffn * c.hidden);
        CHECK(cuda_weight_slot(&c, "model.layers.1.self_attn.v_proj.weight", &w) == 0 &&
              w.offset == (size_t)(c.n_heads + c.n_kv_heads) * c.head_dim * c.hidden);
        model_free(m);
    }
}

static void test_attn_tiles_and_index(void) {
    int32_t lens[] = {1, 16, 17, 40};
    CudaAttnTile t[16];
    int n = cuda_attn_tiles(lens, 4, t);
    CHECK(n == 1 + 1 + 2 + 3);
    CHECK(n <= cuda_attn_tiles_max(74, 4));
    CHECK(t[0].seq_row == 0 && t[0].q_pos == 0 && t[0].q_n == 1);
    CHECK(t[1].seq_row == 1 && t[1].q_n == 16);
    CHECK(t[3].seq_row == 17 && t[3].q_pos == 16 && t[3].q_n == 1);
    CHECK(t[6].seq_row == 34 && t[6].q_pos == 32 && t[6].q_n == 8);
    int covered = 0;
    for (int i = 0; i < n; i++) covered += t[i].q_n;
    CHECK(covered == 74);
    int32_t pos[74], last[4];
    CHECK(cuda_pack_index(lens, 4, pos, last) == 74);
    CHECK(last[0] == 0 && last[1] == 16 && last[2] == 33 && last[3] == 73);
    CHECK(pos[0] == 0 && pos[1] == 0 && pos[16] == 15 && pos[17] == 0 && pos[73] == 39);
}

static void test_bf16_rounding(void) {
    /* The device helper is the CPU engine's rounding, bit for bit. */
    uint32_t state = 12345;
    int same = 1;
    for (int i = 0; i < 200000; i++) {
        state = state * 1664525u + 1013904223u;
        union {
            uint32_t u;
            float f;
        } v = {state};
        if (dm_f32_to_bf16(v.f) != f32_to_bf16(v.f)) same = 0;
        if (dm_bf16_to_f32((uint16_t)state) != bf16_to_f32((uint16_t)state) && !isnan(bf16_to_f32((uint16_t)state)))
            same = 0;
    }
    CHECK(same);
    CHECK(dm_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(dm_f32_to_bf16(1.00390625f) == 0x3f80); /* a tie: to even */
    CHECK(dm_f32_to_bf16(1.01171875f) == 0x3f82); /* a tie: to even (up) */
    CHECK(isnan(dm_bf16_to_f32(dm_f32_to_bf16(NAN))));
    CHECK(dm_f32_to_bf16(INFINITY) == 0x7f80);
}

/* cos/sin of pos * dm_rope_inv_freq equal the CPU engine's tables exactly,
 * plain and with Llama-3 scaling (the fixture's factors and a real Llama-3.1). */
static void test_rope_freq(void) {
    struct {
        int hd;
        double theta, factor, lo, hi;
        int orig;
    } cases[] = {{16, 10000, 0, 0, 0, 0}, {16, 10000, 8, 1, 4, 32}, {128, 500000, 8, 1, 4, 8192}, {64, 1e6, 0, 0, 0, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int hd = cases[k].hd, half = hd / 2, L = 3000;
        float *ct = malloc(sizeof(float) * half * L), *st = malloc(sizeof(float) * half * L);
        rope_tables(ct, st, L, hd, cases[k].theta, cases[k].factor, cases[k].lo, cases[k].hi, cases[k].orig);
        int same = 1;
        for (int i = 0; i < half; i++) {
            double f = dm_rope_inv_freq(i, hd, cases[k].theta, cases[k].factor, cases[k].lo, cases[k].hi, cases[k].orig);
            for (int p = 0; p < L; p++)
                if ((float)cos(p * f) != ct[(size_t)p * half + i] || (float)sin(p * f) != st[(size_t)p * half + i])
                    same = 0;
        }
        CHECK(same);
        free(ct);
        free(st);
    }
    /* Llama-3 scaling slows the lowest frequency by the factor, keeps the highest. */
    double f0 = dm_rope_inv_freq(0, 128, 500000, 8, 1, 4, 8192), f63 = dm_rope_inv_freq(63, 128, 500000, 8, 1, 4, 8192);
    CHECK_NEAR(f0, 1.0, 0, 1e-15);
    CHECK_NEAR(f63, pow(500000, -126.0 / 128) / 8, 0, 1e-12);
}

/* The attention kernel's per-tile merge: blocks of 32 scores merged one after
 * another give the softmax-weighted sum of the whole row. */
static void test_online_softmax(void) {
    int n = 150;
    float s[150], v[150];
    uint32_t st = 99;
    double mx = -1e30;
    for (int i = 0; i < n; i++) {
        st = st * 1664525u + 1013904223u;
        s[i] = (float)((st >> 8) % 2000) / 100.0f - 10.0f;
        v[i] = (float)((st >> 4) % 97) / 10.0f;
        mx = fmax(mx, s[i]);
    }
    double z = 0, ref = 0;
    for (int i = 0; i < n; i++) {
        z += exp(s[i] - mx);
        ref += exp(s[i] - mx) * v[i];
    }
    ref /= z;
    float m = -INFINITY, l = 0, acc = 0;
    CHECK(dm_online_softmax_merge(&m, &l, -INFINITY, 0) == 1.0f); /* an all-masked block changes nothing */
    for (int b0 = 0; b0 < n; b0 += 32) {
        float bm = -INFINITY, bl = 0, bacc = 0;
        for (int i = b0; i < n && i < b0 + 32; i++) bm = fmaxf(bm, s[i]);
        for (int i = b0; i < n && i < b0 + 32; i++) {
            bl += expf(s[i] - bm);
            bacc += expf(s[i] - bm) * v[i];
        }
        float c = dm_online_softmax_merge(&m, &l, bm, bl);
        acc = acc * c + bacc * expf(bm - m);
    }
    CHECK_NEAR(acc / l, ref, 1e-5, 1e-5);
    CHECK_NEAR(m, mx, 0, 0);
    CHECK_NEAR(dm_swiglu(1.5f, 2.0f), 1.5 / (1 + exp(-1.5)) * 2.0, 1e-6, 1e-6);
}

/* The CLI: --device on a scoring command and on train. */
static void test_cli_device(void) {
    const char *bin = getenv("OPRM_BIN") ? getenv("OPRM_BIN") : "build/asan/oprm";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s score --device gpu --model x --data y >/dev/null 2>&1", bin);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(cmd, sizeof cmd, "%s serve --device cuda:x --model x >/dev/null 2>&1", bin);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(cmd, sizeof cmd, "%s bench --device gpu --config x --seq 4 >/dev/null 2>&1", bin);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    /* train takes cuda through the option table (exit 1 here: the files do not
     * exist; tests/test_train_device.c runs the refusal at setup) */
    snprintf(cmd, sizeof cmd, "%s train --device cuda --model x --data y --output z 2>&1", bin);
    FILE *f = popen(cmd, "r");
    char out[4096] = "";
    size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[n] = 0;
    st = f ? pclose(f) : -1;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECK(strstr(out, "not yet available") == NULL);
    /* A scoring command on story-llama: cpu is printed; cuda without a GPU is
     * refused with what to do. */
    const char *shared = getenv("OPRM_SHARED_DATA") ? getenv("OPRM_SHARED_DATA") : "../shared/data";
    char model[512], data[] = "/tmp/oprm_test_engine_data.jsonl";
    snprintf(model, sizeof model, "%s/models/story-llama", shared);
    FILE *d = fopen(data, "w");
    CHECK(d != NULL);
    if (!d) return;
    fputs("{\"prompt\": \"Once upon a time\", \"response\": \"there was a cat.\"}\n", d);
    fclose(d);
    snprintf(cmd, sizeof cmd, "%s score --device cpu --model %s --data %s 2>&1 >/dev/null", bin, model, data);
    f = popen(cmd, "r");
    n = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[n] = 0;
    st = f ? pclose(f) : -1;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_STR_CONTAINS(out, "oprm score: device cpu");
    if (cuda_device_count(NULL, 0) == 0) {
        snprintf(cmd, sizeof cmd, "%s score --device cuda --model %s --data %s 2>&1 >/dev/null", bin, model, data);
        f = popen(cmd, "r");
        n = f ? fread(out, 1, sizeof out - 1, f) : 0;
        out[n] = 0;
        st = f ? pclose(f) : -1;
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        CHECK_STR_CONTAINS(out, "--device cpu");
    }
    /* bench: the GPU benchmarks scoring only. */
    snprintf(cmd, sizeof cmd, "%s bench --device cuda --config %s/models/story-llama/config.json --seq 4 2>&1", bin,
             shared);
    f = popen(cmd, "r");
    n = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[n] = 0;
    st = f ? pclose(f) : -1;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECK_STR_CONTAINS(out, "--mode score");
    remove(data);
}

int main(void) {
    RUN(test_device_parse);
    RUN(test_device_default_without_gpu);
    RUN(test_cpu_engine_matches_model);
    RUN(test_cpu_engine_eval_forward);
    RUN(test_cuda_refused_without_gpu);
    RUN(test_batching);
    RUN(test_mem_plan);
    RUN(test_weight_slots);
    RUN(test_attn_tiles_and_index);
    RUN(test_bf16_rounding);
    RUN(test_rope_freq);
    RUN(test_online_softmax);
    RUN_SHARED(test_cli_device, "models/story-llama");
    return test_summary();
}
