/* The CUDA engine's training plan (src/engine/cuda_plan.c), on the CPU: the
 * train layout places every trainable tensor once, the memory plan's sizing
 * claims of issue 14, and the refusal message. */
#include "engine/cuda_plan.h"
#include "model/model.h"
#include "train/bench.h"
#include "test.h"

static ModelConfig qwen25(double size) {
    ModelConfig c = {0};
    c.arch = ARCH_QWEN2;
    c.head_dim = 128, c.vocab = 151936, c.qkv_bias = 1, c.rms_eps = 1e-6, c.rope_theta = 1e6;
    if (size == 7) c.hidden = 3584, c.n_layers = 28, c.ffn = 18944, c.n_heads = 28, c.n_kv_heads = 4, c.vocab = 152064;
    else if (size == 1.5) c.hidden = 1536, c.n_layers = 28, c.ffn = 8960, c.n_heads = 12, c.n_kv_heads = 2, c.tie_embeddings = 1;
    else c.hidden = 896, c.n_layers = 24, c.ffn = 4864, c.n_heads = 14, c.n_kv_heads = 2, c.head_dim = 64, c.tie_embeddings = 1;
    return c;
}

static ModelConfig small_cfg(ModelArch arch) {
    ModelConfig c = {0};
    c.arch = arch;
    snprintf(c.architecture, sizeof c.architecture, "test");
    c.hidden = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.ffn = 48, c.vocab = 40;
    c.max_pos = 256, c.rope_theta = 10000, c.rms_eps = 1e-6, c.tie_embeddings = arch != ARCH_LLAMA;
    c.qkv_bias = arch == ARCH_QWEN2, c.qk_norm = arch == ARCH_QWEN3, c.bos_id = c.eos_id = -1;
    return c;
}

/* Every trainable tensor of a full fine-tuning model is one range of the flat
 * train layout; the ranges tile [0, cuda_train_numel) exactly. */
static void test_train_layout(void) {
    ModelArch archs[] = {ARCH_QWEN2, ARCH_QWEN3, ARCH_LLAMA};
    for (int a = 0; a < 3; a++) {
        ModelConfig c = small_cfg(archs[a]);
        OprmError err = {{0}};
        Model *m = model_new_random(&c, NULL, 3, &err);
        CHECK(m != NULL);
        if (!m) continue;
        int np;
        ModelParam *ps = model_params(m, &np);
        size_t n = cuda_train_numel(&c);
        CHECK(n == model_num_params(m, 1));
        unsigned char *hit = calloc(n, 1);
        int bad = 0, placed = 0;
        for (int i = 0; i < np; i++) {
            CudaWeightSlot s;
            if (!ps[i].grad || cuda_weight_slot(&c, ps[i].name, &s)) {
                bad++;
                continue;
            }
            size_t off = cuda_train_region(&c, s.layer, s.kind) + s.offset;
            /* Inside its region (the region is laid out like the device buffer). */
            if (s.offset + ps[i].numel > cuda_weight_numel(&c, s.kind)) bad++;
            for (size_t j = 0; j < ps[i].numel; j++) {
                if (off + j >= n || hit[off + j]) {
                    bad++;
                    break;
                }
                hit[off + j] = 1;
            }
            placed++;
        }
        size_t covered = 0;
        for (size_t j = 0; j < n; j++) covered += hit[j];
        CHECK(bad == 0);
        CHECK(placed == np);
        CHECK(covered == n);
        /* The fused q|k|v of layer 1 follows layer 0's last region (norm2). */
        CHECK(cuda_train_region(&c, 1, CW_QKV) ==
              cuda_train_region(&c, 0, CW_NORM2) + cuda_weight_numel(&c, CW_NORM2));
        free(hit);
        model_free(m);
    }
}

/* The plan's trainable count is the model's, for full fine-tuning and LoRA. */
static void test_plan_counts(void) {
    ModelConfig c = small_cfg(ARCH_QWEN2);
    OprmError err = {{0}};
    ModelOptions lo = {.lora_rank = 4, .lora_alpha = 8, .lora_targets = LORA_Q | LORA_V | LORA_DOWN, .lora_seed = 1};
    Model *full = model_new_random(&c, NULL, 3, &err), *lora = model_new_random(&c, &lo, 3, &err);
    CHECK(full && lora);
    if (!full || !lora) return;
    CudaTrainMode mf = {0}, ml = {.lora_rank = 4, .lora_targets = LORA_Q | LORA_V | LORA_DOWN};
    CudaTrainPlan pf, pl, pr;
    cuda_train_plan(&c, 64, &mf, &pf);
    cuda_train_plan(&c, 64, &ml, &pl);
    CHECK(pf.trainable == model_num_params(full, 1));
    CHECK(pl.trainable == model_num_params(lora, 1));
    /* Full FT: master, gradient, m and v are 4 bytes a parameter each. */
    CHECK(pf.master >= 4 * pf.trainable && pf.master < 4 * pf.trainable + 256);
    CHECK(pf.optimizer >= 8 * pf.trainable && pf.optimizer < 8 * pf.trainable + 512);
    /* Recomputation keeps one layer set instead of n_layers. */
    mf.recompute = 1;
    cuda_train_plan(&c, 64, &mf, &pr);
    CHECK(pf.saved - pr.saved == (size_t)(c.n_layers - 1) * pf.layer_set);
    /* A layer set: T (2D + 4 + 4W + 2Q + 4H + 4D + 2D + 4 + 6F) bytes up to 256-byte alignment of 11 buffers. */
    size_t T = 64, D = 32, W = 64, Q = 32, H = 4, F = 48;
    size_t exact = T * (2 * D + 4 + 4 * W + 2 * Q + 4 * H + 4 * D + 2 * D + 4 + 6 * F);
    CHECK(pf.layer_set >= exact && pf.layer_set < exact + 11 * 256);
    model_free(full);
    model_free(lora);
}

/* Issue 14's sizing claims on an 80 GB card (2 GB left for the CUDA context). */
static void test_plan_claims(void) {
    const size_t card = (size_t)78e9;
    char msg[2048], d[1024];
    ModelConfig c7 = qwen25(7), c15 = qwen25(1.5);
    CudaTrainMode lora = {.lora_rank = 16, .lora_targets = 127, .recompute = 1}, full = {0};
    CudaTrainPlan p;
    cuda_train_plan(&c7, 4096, &lora, &p);
    cuda_train_plan_describe(&p, &lora, 4096, d, sizeof d);
    fprintf(stderr, "  7B LoRA r16 @4096, recompute: %s\n", d);
    CHECK(p.total < card);
    CHECK(cuda_train_plan_check(&c7, 4096, &lora, card, "cuda:0 (test)", msg, sizeof msg) == 0);
    /* 40M adapters at r 16 on all seven projections of 28 layers. */
    CHECK_NEAR((double)p.trainable, 40370176.0, 0, 1e-9);
    cuda_train_plan(&c15, 4096, &full, &p);
    cuda_train_plan_describe(&p, &full, 4096, d, sizeof d);
    fprintf(stderr, "  1.5B full @4096: %s\n", d);
    CHECK(p.total < card);
    /* 1.54B parameters (published: 1.54B), 16 bytes each of optimizer-side state. */
    CHECK_NEAR((double)p.trainable, 1.5437e9, 0, 2e-3);
    CHECK(cuda_train_plan_check(&c15, 4096, &full, card, "cuda:0 (test)", msg, sizeof msg) == 0);
}

static void test_plan_refusal(void) {
    char msg[2048];
    ModelConfig c7 = qwen25(7);
    CudaTrainMode full = {0};
    /* 7B full fine-tuning needs ~140 GB of fp32 state: refused on 80 GB, with LoRA and --zero offered. */
    CHECK(cuda_train_plan_check(&c7, 4096, &full, (size_t)78e9, "cuda:0 (NVIDIA A100 80GB, 79.3 GiB)", msg,
                                sizeof msg) == -1);
    fprintf(stderr, "  %s\n", msg);
    CHECK(strstr(msg, "cuda:0 (NVIDIA A100 80GB") != NULL);
    CHECK(strstr(msg, "needs") && strstr(msg, "available") && strstr(msg, "bytes"));
    CHECK(strstr(msg, "LoRA (--lora-rank 16") != NULL);
    CHECK(strstr(msg, "--max_tokens_per_batch 4096") != NULL); /* names the budget it was asked */
    /* 1.5B full fine-tuning on a 24 GB card: ZeRO-1 over more ranks (with recomputation) is offered. */
    ModelConfig c15 = qwen25(1.5);
    CHECK(cuda_train_plan_check(&c15, 4096, &full, (size_t)24e9, "cuda:0 (test 24 GB)", msg, sizeof msg) == -1);
    fprintf(stderr, "  %s\n", msg);
    CHECK(strstr(msg, "--zero with") != NULL);
    CHECK(strstr(msg, "LoRA (--lora-rank 16") != NULL);
    /* LoRA on a 40 GB card at 16k tokens without recomputation: a smaller budget and recomputation fit. */
    CudaTrainMode lora = {.lora_rank = 16, .lora_targets = 127};
    const size_t c40 = (size_t)40e9;
    CHECK(cuda_train_plan_check(&c7, 16384, &lora, c40, "cuda:0 (test 40 GB)", msg, sizeof msg) == -1);
    fprintf(stderr, "  %s\n", msg);
    CHECK(strstr(msg, "what would fit") != NULL);
    CHECK(strstr(msg, "--gradient_checkpointing") != NULL);
    const char *t = strstr(msg, "; --max_tokens_per_batch ");
    if (!t) t = strstr(msg, "fit: --max_tokens_per_batch ");
    CHECK(t != NULL);
    if (t) {
        int sug = atoi(strstr(t, "batch ") + 6);
        CudaTrainPlan q;
        cuda_train_plan(&c7, sug, &lora, &q);
        CHECK(sug > 0 && sug < 16384 && q.total <= c40); /* what it offers does fit */
        cuda_train_plan(&c7, sug + 256, &lora, &q);
        CHECK(q.total > c40); /* and is the largest multiple of 256 that does */
    }
    /* Nothing fits a tiny card: says so. */
    CHECK(cuda_train_plan_check(&c7, 4096, &lora, (size_t)4e9, "cuda:0 (tiny)", msg, sizeof msg) == -1);
    CHECK(strstr(msg, "more memory") != NULL);
}

static void test_ktiles(void) {
    int32_t lens[] = {3, 40, 16};
    CudaAttnKTile t[16];
    int n = cuda_attn_ktiles(lens, 3, CUDA_ATTN_KT_BWD, t);
    CHECK(n == 1 + 3 + 1);
    CHECK(n <= cuda_attn_tiles_max(59, 3));
    CHECK(t[0].seq_row == 0 && t[0].k_pos == 0 && t[0].k_n == 3 && t[0].seq_len == 3);
    CHECK(t[1].seq_row == 3 && t[1].k_pos == 0 && t[1].k_n == 16 && t[1].seq_len == 40);
    CHECK(t[3].seq_row == 3 && t[3].k_pos == 32 && t[3].k_n == 8);
    CHECK(t[4].seq_row == 43 && t[4].k_n == 16 && t[4].seq_len == 16);
}

/* What the CUDA engine trains, and what it refuses at init (cuda_train_mode_of, called by
 * src/cuda/train_cuda.cu before anything is allocated). */
static void test_train_mode(void) {
    ModelConfig c = small_cfg(ARCH_QWEN2);
    OprmError err = {{0}};
    char msg[512];
    CudaTrainMode md;
    Model *full = model_new_random(&c, NULL, 1, &err);
    ModelOptions lo = {.lora_rank = 4, .lora_alpha = 8, .lora_targets = LORA_Q | LORA_DOWN, .lora_seed = 1};
    Model *lora = model_new_random(&c, &lo, 1, &err);
    ModelOptions io = {.inference_only = 1};
    Model *inf = model_new_random(&c, &io, 1, &err);
    CHECK(full && lora && inf);
    if (!full || !lora || !inf) return;
    CHECK(cuda_train_mode_of(full, 1, &md, msg, sizeof msg) == 0);
    CHECK(md.lora_rank == 0 && md.lora_targets == 0 && md.recompute == 1);
    CHECK(cuda_train_mode_of(lora, 0, &md, msg, sizeof msg) == 0);
    CHECK(md.lora_rank == 4 && md.lora_targets == (LORA_Q | LORA_DOWN) && md.recompute == 0);
    CHECK(cuda_train_mode_of(inf, 0, &md, msg, sizeof msg) == -1);
    CHECK(strstr(msg, "no trainable tensor") != NULL);
    /* A partly frozen base (not a mode model.h makes; a caller could): refused, naming the count. */
    int np;
    ModelParam *ps = model_params(full, &np);
    float *keep = ps[3].grad;
    ps[3].grad = NULL;
    CHECK(cuda_train_mode_of(full, 0, &md, msg, sizeof msg) == -1);
    CHECK(strstr(msg, "1 of") != NULL && strstr(msg, "--device cpu") != NULL);
    ps[3].grad = keep;
    int l, s, b;
    CHECK(cuda_lora_name("base_model.model.model.layers.7.mlp.up_proj.lora_B.weight", &l, &s, &b) == 0);
    CHECK(l == 7 && s == 5 && b == 1);
    CHECK(cuda_lora_name("model.layers.0.mlp.up_proj.weight", &l, &s, &b) == -1);
    model_free(full);
    model_free(lora);
    model_free(inf);
}

/* oprm bench --device cuda --mode train: the option checks (before any engine), then, on a
 * machine without a GPU, a clear refusal from the engine. */
static void test_bench_cuda_train_options(void) {
    BenchOptions o = {.config_path = "tools/cuda_configs/qwen2.5-0.5b-shape.json", .seq = 8, .steps = 1,
                      .mode = BENCH_TRAIN, .device = {DEVICE_CUDA, 0}, .nseq = 3};
    BenchResult r;
    OprmError err = {{0}};
    CHECK(bench_run(&o, &r, &err) == -1);
    CHECK(strstr(err.msg, "--nseq must be even") != NULL);
    o.nseq = 4, o.mode = BENCH_BOTH;
    CHECK(bench_run(&o, &r, &err) == -1);
    CHECK(strstr(err.msg, "pick --mode train or --mode score") != NULL);
    o.mode = BENCH_TRAIN, o.weights = WEIGHTS_BF16;
    CHECK(bench_run(&o, &r, &err) == -1);
    CHECK(strstr(err.msg, "--lora-rank") != NULL);
}

int main(void) {
    RUN(test_train_layout);
    RUN(test_plan_counts);
    RUN(test_plan_claims);
    RUN(test_plan_refusal);
    RUN(test_ktiles);
    RUN(test_train_mode);
    RUN(test_bench_cuda_train_options);
    return test_summary();
}
