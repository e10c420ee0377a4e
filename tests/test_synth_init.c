/* oprm init: the written directory loads back through the engine and the
 * tokenizer, with the configured shape and exactly the weights of
 * model_new_random for the seed, for every architecture; the CLI's exit codes. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "model/model.h"
#include "synth/init_model.h"
#include "test.h"
#include "tok/prompt.h"
#include "tok/tokenizer.h"

static void remove_model_dir(const char *dir) {
    const char *names[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json",
                           "model.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = path_join(dir, names[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
}

static void check_arch(ModelArch arch) {
    char dir[] = "/tmp/oprm-test-init-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    InitOptions o;
    init_default_options(&o, arch);
    o.hidden = 32;
    o.heads = 4;
    o.kv_heads = 2;
    o.ffn = 48;
    o.seed = 9;
    OprmError err = {0};
    size_t n_params = 0;
    CHECK(init_model_dir(dir, &o, &n_params, &err) == 0);
    if (err.msg[0]) fprintf(stderr, "init: %s\n", err.msg);
    Tokenizer *t = tok_load(dir, &err);
    CHECK(t != NULL);
    Model *m = model_load(dir, NULL, &err);
    CHECK(m != NULL);
    if (!m) fprintf(stderr, "model_load: %s\n", err.msg);
    if (t && m) {
        const ModelConfig *c = model_config(m);
        CHECK(c->arch == arch && c->hidden == 32 && c->n_layers == 2 && c->n_heads == 4 && c->n_kv_heads == 2);
        CHECK(c->head_dim == 8 && c->ffn == 48 && c->vocab == tok_vocab_size(t));
        CHECK(c->eos_id == tok_token_id(t, "<|im_end|>") && c->bos_id == -1);
        CHECK(c->qkv_bias == (arch == ARCH_QWEN2) && c->qk_norm == (arch == ARCH_QWEN3));
        CHECK(model_num_params(m, 0) == n_params);
        /* Loaded weights are exactly the seed's random weights. */
        Model *ref = model_new_random(c, NULL, 9, &err);
        CHECK(ref != NULL);
        if (ref) {
            int nl, nr, same = 1;
            ModelParam *pl = model_params(m, &nl), *pr = model_params(ref, &nr);
            CHECK(nl == nr);
            for (int i = 0; i < nl && i < nr && same; i++) {
                same = !strcmp(pl[i].name, pr[i].name) && pl[i].numel == pr[i].numel &&
                       !memcmp(pl[i].data, pr[i].data, pl[i].numel * sizeof(float));
            }
            CHECK(same);
            /* normal(0, 0.02): the embedding's sample std within 3% (n = vocab * 32). */
            double s2 = 0;
            for (size_t j = 0; j < pl[0].numel; j++) s2 += (double)pl[0].data[j] * pl[0].data[j];
            CHECK_NEAR(sqrt(s2 / pl[0].numel), 0.02, 0, 0.03);
            model_free(ref);
        }
        /* A scoring prompt runs through the fresh model. */
        ScoringSetup s;
        CHECK(scoring_setup(&s, t, NULL, NULL, 0, &err) == 0);
        Conversation conv = {0};
        conv_push(&conv, ROLE_USER, "Write six odd digits.", strlen("Write six odd digits."));
        ScoringPrompt sp = {0};
        CHECK(scoring_build(&s.cfg, &conv, "135791", &sp, &err) == 0);
        int32_t len = (int32_t)sp.ids.n;
        SeqBatch b = {sp.ids.v, &len, 1};
        float h[32], logits[9];
        CHECK(model_forward(m, &b, 0, h, &err) == 0);
        model_head_rows_forward(m, h, 1, s.digits, 9, logits);
        int finite = 1;
        for (int k = 0; k < 9; k++) finite &= isfinite(logits[k]) && fabsf(logits[k]) < 10;
        CHECK(finite);
        scoring_prompt_free(&sp);
        conv_free(&conv);
        scoring_setup_free(&s);
    }
    model_free(m);
    tok_free(t);
    remove_model_dir(dir);
}

static void test_archs(void) {
    check_arch(ARCH_LLAMA);
    check_arch(ARCH_QWEN2);
    check_arch(ARCH_QWEN3);
}

static void test_bad_options(void) {
    InitOptions o;
    init_default_options(&o, ARCH_LLAMA);
    OprmError err = {0};
    o.heads = 3;
    CHECK(init_model_dir("/tmp/oprm-never-written", &o, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "not divisible");
    init_default_options(&o, ARCH_LLAMA);
    o.kv_heads = 3;
    CHECK(init_model_dir("/tmp/oprm-never-written", &o, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "multiple of --kv-heads");
    CHECK(!file_exists("/tmp/oprm-never-written"));
    ModelArch a;
    CHECK(init_parse_arch("qwen3", &a, &err) == 0 && a == ARCH_QWEN3);
    CHECK(init_parse_arch("gpt2", &a, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "unknown --arch 'gpt2'");
}

static int run_cmd(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/asan/oprm";
    if (!file_exists(bin)) {
        SKIP("CLI checks: %s not built (make; OPRM_BIN overrides)", bin);
        return;
    }
    char dir[] = "/tmp/oprm-test-initcli-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s init --help > /dev/null", bin);
    CHECK(run_cmd(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s init --arch qwen2 > /dev/null 2>&1", bin);
    CHECK(run_cmd(cmd) == 2);
    snprintf(cmd, sizeof cmd, "%s init --arch bert --output %s > /dev/null 2>&1", bin, dir);
    CHECK(run_cmd(cmd) == 2);
    snprintf(cmd, sizeof cmd, "%s init --arch qwen3 --hidden 16 --heads 2 --output %s > /dev/null", bin, dir);
    CHECK(run_cmd(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s init --arch qwen3 --hidden 16 --heads 2 --output %s > /dev/null 2>&1", bin, dir);
    CHECK(run_cmd(cmd) == 1); /* refuses to overwrite */
    snprintf(cmd, sizeof cmd, "%s init --arch qwen3 --hidden 16 --heads 2 --output %s --force > /dev/null", bin, dir);
    CHECK(run_cmd(cmd) == 0);
    OprmError err = {0};
    char *cfg_path = path_join(dir, "config.json");
    ModelConfig c;
    CHECK(model_config_load(cfg_path, &c, &err) == 0 && c.arch == ARCH_QWEN3 && c.hidden == 16 && c.head_dim == 8);
    free(cfg_path);
    remove_model_dir(dir);
}

int main(void) {
    RUN(test_archs);
    RUN(test_bad_options);
    RUN(test_cli);
    return test_summary();
}
