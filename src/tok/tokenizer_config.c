/* What encode(add_special) adds, and tokenizer_config.json.
 * The post-processor (TemplateProcessing, RobertaProcessing, BertProcessing,
 * ByteLevel, Sequence) gives the ids around a single sequence. For the
 * tokenizer classes whose Python constructor rebuilds that template from
 * add_bos_token/add_eos_token (LlamaTokenizer(Fast), CodeLlama, Gemma), those
 * flags in tokenizer_config.json win, as in transformers. */
#include <stdlib.h>
#include <string.h>

#include "tok/tokenizer_internal.h"

static int template_special(Tokenizer *t, json_t *specials, const char *name, IdVec *dst, OprmError *err) {
    json_t *entry = json_object_get(specials, name);
    json_t *ids = json_object_get(entry, "ids");
    if (json_is_array(ids)) {
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) idvec_push(dst, (int32_t)json_integer_value(v));
        return 0;
    }
    int32_t id = tok_token_id(t, name);
    if (id < 0) return oprm_fail(err, "post_processor: special token '%s' is unknown", name);
    idvec_push(dst, id);
    return 0;
}

static int parse_template(Tokenizer *t, json_t *pp, OprmError *err) {
    json_t *single = json_object_get(pp, "single");
    json_t *specials = json_object_get(pp, "special_tokens");
    if (!json_is_array(single)) return oprm_fail(err, "post_processor TemplateProcessing: missing \"single\" list");
    int seen_sequence = 0;
    size_t i;
    json_t *item;
    json_array_foreach(single, i, item) {
        json_t *sp = json_object_get(item, "SpecialToken");
        if (json_object_get(item, "Sequence")) {
            seen_sequence = 1;
        } else if (sp) {
            const char *name = json_string_value(json_object_get(sp, "id"));
            if (!name) return oprm_fail(err, "post_processor TemplateProcessing: single[%zu] has no id", i);
            if (template_special(t, specials, name, seen_sequence ? &t->suffix_ids : &t->prefix_ids, err)) return -1;
        } else {
            return oprm_fail(err, "post_processor TemplateProcessing: single[%zu] is neither SpecialToken nor Sequence", i);
        }
    }
    return 0;
}

static int pair_id(Tokenizer *t, json_t *pp, const char *key, IdVec *dst, OprmError *err) {
    json_t *v = json_object_get(pp, key);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 1)))
        return oprm_fail(err, "post_processor: \"%s\" must be [token, id]", key);
    idvec_push(dst, (int32_t)json_integer_value(json_array_get(v, 1)));
    return 0;
}

int tok_parse_post_processor(Tokenizer *t, json_t *pp, OprmError *err) {
    if (!pp || json_is_null(pp)) return 0;
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (!type) return oprm_fail(err, "post_processor: missing \"type\"");
    if (!strcmp(type, "ByteLevel")) return 0; /* only adjusts offsets */
    if (!strcmp(type, "TemplateProcessing")) return parse_template(t, pp, err);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))
        return pair_id(t, pp, "cls", &t->prefix_ids, err) || pair_id(t, pp, "sep", &t->suffix_ids, err) ? -1 : 0;
    if (!strcmp(type, "Sequence")) {
        json_t *items = json_object_get(pp, "processors");
        if (!json_is_array(items)) return oprm_fail(err, "post_processor Sequence: missing \"processors\" list");
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item) if (tok_parse_post_processor(t, item, err)) return -1;
        return 0;
    }
    return oprm_fail(err, "post_processor type '%s' is not supported", type);
}

/* A special token in tokenizer_config.json: a string or {"content": ...}. */
static int config_token(Tokenizer *t, json_t *cfg, const char *key, int32_t *id, OprmError *err) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return 0;
    const char *s = json_is_string(v) ? json_string_value(v) : json_string_value(json_object_get(v, "content"));
    if (!s) return oprm_fail(err, "\"%s\" must be a string or an object with \"content\"", key);
    *id = tok_token_id(t, s);
    if (*id < 0) return oprm_fail(err, "%s '%s' is not a token of the tokenizer", key, s);
    return 0;
}

int tok_apply_config(Tokenizer *t, json_t *cfg, OprmError *err) {
    if (!json_is_object(cfg)) return oprm_fail(err, "the top level must be an object");
    if (config_token(t, cfg, "bos_token", &t->bos_id, err) || config_token(t, cfg, "eos_token", &t->eos_id, err))
        return -1;
    json_t *tmpl = json_object_get(cfg, "chat_template");
    if (json_is_string(tmpl)) {
        t->chat_template = xstrdup(json_string_value(tmpl));
    } else if (json_is_array(tmpl)) {
        /* [{"name": "default", "template": ...}, ...] */
        size_t i;
        json_t *item;
        json_array_foreach(tmpl, i, item) {
            const char *name = json_string_value(json_object_get(item, "name"));
            const char *body = json_string_value(json_object_get(item, "template"));
            if (name && body && !strcmp(name, "default")) t->chat_template = xstrdup(body);
        }
    }
    const char *cls = json_string_value(json_object_get(cfg, "tokenizer_class"));
    int rebuilds = cls && (!strncmp(cls, "LlamaTokenizer", 14) || !strncmp(cls, "CodeLlamaTokenizer", 18) ||
                           !strncmp(cls, "GemmaTokenizer", 14));
    json_t *add_bos = json_object_get(cfg, "add_bos_token"), *add_eos = json_object_get(cfg, "add_eos_token");
    if (rebuilds && (json_is_boolean(add_bos) || json_is_boolean(add_eos))) {
        /* transformers' defaults for these classes: add_bos True, add_eos False */
        int bos = add_bos ? json_is_true(add_bos) : 1, eos = json_is_true(add_eos);
        t->prefix_ids.n = t->suffix_ids.n = 0;
        if (bos) {
            if (t->bos_id < 0) return oprm_fail(err, "add_bos_token is true but there is no bos_token");
            idvec_push(&t->prefix_ids, t->bos_id);
        }
        if (eos) {
            if (t->eos_id < 0) return oprm_fail(err, "add_eos_token is true but there is no eos_token");
            idvec_push(&t->suffix_ids, t->eos_id);
        }
    }
    return 0;
}
