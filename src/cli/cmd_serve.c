/* oprm serve: the HTTP reward server (src/serve) in front of the model's
 * scorer (src/eval/scorer.h). Runs until SIGTERM/SIGINT, then stops
 * accepting, finishes in-flight requests and exits 0. With --load-test it
 * instead measures itself over loopback, batching on and off. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/device_flag.h"
#include "cli/options.h"
#include "eval/scorer.h"
#include "serve/http_client.h"
#include "serve/loadgen.h"
#include "serve/server.h"

static const char USAGE[] =
    "usage: oprm serve --model DIR [options]\n\n"
    "HTTP reward server. Routes: POST /get_reward (OpenRLHF), POST /v1/score/evaluation\n"
    "(LlamaFactory), POST /v1/score, POST /v1/compare, GET /health, GET /metrics.\n"
    "See docs/serving.md for the request and response shapes.\n\n";

typedef struct {
    const char *model_dir;
    ServeConfig cfg;
    ScorerOptions sopt;
    int drain_timeout_s;
    int load_test, clients, requests, items_per_request, max_seconds, rounds;
} Args;

/* Returns 0 to go on, 1 after --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, Args *a) {
    memset(a, 0, sizeof *a);
    serve_config_defaults(&a->cfg);
    a->cfg.api_key = getenv("OPRM_API_KEY");
    a->drain_timeout_s = 30;
    a->clients = 16;
    a->requests = 512;
    a->items_per_request = 1;
    a->max_seconds = 120;
    a->rounds = 3;
    int64_t body = (int64_t)a->cfg.max_body_bytes, req_tokens = a->cfg.max_request_tokens,
            batch_tokens = a->cfg.max_batch_tokens;
    Options o;
    options_init(&o, "serve");
    o.usage = USAGE;
    options_section(&o, "options:");
    options_add(&o, OPT(OPT_NAMES_MODEL, "DIR", "model directory (Hugging Face layout, oprm.json optional)",
                             OPT_STRING, &a->model_dir));
    options_add(&o, OPT("--host", "ADDR", "address to bind [127.0.0.1]", OPT_STRING, &a->cfg.host));
    options_add(&o, OPT("--port", "N", "port [8000; 0 = pick a free one and print it]", OPT_INT, &a->cfg.port, 0,
                             65535));
    options_add(&o, OPT("--api-key", "KEY", "require 'Authorization: Bearer KEY' [env OPRM_API_KEY]", OPT_STRING,
                             &a->cfg.api_key));
    options_add(&o, OPT("--model-name", "NAME", "name reported by /health and /v1/score/evaluation", OPT_STRING,
                             &a->cfg.model_name));
    options_add(&o, OPT(OPT_NAMES_MAX_LEN, "N",
                             "scoring-prompt token limit (truncation) [oprm.json's max_length,\n"
                             "else min(1024, max_position_embeddings); above it is refused]",
                             OPT_INT, &a->sopt.max_len, 1, INT_MAX));
    options_add(&o, OPT(OPT_NAMES_THREADS, "N", "compute threads [all cores]", OPT_INT, &a->sopt.threads, 0, 1024));
    DeviceFlag device_flag = {"serve", &a->sopt.device, 0};
    options_add(&o, OPT(OPT_NAMES_DEVICE, "D", DEVICE_FLAG_HELP, OPT_CUSTOM, .parse = device_flag_parse,
                             .ctx = &device_flag));
    options_add(&o, OPT(OPT_NAMES_CHAT_FORMAT, "NAME", "chat format of the scoring prompt [from the model]",
                             OPT_STRING, &a->sopt.chat_format));
    options_add(&o, OPT(OPT_NAMES_TEMPLATE, "FILE", "scoring-prompt template file", OPT_STRING,
                             &a->sopt.template_path));
    options_add(&o, OPT(OPT_NAMES_NO_PREFIX_SHARING, NULL,
                             "compute a prompt common to batched items once per item (same scores)", OPT_FLAG,
                             &a->sopt.no_prefix_sharing, .ival = 1));
    options_section(&o, "batching and limits:");
    options_add(&o, OPT("--batch-window-ms", "N", "wait up to N ms for more items after the first [5; 0 = off]",
                             OPT_INT, &a->cfg.batch_window_ms, 0, 10000));
    options_add(&o, OPT("--max-batch-items|" OPT_NAMES_BATCH_SIZE, "N", "items per forward pass [64]", OPT_INT,
                             &a->cfg.max_batch_items, 1, 1 << 20));
    options_add(&o, OPT(OPT_NAMES_MAX_BATCH_TOKENS, "N", "tokens per forward pass [32768]", OPT_I64,
                             &batch_tokens, 1, LONG_MAX));
    options_add(&o, OPT("--max-queue-items", "N", "queued items before 503 + Retry-After [4096]", OPT_INT,
                             &a->cfg.max_queue_items, 1, 1 << 24));
    options_add(&o, OPT("--max-request-items", "N", "items per request, else 413 [512]", OPT_INT,
                             &a->cfg.max_request_items, 1, 1 << 24));
    options_add(&o, OPT("--max-request-tokens", "N", "scoring-prompt tokens per request, else 413 [1048576]",
                             OPT_I64, &req_tokens, 1, LONG_MAX));
    options_add(&o, OPT("--max-body-bytes", "N", "request body size, else 413 [8388608]", OPT_I64, &body, 1,
                             (double)(1L << 32)));
    options_add(&o, OPT("--max-connections", "N", "concurrent connections [256]", OPT_INT,
                             &a->cfg.max_connections, 1, 65536));
    options_add(&o, OPT("--body-timeout-ms", "N",
                             "a request body that stops arriving for N ms is answered 400\n"
                             "and its connection closed [10000; 0 = wait for the idle timeout]",
                             OPT_INT, &a->cfg.body_timeout_ms, 0, 3600000));
    options_add(&o, OPT("--drain-timeout-s", "N", "on SIGTERM, wait up to N s for in-flight requests [30]",
                             OPT_INT, &a->drain_timeout_s, 0, 3600));
    options_section(&o, "load test (loopback only; alternates the server with batching as set and off):");
    options_add(&o, OPT("--load-test", NULL, "measure instead of serving; prints a table", OPT_FLAG,
                             &a->load_test, .ival = 1));
    options_add(&o, OPT("--clients", "N", "concurrent clients [16]", OPT_INT, &a->clients, 1, 1024));
    options_add(&o, OPT("--requests", "N", "requests per run [512]", OPT_INT, &a->requests, 1, 1 << 24));
    options_add(&o, OPT("--items-per-request", "N", "items in each /v1/score request [1]", OPT_INT,
                             &a->items_per_request, 1, 1 << 16));
    options_add(&o, OPT("--max-seconds", "N", "stop starting requests after N s per run [120]", OPT_INT,
                             &a->max_seconds, 1, 86400));
    options_add(&o, OPT("--rounds", "N", "alternate the two modes N times, report the median [3]", OPT_INT,
                             &a->rounds, 1, 32));
    int prc = options_parse_or_help(&o, argc, argv);
    if (prc) return prc == OPTIONS_HELP ? 1 : -1;
    a->cfg.max_body_bytes = (size_t)body;
    a->cfg.max_request_tokens = (long)req_tokens;
    a->cfg.max_batch_tokens = (long)batch_tokens;
    if (!a->model_dir) {
        fprintf(stderr, "oprm serve: --model DIR is required (see --help)\n");
        return -1;
    }
    if (!a->cfg.model_name || !strcmp(a->cfg.model_name, "oprm")) {
        const char *slash = strrchr(a->model_dir, '/');
        a->cfg.model_name = slash && slash[1] ? slash + 1 : a->model_dir;
    }
    if (a->cfg.max_batch_tokens < a->sopt.max_batch_tokens) a->cfg.max_batch_tokens = a->sopt.max_batch_tokens;
    return 0;
}

/* The scorer behind the server's backend vtable. */
static int scorer_backend_score(void *ctx, const ScoreRequest *items, int n, ScoreResult *out, OprmError *err) {
    return scorer_score(ctx, items, n, out, err);
}

static int scorer_backend_count(void *ctx, const ScoreRequest *item, OprmError *err) {
    return scorer_count_tokens(ctx, item, err);
}

/* Deterministic story-like requests for the load test (seeded, varied lengths). */
static char **load_bodies(int n_bodies, int items_per_request) {
    static const char *const words[] = {"the", "little", "dog", "ran", "to", "park", "and", "saw", "a", "big",
                                        "red", "ball", "she", "was", "happy", "they", "played", "all", "day",
                                        "then", "went", "home", "mom", "said", "good", "night", "cat", "tree"};
    int nw = (int)(sizeof words / sizeof *words);
    unsigned long long rng = 42;
    char **bodies = xcalloc((size_t)n_bodies, sizeof *bodies);
    for (int b = 0; b < n_bodies; b++) {
        json_t *items = json_array();
        for (int it = 0; it < items_per_request; it++) {
            StrBuf resp = {0};
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            int len = 20 + (int)((rng >> 33) % 60);
            for (int w = 0; w < len; w++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                sb_printf(&resp, "%s%s", w ? " " : "", words[(rng >> 33) % (unsigned)nw]);
            }
            sb_puts(&resp, ".");
            char prompt[64];
            snprintf(prompt, sizeof prompt, "Tell me a story about a %s.", words[(b + it) % nw]);
            json_array_append_new(items, json_pack("{s:s, s:s}", "prompt", prompt, "response", resp.s));
            sb_free(&resp);
        }
        json_t *root = json_pack("{s:o}", "items", items);
        bodies[b] = json_dumps(root, JSON_COMPACT);
        json_decref(root);
    }
    return bodies;
}

/* Mean items per scorer call, read back from /metrics. */
static double mean_batch(int port, const char *api_key) {
    char hdr[512] = "";
    if (api_key) snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", api_key);
    HttpReply r;
    OprmError err = {{0}};
    if (http_request("127.0.0.1", port, "GET", "/metrics", hdr, NULL, 0, 10000, &r, &err) < 0) return 0;
    double sum = 0, count = 0;
    const char *p = strstr(r.body.s, "\noprm_batch_items_sum ");
    if (p) sscanf(p, "\noprm_batch_items_sum %lf", &sum);
    p = strstr(r.body.s, "\noprm_batch_items_count ");
    if (p) sscanf(p, "\noprm_batch_items_count %lf", &count);
    http_reply_free(&r);
    return count > 0 ? sum / count : 0;
}

static int cmp_rps(const void *x, const void *y) {
    double a = ((const LoadStats *)x)->requests_per_s, b = ((const LoadStats *)y)->requests_per_s;
    return (a > b) - (a < b);
}

/* Runs both modes in alternation for --rounds rounds, so that a busy machine
 * slows both alike, and reports each run and the median run of each mode. */
static int run_load_test(const Args *a, const ServeBackend *backend) {
    enum { N_BODIES = 64, MAX_ROUNDS = 32 };
    char **bodies = load_bodies(N_BODIES, a->items_per_request);
    LoadConfig lc = {a->clients, a->requests, 120000, a->max_seconds};
    LoadStats runs[2][MAX_ROUNDS];
    double batch[2][MAX_ROUNDS];
    int rounds = a->rounds < MAX_ROUNDS ? a->rounds : MAX_ROUNDS, failed = 0;
    printf("load test: %d clients, %d requests of %d item(s) to POST /v1/score, model %s, loopback, %d round(s)\n\n",
           a->clients, a->requests, a->items_per_request, a->model_dir, rounds);
    printf("| round | batching | window ms | max batch items | ok | errors | unsent | requests/s | p50 ms | p99 ms | mean batch |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int r = 0; r < rounds && !failed; r++) {
        for (int mode = 0; mode < 2; mode++) {
            ServeConfig cfg = a->cfg;
            cfg.host = "127.0.0.1";
            cfg.port = 0;
            if (mode == 1) {
                cfg.batch_window_ms = 0;
                cfg.max_batch_items = 1;
            }
            if (cfg.max_connections < a->clients + 4) cfg.max_connections = a->clients + 4;
            OprmError err = {{0}};
            Server *s = serve_start(&cfg, backend, &err);
            if (!s) {
                fprintf(stderr, "oprm serve: %s\n", err.msg);
                failed = 1;
                break;
            }
            LoadStats *st = &runs[mode][r];
            loadgen_run("127.0.0.1", serve_port(s), "/v1/score", (const char *const *)bodies, N_BODIES, &lc, st,
                        &err);
            batch[mode][r] = mean_batch(serve_port(s), cfg.api_key);
            printf("| %d | %s | %d | %d | %d | %d | %d | %.1f | %.1f | %.1f | %.2f |\n", r + 1,
                   mode == 0 ? "on" : "off", cfg.batch_window_ms, cfg.max_batch_items, st->ok, st->errors, st->unsent,
                   st->requests_per_s, st->p50_ms, st->p99_ms, batch[mode][r]);
            fflush(stdout);
            if (st->unsent)
                fprintf(stderr, "oprm serve: %d requests not sent: --max-seconds %d ran out\n", st->unsent,
                        a->max_seconds);
            if (st->errors) {
                fprintf(stderr, "oprm serve: %d requests failed (first status %d)\n", st->errors,
                        st->first_error_status);
                failed = 1;
            }
            serve_shutdown(s, 10000);
        }
    }
    if (!failed) {
        printf("\nmedian run of each mode (by requests/s):\n\n"
               "| batching | requests/s | p50 ms | p99 ms |\n|---|---|---|---|\n");
        double rps[2];
        for (int mode = 0; mode < 2; mode++) {
            qsort(runs[mode], (size_t)rounds, sizeof runs[mode][0], cmp_rps);
            const LoadStats *m = &runs[mode][rounds / 2];
            rps[mode] = m->requests_per_s;
            printf("| %s | %.1f | %.1f | %.1f |\n", mode == 0 ? "on" : "off", m->requests_per_s, m->p50_ms,
                   m->p99_ms);
        }
        printf("\nthroughput on/off: %.2fx\n", rps[1] > 0 ? rps[0] / rps[1] : 0.0);
    }
    for (int b = 0; b < N_BODIES; b++) free(bodies[b]);
    free(bodies);
    return failed ? EXIT_RUNTIME : EXIT_OK;
}

int cmd_serve(int argc, char **argv) {
    Args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.load_test) a.cfg.api_key = NULL; /* the load generator sends no key */

    /* When serving, signals are taken synchronously by sigwait below, so every
     * thread (HTTP, batcher, OpenMP) must start with them blocked. The load
     * test keeps the default: Ctrl-C just ends it. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (!a.load_test) pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    OprmError err = {{0}};
    /* On a GPU the dynamic batcher's batches go to the device whole (its
     * buffers are sized by the same budget); the CPU keeps the scorer's own
     * packing, as before. */
    a.sopt.device = device_choose(a.sopt.device, NULL, 0);
    if (a.sopt.device.kind == DEVICE_CUDA) a.sopt.max_batch_tokens = (int)a.cfg.max_batch_tokens;
    Scorer *sc = scorer_open(a.model_dir, &a.sopt, &err);
    if (!sc) {
        fprintf(stderr, "oprm serve: %s\n", err.msg);
        return EXIT_RUNTIME;
    }
    fprintf(stderr, "oprm serve: device %s\n", scorer_device(sc));
    ServeBackend backend = {sc, scorer_backend_score, scorer_backend_count};
    if (a.load_test) {
        rc = run_load_test(&a, &backend);
        scorer_close(sc);
        return rc;
    }
    Server *s = serve_start(&a.cfg, &backend, &err);
    if (!s) {
        fprintf(stderr, "oprm serve: %s\n", err.msg);
        scorer_close(sc);
        return EXIT_RUNTIME;
    }
    int v6 = strchr(a.cfg.host, ':') != NULL;
    printf("oprm serve: listening on http://%s%s%s:%d (model %s)\n", v6 ? "[" : "", a.cfg.host, v6 ? "]" : "",
           serve_port(s), a.cfg.model_name);
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "oprm serve: %s: not accepting new connections; finishing %d in-flight request(s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", serve_in_flight(s));
    serve_shutdown(s, a.drain_timeout_s * 1000);
    scorer_close(sc);
    fprintf(stderr, "oprm serve: stopped\n");
    return EXIT_OK;
}
