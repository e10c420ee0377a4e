#include "serve/routes.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/score_json.h"
#include "serve/chat_split.h"
#include "ordinal/ordinal.h"
#include "util/err.h"

__attribute__((format(printf, 3, 4))) static json_t *fail(RouteError *e, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return NULL;
}

/* The items of one request and the memory their pointers refer to (strings
 * point into the request's JSON, which outlives the ItemSet). */
typedef struct {
    ScoreRequest *items;
    int n;
    ScoreTurn *one_turn;  /* n: a string prompt becomes one user turn */
    ScoreTurn **lists;    /* n: turns of a message-list prompt, or NULL */
    SplitChat *splits;    /* n: /get_reward's recovered conversations, or NULL */
    ScoreResult *results; /* n */
} ItemSet;

static void items_init(ItemSet *s, int n) {
    memset(s, 0, sizeof *s);
    s->n = n;
    size_t m = n > 0 ? (size_t)n : 1;
    s->items = xcalloc(m, sizeof *s->items);
    s->one_turn = xcalloc(m, sizeof *s->one_turn);
    s->lists = xcalloc(m, sizeof *s->lists);
    s->results = xcalloc(m, sizeof *s->results);
}

static void items_free(ItemSet *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->lists[i]);
        if (s->splits) split_chat_free(&s->splits[i]);
    }
    free(s->items);
    free(s->one_turn);
    free(s->lists);
    free(s->splits);
    free(s->results);
}

static const char *valid_role(const char *r) {
    if (!strcmp(r, "system")) return "system";
    if (!strcmp(r, "user")) return "user";
    if (!strcmp(r, "assistant")) return "assistant";
    return NULL;
}

/* A prompt is a string (one user turn) or a non-empty list of {role,
 * content} messages ending with a user turn. */
static int set_prompt(ItemSet *s, int i, json_t *prompt, const char *field, RouteError *e) {
    ScoreRequest *it = &s->items[i];
    if (json_is_string(prompt)) {
        s->one_turn[i].role = "user";
        s->one_turn[i].content = json_string_value(prompt);
        it->turns = &s->one_turn[i];
        it->n_turns = 1;
        return 0;
    }
    if (!json_is_array(prompt) || json_array_size(prompt) == 0) {
        fail(e, 400, "%s: expected a string or a non-empty list of {\"role\", \"content\"} messages", field);
        return -1;
    }
    size_t n = json_array_size(prompt);
    ScoreTurn *turns = xcalloc(n, sizeof *turns);
    s->lists[i] = turns;
    for (size_t k = 0; k < n; k++) {
        json_t *m = json_array_get(prompt, k);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role) || !json_is_string(content)) {
            fail(e, 400, "%s[%zu]: expected {\"role\": string, \"content\": string}", field, k);
            return -1;
        }
        turns[k].role = valid_role(json_string_value(role));
        if (!turns[k].role) {
            fail(e, 400, "%s[%zu].role: \"%.40s\" is not system, user or assistant", field, k,
                 json_string_value(role));
            return -1;
        }
        turns[k].content = json_string_value(content);
    }
    if (strcmp(turns[n - 1].role, "user")) {
        fail(e, 422, "%s: the last message must have role \"user\" (the turn being answered)", field);
        return -1;
    }
    it->turns = turns;
    it->n_turns = (int)n;
    return 0;
}

static int check_count(const RouteEnv *env, size_t n, const char *field, RouteError *e) {
    if ((long)n > env->max_request_items) {
        fail(e, 413, "%s has %zu items; the limit is %d per request (--max-request-items)", field, n,
             env->max_request_items);
        return -1;
    }
    return 0;
}

static int run_items(const RouteEnv *env, ItemSet *s, RouteError *e) {
    int code = batcher_score(env->batcher, s->items, s->n, s->results, e->msg, sizeof e->msg);
    if (code != 200) {
        e->code = code;
        return -1;
    }
    /* JSON has no NaN/inf; a non-finite score would silently drop out of the answer. */
    for (int i = 0; i < s->n; i++) {
        const ScoreResult *r = &s->results[i];
        int ok = isfinite(r->mean) && isfinite(r->std) && isfinite(r->entropy) && isfinite(r->bimodality);
        for (int k = 0; k < 9; k++) ok = ok && isfinite(r->p[k]);
        if (!ok) {
            fail(e, 500, "scorer returned a non-finite value for item %d", i);
            return -1;
        }
    }
    return 0;
}

static json_t *require_object(json_t *body, RouteError *e) {
    if (!json_is_object(body)) return fail(e, 400, "request body: expected a JSON object");
    return body;
}

json_t *route_get_reward(const RouteEnv *env, json_t *body, RouteError *e) {
    if (!require_object(body, e)) return NULL;
    json_t *query = json_object_get(body, "query");
    json_t *prompts = json_object_get(body, "prompts");
    json_t *labels = json_object_get(body, "labels");
    if (!json_is_array(query)) return fail(e, 400, "query: expected a list of strings (prompt + response texts)");
    if (prompts && !json_is_null(prompts) && !json_is_array(prompts))
        return fail(e, 400, "prompts: expected a list of strings or null");
    if (labels && !json_is_null(labels) && !json_is_array(labels))
        return fail(e, 400, "labels: expected a list or null");
    size_t n = json_array_size(query);
    int have_prompts = json_is_array(prompts);
    if (have_prompts && json_array_size(prompts) != n)
        return fail(e, 422, "prompts has %zu entries but query has %zu; they must match one to one",
                    json_array_size(prompts), n);
    if (check_count(env, n, "query", e) < 0) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(json_array_get(query, i))) return fail(e, 400, "query[%zu]: expected a string", i);
        if (have_prompts && !json_is_string(json_array_get(prompts, i)))
            return fail(e, 400, "prompts[%zu]: expected a string", i);
    }
    ItemSet s;
    items_init(&s, (int)n);
    s.splits = xcalloc(n ? n : 1, sizeof *s.splits);
    for (size_t i = 0; i < n; i++) {
        const char *q = json_string_value(json_array_get(query, i));
        if (have_prompts) {
            const char *p = json_string_value(json_array_get(prompts, i));
            if (split_query_with_prompt(q, p, &s.splits[i]) < 0) {
                items_free(&s);
                return fail(e, 422, "query[%zu] does not contain prompts[%zu]; cannot take the response out of it",
                            i, i);
            }
        } else {
            split_query_alone(q, &s.splits[i]);
        }
        s.items[i].turns = s.splits[i].turns;
        s.items[i].n_turns = s.splits[i].n;
        s.items[i].response = s.splits[i].response;
    }
    if (run_items(env, &s, e) < 0) {
        items_free(&s);
        return NULL;
    }
    json_t *rewards = json_array(), *std = json_array(), *ent = json_array(), *bim = json_array();
    json_t *mode = json_array(), *trunc = json_array(), *p[9];
    for (int k = 0; k < 9; k++) p[k] = json_array();
    for (size_t i = 0; i < n; i++) {
        const ScoreResult *r = &s.results[i];
        json_array_append_new(rewards, json_real(r->mean));
        json_array_append_new(std, json_real(r->std));
        json_array_append_new(ent, json_real(r->entropy));
        json_array_append_new(bim, json_real(r->bimodality));
        json_array_append_new(mode, json_integer(r->mode));
        json_array_append_new(trunc, json_real(r->truncated ? 1.0 : 0.0));
        for (int k = 0; k < 9; k++) json_array_append_new(p[k], json_real(r->p[k]));
    }
    items_free(&s);
    json_t *logs = json_pack("{s:o, s:o, s:o, s:o, s:o}", "oprm_std", std, "oprm_entropy", ent, "oprm_bimodality",
                             bim, "oprm_mode", mode, "oprm_truncated", trunc);
    for (int k = 0; k < 9; k++) {
        char key[24];
        snprintf(key, sizeof key, "oprm_p%d", k + 1);
        json_object_set_new(logs, key, p[k]);
    }
    return json_pack("{s:O, s:o, s:o}", "rewards", rewards, "scores", rewards, "extra_logs", logs);
}

json_t *route_score_evaluation(const RouteEnv *env, json_t *body, RouteError *e) {
    static atomic_ulong counter;
    if (!require_object(body, e)) return NULL;
    json_t *model = json_object_get(body, "model");
    json_t *messages = json_object_get(body, "messages");
    json_t *max_length = json_object_get(body, "max_length");
    if (!json_is_string(model)) return fail(e, 400, "model: expected a string");
    if (!json_is_array(messages)) return fail(e, 400, "messages: expected a list of strings");
    if (max_length && !json_is_null(max_length) &&
        (!json_is_integer(max_length) || json_integer_value(max_length) <= 0))
        return fail(e, 400, "max_length: expected a positive integer or null");
    size_t n = json_array_size(messages);
    if (n == 0) return fail(e, 400, "messages: must not be empty");
    if (check_count(env, n, "messages", e) < 0) return NULL;
    ItemSet s;
    items_init(&s, (int)n);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(messages, i);
        if (!json_is_string(m)) {
            items_free(&s);
            return fail(e, 400, "messages[%zu]: expected a string", i);
        }
        /* A message is a whole text to rate: the response to an empty user turn. */
        s.one_turn[i].role = "user";
        s.one_turn[i].content = "";
        s.items[i].turns = &s.one_turn[i];
        s.items[i].n_turns = 1;
        s.items[i].response = json_string_value(m);
    }
    if (run_items(env, &s, e) < 0) {
        items_free(&s);
        return NULL;
    }
    json_t *scores = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(scores, json_real(s.results[i].mean));
    items_free(&s);
    char id[64];
    snprintf(id, sizeof id, "scoreval-%08lx%016lx", (unsigned long)time(NULL), atomic_fetch_add(&counter, 1) + 1);
    return json_pack("{s:s, s:s, s:O, s:o}", "id", id, "object", "score.evaluation", "model", model, "scores",
                     scores);
}

json_t *route_score(const RouteEnv *env, json_t *body, RouteError *e) {
    if (!require_object(body, e)) return NULL;
    json_t *items = json_object_get(body, "items");
    if (!json_is_array(items)) return fail(e, 400, "items: expected a list of {\"prompt\", \"response\"} objects");
    size_t n = json_array_size(items);
    if (check_count(env, n, "items", e) < 0) return NULL;
    ItemSet s;
    items_init(&s, (int)n);
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        char field[48];
        snprintf(field, sizeof field, "items[%zu].prompt", i);
        if (!json_is_object(it)) {
            items_free(&s);
            return fail(e, 400, "items[%zu]: expected an object {\"prompt\", \"response\"}", i);
        }
        json_t *resp = json_object_get(it, "response");
        if (!json_is_string(resp)) {
            items_free(&s);
            return fail(e, 400, "items[%zu].response: expected a string", i);
        }
        if (set_prompt(&s, (int)i, json_object_get(it, "prompt"), field, e) < 0) {
            items_free(&s);
            return NULL;
        }
        s.items[i].response = json_string_value(resp);
    }
    if (run_items(env, &s, e) < 0) {
        items_free(&s);
        return NULL;
    }
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(results, score_result_json(&s.results[i]));
    items_free(&s);
    return json_pack("{s:o}", "results", results);
}

static void dist_from_result(const ScoreResult *r, OrdinalDist *d) {
    double cum = 0;
    for (int k = 0; k < OPRM_LEVELS; k++) {
        d->p[k] = r->p[k];
        d->logp[k] = log(r->p[k]);
        d->cdf[k] = (cum += r->p[k]);
    }
}

json_t *route_compare(const RouteEnv *env, json_t *body, RouteError *e) {
    if (!require_object(body, e)) return NULL;
    json_t *a = json_object_get(body, "a"), *b = json_object_get(body, "b");
    if (!json_is_string(a)) return fail(e, 400, "a: expected a string (the first response)");
    if (!json_is_string(b)) return fail(e, 400, "b: expected a string (the second response)");
    ItemSet s;
    items_init(&s, 2);
    if (set_prompt(&s, 0, json_object_get(body, "prompt"), "prompt", e) < 0) {
        items_free(&s);
        return NULL;
    }
    s.items[1] = s.items[0];
    s.items[0].response = json_string_value(a);
    s.items[1].response = json_string_value(b);
    if (run_items(env, &s, e) < 0) {
        items_free(&s);
        return NULL;
    }
    OrdinalDist da, db;
    dist_from_result(&s.results[0], &da);
    dist_from_result(&s.results[1], &db);
    PairProbs pp;
    ordinal_pair_probs(&da, &db, &pp);
    json_t *out = json_pack("{s:f, s:f, s:f, s:o, s:o}", "p_a_better", pp.win, "p_tie", pp.tie, "p_b_better",
                            pp.loss, "a", score_result_json(&s.results[0]), "b", score_result_json(&s.results[1]));
    items_free(&s);
    return out;
}
