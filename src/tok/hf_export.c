#include "tok/hf_export.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "tok/tokenizer.h"

const char *const CHAT_PLAIN_TEMPLATE =
    "{%- for message in messages %}{{- message['role'] | capitalize + ': ' + message['content'] + '\\n\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- 'Assistant: ' }}{%- endif %}";

/* The ids a tokenizer adds around a text (BOS/EOS), as one vector. */
static int special_frame(const Tokenizer *t, IdVec *out, OprmError *err) {
    IdVec plain = {0};
    int rc = tok_encode(t, "a", 1, 1, out, err) || tok_encode(t, "a", 1, 0, &plain, err);
    if (rc == 0 && plain.n == 1) { /* keep only the added ids: drop the text's own */
        for (size_t i = 0; i < out->n; i++)
            if (out->v[i] == plain.v[0]) {
                memmove(out->v + i, out->v + i + 1, (out->n - i - 1) * sizeof *out->v);
                out->n--;
                break;
            }
    }
    idvec_free(&plain);
    return rc ? -1 : 0;
}

/* Whether transformers' PreTrainedTokenizerFast (tokenizer.json alone) adds
 * the same special tokens as oprm does with the config applied. A tokenizer
 * oprm cannot load (none was used to train, e.g. a test's stand-in) counts as
 * "not the same": the file is then left as it is. */
static int same_without_config(const char *dir, OprmError *err) {
    char *tj = path_join(dir, "tokenizer.json");
    OprmError ignored = {{0}};
    Tokenizer *with = tok_load(dir, &ignored), *without = with ? tok_load(tj, &ignored) : NULL;
    free(tj);
    if (!with || !without) {
        tok_free(with);
        tok_free(without);
        return 0;
    }
    IdVec a = {0}, b = {0};
    int rc = special_frame(with, &a, err) || special_frame(without, &b, err) ? -1
             : a.n == b.n && (a.n == 0 || !memcmp(a.v, b.v, a.n * sizeof *a.v));
    idvec_free(&a);
    idvec_free(&b);
    tok_free(with);
    tok_free(without);
    return rc;
}

int tok_export_for_hf(const char *dir, const char *chat_format, OprmError *err) {
    char *tj = path_join(dir, "tokenizer.json"), *path = path_join(dir, "tokenizer_config.json");
    int rc = 0;
    json_t *cfg = NULL;
    if (!file_exists(tj)) goto done;
    if (file_exists(path)) {
        json_error_t je;
        /* model_max_length is often 1e30 written as an integer */
        cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je);
        if (!json_is_object(cfg)) {
            rc = oprm_fail(err, "%s:%d: cannot parse: %s", path, je.line, cfg ? "not an object" : je.text);
            goto done;
        }
    } else {
        cfg = json_object();
    }
    int changed = 0;
    const char *cls = json_string_value(json_object_get(cfg, "tokenizer_class"));
    if (!cls || strcmp(cls, "PreTrainedTokenizerFast") != 0) {
        int same = same_without_config(dir, err);
        if (same < 0) {
            rc = -1;
            goto done;
        }
        if (same) {
            if (cls) json_object_set_new(cfg, "oprm_original_tokenizer_class", json_string(cls));
            json_object_set_new(cfg, "tokenizer_class", json_string("PreTrainedTokenizerFast"));
            changed = 1;
        }
    }
    json_t *tmpl = json_object_get(cfg, "chat_template");
    if (chat_format && !strcmp(chat_format, "plain") && (!tmpl || json_is_null(tmpl))) {
        json_object_set_new(cfg, "chat_template", json_string(CHAT_PLAIN_TEMPLATE));
        changed = 1;
    }
    if (changed) {
        char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        StrBuf sb = {0};
        sb_puts(&sb, text);
        sb_puts(&sb, "\n");
        rc = write_file_atomic(path, sb.s, sb.n, err);
        sb_free(&sb);
        free(text);
    }
done:
    json_decref(cfg);
    free(tj);
    free(path);
    return rc;
}
