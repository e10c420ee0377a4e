/* The config.json files tools/cuda_check.sh hands to both sides of its GPU
 * comparisons (tools/cuda_configs/): oprm's loader must read them as the shapes
 * they name, and each must carry "model_type", without which transformers'
 * AutoConfig refuses the file (tools/cuda_bench_*.py: the benchmark would die on
 * the one GPU run instead of measuring). */
#include <jansson.h>
#include <string.h>

#include "model/model.h"
#include "test.h"

static void check_config(const char *path, int hidden, int layers, int heads, int kv, int head_dim, int vocab) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CHECK(j != NULL);
    const char *mt = j ? json_string_value(json_object_get(j, "model_type")) : NULL;
    if (!mt) fprintf(stderr, "%s: no \"model_type\" (AutoConfig.from_pretrained refuses it)\n", path);
    CHECK(mt && !strcmp(mt, "qwen2"));
    json_decref(j);
    ModelConfig c;
    OprmError err = {{0}};
    int rc = model_config_load(path, &c, &err);
    if (rc) fprintf(stderr, "%s: %s\n", path, err.msg);
    CHECK(rc == 0);
    if (rc) return;
    CHECK(c.hidden == hidden);
    CHECK(c.n_layers == layers);
    CHECK(c.n_heads == heads);
    CHECK(c.n_kv_heads == kv);
    CHECK(c.head_dim == head_dim);
    CHECK(c.vocab == vocab);
}

static void test_shape_configs(void) {
    check_config("tools/cuda_configs/qwen2.5-0.5b-shape.json", 896, 24, 14, 2, 64, 151936);
    check_config("tools/cuda_configs/qwen2.5-7b-shape.json", 3584, 28, 28, 4, 128, 152064);
    check_config("tools/cuda_configs/tiny-qwen2.json", 64, 2, 4, 2, 16, 512);
}

int main(void) {
    RUN(test_shape_configs);
    return test_summary();
}
