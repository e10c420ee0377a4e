#include "train/oprm_meta.h"

#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

json_t *oprm_meta_to_json(const OprmMeta *m) {
    json_t *digits = json_array();
    for (int i = 0; i < 9; i++) json_array_append_new(digits, json_integer(m->digit_ids[i]));
    json_t *scoring = json_object();
    json_object_set_new(scoring, "chat_format", str_or_null(m->chat_format));
    json_object_set_new(scoring, "system", str_or_null(m->system_prompt));
    json_object_set_new(scoring, "user_template", str_or_null(m->user_template));
    json_object_set_new(scoring, "cue", str_or_null(m->cue));
    json_object_set_new(scoring, "levels", json_integer(9));
    json_object_set_new(scoring, "digit_ids", digits);
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("oprm"));
    json_object_set_new(root, "version", json_integer(OPRM_META_VERSION));
    json_object_set_new(root, "head", str_or_null(m->head));
    json_object_set_new(root, "scoring", scoring);
    json_object_set_new(root, "base_model", str_or_null(m->base_model));
    json_object_set_new(root, "training_args", m->training_args ? json_deep_copy(m->training_args) : json_null());
    return root;
}

/* Optional string field: absent or null -> NULL; anything else but a string is an error. */
static int get_str(const json_t *obj, const char *key, const char *where, int required, char **out,
                   OprmError *err) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required) return oprm_fail(err, "%s: missing field \"%s\"", where, key);
        return 0;
    }
    if (!json_is_string(v)) return oprm_fail(err, "%s: field \"%s\" must be a string", where, key);
    *out = xstrdup(json_string_value(v));
    return 0;
}

int oprm_meta_from_json(const json_t *root, OprmMeta *m, OprmError *err) {
    memset(m, 0, sizeof *m);
    if (!json_is_object(root)) return oprm_fail(err, "oprm.json: top level must be an object");
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "oprm"))
        return oprm_fail(err, "oprm.json: field \"format\" must be \"oprm\"");
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != OPRM_META_VERSION)
        return oprm_fail(err, "oprm.json: unsupported \"version\" (this oprm reads version %d)", OPRM_META_VERSION);
    json_t *scoring = json_object_get(root, "scoring");
    if (!json_is_object(scoring)) return oprm_fail(err, "oprm.json: missing object \"scoring\"");
    if (get_str(root, "head", "oprm.json", 1, &m->head, err) ||
        get_str(scoring, "chat_format", "oprm.json scoring", 1, &m->chat_format, err) ||
        get_str(scoring, "system", "oprm.json scoring", 1, &m->system_prompt, err) ||
        get_str(scoring, "user_template", "oprm.json scoring", 0, &m->user_template, err) ||
        get_str(scoring, "cue", "oprm.json scoring", 1, &m->cue, err) ||
        get_str(root, "base_model", "oprm.json", 0, &m->base_model, err))
        goto fail;
    if (strcmp(m->head, "oprm") && strcmp(m->head, "bt")) {
        oprm_fail(err, "oprm.json: field \"head\" is \"%s\", expected \"oprm\" or \"bt\"", m->head);
        goto fail;
    }
    json_t *levels = json_object_get(scoring, "levels");
    if (levels && (!json_is_integer(levels) || json_integer_value(levels) != 9)) {
        oprm_fail(err, "oprm.json scoring: \"levels\" must be 9");
        goto fail;
    }
    json_t *d = json_object_get(scoring, "digit_ids");
    if (!json_is_array(d) || json_array_size(d) != 9) {
        oprm_fail(err, "oprm.json scoring: \"digit_ids\" must be an array of 9 token ids");
        goto fail;
    }
    for (int i = 0; i < 9; i++) {
        json_t *x = json_array_get(d, (size_t)i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
            oprm_fail(err, "oprm.json scoring: digit_ids[%d] must be a non-negative token id", i);
            goto fail;
        }
        m->digit_ids[i] = (int32_t)json_integer_value(x);
        for (int j = 0; j < i; j++)
            if (m->digit_ids[j] == m->digit_ids[i]) {
                oprm_fail(err, "oprm.json scoring: digit_ids[%d] and [%d] are both %d", j, i, m->digit_ids[i]);
                goto fail;
            }
    }
    json_t *args = json_object_get(root, "training_args");
    if (args && !json_is_null(args)) {
        if (!json_is_object(args)) {
            oprm_fail(err, "oprm.json: \"training_args\" must be an object");
            goto fail;
        }
        m->training_args = json_deep_copy(args);
    }
    return 0;
fail:
    oprm_meta_free(m);
    return -1;
}

int oprm_meta_write(const OprmMeta *meta, const char *path, OprmError *err) {
    json_t *root = oprm_meta_to_json(meta);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(root);
    if (!text) return oprm_fail(err, "%s: cannot serialise oprm.json", path);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n';
    int rc = write_file_atomic(path, text, n + 1, err);
    free(text);
    return rc;
}

int oprm_meta_read(const char *path, OprmMeta *meta, OprmError *err) {
    memset(meta, 0, sizeof *meta);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return oprm_fail(err, "%s:%d: invalid JSON: %s", path, je.line, je.text);
    int rc = oprm_meta_from_json(root, meta, err);
    json_decref(root);
    if (rc) oprm_prefix(err, "%s: ", path);
    return rc;
}

void oprm_meta_free(OprmMeta *m) {
    free(m->head);
    free(m->chat_format);
    free(m->system_prompt);
    free(m->user_template);
    free(m->cue);
    free(m->base_model);
    if (m->training_args) json_decref(m->training_args);
    memset(m, 0, sizeof *m);
}
