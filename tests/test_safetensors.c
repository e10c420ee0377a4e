/* safetensors reader/writer and the model loader's handling of bad inputs:
 * every broken file is built here in /tmp and must give a clear error that
 * names the file and the problem (never a crash). */
#include <stdint.h>
#include <unistd.h>

#include "io/fileio.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "test.h"

static char tmpdir[256];

static char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* Writes u64 header length (hlen_override if nonzero), the header text and ndata zero bytes. */
static void write_raw(const char *path, const char *header, uint64_t hlen_override, size_t ndata) {
    FILE *f = fopen(path, "wb");
    uint64_t h = hlen_override ? hlen_override : strlen(header);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(h >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < ndata; i++) fputc(0, f);
    fclose(f);
}

static void expect_open_error(const char *header, uint64_t hlen, size_t ndata, const char *what) {
    char *p = tmp_path("bad.safetensors");
    write_raw(p, header, hlen, ndata);
    OprmError err = {{0}};
    StFile *f = st_open(p, &err);
    CHECK(f == NULL);
    st_close(f);
    CHECK_STR_CONTAINS(err.msg, p);
    CHECK_STR_CONTAINS(err.msg, what);
}

static void test_bad_files(void) {
    expect_open_error("{}", 1000, 0, "header length 1000 runs past the end of the file");
    expect_open_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 4, "out of range");
    expect_open_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-4,4]}}", 0, 8, "out of range");
    expect_open_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      0, 12, "overlap");
    expect_open_error("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, "unknown dtype \"Q4\"");
    expect_open_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8, "need 12");
    expect_open_error("{\"a\": [", 0, 0, "not valid JSON");
    expect_open_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      0, 8, "duplicate");
    expect_open_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, 8, "data_offsets");
    char *p = tmp_path("short.safetensors");
    FILE *f = fopen(p, "wb");
    fputs("abc", f);
    fclose(f);
    OprmError err = {{0}};
    CHECK(st_open(p, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "too short");
    CHECK(st_open(tmp_path("does-not-exist"), &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "cannot open");
}

static void test_roundtrip_and_dtypes(void) {
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, -65504}, b[1] = {42};
    StWriteTensor t[2] = {{"a", a, 2, {2, 3}}, {"b", b, 1, {1}}};
    const char *meta[] = {"format", "pt", "alias", "a"};
    OprmError err = {{0}};
    char *p = tmp_path("rt.safetensors");
    CHECK(st_write_f32(p, t, 2, meta, 2, &err) == 0);
    StFile *f = st_open(p, &err);
    CHECK(f != NULL);
    if (!f) return;
    CHECK(f->n_tensors == 2);
    const StTensor *ta = st_find(f, "a");
    CHECK(ta && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 3 && ta->dtype == ST_F32);
    float back[6];
    CHECK(ta && st_to_f32(f, ta, back, &err) == 0 && memcmp(back, a, sizeof a) == 0);
    CHECK((uintptr_t)ta->data % 8 == 0); /* header padded: data aligned */
    CHECK(st_meta(f, "alias") && strcmp(st_meta(f, "alias"), "a") == 0);
    CHECK(st_find(f, "missing") == NULL);
    st_close(f);

    /* BF16 and F16 conversion of known bit patterns. */
    const char *hdr = "{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                      "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[12,20]}}";
    p = tmp_path("half.safetensors");
    FILE *fp = fopen(p, "wb");
    uint64_t hl = strlen(hdr);
    fwrite(&hl, 8, 1, fp);
    fwrite(hdr, 1, hl, fp);
    uint16_t halves[6] = {0x3c00 /* 1 */, 0xc000 /* -2 */, 0x0001 /* 2^-24 */, 0x7bff /* 65504 */,
                          0x3f80 /* bf16 1 */, 0xc2f7 /* bf16 -123.5 */};
    fwrite(halves, 2, 6, fp);
    int64_t i64 = 5;
    fwrite(&i64, 8, 1, fp);
    fclose(fp);
    f = st_open(p, &err);
    CHECK(f != NULL);
    if (!f) return;
    float h[4], bb[2];
    CHECK(st_to_f32(f, st_find(f, "h"), h, &err) == 0);
    CHECK(h[0] == 1.0f && h[1] == -2.0f && h[2] == ldexpf(1.0f, -24) && h[3] == 65504.0f);
    CHECK(st_to_f32(f, st_find(f, "b"), bb, &err) == 0);
    CHECK(bb[0] == 1.0f && bb[1] == -123.5f);
    CHECK(st_to_f32(f, st_find(f, "i"), h, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "dtype I64");
    st_close(f);
}

/* ---- model directories with one problem each ---- */

static const char *LLAMA = "tests/fixtures/engine/llama_gqa";

static char *make_model_dir(const char *name, const char *config_text) {
    char *d = tmp_path(name);
    OprmError err;
    make_dirs(d, &err);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp %s/model.safetensors %s/", LLAMA, d);
    CHECK(system(cmd) == 0);
    char *cfg = path_join(d, "config.json");
    if (config_text) {
        write_file_atomic(cfg, config_text, strlen(config_text), &err);
    } else {
        snprintf(cmd, sizeof cmd, "cp %s/config.json %s", LLAMA, cfg);
        CHECK(system(cmd) == 0);
    }
    free(cfg);
    return d;
}

static void expect_load_error(const char *dir, const char *what1, const char *what2) {
    OprmError err = {{0}};
    Model *m = model_load(dir, NULL, &err);
    CHECK(m == NULL);
    model_free(m);
    CHECK_STR_CONTAINS(err.msg, what1);
    if (what2) CHECK_STR_CONTAINS(err.msg, what2);
}

#define BASE_CFG                                                                                           \
    "\"hidden_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"    \
    "\"intermediate_size\":48,\"vocab_size\":48,\"max_position_embeddings\":128,\"rms_norm_eps\":1e-5"

static void test_bad_models(void) {
    expect_load_error(make_model_dir("m_arch", "{\"architectures\":[\"GPT2LMHeadModel\"]," BASE_CFG "}"),
                      "unsupported architecture \"GPT2LMHeadModel\"", "config.json");
    expect_load_error(make_model_dir("m_sw", "{\"architectures\":[\"MistralForCausalLM\"],\"sliding_window\":4096," BASE_CFG "}"),
                      "sliding_window=4096", "config.json");
    expect_load_error(make_model_dir("m_qsw", "{\"architectures\":[\"Qwen2ForCausalLM\"],\"use_sliding_window\":true," BASE_CFG "}"),
                      "use_sliding_window", NULL);
    expect_load_error(make_model_dir("m_rope", "{\"architectures\":[\"LlamaForCausalLM\"],\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}," BASE_CFG "}"),
                      "unsupported rope_scaling type \"yarn\"", NULL);
    expect_load_error(make_model_dir("m_act", "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_act\":\"gelu\"," BASE_CFG "}"),
                      "hidden_act", NULL);
    expect_load_error(make_model_dir("m_nohid", "{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2}"),
                      "missing field \"hidden_size\"", NULL);
    expect_load_error(make_model_dir("m_gqa", "{\"architectures\":[\"LlamaForCausalLM\"]," BASE_CFG ",\"num_key_value_heads\":3}"),
                      "multiple of num_key_value_heads", NULL);
    /* Shape disagreeing with config.json: a wider FFN than the file has. */
    char *d = make_model_dir("m_shape", "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":32,\"num_hidden_layers\":2,"
                                        "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":64,\"vocab_size\":48}");
    expect_load_error(d, "model.layers.0.mlp.gate_proj.weight\" has shape [48, 32]", "implies [64, 32]");
    /* Missing tensor: a Qwen2 config needs biases the Llama file lacks. */
    expect_load_error(make_model_dir("m_missing", "{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE_CFG "}"),
                      "missing tensor \"model.layers.0.self_attn.q_proj.bias\"", "model.safetensors");
    /* More layers than stored. */
    expect_load_error(make_model_dir("m_layers", "{\"architectures\":[\"MistralForCausalLM\"],\"sliding_window\":null,"
                                                 "\"hidden_size\":32,\"num_hidden_layers\":3,\"num_attention_heads\":4,"
                                                 "\"num_key_value_heads\":2,\"intermediate_size\":48,\"vocab_size\":48}"),
                      "missing tensor \"model.layers.2.", NULL);
    /* No weights at all, no config at all. */
    d = tmp_path("m_empty");
    OprmError err;
    make_dirs(d, &err);
    expect_load_error(d, "config.json", "cannot read config");
    char *cfg = path_join(d, "config.json");
    const char *text = "{\"architectures\":[\"LlamaForCausalLM\"]," BASE_CFG "}";
    write_file_atomic(cfg, text, strlen(text), &err);
    free(cfg);
    expect_load_error(d, "no model.safetensors or model.safetensors.index.json", NULL);
    /* Broken weights file inside a model dir: the error names that file. */
    d = make_model_dir("m_trunc", NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "truncate -s 4000 %s/model.safetensors", d);
    CHECK(system(cmd) == 0);
    expect_load_error(d, "m_trunc/model.safetensors", "out of range");
    /* Mistral without a sliding window loads. */
    d = make_model_dir("m_mistral", "{\"architectures\":[\"MistralForCausalLM\"],\"sliding_window\":null," BASE_CFG "}");
    Model *m = model_load(d, NULL, &err);
    CHECK(m != NULL);
    if (m) CHECK(model_config(m)->arch == ARCH_MISTRAL);
    model_free(m);
    /* Bad LoRA options: refused, not ignored. */
    ModelOptions opt = {.lora_rank = 8, .lora_alpha = 16, .lora_targets = 0};
    CHECK(model_load(LLAMA, &opt, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "LoRA targets");
    opt.lora_targets = LORA_Q;
    opt.lora_alpha = 0;
    CHECK(model_load(LLAMA, &opt, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "lora_alpha");
}

/* A sharded checkpoint (index.json + two files) loads to the same weights. */
static void test_sharded(void) {
    OprmError err = {{0}};
    Model *ref = model_load(LLAMA, NULL, &err);
    CHECK(ref != NULL);
    if (!ref) return;
    int np;
    ModelParam *ps = model_params(ref, &np);
    char *d = tmp_path("m_sharded");
    make_dirs(d, &err);
    StWriteTensor *t = calloc((size_t)np, sizeof *t);
    for (int i = 0; i < np; i++) {
        t[i].name = ps[i].name;
        t[i].data = ps[i].data;
        t[i].ndim = ps[i].ndim;
        t[i].shape[0] = ps[i].shape[0];
        t[i].shape[1] = ps[i].shape[1];
    }
    int half = np / 2;
    char *p1 = path_join(d, "model-00001-of-00002.safetensors"), *p2 = path_join(d, "model-00002-of-00002.safetensors");
    CHECK(st_write_f32(p1, t, half, NULL, 0, &err) == 0);
    CHECK(st_write_f32(p2, t + half, np - half, NULL, 0, &err) == 0);
    char *idx = malloc(100000);
    size_t n = (size_t)snprintf(idx, 100000, "{\"metadata\":{},\"weight_map\":{");
    for (int i = 0; i < np; i++)
        n += (size_t)snprintf(idx + n, 100000 - n, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", i ? "," : "",
                              ps[i].name, i < half ? 1 : 2);
    snprintf(idx + n, 100000 - n, "}}");
    char *ip = path_join(d, "model.safetensors.index.json");
    CHECK(write_file_atomic(ip, idx, strlen(idx), &err) == 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/", LLAMA, d);
    CHECK(system(cmd) == 0);
    Model *m = model_load(d, NULL, &err);
    if (!m) fprintf(stderr, "sharded: %s\n", err.msg);
    CHECK(m != NULL);
    if (m) {
        int nm;
        ModelParam *pm = model_params(m, &nm);
        CHECK(nm == np);
        for (int i = 0; i < np && i < nm; i++) CHECK(memcmp(pm[i].data, ps[i].data, ps[i].numel * 4) == 0);
        model_free(m);
    }
    /* A shard listed in the index but missing on disk. */
    unlink(p2);
    expect_load_error(d, "model-00002-of-00002.safetensors", "cannot open");
    free(idx);
    free(ip);
    free(p1);
    free(p2);
    free(t);
    model_free(ref);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/oprm_test_st_%d", (int)getpid());
    OprmError err;
    make_dirs(tmpdir, &err);
    RUN(test_bad_files);
    RUN(test_roundtrip_and_dtypes);
    RUN(test_bad_models);
    RUN(test_sharded);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
