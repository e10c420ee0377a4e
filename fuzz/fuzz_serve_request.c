/* `oprm serve` request bodies: the JSON the server would parse (same flags
 * as server.c's answer_post), through the route handler, the batcher and a
 * deterministic scoring backend, to the response JSON. The first byte picks
 * the route; the rest is the body. Invariants: every item the backend sees
 * has a known role on each turn and NUL-terminated strings; a route either
 * answers JSON that serialises, or fails with a 4xx/5xx status and a
 * message. */
#include <jansson.h>
#include <math.h>

#include "fuzz_util.h"
#include "serve/routes.h"

static Batcher *sv_fz_batcher;
static ServeMetrics sv_fz_metrics;
static RouteEnv sv_fz_env;

static uint64_t sv_fz_fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

static int sv_fz_known_role(const char *r) {
    return r && (!strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant"));
}

static int sv_fz_item_tokens(const ScoreRequest *it) {
    FUZZ_ASSERT(it->n_turns >= 0 && it->response != NULL);
    size_t n = strlen(it->response);
    for (int t = 0; t < it->n_turns; t++) {
        FUZZ_ASSERT(sv_fz_known_role(it->turns[t].role) && it->turns[t].content != NULL);
        n += strlen(it->turns[t].content);
    }
    return 12 + (int)(n / 4);
}

static int sv_fz_fake_score(void *ctx, const ScoreRequest *items, int n, ScoreResult *out, OprmError *err) {
    for (int i = 0; i < n; i++) {
        const ScoreRequest *it = &items[i];
        uint64_t h = 1469598103934665603ull;
        for (int t = 0; t < it->n_turns; t++) h = sv_fz_fnv(sv_fz_fnv(h, it->turns[t].role), it->turns[t].content);
        h = sv_fz_fnv(h, it->response);
        ScoreResult *r = &out[i];
        memset(r, 0, sizeof *r);
        double sum = 0, m = 0;
        for (int k = 0; k < 9; k++) sum += (r->p[k] = 1.0 + (double)((h >> (k * 7)) & 0x7f));
        for (int k = 0; k < 9; k++) m += (k + 1) * (r->p[k] /= sum);
        r->mean = m;
        r->mode = 1 + (int)(h % 9);
        r->n_tokens = sv_fz_item_tokens(it);
        r->truncated = r->n_tokens > 500;
    }
    return 0;
}

static int sv_fz_fake_count(void *ctx, const ScoreRequest *item, OprmError *err) { return sv_fz_item_tokens(item); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    static ServeBackend backend = {NULL, sv_fz_fake_score, sv_fz_fake_count};
    metrics_init(&sv_fz_metrics);
    BatcherConfig cfg = {.queue_items = 64, .max_batch_items = 16, .max_batch_tokens = 4096,
                         .batch_window_ms = 0, .max_request_tokens = 20000};
    sv_fz_batcher = batcher_start(&backend, &cfg, &sv_fz_metrics);
    FUZZ_ASSERT(sv_fz_batcher != NULL);
    sv_fz_env = (RouteEnv){sv_fz_batcher, 32, "fuzz-model"};
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int route = data[0] & 3;
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr);
    if (!body) return 0;
    RouteError e = {0, ""};
    json_t *out = NULL;
    switch (route) {
    case 0: out = route_get_reward(&sv_fz_env, body, &e); break;
    case 1: out = route_score_evaluation(&sv_fz_env, body, &e); break;
    case 2: out = route_score(&sv_fz_env, body, &e); break;
    default: out = route_compare(&sv_fz_env, body, &e); break;
    }
    json_decref(body);
    if (out) {
        char *text = json_dumps(out, JSON_COMPACT);
        FUZZ_ASSERT(text != NULL);
        free(text);
        json_decref(out);
    } else {
        FUZZ_ASSERT(e.code >= 400 && e.code <= 599);
        FUZZ_ASSERT(e.msg[0] != '\0');
    }
    return 0;
}
