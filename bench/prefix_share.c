/* Prompt-prefix sharing, side by side in one process: training steps/s and
 * best-of-N scoring with and without sharing on real data, interleaved step
 * by step (A B, then B A) so a noisy shared machine hits both alike, plus the
 * fraction of tokens saved over the whole file. Built and run by
 * bench/prefix_share.sh (figures in docs/performance.md).
 *
 * usage: prefix_share MODEL_DIR [--config CFG] [--steps N] [--batch B]
 *                     [--max-len L] [--bon-prompts P] [--bon-min-turns K]
 *                     [--threads T] DATA...
 *        prefix_share MODEL_DIR [--config CFG] [--steps N] --sweep
 * MODEL_DIR gives the tokenizer (and the weights unless --config: then random
 * weights of that Hugging Face config, ids of MODEL_DIR's tokenizer).
 * Training: micro-batches of B records in file order through the trainer's
 * own batch builder (src/train/train_batch.c), forward + OPRM loss + backward
 * + AdamW (lr 0, so both modes see the same weights). Scoring: P prompts x 8
 * candidates (the file's responses: this record's and the next ones'), one
 * packed inference forward + digit head per prompt, on the first P + 1 records
 * whose prompt has at least K messages (the first of them untimed). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/reader.h"
#include "model/model.h"
#include "tok/prompt.h"
#include "tok/tokenizer.h"
#include "train/adamw.h"
#include "train/train_batch.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Process CPU time: with one thread, the work done, whatever the scheduler
 * gave to the other processes of a shared machine meanwhile. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, const OprmError *err) {
    fprintf(stderr, "prefix_share: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

typedef struct {
    Model *m;
    AdamW *opt;
    ModelParam *params;
    int nparams, hidden;
    const int32_t *digits;
} Trainee;

/* One training micro-batch; returns seconds. */
static double train_step(Trainee *t, MicroBatch *b, int shared, double *cpu) {
    OprmError err = {{0}};
    double t0 = now_s(), c0 = cpu_s();
    SeqBatch sb = {b->ids.v, b->lens, b->nseq, shared ? b->group : NULL};
    size_t hn = (size_t)b->nseq * t->hidden;
    float *h = malloc(hn * sizeof *h), *dh = calloc(hn, sizeof *dh);
    float *lg = malloc((size_t)b->nseq * 9 * sizeof *lg), *dlg = malloc((size_t)b->nseq * 9 * sizeof *dlg);
    BatchLoss bl;
    if (model_forward(t->m, &sb, 1, h, &err)) die("forward", &err);
    model_head_rows_forward(t->m, h, b->nseq, t->digits, 9, lg);
    if (batch_oprm_loss(b, lg, 1.0 / b->n_items, dlg, &bl, &err)) die("loss", &err);
    model_head_rows_backward(t->m, h, b->nseq, t->digits, 9, dlg, dh);
    if (model_backward(t->m, dh, &err)) die("backward", &err);
    if (adamw_step_zero_grad(t->opt, t->params, t->nparams, 0.0, &err)) die("adamw", &err);
    double dt = now_s() - t0;
    *cpu = cpu_s() - c0;
    free(h);
    free(dh);
    free(lg);
    free(dlg);
    return dt;
}

static Model *open_model(const char *dir, const char *config, int inference, OprmError *err) {
    ModelOptions o = {.inference_only = inference};
    if (!config) return model_load(dir, &o, err);
    ModelConfig c;
    if (model_config_load(config, &c, err)) return NULL;
    return model_new_random(&c, &o, 1, err);
}

/* Builds the micro-batch of records [first, first+n). */
static void build(MicroBatch *mb, const BatchSetup *bs, const DataSet *set, size_t first, size_t n) {
    OprmError err = {{0}};
    micro_batch_clear(mb);
    for (size_t r = first; r < first + n && r < set->n; r++) {
        char where[64];
        snprintf(where, sizeof where, "record %zu", r);
        if (micro_batch_add(mb, bs, &set->recs[r], (int64_t)r, where, &err) < 0) die(where, &err);
    }
}

/* --sweep: random-token pairs (4 per batch, continuations of 128 tokens)
 * sharing P = 1 .. 128 tokens, train step (forward + backward) CPU time shared
 * vs unshared; built with MODEL_PREFIX_MIN 1 so that every P is shared. */
static int sweep(const char *dir, const char *config, int steps) {
    OprmError err = {{0}};
    Model *m = open_model(dir, config, 0, &err);
    if (!m) die("model", &err);
    const ModelConfig *c = model_config(m);
    int D = c->hidden, cont = 128, pairs = 4;
    int32_t digits[9] = {10, 11, 12, 13, 14, 15, 16, 17, 18};
    uint64_t x = 1;
    printf("P\tCPU ms unshared\tshared\tratio\t(continuations of %d tokens, %d pairs, %d steps)\n", cont, pairs,
           steps);
    static const int Ps[] = {1, 2, 4, 8, 16, 32, 64, 128};
    for (size_t pi = 0; pi < sizeof Ps / sizeof *Ps; pi++) {
        int P = Ps[pi], nseq = 2 * pairs, len = P + cont;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)nseq * len), lens[8], group[8];
        for (int s = 0; s < nseq; s++) {
            lens[s] = len;
            group[s] = s / 2;
            for (int t = 0; t < len; t++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                int id = (int)((x >> 33) % (uint64_t)c->vocab);
                if (t < P && (s & 1)) id = ids[(size_t)(s - 1) * len + t]; /* the pair's common prefix */
                if (t == P) id = s & 1;                                    /* continuations differ at once */
                ids[(size_t)s * len + t] = id;
            }
        }
        float *h = malloc(sizeof(float) * (size_t)nseq * D), *dh = calloc((size_t)nseq * D, sizeof(float)), lg[72],
              dl[72];
        double tc[2] = {0, 0};
        for (int st = -1; st < steps; st++)
            for (int k = 0; k < 2; k++) {
                int shared = (st & 1) ? k : 1 - k;
                SeqBatch b = {ids, lens, nseq, shared ? group : NULL};
                double c0 = cpu_s();
                if (model_forward(m, &b, 1, h, &err)) die("forward", &err);
                model_head_rows_forward(m, h, nseq, digits, 9, lg);
                for (int i = 0; i < 9 * nseq; i++) dl[i] = 1e-3f * (float)(i % 7);
                memset(dh, 0, sizeof(float) * (size_t)nseq * D);
                model_head_rows_backward(m, h, nseq, digits, 9, dl, dh);
                if (model_backward(m, dh, &err)) die("backward", &err);
                if (st >= 0) tc[shared] += cpu_s() - c0;
            }
        printf("%d\t%.1f\t%.1f\t%.3f\n", P, 1e3 * tc[0] / steps, 1e3 * tc[1] / steps, tc[0] / tc[1]);
        fflush(stdout);
        free(ids);
        free(h);
        free(dh);
    }
    model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *config = NULL, *data[16];
    int do_sweep = 0, nd = 0, steps = 10, batch = 8, max_len = 1024, bon_prompts = 8, threads = 1, bon_turns = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(a, "--sweep")) do_sweep = 1;
        else if (!strcmp(a, "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--max-len") && i + 1 < argc) max_len = atoi(argv[++i]);
        else if (!strcmp(a, "--bon-prompts") && i + 1 < argc) bon_prompts = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--bon-min-turns") && i + 1 < argc) bon_turns = atoi(argv[++i]);
        else if (!dir) dir = a;
        else if (nd < 16) data[nd++] = a;
    }
    if (dir && do_sweep) {
        model_set_threads(threads);
        return sweep(dir, config, steps);
    }
    if (!dir || !nd) {
        fprintf(stderr, "usage: prefix_share MODEL_DIR [--config CFG] [--steps N] [--batch B] [--max-len L] "
                        "[--bon-prompts P] [--threads T] DATA...\n");
        return 2;
    }
    model_set_threads(threads);
    OprmError err = {{0}};
    Tokenizer *tok = tok_load(dir, &err);
    if (!tok) die(dir, &err);
    ScoringSetup ss;
    if (scoring_setup(&ss, tok, NULL, NULL, (size_t)max_len, &err)) die("scoring setup", &err);
    BatchSetup bs = {.scoring = ss.cfg, .label_fraction = 1.0, .seed = 1};
    Trainee t = {0};
    t.m = open_model(dir, config, 0, &err);
    if (!t.m) die("model", &err);
    Model *inf = open_model(dir, config, 1, &err);
    if (!inf) die("model", &err);
    t.hidden = model_config(t.m)->hidden;
    t.digits = ss.digits;
    t.params = model_params(t.m, &t.nparams);
    AdamWConfig ac = {0.9, 0.999, 1e-8, 0.0};
    t.opt = adamw_new(t.params, t.nparams, &ac);
    printf("model %s%s%s, threads %d, max_len %d, batch %d records, %d timed steps per mode\n", dir,
           config ? " with random weights of " : "", config ? config : "", threads, max_len, batch, steps);
    for (int d = 0; d < nd; d++) {
        DataOptions o;
        data_options_default(&o);
        o.point_label_required = 0;
        DataSet set = {0};
        if (data_load(data[d], &o, &set, NULL, &err)) die(data[d], &err);
        /* Tokens saved over the whole file, in training micro-batches. */
        MicroBatch mb = {0};
        int64_t tok_all = 0, tok_saved = 0;
        for (size_t r = 0; r < set.n; r += (size_t)batch) {
            build(&mb, &bs, &set, r, (size_t)batch);
            SeqBatch sb = {mb.ids.v, mb.lens, mb.nseq, mb.group};
            tok_all += mb.tokens;
            tok_saved += model_prefix_saved(&sb);
        }
        /* Training, interleaved. */
        double tm[2] = {0, 0}, tc[2] = {0, 0}, *ratio = malloc(sizeof(double) * (size_t)(steps > 0 ? steps : 1));
        int64_t step_all = 0, step_saved = 0;
        size_t nb = (set.n + batch - 1) / batch;
        for (int s = -1; s < steps; s++) {
            build(&mb, &bs, &set, (size_t)((s < 0 ? 0 : s) % (int)nb) * batch, (size_t)batch);
            if (s >= 0) {
                SeqBatch sb = {mb.ids.v, mb.lens, mb.nseq, mb.group};
                step_all += mb.tokens;
                step_saved += model_prefix_saved(&sb);
            }
            double dts[2];
            for (int k = 0; k < 2; k++) {
                int shared = (s & 1) ? k : 1 - k;
                double c;
                dts[shared] = train_step(&t, &mb, shared, &c);
                if (s >= 0) tm[shared] += dts[shared], tc[shared] += c;
            }
            if (s >= 0) ratio[s] = dts[0] / dts[1];
        }
        qsort(ratio, (size_t)steps, sizeof *ratio, cmp_double);
        printf("%s: %zu records, %lld scoring-prompt tokens, %.1f%% saved by sharing\n", data[d], set.n,
               (long long)tok_all, 100.0 * tok_saved / (double)tok_all);
        printf("  train: %.3f steps/s unshared, %.3f shared: %.2fx (median of per-step ratios %.2fx); CPU s/step "
               "%.3f vs %.3f: %.2fx; timed batches: %.1f%% of tokens saved\n",
               steps / tm[0], steps / tm[1], tm[0] / tm[1], ratio[steps / 2], tc[0] / steps, tc[1] / steps,
               tc[0] / tc[1], 100.0 * step_saved / (double)step_all);
        free(ratio);
        /* Best-of-8 scoring. */
        double ts[2] = {0, 0}, cs[2] = {0, 0};
        int64_t prompt_tok = 0, resp_tok = 0, bon_all = 0, bon_saved = 0;
        int np = 0;
        for (size_t r = 0; r < set.n && np < bon_prompts + 1; r++) {
            if (set.recs[r].prompt.n < (size_t)bon_turns) continue;
            np++;
            IdVec ids = {0};
            int32_t lens[8], group[8] = {0};
            ScoringPrompt sp = {0};
            for (int c = 0; c < 8; c++) {
                const DataRecord *src = &set.recs[(r + (size_t)c / 2) % set.n];
                const char *text = src->responses[src->n_responses > 1 ? c % 2 : 0].text;
                if (scoring_build(&ss.cfg, &set.recs[r].prompt, text, &sp, &err)) die("bon prompt", &err);
                idvec_extend(&ids, sp.ids.v, sp.ids.n);
                lens[c] = (int32_t)sp.ids.n;
            }
            scoring_prompt_free(&sp);
            SeqBatch sb = {ids.v, lens, 8, group};
            int64_t saved = model_prefix_saved(&sb);
            int P = (int)(saved / 7);
            float *hv = malloc((size_t)8 * t.hidden * sizeof(float)), lg[72];
            for (int k = 0; k < 2; k++) {
                int shared = (np & 1) ? k : 1 - k;
                SeqBatch run = {ids.v, lens, 8, shared ? group : NULL};
                double t0 = now_s(), c0 = cpu_s();
                if (model_forward(inf, &run, 0, hv, &err)) die("bon forward", &err);
                model_head_rows_forward(inf, hv, 8, ss.digits, 9, lg);
                if (np > 1) ts[shared] += now_s() - t0, cs[shared] += cpu_s() - c0;
            }
            if (np > 1) {
                for (int c = 0; c < 8; c++) {
                    prompt_tok += P;
                    resp_tok += lens[c] - P;
                    bon_all += lens[c];
                }
                bon_saved += saved;
            }
            free(hv);
            idvec_free(&ids);
        }
        int timed = np - 1;
        printf("  best-of-8 scoring, %d prompts: shared prefix %.0f tokens, rest %.0f per candidate; "
               "%.1f%% saved; %.3f s unshared, %.3f s shared: %.2fx; CPU %.3f vs %.3f s: %.2fx\n",
               timed, (double)prompt_tok / (8.0 * timed), (double)resp_tok / (8.0 * timed),
               100.0 * bon_saved / (double)bon_all, ts[0], ts[1], ts[0] / ts[1], cs[0], cs[1], cs[0] / cs[1]);
        fflush(stdout);
        micro_batch_free(&mb);
        dataset_free(&set);
    }
    adamw_free(t.opt);
    model_free(t.m);
    model_free(inf);
    scoring_setup_free(&ss);
    tok_free(tok);
    return 0;
}
