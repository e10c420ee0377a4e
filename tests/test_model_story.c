/* The real checkpoint ../shared/data/models/story-llama (Llama, GQA, tied
 * embeddings stored only as lm_head.weight + __metadata__ alias): upstream
 * reference values exactly, and greedy decoding equal to PyTorch's. */
#include <jansson.h>
#include <stdint.h>

#include "model/model.h"
#include "test.h"

static char model_dir[512];

static const ModelParam *find_param(Model *m, const char *name) {
    int n;
    ModelParam *ps = model_params(m, &n);
    for (int i = 0; i < n; i++)
        if (strcmp(ps[i].name, name) == 0) return &ps[i];
    return NULL;
}

static void test_reference_values(void) {
    OprmError err = {{0}};
    Model *m = model_load(model_dir, NULL, &err);
    if (!m) fprintf(stderr, "%s\n", err.msg);
    CHECK(m != NULL);
    if (!m) return;
    char path[600];
    snprintf(path, sizeof path, "%s/reference.json", model_dir);
    json_error_t jerr;
    json_t *ref = json_load_file(path, 0, &jerr);
    CHECK(ref != NULL);
    if (!ref) {
        model_free(m);
        return;
    }
    const ModelConfig *c = model_config(m);
    json_t *rc = json_object_get(ref, "config");
    CHECK(c->vocab == json_integer_value(json_object_get(rc, "vocab")));
    CHECK(c->n_layers == json_integer_value(json_object_get(rc, "n_layers")));
    CHECK(c->n_heads == json_integer_value(json_object_get(rc, "n_q_h")));
    CHECK(c->n_kv_heads == json_integer_value(json_object_get(rc, "n_kv_h")));
    CHECK(c->hidden == json_integer_value(json_object_get(rc, "d")));
    CHECK(c->head_dim == json_integer_value(json_object_get(rc, "dqkv")));
    CHECK(c->ffn == json_integer_value(json_object_get(rc, "di")));
    CHECK(c->tie_embeddings);
    json_t *vals = json_object_get(ref, "values");
    CHECK(json_array_size(vals) >= 6);
    size_t i;
    json_t *v;
    json_array_foreach(vals, i, v) {
        const char *tensor = json_string_value(json_object_get(v, "tensor"));
        /* The tied head is our embedding tensor (listed once, under the HF embedding name). */
        const ModelParam *p = find_param(m, strcmp(tensor, "lm_head.weight") == 0 ? "model.embed_tokens.weight" : tensor);
        CHECK(p != NULL);
        if (!p) continue;
        size_t idx = (size_t)json_integer_value(json_object_get(v, "index"));
        CHECK(idx < p->numel);
        CHECK_NEAR(p->data[idx], json_number_value(json_object_get(v, "value")), 1e-6, 0);
        CHECK(p->data[idx] == (float)json_number_value(json_object_get(v, "value_in_file")));
    }
    /* lm_head[10] == embedding_table[10]: one tensor, so the logits of a hidden
     * vector equal its dot products with embedding rows. */
    const ModelParam *emb = find_param(m, "model.embed_tokens.weight");
    CHECK(find_param(m, "lm_head.weight") == NULL);
    float *logits = malloc(sizeof(float) * (size_t)c->vocab), h[128];
    for (int j = 0; j < c->hidden; j++) h[j] = emb->data[10 * c->hidden + j];
    model_logits_full(m, h, logits);
    double d = 0;
    for (int j = 0; j < c->hidden; j++) d += (double)h[j] * h[j];
    CHECK_NEAR(logits[10], d, 1e-4, 1e-5);
    free(logits);
    json_decref(ref);
    model_free(m);
}

static void test_greedy_decoding(void) {
    OprmError err = {{0}};
    json_error_t jerr;
    json_t *fx = json_load_file("tests/fixtures/engine/story_llama_greedy.json", 0, &jerr);
    CHECK(fx != NULL);
    Model *m = model_load(model_dir, NULL, &err);
    CHECK(m != NULL);
    if (!fx || !m) {
        json_decref(fx);
        model_free(m);
        return;
    }
    json_t *prompt = json_object_get(fx, "prompt_ids"), *want = json_object_get(fx, "generated_ids");
    int np = (int)json_array_size(prompt), ng = (int)json_array_size(want);
    CHECK(np == 6 && ng == 32);
    const ModelConfig *c = model_config(m);
    int32_t ids[64];
    for (int i = 0; i < np; i++) ids[i] = (int32_t)json_integer_value(json_array_get(prompt, (size_t)i));
    float *h = malloc(sizeof(float) * (size_t)c->hidden), *logits = malloc(sizeof(float) * (size_t)c->vocab);
    int n = np, same = 0;
    for (int step = 0; step < ng; step++) {
        int32_t len = n;
        SeqBatch b = {ids, &len, 1, NULL};
        CHECK(model_forward(m, &b, 0, h, &err) == 0);
        model_logits_full(m, h, logits);
        int best = 0;
        for (int v = 1; v < c->vocab; v++)
            if (logits[v] > logits[best]) best = v;
        int expect = (int)json_integer_value(json_array_get(want, (size_t)step));
        same += best == expect;
        if (best != expect) fprintf(stderr, "step %d: got %d, PyTorch %d\n", step, best, expect);
        ids[n++] = expect; /* keep following PyTorch's path so one flip does not cascade */
    }
    CHECK(same == ng);
    free(h);
    free(logits);
    json_decref(fx);
    model_free(m);
}

int main(void) {
    snprintf(model_dir, sizeof model_dir, "%s/models/story-llama", shared_data_dir());
    /* A tiny model decoding one token at a time: threads only add barrier waits
     * (test_model.c checks that one and two threads agree). */
    model_set_threads(1);
    RUN_SHARED(test_reference_values, "models/story-llama");
    RUN_SHARED(test_greedy_decoding, "models/story-llama");
    return test_summary();
}
