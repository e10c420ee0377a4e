/* config.json -> ModelConfig, refusing what the engine does not compute
 * (rather than silently computing something else). */
#include <jansson.h>
#include <string.h>

#include "model/model.h"
#include "model/model_internal.h"

static int get_int(json_t *root, const char *key, int dflt, int required, int *out, const char *path,
                   OprmError *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return oprm_fail(err, "%s: missing field \"%s\"", path, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0x7fffffff)
        return oprm_fail(err, "%s: field \"%s\" must be a non-negative integer", path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_num(json_t *root, const char *key, double dflt, double *out, const char *path, OprmError *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v)) return oprm_fail(err, "%s: field \"%s\" must be a number", path, key);
    *out = json_number_value(v);
    return 0;
}

static int get_bool(json_t *root, const char *key, int dflt) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return dflt;
    return json_is_true(v);
}

/* bos/eos may be an integer or a list of integers (first one is used). */
static int get_token_id(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    if (json_is_array(v) && json_array_size(v) > 0) v = json_array_get(v, 0);
    /* a negative (or out-of-int) id is no id: -1, which is what "absent" means */
    return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 0x7fffffff
               ? (int)json_integer_value(v)
               : -1;
}

int model_config_from_json(json_t *root, const char *path, ModelConfig *cfg, OprmError *err) {
    memset(cfg, 0, sizeof *cfg);
    if (!json_is_object(root)) return oprm_fail(err, "%s: not a JSON object", path);
    json_t *archs = json_object_get(root, "architectures");
    const char *arch = NULL;
    if (json_is_array(archs) && json_array_size(archs) > 0 && json_is_string(json_array_get(archs, 0)))
        arch = json_string_value(json_array_get(archs, 0));
    if (!arch) return oprm_fail(err, "%s: missing \"architectures\" list", path);
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", arch);
    if (strcmp(arch, "LlamaForCausalLM") == 0) cfg->arch = ARCH_LLAMA;
    else if (strcmp(arch, "MistralForCausalLM") == 0) cfg->arch = ARCH_MISTRAL;
    else if (strcmp(arch, "Qwen2ForCausalLM") == 0) cfg->arch = ARCH_QWEN2;
    else if (strcmp(arch, "Qwen3ForCausalLM") == 0) cfg->arch = ARCH_QWEN3;
    else
        return oprm_fail(err,
                         "%s: unsupported architecture \"%s\" (supported: LlamaForCausalLM, MistralForCausalLM, "
                         "Qwen2ForCausalLM, Qwen3ForCausalLM)",
                         path, arch);

    if (get_int(root, "hidden_size", 0, 1, &cfg->hidden, path, err) || get_int(root, "num_hidden_layers", 0, 1, &cfg->n_layers, path, err) ||
        get_int(root, "num_attention_heads", 0, 1, &cfg->n_heads, path, err) ||
        get_int(root, "intermediate_size", 0, 1, &cfg->ffn, path, err) || get_int(root, "vocab_size", 0, 1, &cfg->vocab, path, err))
        return -1;
    if (cfg->hidden <= 0 || cfg->n_layers <= 0 || cfg->n_heads <= 0 || cfg->ffn <= 0 || cfg->vocab <= 0)
        return oprm_fail(err, "%s: hidden_size, num_hidden_layers, num_attention_heads, intermediate_size and "
                              "vocab_size must be positive", path);
    if (get_int(root, "num_key_value_heads", cfg->n_heads, 0, &cfg->n_kv_heads, path, err) ||
        get_int(root, "head_dim", cfg->hidden / cfg->n_heads, 0, &cfg->head_dim, path, err) ||
        get_int(root, "max_position_embeddings", 2048, 0, &cfg->max_pos, path, err) ||
        get_num(root, "rope_theta", 10000.0, &cfg->rope_theta, path, err) ||
        get_num(root, "rms_norm_eps", 1e-6, &cfg->rms_eps, path, err))
        return -1;
    if (!(cfg->rope_theta > 0) || !(cfg->rms_eps >= 0))
        return oprm_fail(err, "%s: rope_theta (%g) must be positive and rms_norm_eps (%g) non-negative", path,
                         cfg->rope_theta, cfg->rms_eps);
    if (cfg->n_kv_heads <= 0 || cfg->n_heads % cfg->n_kv_heads != 0)
        return oprm_fail(err, "%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", path,
                         cfg->n_heads, cfg->n_kv_heads);
    if (cfg->head_dim <= 0 || cfg->head_dim % 2 != 0)
        return oprm_fail(err, "%s: head_dim %d must be positive and even", path, cfg->head_dim);
    if (cfg->arch != ARCH_QWEN3 && json_object_get(root, "head_dim") == NULL && cfg->hidden % cfg->n_heads != 0)
        return oprm_fail(err, "%s: hidden_size %d is not divisible by num_attention_heads %d", path, cfg->hidden,
                         cfg->n_heads);
    cfg->tie_embeddings = get_bool(root, "tie_word_embeddings", 0);
    cfg->qkv_bias = cfg->arch == ARCH_QWEN2;
    cfg->qk_norm = cfg->arch == ARCH_QWEN3;
    cfg->bos_id = get_token_id(root, "bos_token_id");
    cfg->eos_id = get_token_id(root, "eos_token_id");

    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0))
        return oprm_fail(err, "%s: unsupported hidden_act (only \"silu\" is supported)", path);
    if (get_bool(root, "attention_bias", 0))
        return oprm_fail(err, "%s: unsupported option attention_bias=true for %s", path, arch);
    if (get_bool(root, "mlp_bias", 0)) return oprm_fail(err, "%s: unsupported option mlp_bias=true", path);
    json_t *sw = json_object_get(root, "sliding_window");
    if (cfg->arch == ARCH_MISTRAL && sw && !json_is_null(sw))
        return oprm_fail(err, "%s: unsupported option sliding_window=%lld for MistralForCausalLM (sliding-window "
                              "attention is not implemented; set it to null)",
                         path, json_is_integer(sw) ? (long long)json_integer_value(sw) : -1LL);
    if ((cfg->arch == ARCH_QWEN2 || cfg->arch == ARCH_QWEN3) && get_bool(root, "use_sliding_window", 0))
        return oprm_fail(err, "%s: unsupported option use_sliding_window=true (sliding-window attention is not "
                              "implemented)", path);

    /* transformers >= 5 writes "rope_parameters" (rope_theta, rope_type and the
     * scaling fields in one object) and no top-level rope_theta/rope_scaling;
     * older files have the latter. Reading only the old names would silently
     * use theta 10000 and no scaling for a new file. */
    json_t *rs = json_object_get(root, "rope_scaling");
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp) || !json_is_string(json_object_get(rp, "rope_type")))
            return oprm_fail(err, "%s: unsupported \"rope_parameters\" (expected one object with a \"rope_type\"; "
                                  "per-layer-type rope parameters are not supported)", path);
        if (get_num(rp, "rope_theta", cfg->rope_theta, &cfg->rope_theta, path, err)) return -1;
        if (!(cfg->rope_theta > 0))
            return oprm_fail(err, "%s: rope_parameters.rope_theta (%g) must be positive", path, cfg->rope_theta);
        if (!rs || json_is_null(rs)) rs = rp;
    }
    if (rs && !json_is_null(rs)) {
        json_t *type = json_object_get(rs, "rope_type");
        if (!json_is_string(type)) type = json_object_get(rs, "type");
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        if (strcmp(t, "llama3") == 0) {
            if (get_num(rs, "factor", 0, &cfg->rope_factor, path, err) ||
                get_num(rs, "low_freq_factor", 1.0, &cfg->rope_low_freq_factor, path, err) ||
                get_num(rs, "high_freq_factor", 4.0, &cfg->rope_high_freq_factor, path, err) ||
                get_int(rs, "original_max_position_embeddings", 8192, 0, &cfg->rope_original_max_pos, path, err))
                return -1;
            if (cfg->rope_factor <= 0 || cfg->rope_low_freq_factor <= 0 ||
                cfg->rope_high_freq_factor <= cfg->rope_low_freq_factor || cfg->rope_original_max_pos <= 0)
                return oprm_fail(err, "%s: invalid llama3 rope_scaling (factor %g, low %g, high %g, original max %d)",
                                 path, cfg->rope_factor, cfg->rope_low_freq_factor, cfg->rope_high_freq_factor,
                                 cfg->rope_original_max_pos);
        } else if (strcmp(t, "default") != 0) {
            return oprm_fail(err, "%s: unsupported rope_scaling type \"%s\" (supported: llama3)", path, t);
        }
    }
    return 0;
}

int model_config_load(const char *path, ModelConfig *cfg, OprmError *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return oprm_fail(err, "%s: cannot parse JSON: %s (line %d)", path, jerr.text, jerr.line);
    int rc = model_config_from_json(root, path, cfg, err);
    json_decref(root);
    return rc;
}

json_t *model_config_to_json(const ModelConfig *c) {
    json_t *r = json_object();
    json_t *a = json_array();
    json_array_append_new(a, json_string(c->architecture));
    json_object_set_new(r, "architectures", a);
    static const char *model_types[] = {"llama", "mistral", "qwen2", "qwen3"};
    json_object_set_new(r, "model_type", json_string(model_types[c->arch]));
    json_object_set_new(r, "hidden_size", json_integer(c->hidden));
    json_object_set_new(r, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(r, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(r, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(r, "head_dim", json_integer(c->head_dim));
    json_object_set_new(r, "intermediate_size", json_integer(c->ffn));
    json_object_set_new(r, "vocab_size", json_integer(c->vocab));
    json_object_set_new(r, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(r, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(r, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(r, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(r, "hidden_act", json_string("silu"));
    json_object_set_new(r, "torch_dtype", json_string("float32"));
    if (c->bos_id >= 0) json_object_set_new(r, "bos_token_id", json_integer(c->bos_id));
    if (c->eos_id >= 0) json_object_set_new(r, "eos_token_id", json_integer(c->eos_id));
    /* transformers' MistralConfig defaults sliding_window to 4096: say that
     * there is none, as the engine computes full attention */
    if (c->arch == ARCH_MISTRAL) json_object_set_new(r, "sliding_window", json_null());
    if (c->rope_factor > 0) {
        json_t *rs = json_object();
        json_object_set_new(rs, "rope_type", json_string("llama3"));
        json_object_set_new(rs, "factor", json_real(c->rope_factor));
        json_object_set_new(rs, "low_freq_factor", json_real(c->rope_low_freq_factor));
        json_object_set_new(rs, "high_freq_factor", json_real(c->rope_high_freq_factor));
        json_object_set_new(rs, "original_max_position_embeddings", json_integer(c->rope_original_max_pos));
        json_object_set_new(r, "rope_scaling", rs);
    }
    return r;
}
