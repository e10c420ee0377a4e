/* config.json as transformers writes it (issue 17): transformers >= 5 puts
 * rope_theta and the rope scaling into "rope_parameters" and writes no
 * top-level rope_theta/rope_scaling; the loader must read them (before the fix
 * it used theta 10000 and no scaling: silently wrong logits). And what oprm
 * writes must mean the same to transformers (Mistral: sliding_window null,
 * since MistralConfig's default is 4096). */
#include <jansson.h>

#include "model/model.h"
#include "model/model_internal.h"
#include "test.h"

static int parse(const char *text, ModelConfig *cfg, OprmError *err) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    CHECK(j != NULL);
    int rc = j ? model_config_from_json(j, "config.json", cfg, err) : -1;
    json_decref(j);
    return rc;
}

#define BASE "\"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, " \
             "\"intermediate_size\": 48, \"vocab_size\": 48"

static void test_rope_parameters(void) {
    ModelConfig c;
    OprmError err = {{0}};
    CHECK(parse("{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"rope_parameters\": "
                "{\"rope_theta\": 1000000.0, \"rope_type\": \"default\"}}", &c, &err) == 0);
    CHECK_NEAR(c.rope_theta, 1e6, 0, 0);
    CHECK(c.rope_factor == 0);
    CHECK(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_parameters\": {\"factor\": 8.0, "
                "\"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, \"original_max_position_embeddings\": 32, "
                "\"rope_theta\": 500000.0, \"rope_type\": \"llama3\"}}", &c, &err) == 0);
    CHECK_NEAR(c.rope_theta, 5e5, 0, 0);
    CHECK_NEAR(c.rope_factor, 8.0, 0, 0);
    CHECK_NEAR(c.rope_high_freq_factor, 4.0, 0, 0);
    CHECK(c.rope_original_max_pos == 32);
    /* the old layout still reads */
    CHECK(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_theta\": 250000.0, "
                "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 4.0, \"low_freq_factor\": 1.0, "
                "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}}", &c, &err) == 0);
    CHECK_NEAR(c.rope_theta, 2.5e5, 0, 0);
    CHECK_NEAR(c.rope_factor, 4.0, 0, 0);
    /* what the engine does not compute is refused, naming the field */
    CHECK(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_parameters\": "
                "{\"rope_theta\": 10000.0, \"rope_type\": \"yarn\", \"factor\": 4.0}}", &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "yarn");
    CHECK(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_parameters\": "
                "{\"full_attention\": {\"rope_theta\": 10000.0, \"rope_type\": \"default\"}}}", &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "rope_parameters");
    CHECK(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_parameters\": "
                "{\"rope_theta\": -1, \"rope_type\": \"default\"}}", &c, &err) == -1);
}

static void test_written_config(void) {
    ModelConfig c;
    OprmError err = {{0}};
    CHECK(parse("{\"architectures\": [\"MistralForCausalLM\"], " BASE ", \"sliding_window\": null, "
                "\"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"default\"}}", &c, &err) == 0);
    json_t *j = model_config_to_json(&c);
    json_t *sw = json_object_get(j, "sliding_window");
    CHECK(sw != NULL && json_is_null(sw));
    CHECK_NEAR(json_number_value(json_object_get(j, "rope_theta")), 1e6, 0, 0);
    json_decref(j);
    CHECK(parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}", &c, &err) == 0);
    j = model_config_to_json(&c);
    CHECK(json_object_get(j, "sliding_window") == NULL);
    json_decref(j);
}

int main(void) {
    RUN(test_rope_parameters);
    RUN(test_written_config);
    return test_summary();
}
