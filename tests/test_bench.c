/* oprm bench: the FLOP count against a hand count of a tiny Qwen2, the loss of
 * the benchmark's pair at near-uniform digit distributions, the JSON line of the
 * CLI and its errors. No timing assertions: speed targets are met in
 * benchmarks (bench/compare.sh), never in unit tests. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "train/bench.h"
#include "train/rng.h"
#include "train_testutil.h"

static char tmp_dir[64];
static char cfg_path[128], small_vocab_path[128];

/* hidden 16, 2 layers, 2 heads of 8, 1 KV head, ffn 24, vocab 40, tied. */
static const char *TINY =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 16, \"num_hidden_layers\": 2,"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"intermediate_size\": 24,"
    " \"vocab_size\": 40, \"rope_theta\": 10000.0, \"rms_norm_eps\": 1e-6,"
    " \"tie_word_embeddings\": true, \"max_position_embeddings\": 64}";

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Parameters of the tiny config counted by hand from the Qwen2 layout. */
static double tiny_non_embedding(void) {
    double D = 16, Hq = 16, Hk = 8, F = 24;
    double layer = (D * Hq + Hq) + 2 * (D * Hk + Hk) + Hq * D + 3 * D * F + 2 * D;
    return 2 * layer + D; /* + final norm */
}

/* The bench's pair loss by hand (see test_flops_and_loss). The token ids follow
 * bench.c: seq random ids per sequence from the option seed xor its batch tag. */
static double reference_loss(const BenchOptions *o, const ModelConfig *c) {
    ModelOptions mo = {0};
    OprmError err = {{0}};
    Model *m = model_new_random(c, &mo, o->seed, &err);
    if (!m) return NAN;
    int N = 2 * o->seq;
    int32_t ids[64], lens[2] = {o->seq, o->seq}, rows[9];
    Rng rng;
    rng_seed(&rng, o->seed ^ 0x6f70726d62656e63ULL);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)rng_below(&rng, (uint64_t)c->vocab);
    for (int k = 0; k < 9; k++) rows[k] = 16 + k;
    SeqBatch b = {.ids = ids, .lens = lens, .nseq = 2};
    float h[2 * 16], z[18];
    double loss = NAN;
    if (model_forward(m, &b, 0, h, &err) == 0) {
        model_head_rows_forward(m, h, 2, rows, 9, z);
        double p[2][9];
        for (int sq = 0; sq < 2; sq++) {
            double zmax = -INFINITY, sum = 0;
            for (int k = 0; k < 9; k++) zmax = fmax(zmax, z[9 * sq + k]);
            for (int k = 0; k < 9; k++) sum += p[sq][k] = exp(z[9 * sq + k] - zmax);
            for (int k = 0; k < 9; k++) p[sq][k] /= sum;
        }
        double win = 0;
        for (int i = 0; i < 9; i++)
            for (int j = 0; j < i; j++) win += p[0][i] * p[1][j];
        loss = -log(win);
    }
    model_free(m);
    return loss;
}

static void test_flops_and_loss(void) {
    BenchOptions o = {.config_path = cfg_path, .seq = 7, .steps = 2, .warmup = 1, .threads = 1,
                      .mode = BENCH_BOTH, .weights = WEIGHTS_F32, .seed = 3};
    BenchResult r;
    OprmError err = {{0}};
    CHECK(bench_run(&o, &r, &err) == 0);
    if (err.msg[0]) fprintf(stderr, "bench_run: %s\n", err.msg);
    double nonemb = tiny_non_embedding();
    CHECK_NEAR(r.params_non_embedding, nonemb, 0, 0);
    CHECK_NEAR(r.params_total, nonemb + 40 * 16, 0, 0);
    /* causal attention: layers * 2 products * 2 FLOP * heads * head_dim * (1+..+T) per sequence */
    double attn = 2 * 2 * 2 * 2 * 8 * (7 * 8 / 2.0) * 2;
    CHECK_NEAR(r.train_flops_per_step, 6 * nonemb * 14 + 3 * attn, 0, 1e-12);
    CHECK_NEAR(r.score_flops_per_step, 2 * nonemb * 14 + attn, 0, 1e-12);
    /* Weights ~ N(0, 0.02^2) give digit logits of std ~0.02 * sqrt(16) * |h|/sqrt(16)
     * (h is RMS-normed), so both distributions are near uniform and P(c > r) is near
     * (1 - 1/9) / 2 = 4/9; a wiring error (wrong rows, sign, sequence swap with
     * large logits) moves it far off. */
    CHECK_NEAR(r.last_loss, -log(4.0 / 9.0), 0.05, 0);
    /* The exact value, computed here without the bench or the ordinal code: the
     * same random model and batch, digit rows 16..24, softmax, then
     * -log sum_{i>j} p_c(i) p_r(j). One step without warmup reads the loss before
     * any update. A factor-2 error (a loss doubled, halved, or logits scaled by 2)
     * is far outside 1e-5. */
    BenchOptions one = o;
    one.steps = 1;
    one.warmup = 0;
    BenchResult r1;
    CHECK(bench_run(&one, &r1, &err) == 0);
    double want = reference_loss(&one, &r1.cfg);
    CHECK(want > 0.5 && want < 1.2);
    CHECK_NEAR(r1.last_loss, want, 0, 1e-5);
    CHECK(r.train_step_ms > 0 && r.score_step_ms > 0);
    CHECK(r.fwd_ms > 0 && r.bwd_ms > 0 && r.opt_ms > 0);
    CHECK(r.train_cpu_ms > 0 && r.score_cpu_ms > 0);
    CHECK(r.fwd_ms + r.bwd_ms + r.opt_ms + r.head_ms <= r.train_step_ms * 1.0001 + 1e-3);
    CHECK(r.train_window[1] >= r.train_window[0] && r.score_window[0] >= r.train_window[1]);
    CHECK_NEAR(r.train_tokens_per_s, 14 / (r.train_step_ms * 1e-3), 0, 1e-9);
    CHECK_NEAR(r.train_gflops, r.train_flops_per_step / (r.train_step_ms * 1e-3) / 1e9, 0, 1e-9);
}

static void test_option_errors(void) {
    BenchOptions o = {.config_path = cfg_path, .seq = 4, .steps = 1, .threads = 1, .mode = BENCH_TRAIN,
                      .weights = WEIGHTS_BF16};
    BenchResult r;
    OprmError err = {{0}};
    CHECK(bench_run(&o, &r, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "--lora-rank");
    o.weights = WEIGHTS_F32;
    o.config_path = small_vocab_path;
    err.msg[0] = 0;
    CHECK(bench_run(&o, &r, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "digit rows 16..24");
    o.config_path = "/nonexistent/config.json";
    err.msg[0] = 0;
    CHECK(bench_run(&o, &r, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/config.json");
}

/* `oprm bench ARGS`, what it said into out. */
static int run_cli(const char *args, char *out, size_t cap) {
    char full[1024], res[160];
    snprintf(res, sizeof res, "%s/out.txt", tmp_dir);
    snprintf(full, sizeof full, "bench %s", args);
    int rc = run_oprm_prefixed("", full, res, out, cap);
    unlink(res);
    return rc;
}

static void test_cli(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/release/oprm";
    if (access(bin, X_OK)) {
        SKIP("CLI checks: %s not built (make; OPRM_BIN overrides)", bin);
        return;
    }
    char out[8192], args[512];
    snprintf(args, sizeof args, "--config %s --seq 5 --steps 1 --threads 1", cfg_path);
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* exactly one line */
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    CHECK(j != NULL);
    const char *fields[] = {"train_tokens_per_s", "score_tokens_per_s", "train_gflops", "score_gflops",
                            "params_M", "forward_ms", "backward_ms", "optimizer_ms", "train_step_ms",
                            "score_step_ms", "train_gflop_per_step", "train_tokens_per_cpu_s",
                            "score_tokens_per_cpu_s"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        json_t *v = json_object_get(j, fields[i]);
        CHECK(json_is_number(v) && json_number_value(v) > 0);
        if (!json_is_number(v)) fprintf(stderr, "missing field %s in %s\n", fields[i], out);
    }
    CHECK(json_integer_value(json_object_get(j, "seq")) == 5);
    CHECK(json_integer_value(json_object_get(j, "threads")) == 1);
    /* 2 sequences of 5 tokens: 6 * P * 10 + 3 * attention, printed in GFLOP to 3 decimals */
    double want = (6 * tiny_non_embedding() * 10 + 3 * (2.0 * 2 * 2 * 8 * 5 * 6 * 2)) / 1e9;
    CHECK_NEAR(json_number_value(json_object_get(j, "train_gflop_per_step")), want, 0.0005, 0);
    json_decref(j);

    snprintf(args, sizeof args, "--config %s --seq 5 --mode score --threads 1", cfg_path);
    CHECK(run_cli(args, out, sizeof out) == 0);
    j = json_loads(out, 0, &jerr);
    CHECK(j && json_is_number(json_object_get(j, "score_tokens_per_s")));
    CHECK(j && !json_object_get(j, "train_tokens_per_s"));
    json_decref(j);

    snprintf(args, sizeof args, "--config %s --seq 5 --weights bf16", cfg_path);
    CHECK(run_cli(args, out, sizeof out) == 1);
    CHECK_STR_CONTAINS(out, "--lora-rank");
    snprintf(args, sizeof args, "--config %s", cfg_path);
    CHECK(run_cli(args, out, sizeof out) == 2);
    CHECK(run_cli("--config x --seq 0", out, sizeof out) == 2);
    CHECK(run_cli("--config x --seq 4 --mode fast", out, sizeof out) == 2);
    CHECK(run_cli("--help", out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "--lora-rank");
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/oprm-bench-XXXXXX");
    if (!mkdtemp(tmp_dir)) return 1;
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", tmp_dir);
    snprintf(small_vocab_path, sizeof small_vocab_path, "%s/small-vocab.json", tmp_dir);
    write_file(cfg_path, TINY);
    char small[1024];
    snprintf(small, sizeof small, "%s", TINY);
    char *p = strstr(small, "\"vocab_size\": 40");
    if (p) memcpy(p, "\"vocab_size\": 20", 16);
    write_file(small_vocab_path, small);
    RUN(test_flops_and_loss);
    RUN(test_option_errors);
    RUN(test_cli);
    unlink(cfg_path);
    unlink(small_vocab_path);
    rmdir(tmp_dir);
    return test_summary();
}
