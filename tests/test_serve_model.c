/* oprm serve on the real scorer and the story-llama model: the server's
 * numbers equal direct scorer_score calls (what `oprm score` does) on the
 * same input, through every scoring route, and equal `oprm score` (the
 * binary) on the same records; and the `oprm serve` binary
 * binds a free port, answers, and on SIGTERM finishes the request in
 * flight and exits 0. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eval/scorer.h"
#include "serve/http_client.h"
#include "serve/server.h"
#include "cli_testutil.h"
#include "test.h"

#define HOST "127.0.0.1"

static char MODEL[512];

static int sc_score(void *ctx, const ScoreRequest *items, int n, ScoreResult *out, OprmError *err) {
    return scorer_score(ctx, items, n, out, err);
}

static int sc_count(void *ctx, const ScoreRequest *item, OprmError *err) {
    return scorer_count_tokens(ctx, item, err);
}

static json_t *post(int port, const char *path, const char *body, int *status) {
    HttpReply r;
    OprmError err = {{0}};
    *status = -1;
    if (http_request(HOST, port, "POST", path, NULL, body, strlen(body), 60000, &r, &err) < 0) {
        fprintf(stderr, "http: %s\n", err.msg);
        return NULL;
    }
    *status = r.status;
    json_t *j = json_loads(r.body.s, 0, NULL);
    http_reply_free(&r);
    return j;
}

/* Probabilities from one batch composition vs another may differ in the last
 * float bits (packed GEMMs of different sizes); 1e-5 is far below any
 * meaningful difference between two responses. */
#define TOL 1e-5

static void check_same(json_t *res, const ScoreResult *ref) {
    json_t *d = json_object_get(res, "distribution");
    CHECK(json_array_size(d) == 9);
    for (int k = 0; k < 9; k++) CHECK_NEAR(json_number_value(json_array_get(d, k)), ref->p[k], TOL, 0);
    CHECK_NEAR(json_number_value(json_object_get(res, "mean")), ref->mean, TOL, 0);
    CHECK_NEAR(json_number_value(json_object_get(res, "std")), ref->std, TOL, 0);
    CHECK_NEAR(json_number_value(json_object_get(res, "entropy")), ref->entropy, TOL, 0);
    CHECK(json_integer_value(json_object_get(res, "n_tokens")) == ref->n_tokens);
}

static void test_routes_equal_scorer(void) {
    OprmError err = {{0}};
    ScorerOptions opt = {0};
    opt.threads = 2;
    Scorer *sc = scorer_open(MODEL, &opt, &err);
    CHECK(sc != NULL);
    if (!sc) {
        fprintf(stderr, "scorer_open: %s\n", err.msg);
        return;
    }
    ScoreTurn t0[] = {{"user", "Tell me a story about a dog."}};
    ScoreTurn t1[] = {{"user", "Tell me a story about a cat."}};
    ScoreTurn t2[] = {{"user", ""}};
    ScoreRequest items[] = {
        {t0, 1, "Once upon a time, there was a little dog named Max. Max liked to run in the park."},
        {t1, 1, "The cat sat. The cat sat. The cat sat."},
        {t2, 1, "Lily went to the store with her mom and bought a red ball."},
    };
    ScoreResult ref[3];
    CHECK(scorer_score(sc, items, 3, ref, &err) == 0);

    ServeBackend be = {sc, sc_score, sc_count};
    ServeConfig cfg;
    serve_config_defaults(&cfg);
    cfg.host = HOST;
    cfg.port = 0;
    Server *s = serve_start(&cfg, &be, &err);
    CHECK(s != NULL);
    if (!s) {
        scorer_close(sc);
        return;
    }
    int port = serve_port(s), st;
    json_t *j = post(port, "/v1/score",
                     "{\"items\": [{\"prompt\": \"Tell me a story about a dog.\", \"response\": \"Once upon a time, "
                     "there was a little dog named Max. Max liked to run in the park.\"}, {\"prompt\": [{\"role\": "
                     "\"user\", \"content\": \"Tell me a story about a cat.\"}], \"response\": \"The cat sat. The "
                     "cat sat. The cat sat.\"}]}",
                     &st);
    CHECK(st == 200);
    check_same(json_array_get(json_object_get(j, "results"), 0), &ref[0]);
    check_same(json_array_get(json_object_get(j, "results"), 1), &ref[1]);
    json_decref(j);

    j = post(port, "/get_reward",
             "{\"query\": [\"<|im_start|>user\\nTell me a story about a dog.<|im_end|>\\n<|im_start|>assistant\\n"
             "Once upon a time, there was a little dog named Max. Max liked to run in the park.<|im_end|>\"], "
             "\"prompts\": [\"<|im_start|>user\\nTell me a story about a dog.<|im_end|>\\n<|im_start|>assistant\\n\"]}",
             &st);
    CHECK(st == 200);
    CHECK_NEAR(json_number_value(json_array_get(json_object_get(j, "rewards"), 0)), ref[0].mean, TOL, 0);
    CHECK_NEAR(json_number_value(json_array_get(json_object_get(json_object_get(j, "extra_logs"), "oprm_std"), 0)),
               ref[0].std, TOL, 0);
    json_decref(j);

    j = post(port, "/v1/score/evaluation",
             "{\"model\": \"story-llama\", \"messages\": [\"Lily went to the store with her mom and bought a red "
             "ball.\"]}",
             &st);
    CHECK(st == 200);
    CHECK_NEAR(json_number_value(json_array_get(json_object_get(j, "scores"), 0)), ref[2].mean, TOL, 0);
    json_decref(j);

    j = post(port, "/v1/compare",
             "{\"prompt\": \"Tell me a story about a dog.\", \"a\": \"Once upon a time, there was a little dog named "
             "Max. Max liked to run in the park.\", \"b\": \"The cat sat. The cat sat. The cat sat.\"}",
             &st);
    CHECK(st == 200);
    /* b was scored under the dog prompt here, so only a's numbers are known; the
     * three probabilities must still be a distribution. */
    double pa = json_number_value(json_object_get(j, "p_a_better")), pt = json_number_value(json_object_get(j, "p_tie")),
           pb = json_number_value(json_object_get(j, "p_b_better"));
    CHECK_NEAR(pa + pt + pb, 1.0, 1e-12, 0);
    CHECK_NEAR(json_number_value(json_object_get(json_object_get(j, "a"), "mean")), ref[0].mean, TOL, 0);
    json_decref(j);
    serve_shutdown(s, 10000);
    scorer_close(sc);
}

/* The same items through `oprm score` (the binary) and through /v1/score give
 * the same numbers. */
static void test_equals_oprm_score(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/asan/oprm";
    static const char *const prompts[] = {"Tell me a story about a dog.", "Tell me a story about a cat.",
                                          "What did Lily find?"};
    static const char *const responses[] = {"Once upon a time, there was a little dog named Max.",
                                            "The cat sat. The cat sat.", "Lily found a shiny red ball in the park."};
    char path[] = "/tmp/oprm_serve_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    json_t *items = json_array();
    for (int i = 0; i < 3; i++) {
        json_t *rec = json_pack("{s:s, s:s}", "prompt", prompts[i], "response", responses[i]);
        char *line = json_dumps(rec, JSON_COMPACT);
        fprintf(f, "%s\n", line);
        free(line);
        json_array_append_new(items, rec);
    }
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s score --model %s --data %s --threads 2 --no-progress", bin, MODEL, path);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    json_t *lines[3] = {NULL, NULL, NULL};
    char buf[8192];
    for (int i = 0; p && i < 3 && fgets(buf, sizeof buf, p); i++) lines[i] = json_loads(buf, 0, NULL);
    CHECK(p && pclose(p) == 0);
    unlink(path);

    OprmError err = {{0}};
    ScorerOptions opt = {0};
    opt.threads = 2;
    Scorer *sc = scorer_open(MODEL, &opt, &err);
    CHECK(sc != NULL);
    if (sc) {
        ServeBackend be = {sc, sc_score, sc_count};
        ServeConfig cfg;
        serve_config_defaults(&cfg);
        cfg.host = HOST;
        cfg.port = 0;
        Server *s = serve_start(&cfg, &be, &err);
        CHECK(s != NULL);
        if (s) {
            json_t *req = json_pack("{s:O}", "items", items);
            char *body = json_dumps(req, JSON_COMPACT);
            json_decref(req);
            int st;
            json_t *j = post(serve_port(s), "/v1/score", body, &st);
            free(body);
            CHECK(st == 200);
            json_t *res = json_object_get(j, "results");
            for (int i = 0; i < 3; i++) {
                json_t *a = json_array_get(res, i), *b = lines[i];
                CHECK(a && b);
                if (!a || !b) continue;
                CHECK_NEAR(json_number_value(json_object_get(a, "mean")),
                           json_number_value(json_object_get(b, "mean")), TOL, 0);
                CHECK_NEAR(json_number_value(json_object_get(a, "std")), json_number_value(json_object_get(b, "std")),
                           TOL, 0);
                CHECK_NEAR(json_number_value(json_object_get(a, "bimodality")),
                           json_number_value(json_object_get(b, "bimodality")), TOL, 0);
                for (int k = 0; k < 9; k++)
                    CHECK_NEAR(json_number_value(json_array_get(json_object_get(a, "distribution"), k)),
                               json_number_value(json_array_get(json_object_get(b, "distribution"), k)), TOL, 0);
                CHECK(json_integer_value(json_object_get(a, "n_tokens")) ==
                      json_integer_value(json_object_get(b, "n_tokens")));
            }
            json_decref(j);
            serve_shutdown(s, 10000);
        }
        scorer_close(sc);
    }
    for (int i = 0; i < 3; i++) json_decref(lines[i]);
    json_decref(items);
}

typedef struct {
    int port, status, n_results;
} BigRequest;

/* 48 items: long enough (a second or more under ASan) to be in flight when SIGTERM arrives. */
static void *big_request_main(void *arg) {
    BigRequest *b = arg;
    json_t *items = json_array();
    for (int i = 0; i < 48; i++) {
        char resp[160];
        snprintf(resp, sizeof resp, "Once upon a time, a little dog named Max found %d red balls in the park.", i);
        json_array_append_new(items, json_pack("{s:s, s:s}", "prompt", "Tell me a story.", "response", resp));
    }
    json_t *root = json_pack("{s:o}", "items", items);
    char *body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    json_t *j = post(b->port, "/v1/score", body, &b->status);
    b->n_results = (int)json_array_size(json_object_get(j, "results"));
    json_decref(j);
    free(body);
    return NULL;
}

/* In flight = requests the server is working on, read from /health (which counts itself). */
static int in_flight(int port) {
    HttpReply r;
    OprmError err = {{0}};
    if (http_request(HOST, port, "GET", "/health", NULL, NULL, 0, 30000, &r, &err) < 0) return -1;
    json_t *j = json_loads(r.body.s, 0, NULL);
    int n = (int)json_integer_value(json_object_get(j, "in_flight"));
    json_decref(j);
    http_reply_free(&r);
    return n;
}

static void test_binary_sigterm(void) {
    const char *args[] = {"--model", MODEL, "--port", "0", "--threads", "2", "--max-batch-items", "4", NULL};
    int port, out_fd;
    pid_t pid = serve_spawn(args, &port, &out_fd);
    CHECK(pid > 0);
    if (pid <= 0) return;
    CHECK(port > 0);
    BigRequest big = {port, 0, 0};
    pthread_t t;
    int started = 0, saw_in_flight = 0;
    if (port > 0) {
        int st;
        json_t *j = post(port, "/v1/score", "{\"items\": [{\"prompt\": \"Hi\", \"response\": \"Once upon a time.\"}]}",
                         &st);
        CHECK(st == 200);
        json_decref(j);
        started = pthread_create(&t, NULL, big_request_main, &big) == 0;
        for (int i = 0; i < 2000 && !saw_in_flight; i++) { /* up to ~10 s */
            if (in_flight(port) >= 2) saw_in_flight = 1;
            else usleep(5000);
        }
        CHECK(saw_in_flight);
    }
    kill(pid, SIGTERM);
    int status = 0, waited = 0;
    for (int i = 0; i < 6000 && !waited; i++) { /* up to 60 s */
        if (waitpid(pid, &status, WNOHANG) == pid) waited = 1;
        else usleep(10000);
    }
    if (!waited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    CHECK(waited && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (started) pthread_join(t, NULL);
    /* The request in flight at SIGTERM was finished, not dropped. */
    CHECK(big.status == 200 && big.n_results == 48);
    close(out_fd);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    snprintf(MODEL, sizeof MODEL, "%s/models/story-llama", shared_data_dir());
    RUN_SHARED(test_routes_equal_scorer, "models/story-llama");
    RUN_SHARED(test_equals_oprm_score, "models/story-llama");
    RUN_SHARED(test_binary_sigterm, "models/story-llama");
    return test_summary();
}
