/* config.json -> ModelConfig. An accepted config must be sane enough for the
 * engine to size its buffers from and compute with (no zero or negative RoPE
 * base, norm epsilon or llama3 scaling factors), and must survive model_config_to_json ->
 * model_config_from_json unchanged. */
#include <jansson.h>

#include "fuzz_util.h"
#include "model/model.h"
#include "model/model_internal.h"

static int cfg_fz_same_config(const ModelConfig *a, const ModelConfig *b) {
    return a->arch == b->arch && !strcmp(a->architecture, b->architecture) && a->hidden == b->hidden &&
           a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->ffn == b->ffn && a->vocab == b->vocab && a->max_pos == b->max_pos &&
           a->rope_theta == b->rope_theta && a->rms_eps == b->rms_eps && a->tie_embeddings == b->tie_embeddings &&
           a->qkv_bias == b->qkv_bias && a->qk_norm == b->qk_norm && a->rope_factor == b->rope_factor &&
           a->rope_low_freq_factor == b->rope_low_freq_factor &&
           a->rope_high_freq_factor == b->rope_high_freq_factor &&
           a->rope_original_max_pos == b->rope_original_max_pos && a->bos_id == b->bos_id && a->eos_id == b->eos_id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, 0, &jerr);
    if (!root) return 0;
    ModelConfig cfg;
    OprmError err;
    if (model_config_from_json(root, "config.json", &cfg, &err) == 0) {
        FUZZ_ASSERT(cfg.hidden > 0 && cfg.n_layers > 0 && cfg.n_heads > 0 && cfg.n_kv_heads > 0);
        FUZZ_ASSERT(cfg.head_dim > 0 && cfg.ffn > 0 && cfg.vocab > 0);
        FUZZ_ASSERT(cfg.n_heads % cfg.n_kv_heads == 0);
        /* numbers the engine divides by or takes powers of: a silent NaN model otherwise */
        FUZZ_ASSERT(cfg.rope_theta > 0 && cfg.rms_eps >= 0);
        if (cfg.rope_factor != 0)
            FUZZ_ASSERT(cfg.rope_factor > 0 && cfg.rope_low_freq_factor > 0 &&
                        cfg.rope_high_freq_factor > cfg.rope_low_freq_factor && cfg.rope_original_max_pos > 0);
        json_t *back = model_config_to_json(&cfg);
        FUZZ_ASSERT(back != NULL);
        ModelConfig cfg2;
        int rc = model_config_from_json(back, "config.json", &cfg2, &err);
        if (rc) fprintf(stderr, "re-reading a written config failed: %s\n", err.msg);
        FUZZ_ASSERT(rc == 0 && cfg_fz_same_config(&cfg, &cfg2));
        json_decref(back);
    } else {
        FUZZ_ASSERT(err.msg[0] != '\0');
    }
    json_decref(root);
    return 0;
}
