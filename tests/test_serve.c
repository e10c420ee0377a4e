/* oprm serve: the real server on 127.0.0.1 (port 0) in-process, real HTTP
 * over loopback sockets. The scoring backend here is a deterministic test
 * backend (distribution from a hash of the text) so every number the server
 * returns can be checked against a direct call; test_serve_model.c runs the
 * same server on the real scorer. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "serve/chat_split.h"
#include "serve/http_client.h"
#include "serve/loadgen.h"
#include "serve/server.h"
#include "cli_testutil.h"
#include "test.h"
#include "train_testutil.h"

/* ---- the test backend ---------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_closed; /* score() blocks while set */
    int entered;     /* score() calls that have started */
    int calls, items, max_batch;
    int fail;     /* score() returns an error */
    int nan;      /* score() returns NaN in the mean */
    int sleep_us; /* per call, to let queues form */
} TestBackend;

static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

static uint64_t item_hash(const ScoreRequest *it) {
    uint64_t h = 1469598103934665603ull;
    for (int t = 0; t < it->n_turns; t++) {
        h = fnv(h, it->turns[t].role);
        h = fnv(h, it->turns[t].content);
    }
    return fnv(h, it->response);
}

static int item_tokens(const ScoreRequest *it) {
    size_t n = strlen(it->response);
    for (int t = 0; t < it->n_turns; t++) n += strlen(it->turns[t].content);
    return 12 + (int)(n / 4);
}

/* Reference statistics of spec §4, written independently of the server. */
static void fill_result(const ScoreRequest *it, ScoreResult *r) {
    uint64_t h = item_hash(it);
    double z[9], zmax = -1e9, sum = 0;
    for (int k = 0; k < 9; k++) {
        z[k] = (double)((h >> (k * 7)) & 0x7f) / 24.0;
        if (z[k] > zmax) zmax = z[k];
    }
    for (int k = 0; k < 9; k++) sum += (r->p[k] = exp(z[k] - zmax));
    double m = 0, m2 = 0, ent = 0;
    int mode = 1;
    for (int k = 0; k < 9; k++) {
        r->p[k] /= sum;
        m += (k + 1) * r->p[k];
        m2 += (k + 1) * (k + 1) * r->p[k];
        ent -= r->p[k] * log(r->p[k]);
        if (r->p[k] > r->p[mode - 1]) mode = k + 1;
    }
    r->mean = m;
    r->std = sqrt(fmax(0, m2 - m * m));
    r->entropy = ent;
    r->mode = mode;
    r->bimodality = r->p[0] * 0.5; /* any deterministic number: the server passes it through */
    r->n_tokens = item_tokens(it);
    r->truncated = r->n_tokens > 200;
}

static int tb_score(void *ctx, const ScoreRequest *items, int n, ScoreResult *out, OprmError *err) {
    TestBackend *b = ctx;
    pthread_mutex_lock(&b->mu);
    b->entered++;
    pthread_cond_broadcast(&b->cv);
    while (b->gate_closed) pthread_cond_wait(&b->cv, &b->mu);
    b->calls++;
    b->items += n;
    if (n > b->max_batch) b->max_batch = n;
    int fail = b->fail, sleep_us = b->sleep_us, nan = b->nan;
    pthread_mutex_unlock(&b->mu);
    if (sleep_us) usleep((useconds_t)sleep_us);
    if (fail) return oprm_fail(err, "test backend asked to fail");
    for (int i = 0; i < n; i++) fill_result(&items[i], &out[i]);
    if (nan) out[n - 1].mean = NAN;
    return 0;
}

static int tb_count(void *ctx, const ScoreRequest *it, OprmError *err) {
    return item_tokens(it);
}

static TestBackend TB;
static ServeBackend BACKEND = {&TB, tb_score, tb_count};

static void tb_reset(void) {
    pthread_mutex_lock(&TB.mu);
    TB.gate_closed = TB.entered = TB.calls = TB.items = TB.max_batch = TB.fail = TB.sleep_us = TB.nan = 0;
    pthread_cond_broadcast(&TB.cv);
    pthread_mutex_unlock(&TB.mu);
}

static void tb_gate(int closed) {
    pthread_mutex_lock(&TB.mu);
    TB.gate_closed = closed;
    pthread_cond_broadcast(&TB.cv);
    pthread_mutex_unlock(&TB.mu);
}

/* Waits (bounded) until score() has been entered `n` times. */
static int tb_wait_entered(int n) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&TB.mu);
    int rc = 0;
    while (TB.entered < n && rc == 0) rc = pthread_cond_timedwait(&TB.cv, &TB.mu, &until);
    int ok = TB.entered >= n;
    pthread_mutex_unlock(&TB.mu);
    return ok;
}

/* ---- helpers ---------------------------------------------------------------- */

#define HOST "127.0.0.1"
#define TIMEOUT_MS 20000

static Server *start(ServeConfig *cfg) {
    tb_reset();
    cfg->host = HOST;
    cfg->port = 0;
    OprmError err = {{0}};
    Server *s = serve_start(cfg, &BACKEND, &err);
    if (!s) fprintf(stderr, "serve_start: %s\n", err.msg);
    return s;
}

static Server *start_default(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.batch_window_ms = 1;
    return start(&cfg);
}

/* POSTs body (or GETs when body is NULL); returns the status, the parsed JSON in *out (may be NULL). */
static int call(Server *s, const char *method, const char *path, const char *body, const char *headers,
                json_t **out, HttpReply *keep) {
    HttpReply r;
    OprmError err = {{0}};
    if (out) *out = NULL;
    if (http_request(HOST, serve_port(s), method, path, headers, body, body ? strlen(body) : 0, TIMEOUT_MS, &r,
                     &err) < 0) {
        fprintf(stderr, "http: %s\n", err.msg);
        return -1;
    }
    if (out) *out = json_loads(r.body.s, 0, NULL);
    int st = r.status;
    if (keep)
        *keep = r;
    else
        http_reply_free(&r);
    return st;
}

static const char *err_msg(json_t *j) {
    return json_string_value(json_object_get(j, "error"));
}

static double num(json_t *j) {
    return json_number_value(j);
}

static void direct(const ScoreTurn *turns, int n_turns, const char *response, ScoreResult *r) {
    ScoreRequest it = {turns, n_turns, response};
    fill_result(&it, r);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_chat_split(void) {
    SplitChat c;
    CHECK(split_query_with_prompt("<|im_start|>system\nBe nice<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                  "<|im_start|>assistant\nHello!<|im_end|>",
                                  "<|im_start|>system\nBe nice<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                  "<|im_start|>assistant\n",
                                  &c) == 0);
    CHECK(c.n == 2 && !strcmp(c.turns[0].role, "system") && !strcmp(c.turns[0].content, "Be nice"));
    CHECK(c.n == 2 && !strcmp(c.turns[1].role, "user") && !strcmp(c.turns[1].content, "Hi"));
    CHECK(!strcmp(c.response, "Hello!"));
    split_chat_free(&c);

    /* Left padding before the prompt, end marker plus padding after the response. */
    CHECK(split_query_with_prompt("<pad><pad><|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ?"
                                  "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA.<|eot_id|><pad>",
                                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ?<|eot_id|>"
                                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
                                  &c) == 0);
    CHECK(c.n == 1 && !strcmp(c.turns[0].role, "user") && !strcmp(c.turns[0].content, "Q?"));
    CHECK(!strcmp(c.response, "A."));
    split_chat_free(&c);

    CHECK(split_query_with_prompt("Question: 2+2? Answer: 4</s>", "Question: 2+2? Answer:", &c) == 0);
    CHECK(c.n == 1 && !strcmp(c.turns[0].content, "Question: 2+2? Answer:") && !strcmp(c.response, " 4"));
    split_chat_free(&c);
    CHECK(split_query_with_prompt("something else", "Question:", &c) == -1);

    split_query_alone("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n", &c);
    /* the trailing "\n" after <|im_end|> is a separator, not content */
    CHECK(c.n == 1 && !strcmp(c.turns[0].content, "Hi") && c.response && !strcmp(c.response, "Yo"));
    split_chat_free(&c);
    split_query_alone("plain text</s>", &c);
    CHECK(c.n == 1 && !strcmp(c.turns[0].content, "") && !strcmp(c.response, "plain text"));
    split_chat_free(&c);
}

static void test_health_metrics_404_405(void) {
    Server *s = start_default();
    CHECK(s != NULL);
    if (!s) return;
    json_t *j;
    HttpReply r;
    CHECK(call(s, "GET", "/health", NULL, NULL, &j, NULL) == 200);
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "status")), "ok"));
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "model")), "oprm"));
    json_decref(j);
    CHECK(call(s, "GET", "/nope", NULL, NULL, &j, NULL) == 404);
    CHECK_STR_CONTAINS(err_msg(j), "no such route");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/scorex", "{}", NULL, &j, NULL) == 404);
    json_decref(j);
    char buf[64];
    CHECK(call(s, "GET", "/v1/score", NULL, NULL, &j, &r) == 405);
    CHECK_STR_CONTAINS(http_header(&r, "Allow", buf, sizeof buf), "POST");
    CHECK_STR_CONTAINS(err_msg(j), "/v1/score does not accept GET");
    http_reply_free(&r);
    json_decref(j);
    CHECK(call(s, "POST", "/health", "{}", NULL, &j, &r) == 405);
    CHECK_STR_CONTAINS(http_header(&r, "Allow", buf, sizeof buf), "GET");
    http_reply_free(&r);
    json_decref(j);
    CHECK(call(s, "DELETE", "/get_reward", NULL, NULL, &j, NULL) == 405);
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"p\", \"response\": \"r\"}]}", NULL, NULL,
               NULL) == 200);
    CHECK(call(s, "GET", "/metrics", NULL, NULL, NULL, &r) == 200);
    CHECK_STR_CONTAINS(r.body.s, "oprm_requests_total{route=\"/v1/score\",code=\"200\"} 1\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_requests_total{route=\"other\",code=\"404\"} 2\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_requests_total{route=\"/v1/score\",code=\"405\"} 1\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_errors_total 5\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_queue_depth 0\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_batch_items_bucket{le=\"1\"} 1\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_request_duration_seconds_bucket{le=\"+Inf\"}");
    CHECK_STR_CONTAINS(r.body.s, "oprm_tokens_scored_total 12\n"); /* 12 + (1+1)/4 */
    CHECK_STR_CONTAINS(r.body.s, "oprm_tokens_per_second ");
    char ct[64];
    CHECK_STR_CONTAINS(http_header(&r, "Content-Type", ct, sizeof ct), "text/plain");
    http_reply_free(&r);
    serve_shutdown(s, 5000);
}

static void check_result(json_t *res, const ScoreResult *ref) {
    json_t *dist = json_object_get(res, "distribution");
    CHECK(json_array_size(dist) == 9);
    for (int k = 0; k < 9; k++) CHECK_NEAR(num(json_array_get(dist, k)), ref->p[k], 1e-15, 0);
    CHECK_NEAR(num(json_object_get(res, "mean")), ref->mean, 1e-14, 0);
    CHECK_NEAR(num(json_object_get(res, "std")), ref->std, 1e-14, 0);
    CHECK_NEAR(num(json_object_get(res, "entropy")), ref->entropy, 1e-14, 0);
    CHECK_NEAR(num(json_object_get(res, "bimodality")), ref->bimodality, 1e-15, 0);
    CHECK(json_integer_value(json_object_get(res, "mode")) == ref->mode);
    CHECK(json_integer_value(json_object_get(res, "n_tokens")) == ref->n_tokens);
}

static void test_score_route(void) {
    Server *s = start_default();
    if (!s) return;
    json_t *j;
    const char *body = "{\"items\": ["
                       "{\"prompt\": \"Tell me a story.\", \"response\": \"Once upon a time.\"},"
                       "{\"prompt\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", "
                       "\"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}, {\"role\": "
                       "\"user\", \"content\": \"Again\"}], \"response\": \"Sure.\"},"
                       "{\"prompt\": \"\\u00e9t\\u00e9\", \"response\": \"\"}]}";
    CHECK(call(s, "POST", "/v1/score", body, NULL, &j, NULL) == 200);
    json_t *res = json_object_get(j, "results");
    CHECK(json_array_size(res) == 3);
    ScoreResult ref;
    ScoreTurn t0[] = {{"user", "Tell me a story."}};
    direct(t0, 1, "Once upon a time.", &ref);
    check_result(json_array_get(res, 0), &ref);
    ScoreTurn t1[] = {{"system", "sys"}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "Again"}};
    direct(t1, 4, "Sure.", &ref);
    check_result(json_array_get(res, 1), &ref);
    ScoreTurn t2[] = {{"user", "\xc3\xa9t\xc3\xa9"}};
    direct(t2, 1, "", &ref);
    check_result(json_array_get(res, 2), &ref);
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score", "{\"items\": []}", NULL, &j, NULL) == 200);
    CHECK(json_array_size(json_object_get(j, "results")) == 0);
    json_decref(j);
    serve_shutdown(s, 5000);
}

static void test_get_reward(void) {
    Server *s = start_default();
    if (!s) return;
    json_t *j;
    const char *p0 = "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n";
    char body[2048];
    snprintf(body, sizeof body,
             "{\"query\": [\"%sHello there<|im_end|>\", \"Q: why? A: because</s>\"],"
             " \"prompts\": [\"%s\", \"Q: why? A:\"], \"labels\": [\"x\", \"y\"]}",
             p0, p0);
    CHECK(call(s, "POST", "/get_reward", body, NULL, &j, NULL) == 200);
    json_t *rw = json_object_get(j, "rewards"), *sc = json_object_get(j, "scores");
    json_t *logs = json_object_get(j, "extra_logs");
    CHECK(json_array_size(rw) == 2 && json_array_size(sc) == 2);
    ScoreResult r0, r1;
    ScoreTurn t0[] = {{"user", "Hi"}};
    direct(t0, 1, "Hello there", &r0);
    ScoreTurn t1[] = {{"user", "Q: why? A:"}};
    direct(t1, 1, " because", &r1);
    CHECK_NEAR(num(json_array_get(rw, 0)), r0.mean, 1e-14, 0);
    CHECK_NEAR(num(json_array_get(rw, 1)), r1.mean, 1e-14, 0);
    CHECK_NEAR(num(json_array_get(sc, 1)), r1.mean, 1e-14, 0);
    CHECK_NEAR(num(json_array_get(json_object_get(logs, "oprm_std"), 0)), r0.std, 1e-14, 0);
    CHECK_NEAR(num(json_array_get(json_object_get(logs, "oprm_entropy"), 1)), r1.entropy, 1e-14, 0);
    CHECK_NEAR(num(json_array_get(json_object_get(logs, "oprm_p1"), 0)), r0.p[0], 1e-15, 0);
    CHECK_NEAR(num(json_array_get(json_object_get(logs, "oprm_p9"), 1)), r1.p[8], 1e-15, 0);
    CHECK(json_array_size(json_object_get(logs, "oprm_bimodality")) == 2);
    json_decref(j);

    /* Old clients send only the query: the last assistant turn is the response. */
    snprintf(body, sizeof body, "{\"query\": [\"%sHello there<|im_end|>\"]}", p0);
    CHECK(call(s, "POST", "/get_reward", body, NULL, &j, NULL) == 200);
    CHECK_NEAR(num(json_array_get(json_object_get(j, "rewards"), 0)), r0.mean, 1e-14, 0);
    json_decref(j);

    CHECK(call(s, "POST", "/get_reward", "{\"query\": [\"abc\", \"def\"], \"prompts\": [\"abc\", \"xyz\"]}", NULL,
               &j, NULL) == 422);
    CHECK_STR_CONTAINS(err_msg(j), "query[1] does not contain prompts[1]");
    json_decref(j);
    CHECK(call(s, "POST", "/get_reward", "{\"query\": [\"abc\"], \"prompts\": [\"a\", \"b\"]}", NULL, &j, NULL) ==
          422);
    CHECK_STR_CONTAINS(err_msg(j), "prompts has 2 entries but query has 1");
    json_decref(j);
    CHECK(call(s, "POST", "/get_reward", "{\"query\": \"abc\"}", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "query: expected a list");
    json_decref(j);
    CHECK(call(s, "POST", "/get_reward", "{\"query\": [\"a\", 3]}", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "query[1]: expected a string");
    json_decref(j);
    CHECK(call(s, "POST", "/get_reward", "{\"query\": []}", NULL, &j, NULL) == 200);
    CHECK(json_array_size(json_object_get(j, "rewards")) == 0);
    json_decref(j);
    serve_shutdown(s, 5000);
}

static void test_score_evaluation(void) {
    Server *s = start_default();
    if (!s) return;
    json_t *j;
    CHECK(call(s, "POST", "/v1/score/evaluation",
               "{\"model\": \"my-rm\", \"messages\": [\"first text\", \"second\"], \"max_length\": 512}", NULL, &j,
               NULL) == 200);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(j, "id")), "scoreval-");
    CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "score.evaluation"));
    CHECK(!strcmp(json_string_value(json_object_get(j, "model")), "my-rm"));
    ScoreResult r;
    ScoreTurn t[] = {{"user", ""}};
    direct(t, 1, "second", &r);
    CHECK(json_array_size(json_object_get(j, "scores")) == 2);
    CHECK_NEAR(num(json_array_get(json_object_get(j, "scores"), 1)), r.mean, 1e-14, 0);
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score/evaluation", "{\"model\": \"m\", \"messages\": []}", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "messages: must not be empty");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score/evaluation", "{\"messages\": [\"x\"]}", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "model: expected a string");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score/evaluation", "{\"model\": \"m\", \"messages\": [\"x\"], \"max_length\": -3}",
               NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "max_length");
    json_decref(j);
    serve_shutdown(s, 5000);
}

static void test_compare_route(void) {
    Server *s = start_default();
    if (!s) return;
    json_t *j;
    CHECK(call(s, "POST", "/v1/compare", "{\"prompt\": \"Which?\", \"a\": \"Answer A\", \"b\": \"Answer B\"}", NULL,
               &j, NULL) == 200);
    ScoreResult ra, rb;
    ScoreTurn t[] = {{"user", "Which?"}};
    direct(t, 1, "Answer A", &ra);
    direct(t, 1, "Answer B", &rb);
    double ref_a = 0, ref_t = 0, ref_b = 0;
    for (int i = 0; i < 9; i++)
        for (int k = 0; k < 9; k++) {
            double c = ra.p[i] * rb.p[k];
            if (i > k) ref_a += c;
            else if (i == k) ref_t += c;
            else ref_b += c;
        }
    CHECK_NEAR(num(json_object_get(j, "p_a_better")), ref_a, 1e-14, 0);
    CHECK_NEAR(num(json_object_get(j, "p_tie")), ref_t, 1e-14, 0);
    CHECK_NEAR(num(json_object_get(j, "p_b_better")), ref_b, 1e-14, 0);
    CHECK_NEAR(num(json_object_get(json_object_get(j, "a"), "mean")), ra.mean, 1e-14, 0);
    json_decref(j);
    CHECK(call(s, "POST", "/v1/compare", "{\"prompt\": \"Which?\", \"a\": \"A\"}", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "b: expected a string");
    json_decref(j);
    serve_shutdown(s, 5000);
}

static void test_input_errors(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.max_request_items = 3;
    cfg.max_request_tokens = 100;
    cfg.max_body_bytes = 4096;
    Server *s = start(&cfg);
    if (!s) return;
    json_t *j;
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "not valid JSON");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score", "[1, 2]", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "expected a JSON object");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"p\", \"response\": \"r\"}, {\"prompt\": \"p\"}]}",
               NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "items[1].response: expected a string");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": 5, \"response\": \"r\"}]}", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "items[0].prompt: expected a string or a non-empty list");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score",
               "{\"items\": [{\"prompt\": [{\"role\": \"robot\", \"content\": \"x\"}], \"response\": \"r\"}]}", NULL,
               &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "items[0].prompt[0].role");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score",
               "{\"items\": [{\"prompt\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", "
               "\"content\": \"y\"}], \"response\": \"r\"}]}",
               NULL, &j, NULL) == 422);
    CHECK_STR_CONTAINS(err_msg(j), "last message must have role \"user\"");
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"a\", \"response\": \"b\"}, {\"prompt\": \"a\", "
                                       "\"response\": \"b\"}, {\"prompt\": \"a\", \"response\": \"b\"}, {\"prompt\": "
                                       "\"a\", \"response\": \"b\"}]}",
               NULL, &j, NULL) == 413);
    CHECK_STR_CONTAINS(err_msg(j), "the limit is 3 per request (--max-request-items)");
    json_decref(j);
    /* 2 items of 12 + 180/4 = 57 tokens each: 114 > 100. */
    char body[1024], text[181];
    memset(text, 'x', 180);
    text[180] = 0;
    snprintf(body, sizeof body, "{\"items\": [{\"prompt\": \"\", \"response\": \"%s\"}, {\"prompt\": \"\", "
                                "\"response\": \"%s\"}]}", text, text);
    CHECK(call(s, "POST", "/v1/score", body, NULL, &j, NULL) == 413);
    CHECK_STR_CONTAINS(err_msg(j), "request has 114 tokens in its scoring prompts; the limit is 100");
    json_decref(j);
    /* Declared oversize body: refused from the headers without reading it. */
    HttpReply r;
    OprmError err = {{0}};
    const char *big = "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 100000\r\n\r\n{\"items\": [";
    CHECK(http_raw(HOST, serve_port(s), big, strlen(big), TIMEOUT_MS, &r, &err) == 0);
    CHECK(r.status == 413);
    CHECK_STR_CONTAINS(r.body.s, "exceeds the limit of 4096 bytes (--max-body-bytes)");
    http_reply_free(&r);
    /* Chunked upload past the limit: read and discarded, then refused. */
    StrBuf chunked = {0};
    sb_puts(&chunked, "POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (int i = 0; i < 5; i++) {
        sb_printf(&chunked, "400\r\n");
        for (int k = 0; k < 1024; k++) sb_append(&chunked, " ", 1);
        sb_puts(&chunked, "\r\n");
    }
    sb_puts(&chunked, "0\r\n\r\n");
    CHECK(http_raw(HOST, serve_port(s), chunked.s, chunked.n, TIMEOUT_MS, &r, &err) == 0);
    CHECK(r.status == 413);
    CHECK_STR_CONTAINS(r.body.s, "body exceeds the limit of 4096 bytes");
    http_reply_free(&r);
    sb_free(&chunked);
    /* The server still answers after all of that. */
    CHECK(call(s, "GET", "/health", NULL, NULL, NULL, NULL) == 200);
    serve_shutdown(s, 5000);
}

static void test_backend_error(void) {
    Server *s = start_default();
    if (!s) return;
    TB.fail = 1;
    json_t *j;
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"p\", \"response\": \"r\"}]}", NULL, &j, NULL) ==
          500);
    CHECK_STR_CONTAINS(err_msg(j), "scorer failed: test backend asked to fail");
    json_decref(j);
    TB.fail = 0;
    TB.nan = 1;
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"p\", \"response\": \"r\"}]}", NULL, &j, NULL) ==
          500);
    CHECK_STR_CONTAINS(err_msg(j), "non-finite value for item 0");
    json_decref(j);
    TB.nan = 0;
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"p\", \"response\": \"r\"}]}", NULL, NULL, NULL) ==
          200);
    serve_shutdown(s, 5000);
}

static void test_auth(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.api_key = "s3cret";
    Server *s = start(&cfg);
    if (!s) return;
    const char *body = "{\"items\": [{\"prompt\": \"p\", \"response\": \"r\"}]}";
    json_t *j;
    HttpReply r;
    char buf[64];
    CHECK(call(s, "POST", "/v1/score", body, NULL, &j, &r) == 401);
    CHECK_STR_CONTAINS(http_header(&r, "WWW-Authenticate", buf, sizeof buf), "Bearer");
    CHECK_STR_CONTAINS(err_msg(j), "API key");
    http_reply_free(&r);
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score", body, "Authorization: Bearer s3creT\r\n", NULL, NULL) == 401);
    CHECK(call(s, "POST", "/v1/score", body, "Authorization: Bearer s3cret2\r\n", NULL, NULL) == 401);
    CHECK(call(s, "POST", "/v1/score", body, "Authorization: s3cret\r\n", NULL, NULL) == 401);
    CHECK(call(s, "GET", "/metrics", NULL, NULL, NULL, NULL) == 401);
    CHECK(call(s, "POST", "/v1/score", body, "Authorization: Bearer s3cret\r\n", NULL, NULL) == 200);
    CHECK(call(s, "GET", "/metrics", NULL, "Authorization: Bearer s3cret\r\n", NULL, NULL) == 200);
    CHECK(call(s, "GET", "/health", NULL, NULL, NULL, NULL) == 200); /* probes need no key */
    serve_shutdown(s, 5000);
}

typedef struct {
    Server *s;
    const char *body;
    int status;
} Client;

static void *client_main(void *arg) {
    Client *c = arg;
    c->status = call(c->s, "POST", "/v1/score", c->body, NULL, NULL, NULL);
    return NULL;
}

static int wait_queue_depth(Server *s, int n) {
    for (int i = 0; i < 2000 && serve_queue_depth(s) != n; i++) usleep(5000);
    return serve_queue_depth(s) == n;
}

static void test_queue_full_503(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.max_queue_items = 2;
    cfg.max_request_items = 2;
    cfg.batch_window_ms = 0;
    Server *s = start(&cfg);
    if (!s) return;
    tb_gate(1);
    Client a = {s, "{\"items\": [{\"prompt\": \"p\", \"response\": \"a\"}]}", 0};
    Client b = {s, "{\"items\": [{\"prompt\": \"p\", \"response\": \"b\"}, {\"prompt\": \"p\", \"response\": \"c\"}]}",
                0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, client_main, &a);
    CHECK(tb_wait_entered(1)); /* a is inside the (blocked) scorer */
    pthread_create(&tb, NULL, client_main, &b);
    CHECK(wait_queue_depth(s, 2)); /* b's two items fill the queue */
    json_t *j;
    HttpReply r;
    char buf[16];
    CHECK(call(s, "POST", "/v1/score", a.body, NULL, &j, &r) == 503);
    CHECK_STR_CONTAINS(http_header(&r, "Retry-After", buf, sizeof buf), "1");
    CHECK_STR_CONTAINS(err_msg(j), "queue full (2 items, --max-queue-items)");
    http_reply_free(&r);
    json_decref(j);
    CHECK(call(s, "GET", "/metrics", NULL, NULL, NULL, &r) == 200);
    CHECK_STR_CONTAINS(r.body.s, "oprm_queue_depth 2\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_queue_rejected_total 1\n");
    http_reply_free(&r);
    tb_gate(0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.status == 200 && b.status == 200);
    serve_shutdown(s, 5000);
}

static void test_dynamic_batching(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.batch_window_ms = 20;
    cfg.max_batch_items = 16;
    Server *s = start(&cfg);
    if (!s) return;
    /* Hold the scorer so that 8 single-item requests pile up, then let go:
     * they must go through in far fewer than 8 calls. */
    tb_gate(1);
    enum { N = 8 };
    Client c[N];
    pthread_t t[N];
    char bodies[N][96];
    Client first = {s, "{\"items\": [{\"prompt\": \"p\", \"response\": \"first\"}]}", 0};
    pthread_t tf;
    pthread_create(&tf, NULL, client_main, &first);
    CHECK(tb_wait_entered(1));
    for (int i = 0; i < N; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"items\": [{\"prompt\": \"p\", \"response\": \"r%d\"}]}", i);
        c[i] = (Client){s, bodies[i], 0};
        pthread_create(&t[i], NULL, client_main, &c[i]);
    }
    CHECK(wait_queue_depth(s, N));
    tb_gate(0);
    pthread_join(tf, NULL);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK(c[i].status == 200);
    }
    CHECK(TB.calls == 2);  /* the first request, then all eight together */
    CHECK(TB.max_batch == N);
    CHECK(TB.items == N + 1);
    HttpReply r;
    CHECK(call(s, "GET", "/metrics", NULL, NULL, NULL, &r) == 200);
    CHECK_STR_CONTAINS(r.body.s, "oprm_batch_items_bucket{le=\"4\"} 1\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_batch_items_bucket{le=\"8\"} 2\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_batch_items_sum 9\n");
    http_reply_free(&r);
    serve_shutdown(s, 5000);

    /* Batching off: one item per scorer call. */
    serve_config_defaults(&cfg);
    cfg.batch_window_ms = 0;
    cfg.max_batch_items = 1;
    s = start(&cfg);
    if (!s) return;
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"p\", \"response\": \"a\"}, {\"prompt\": \"p\", "
                                       "\"response\": \"b\"}, {\"prompt\": \"p\", \"response\": \"c\"}]}",
               NULL, NULL, NULL) == 200);
    CHECK(TB.calls == 3 && TB.max_batch == 1);
    serve_shutdown(s, 5000);
}

static unsigned next_rand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(*s >> 33);
}

/* Hundreds of random and truncated bodies: every one gets an answer (never
 * 500, never a hang), the server keeps serving, and ASan sees no error or leak. */
static void test_malformed_inputs(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.max_body_bytes = 64 * 1024;
    cfg.max_request_items = 16;
    cfg.batch_window_ms = 0;
    Server *s = start(&cfg);
    if (!s) return;
    static const char *const valid[] = {
        "{\"items\": [{\"prompt\": [{\"role\": \"user\", \"content\": \"hi\"}], \"response\": \"yo\"}, "
        "{\"prompt\": \"q\", \"response\": \"r\"}]}",
        "{\"query\": [\"<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHey<|im_end|>\"], \"prompts\": "
        "[\"<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n\"], \"labels\": [null]}",
        "{\"model\": \"m\", \"messages\": [\"one\", \"two\"], \"max_length\": 64}",
        "{\"prompt\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"u\"}], "
        "\"a\": \"x\", \"b\": \"y\"}",
    };
    static const char *const paths[] = {"/v1/score", "/get_reward", "/v1/score/evaluation", "/v1/compare"};
    static const char *const junk[] = {"null", "true", "1e999", "\"\\ud800\"", "[[[[[[[[", "{\"items\": {}}",
                                       "{\"a\": \"\\u0000\"}", "\xff\xfe", "{\"items\": [null]}", "{}",
                                       "{\"query\": [[]], \"prompts\": 7}", "{\"messages\": [1], \"model\": 2}"};
    uint64_t rng = 12345;
    int answered = 0, bad_status = 0, n_cases = 400;
    char body[4096];
    for (int i = 0; i < n_cases; i++) {
        int route = next_rand(&rng) % 4, kind = next_rand(&rng) % 4;
        size_t n = 0;
        if (kind == 0) { /* a valid body for some route, truncated at a random point */
            const char *v = valid[next_rand(&rng) % 4];
            n = next_rand(&rng) % (strlen(v) + 1);
            memcpy(body, v, n);
        } else if (kind == 1) { /* random bytes */
            n = next_rand(&rng) % 300;
            for (size_t k = 0; k < n; k++) body[k] = (char)(next_rand(&rng) & 0xff);
        } else if (kind == 2) { /* a valid body with a few bytes flipped */
            const char *v = valid[next_rand(&rng) % 4];
            n = strlen(v);
            memcpy(body, v, n);
            for (int f = 0; f < 3; f++) {
                size_t at = next_rand(&rng) % n;
                body[at] = (char)(next_rand(&rng) & 0xff);
            }
        } else {
            const char *v = junk[next_rand(&rng) % 12];
            n = strlen(v);
            memcpy(body, v, n);
        }
        HttpReply r;
        OprmError err = {{0}};
        if (http_request(HOST, serve_port(s), "POST", paths[route], NULL, body, n, TIMEOUT_MS, &r, &err) == 0) {
            answered++;
            int st = r.status;
            if (!(st == 200 || st == 400 || st == 413 || st == 422)) {
                bad_status++;
                fprintf(stderr, "case %d: status %d body %s\n", i, st, r.body.s);
            }
            http_reply_free(&r);
        }
    }
    CHECK(answered == n_cases);
    CHECK(bad_status == 0);
    /* Raw garbage at the HTTP level: any answer or a close, but no crash or hang. */
    for (int i = 0; i < 60; i++) {
        size_t n = 1 + next_rand(&rng) % 200;
        char raw[256];
        for (size_t k = 0; k < n; k++) raw[k] = (char)(next_rand(&rng) & 0xff);
        if (i % 3 == 0) memcpy(raw, "POST /v1/score HTTP/1.1\r\n", n < 25 ? n : 25);
        HttpReply r;
        OprmError err = {{0}};
        if (http_raw(HOST, serve_port(s), raw, n, 5000, &r, &err) == 0) {
            CHECK(r.status == 400 || r.status == 404 || r.status == 405 || r.status == 413 || r.status == 505 ||
                  r.status == 431 || r.status == 414 || r.status == 501);
            http_reply_free(&r);
        }
    }
    json_t *j;
    CHECK(call(s, "GET", "/health", NULL, NULL, &j, NULL) == 200);
    CHECK(j && json_integer_value(json_object_get(j, "queue_depth")) == 0);
    json_decref(j);
    serve_shutdown(s, 5000);
}

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Raw loopback socket that, unlike http_raw, keeps its write side open (a
 * client whose body is still "coming"): sends the pieces, `gap_ms` apart, then
 * reads until the server closes or timeout_ms passes. Returns the bytes read
 * (NUL-terminated in buf) and the seconds from the last piece to the close in
 * *closed_after (-1 if the server never closed). */
static size_t raw_session(int port, const char *const *pieces, int n, int gap_ms, int timeout_ms, char *buf,
                          size_t size, double *closed_after) {
    *closed_after = -1;
    buf[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, HOST, &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (i) usleep((useconds_t)gap_ms * 1000);
        send(fd, pieces[i], strlen(pieces[i]), MSG_NOSIGNAL);
    }
    double t0 = mono_s(), until = t0 + timeout_ms * 1e-3;
    size_t got = 0;
    for (;;) {
        double left = until - mono_s();
        if (left <= 0) break;
        struct timeval tv = {(time_t)left, (suseconds_t)((left - (time_t)left) * 1e6)};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t k = recv(fd, buf + got, size - 1 - got, 0);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            *closed_after = mono_s() - t0;
            break;
        }
        if (k > 0) got += (size_t)k;
        if (got == size - 1) break;
    }
    buf[got] = 0;
    close(fd);
    return got;
}

/* A body shorter than its Content-Length: answered 400 once nothing has arrived
 * for body_timeout_ms, and the connection closed (it used to hang until the
 * 120 s connection timeout, then close without an answer). A slow upload whose
 * pieces come within the timeout is not cut. */
static void test_stalled_body(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.batch_window_ms = 0;
    cfg.body_timeout_ms = 300;
    Server *s = start(&cfg);
    CHECK(s != NULL);
    if (!s) return;
    char reply[4096];
    double closed;
    const char *short_body[] = {"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                "Content-Length: 100\r\n\r\n{\"items\": ["};
    raw_session(serve_port(s), short_body, 1, 0, 5000, reply, sizeof reply, &closed);
    CHECK_STR_CONTAINS(reply, "HTTP/1.1 400 Bad Request\r\n");
    CHECK_STR_CONTAINS(reply, "Connection: close\r\n");
    CHECK_STR_CONTAINS(reply, "request body incomplete: 11 bytes received, then nothing for 300 ms");
    CHECK(closed >= 0.29 && closed < 2.0); /* bounded: the timeout, plus the watchdog's period */
    /* Headers only, no body at all: the same. */
    const char *no_body[] = {"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n"};
    raw_session(serve_port(s), no_body, 1, 0, 5000, reply, sizeof reply, &closed);
    CHECK_STR_CONTAINS(reply, "HTTP/1.1 400 Bad Request\r\n");
    CHECK_STR_CONTAINS(reply, "0 bytes received");
    CHECK(closed >= 0.29 && closed < 2.0);
    /* A slow but steady upload (pieces 150 ms apart, under the 300 ms timeout) is scored. */
    const char *slow[] = {"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          "Content-Length: 45\r\nConnection: close\r\n\r\n",
                          "{\"items\": [", "{\"prompt\": \"p\", ", "\"response\": \"r\"}]}"};
    CHECK(strlen(slow[1]) + strlen(slow[2]) + strlen(slow[3]) == 45);
    raw_session(serve_port(s), slow, 4, 150, 5000, reply, sizeof reply, &closed);
    CHECK_STR_CONTAINS(reply, "HTTP/1.1 200");
    CHECK_STR_CONTAINS(reply, "\"results\"");
    HttpReply r;
    CHECK(call(s, "GET", "/metrics", NULL, NULL, NULL, &r) == 200);
    CHECK_STR_CONTAINS(r.body.s, "oprm_body_timeouts_total 2\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_requests_total{route=\"/v1/score\",code=\"400\"} 1\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_requests_total{route=\"/get_reward\",code=\"400\"} 1\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_requests_total{route=\"/v1/score\",code=\"200\"} 1\n");
    http_reply_free(&r);
    serve_shutdown(s, 5000);
}

/* `oprm serve --body_timeout_ms N` (the dash spelling --body-timeout-ms is
 * the one --help shows): the binary answers a stalled body after N ms, where
 * before the flag it was always 10 s. A tiny random model (no shared data). */
static void test_binary_body_timeout(void) {
    char dir[] = "/tmp/oprm_test_serve_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char model[600], cmd[1600], line[512];
    snprintf(model, sizeof model, "%s/model", dir);
    CHECK(tiny_model(model) == 0);
    const char *bin = cli_bin();
    /* Listed in --help; a negative value is a usage error (exit 2) naming the flag. */
    snprintf(cmd, sizeof cmd, "%s serve --help", bin);
    FILE *h = popen(cmd, "r");
    int listed = 0;
    while (h && fgets(line, sizeof line, h)) listed |= strstr(line, "--body-timeout-ms N") != NULL;
    CHECK(h && pclose(h) == 0);
    CHECK(listed);
    snprintf(cmd, sizeof cmd, "%s serve --model %s --body_timeout_ms -5 2>&1", bin, model);
    FILE *b = popen(cmd, "r");
    char said[1024] = "";
    size_t got = b ? fread(said, 1, sizeof said - 1, b) : 0;
    said[got] = 0;
    int bad = b ? pclose(b) : -1;
    CHECK(WIFEXITED(bad) && WEXITSTATUS(bad) == 2);
    CHECK_STR_CONTAINS(said, "--body_timeout_ms");

    const char *serve_args[] = {"--model", model, "--port", "0", "--threads", "1", "--body_timeout_ms", "250", NULL};
    int port, out_fd;
    pid_t pid = serve_spawn(serve_args, &port, &out_fd);
    CHECK(pid > 0 && port > 0);
    if (port > 0) {
        char reply[4096];
        double closed;
        const char *short_body[] = {"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    "Content-Length: 100\r\n\r\n{\"items\": ["};
        raw_session(port, short_body, 1, 0, 8000, reply, sizeof reply, &closed);
        CHECK_STR_CONTAINS(reply, "HTTP/1.1 400 Bad Request\r\n");
        CHECK_STR_CONTAINS(reply, "request body incomplete: 11 bytes received, then nothing for 250 ms");
        CHECK(closed >= 0.24 && closed < 2.0); /* 250 ms plus the watchdog's period, far from 10 s */
    }
    int status = 0;
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
    }
    CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(out_fd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* "\u0000" inside a JSON string: every text is a C string past the parser, so a
 * NUL would cut it silently; it is refused with a message that says why. */
static void test_nul_in_string(void) {
    Server *s = start_default();
    CHECK(s != NULL);
    if (!s) return;
    json_t *j;
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"p\", \"response\": \"good\\u0000 bad\"}]}",
               NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "column");
    CHECK_STR_CONTAINS(err_msg(j), "a string contains \\u0000 (a NUL character)");
    json_decref(j);
    CHECK(call(s, "POST", "/get_reward", "{\"query\": [\"a\\u0000b\"]}", NULL, &j, NULL) == 400);
    CHECK_STR_CONTAINS(err_msg(j), "(a NUL character)");
    json_decref(j);
    CHECK(TB.calls == 0); /* nothing reached the scorer */
    serve_shutdown(s, 5000);
}

/* /metrics counts the items whose scoring prompt was truncated (the test
 * backend truncates above 200 tokens: 12 + len/4). */
static void test_metrics_truncated(void) {
    Server *s = start_default();
    CHECK(s != NULL);
    if (!s) return;
    char text[1001], body[4096];
    memset(text, 'x', 1000);
    text[1000] = 0; /* 12 + 250 tokens: truncated */
    snprintf(body, sizeof body,
             "{\"items\": [{\"prompt\": \"\", \"response\": \"%s\"}, {\"prompt\": \"p\", \"response\": \"r\"}, "
             "{\"prompt\": \"\", \"response\": \"%s\"}]}",
             text, text);
    json_t *j;
    CHECK(call(s, "POST", "/v1/score", body, NULL, &j, NULL) == 200);
    json_decref(j);
    CHECK(call(s, "POST", "/v1/score", "{\"items\": [{\"prompt\": \"p\", \"response\": \"r\"}]}", NULL, NULL,
               NULL) == 200);
    HttpReply r;
    CHECK(call(s, "GET", "/metrics", NULL, NULL, NULL, &r) == 200);
    CHECK_STR_CONTAINS(r.body.s, "# TYPE oprm_truncated_prompts_total counter\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_truncated_prompts_total 2\n");
    CHECK_STR_CONTAINS(r.body.s, "oprm_items_scored_total 4\n");
    http_reply_free(&r);
    serve_shutdown(s, 5000);
}

typedef struct {
    Server *s;
} Stopper;

static void *stopper_main(void *arg) {
    serve_shutdown(((Stopper *)arg)->s, 10000);
    return NULL;
}

/* What SIGTERM triggers in `oprm serve`: stop accepting, finish the request
 * in flight, then stop. */
static void test_graceful_drain(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.batch_window_ms = 0;
    Server *s = start(&cfg);
    if (!s) return;
    int port = serve_port(s);
    tb_gate(1);
    Client a = {s, "{\"items\": [{\"prompt\": \"p\", \"response\": \"in flight\"}]}", 0};
    pthread_t ta, ts;
    pthread_create(&ta, NULL, client_main, &a);
    CHECK(tb_wait_entered(1));
    Stopper st = {s};
    pthread_create(&ts, NULL, stopper_main, &st);
    /* New connections are refused once the daemon is quiesced. */
    int refused = 0;
    for (int i = 0; i < 400 && !refused; i++) {
        HttpReply r;
        OprmError err = {{0}};
        if (http_request(HOST, port, "GET", "/health", NULL, NULL, 0, 2000, &r, &err) < 0)
            refused = 1;
        else {
            http_reply_free(&r);
            usleep(5000);
        }
    }
    CHECK(refused);
    tb_gate(0);
    pthread_join(ta, NULL);
    pthread_join(ts, NULL);
    CHECK(a.status == 200);
}

/* The load-test harness on the test backend: fixed count, zero errors,
 * percentiles ordered, and concurrent clients share scorer calls. */
static void test_loadgen(void) {
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.batch_window_ms = 10;
    Server *s = start(&cfg);
    if (!s) return;
    TB.sleep_us = 3000; /* a scorer call takes time, so concurrent requests queue up */
    const char *bodies[] = {"{\"items\": [{\"prompt\": \"p\", \"response\": \"one\"}]}",
                            "{\"items\": [{\"prompt\": \"q\", \"response\": \"two\"}]}"};
    LoadConfig lc = {8, 96, 20000, 60};
    LoadStats st;
    OprmError err = {{0}};
    CHECK(loadgen_run(HOST, serve_port(s), "/v1/score", bodies, 2, &lc, &st, &err) == 0);
    CHECK(st.sent == 96 && st.ok == 96 && st.errors == 0 && st.unsent == 0);
    CHECK(st.p50_ms > 0 && st.p50_ms <= st.p99_ms && st.p99_ms <= st.max_ms);
    CHECK(st.requests_per_s > 0);
    CHECK(TB.items == 96);
    CHECK(TB.calls < 96); /* 8 clients share scorer calls */
    CHECK(TB.max_batch > 1);
    /* A wrong path counts as errors, not as a harness failure. */
    LoadConfig lc2 = {2, 4, 20000, 60};
    CHECK(loadgen_run(HOST, serve_port(s), "/nope", bodies, 2, &lc2, &st, &err) == 0);
    CHECK(st.errors == 4 && st.ok == 0 && st.first_error_status == 404);
    serve_shutdown(s, 5000);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&TB.mu, NULL);
    pthread_cond_init(&TB.cv, NULL);
    RUN(test_chat_split);
    RUN(test_health_metrics_404_405);
    RUN(test_score_route);
    RUN(test_get_reward);
    RUN(test_score_evaluation);
    RUN(test_compare_route);
    RUN(test_input_errors);
    RUN(test_backend_error);
    RUN(test_auth);
    RUN(test_queue_full_503);
    RUN(test_dynamic_batching);
    RUN(test_malformed_inputs);
    RUN(test_stalled_body);
    RUN(test_binary_body_timeout);
    RUN(test_nul_in_string);
    RUN(test_metrics_truncated);
    RUN(test_graceful_drain);
    RUN(test_loadgen);
    return test_summary();
}
