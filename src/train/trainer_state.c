#include "train/trainer_state.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"

void trainer_state_push_loss(TrainerState *st, double loss) {
    st->loss_history = xrealloc(st->loss_history, (st->loss_count + 1) * sizeof(double));
    st->loss_history[st->loss_count++] = loss;
}

void trainer_state_set_order(TrainerState *st, const int64_t *order, size_t n) {
    free(st->data_order);
    st->data_order = xmalloc((n ? n : 1) * sizeof(int64_t));
    if (n) memcpy(st->data_order, order, n * sizeof(int64_t));
    st->data_count = n;
}

/* 64-bit words as 16 hex digits: JSON numbers cannot hold them exactly. */
static json_t *u64_hex(uint64_t x) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016" PRIx64, x);
    return json_string(buf);
}

static int parse_u64_hex(const json_t *v, uint64_t *out) {
    if (!json_is_string(v)) return -1;
    const char *s = json_string_value(v);
    if (strlen(s) != 16) return -1;
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        x = x << 4 | (uint64_t)d;
    }
    *out = x;
    return 0;
}

int trainer_state_write(const TrainerState *st, const char *path, OprmError *err) {
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("oprm-trainer-state"));
    json_object_set_new(root, "version", json_integer(TRAINER_STATE_VERSION));
    json_object_set_new(root, "global_step", json_integer(st->global_step));
    json_object_set_new(root, "max_steps", json_integer(st->max_steps));
    json_object_set_new(root, "epoch", json_integer(st->epoch));
    json_object_set_new(root, "data_position", json_integer(st->data_position));
    json_object_set_new(root, "seed", u64_hex(st->seed));
    json_t *rng = json_array();
    for (int i = 0; i < 4; i++) json_array_append_new(rng, u64_hex(st->rng.s[i]));
    json_object_set_new(root, "rng_state", rng);
    json_t *losses = json_array();
    for (size_t i = 0; i < st->loss_count; i++)
        json_array_append_new(losses, isfinite(st->loss_history[i]) ? json_real(st->loss_history[i]) : json_null());
    json_object_set_new(root, "loss_history", losses);
    json_object_set_new(root, "extra", st->extra ? json_deep_copy(st->extra) : json_object());
    /* Last: the longest field, so the small ones stay readable at the top. */
    json_t *order = json_array();
    for (size_t i = 0; i < st->data_count; i++) json_array_append_new(order, json_integer(st->data_order[i]));
    json_object_set_new(root, "data_order", order);
    /* JSON_REAL_PRECISION(17): doubles round-trip bit-exactly. */
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!text) return oprm_fail(err, "%s: cannot serialise trainer state", path);
    int rc = write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

static int get_int(const json_t *root, const char *key, int64_t *out, const char *path, OprmError *err) {
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v)) return oprm_fail(err, "%s: field \"%s\" missing or not an integer", path, key);
    *out = json_integer_value(v);
    return 0;
}

int trainer_state_read(const char *path, TrainerState *st, OprmError *err) {
    memset(st, 0, sizeof *st);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return oprm_fail(err, "%s:%d: invalid JSON: %s", path, je.line, je.text);
    json_t *fmt = json_object_get(root, "format"), *ver = json_object_get(root, "version");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "oprm-trainer-state")) {
        oprm_fail(err, "%s: not an oprm trainer state (field \"format\")", path);
        goto fail;
    }
    if (!json_is_integer(ver) || json_integer_value(ver) != TRAINER_STATE_VERSION) {
        oprm_fail(err, "%s: unsupported \"version\" (this oprm reads version %d)", path, TRAINER_STATE_VERSION);
        goto fail;
    }
    if (get_int(root, "global_step", &st->global_step, path, err) ||
        get_int(root, "max_steps", &st->max_steps, path, err) || get_int(root, "epoch", &st->epoch, path, err) ||
        get_int(root, "data_position", &st->data_position, path, err))
        goto fail;
    if (parse_u64_hex(json_object_get(root, "seed"), &st->seed)) {
        oprm_fail(err, "%s: field \"seed\" must be 16 lowercase hex digits", path);
        goto fail;
    }
    json_t *rng = json_object_get(root, "rng_state");
    if (!json_is_array(rng) || json_array_size(rng) != 4) {
        oprm_fail(err, "%s: field \"rng_state\" must be 4 hex words", path);
        goto fail;
    }
    for (int i = 0; i < 4; i++)
        if (parse_u64_hex(json_array_get(rng, (size_t)i), &st->rng.s[i])) {
            oprm_fail(err, "%s: rng_state[%d] must be 16 lowercase hex digits", path, i);
            goto fail;
        }
    json_t *losses = json_object_get(root, "loss_history");
    if (!json_is_array(losses)) {
        oprm_fail(err, "%s: field \"loss_history\" must be an array", path);
        goto fail;
    }
    size_t i;
    json_t *x;
    json_array_foreach(losses, i, x) {
        if (!json_is_number(x) && !json_is_null(x)) {
            oprm_fail(err, "%s: loss_history[%zu] is not a number", path, i);
            goto fail;
        }
        trainer_state_push_loss(st, json_is_null(x) ? NAN : json_number_value(x));
    }
    json_t *order = json_object_get(root, "data_order");
    if (!json_is_array(order)) {
        oprm_fail(err, "%s: field \"data_order\" must be an array", path);
        goto fail;
    }
    size_t n = json_array_size(order);
    st->data_order = xmalloc((n ? n : 1) * sizeof(int64_t));
    st->data_count = n;
    unsigned char *seen = xcalloc(n ? n : 1, 1);
    json_array_foreach(order, i, x) {
        json_int_t v = json_is_integer(x) ? json_integer_value(x) : -1;
        if (v < 0 || (size_t)v >= n || seen[v]) {
            free(seen);
            oprm_fail(err, "%s: data_order[%zu] breaks the permutation of 0..%zu", path, i, n ? n - 1 : 0);
            goto fail;
        }
        seen[v] = 1;
        st->data_order[i] = v;
    }
    free(seen);
    if (st->data_position < 0 || (size_t)st->data_position > n || st->global_step < 0 || st->epoch < 0) {
        oprm_fail(err, "%s: data_position %lld outside [0, %zu] or negative step/epoch", path,
                  (long long)st->data_position, n);
        goto fail;
    }
    json_t *extra = json_object_get(root, "extra");
    if (json_is_object(extra)) st->extra = json_deep_copy(extra);
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    trainer_state_free(st);
    return -1;
}

void trainer_state_free(TrainerState *st) {
    free(st->data_order);
    free(st->loss_history);
    if (st->extra) json_decref(st->extra);
    memset(st, 0, sizeof *st);
}
