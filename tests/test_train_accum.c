/* Gradient accumulation and --label-fraction (issue 12 item 8).
 * Accumulation: K micro-batches of B records give the gradients of one batch
 * of K*B records (the loss of a step is the mean over all its records), within
 * 1e-5 of the largest gradient, for full fine-tuning, RgFT, LoRA and the BT
 * loss, with packed sequences of unequal lengths. Label fraction: the seeded
 * subset (the same for a seed, another for another seed, nested in F), its
 * count (binomial around F*N), and that micro-batches apply exactly it. */
#include "data/reader.h"
#include "tok/chat.h"
#include "tok/tokenizer.h"
#include "train/checkpoint.h"
#include "train/train_batch.h"
#include "train_testutil.h"

static char tmp_dir[] = "/tmp/oprm_test_train_accum_XXXXXX";
static char model[TINY_PATH], data[TINY_PATH], ldata[TINY_PATH];

typedef struct {
    float *g;
    size_t n;
    double max_abs;
    int calls;
} Grads;

static void grab(void *ctx, int64_t step, const ModelParam *p, int n) {
    Grads *gr = ctx;
    if (step != 1) return;
    gr->calls++;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += p[i].grad ? p[i].numel : 0; /* frozen tensors have none */
    gr->g = realloc(gr->g, total * sizeof *gr->g);
    gr->n = total;
    size_t o = 0;
    gr->max_abs = 0;
    for (int i = 0; i < n; i++) {
        if (!p[i].grad) continue;
        memcpy(gr->g + o, p[i].grad, p[i].numel * sizeof *gr->g);
        for (size_t k = 0; k < p[i].numel; k++)
            if (fabs(gr->g[o + k]) > gr->max_abs) gr->max_abs = fabs(gr->g[o + k]);
        o += p[i].numel;
    }
}

/* Step 1's gradients with batch b and accumulation k (same records: b*k). */
static TrainResult run_grads(TrainConfig base, int b, int k, Grads *gr, const char *out_name) {
    char *out = path_join(tmp_dir, out_name);
    base.output_dir = out;
    base.batch_size = b;
    base.grad_accum = k;
    base.max_steps = 1;
    base.grad_hook = grab;
    base.hook_ctx = gr;
    base.overwrite_output_dir = 1;
    TrainResult r;
    OprmError err = {{0}};
    int rc = train_run(&base, &r, &err);
    if (rc) fprintf(stderr, "%s: %s\n", out_name, err.msg);
    CHECK(rc == 0);
    CHECK(gr->calls == 1);
    free(out);
    return r;
}

static void accum_case(const char *name, TrainConfig c) {
    Grads one = {0}, two = {0}, four = {0};
    TrainResult r1 = run_grads(c, 4, 1, &one, "acc_b4");
    TrainResult r2 = run_grads(c, 2, 2, &two, "acc_b2k2");
    TrainResult r4 = run_grads(c, 1, 4, &four, "acc_b1k4");
    CHECK(one.n > 0 && one.n == two.n && one.n == four.n);
    double d2 = 0, d4 = 0;
    for (size_t i = 0; i < one.n && one.n == two.n && one.n == four.n; i++) {
        if (fabs(one.g[i] - two.g[i]) > d2) d2 = fabs(one.g[i] - two.g[i]);
        if (fabs(one.g[i] - four.g[i]) > d4) d4 = fabs(one.g[i] - four.g[i]);
    }
    fprintf(stderr, "  %s: %zu gradients, max |g| %.3g; max diff vs one batch of 4: 2x2 %.3g, 4x1 %.3g (relative "
                    "%.2g, %.2g)\n", name, one.n, one.max_abs, d2, d4, d2 / one.max_abs, d4 / one.max_abs);
    CHECK(one.max_abs > 1e-6); /* there is a gradient to compare */
    CHECK(d2 <= 1e-5 * one.max_abs);
    CHECK(d4 <= 1e-5 * one.max_abs);
    /* The step's loss is the same mean over the same four records. */
    CHECK_NEAR(r2.first_loss, r1.first_loss, 0, 1e-6);
    CHECK_NEAR(r4.first_loss, r1.first_loss, 0, 1e-6);
    free(one.g);
    free(two.g);
    free(four.g);
}

static void test_grad_accumulation(void) {
    TrainConfig c;
    tiny_config(&c, model, data, NULL);
    accum_case("full fine-tuning", c);
    tiny_config(&c, model, ldata, NULL);
    accum_case("full fine-tuning, RgFT labels", c);
    tiny_config(&c, model, data, NULL);
    c.lora_rank = 2;
    c.lora_targets = "all-linear";
    accum_case("LoRA r=2", c);
    tiny_config(&c, model, data, NULL);
    c.loss = TRAIN_LOSS_BT;
    accum_case("BT loss", c);
}

/* The packed sequences of the test data do differ in length (else the test
 * above would not exercise packing). */
static void test_data_lengths_differ(void) {
    OprmError err = {{0}};
    Tokenizer *tok = tok_load(model, &err);
    CHECK(tok != NULL);
    if (!tok) return;
    ScoringTemplate tpl;
    scoring_template_default(&tpl);
    BatchSetup s = {.scoring = {.tok = tok, .format = CHAT_PLAIN, .tpl = &tpl, .max_len = TINY_MAX_LEN},
                    .rgft_enabled = 1, .rgft = rgft_default_config(), .label_fraction = 1, .seed = 5};
    DataOptions o;
    data_options_default(&o);
    DataSet set = {0};
    CHECK(data_load(data, &o, &set, NULL, &err) == 0);
    MicroBatch b = {0};
    for (size_t i = 0; i < 4 && i < set.n; i++) CHECK(micro_batch_add(&b, &s, &set.recs[i], (int64_t)i, "x", &err) == 0);
    int lo = 1 << 30, hi = 0;
    for (int i = 0; i < b.nseq; i++) {
        if (b.lens[i] < lo) lo = b.lens[i];
        if (b.lens[i] > hi) hi = b.lens[i];
    }
    fprintf(stderr, "  8 packed sequences of %d..%d tokens\n", lo, hi);
    CHECK(b.nseq == 8 && hi - lo >= 5 && hi < TINY_MAX_LEN);
    micro_batch_free(&b);
    dataset_free(&set);
    scoring_template_free(&tpl);
    tok_free(tok);
}

static void test_label_fraction_subset(void) {
    const int n = 20000;
    const double f = 0.3;
    BatchSetup a = {.label_fraction = f, .seed = 7}, b = a, other = a, wider = a, none = a, all = a;
    other.seed = 8;
    wider.label_fraction = 0.6;
    none.label_fraction = 0;
    all.label_fraction = 1;
    int count = 0, same = 0, both_seeds = 0, nested = 1, kept_none = 0, kept_all = 0, wider_count = 0;
    for (int i = 0; i < n; i++) {
        int k = batch_keeps_labels(&a, i);
        count += k;
        same += k == batch_keeps_labels(&b, i);
        both_seeds += k && batch_keeps_labels(&other, i);
        int w = batch_keeps_labels(&wider, i);
        wider_count += w;
        if (k && !w) nested = 0;
        kept_none += batch_keeps_labels(&none, i);
        kept_all += batch_keeps_labels(&all, i);
    }
    double sigma = sqrt(n * f * (1 - f));
    fprintf(stderr, "  F=0.3 keeps %d of %d (expected %.0f +- %.0f); with another seed both keep %d (expected %.0f)\n",
            count, n, n * f, sigma, both_seeds, n * f * f);
    CHECK(fabs(count - n * f) <= 4 * sigma);                 /* its count */
    CHECK(same == n);                                         /* the subset is a function of seed and index */
    CHECK(fabs(both_seeds - n * f * f) <= 4 * sqrt(n * f * f)); /* another seed: an independent subset */
    CHECK(both_seeds < count);
    CHECK(nested);                                            /* a larger F keeps a superset */
    CHECK(fabs(wider_count - n * 0.6) <= 4 * sqrt(n * 0.6 * 0.4));
    CHECK(kept_none == 0 && kept_all == n);
}

/* Micro-batches apply exactly that subset to the labelled pairs, and every
 * unlabelled pair stays unlabelled. */
static void test_label_fraction_in_batches(void) {
    OprmError err = {{0}};
    Tokenizer *tok = tok_load(model, &err);
    CHECK(tok != NULL);
    if (!tok) return;
    ScoringTemplate tpl;
    scoring_template_default(&tpl);
    BatchSetup s = {.scoring = {.tok = tok, .format = CHAT_PLAIN, .tpl = &tpl, .max_len = TINY_MAX_LEN},
                    .rgft_enabled = 1, .rgft = rgft_default_config(), .label_fraction = 0.5, .seed = 1};
    /* A seed under which the six labelled pairs (even lines) split: some keep
     * their labels, some not (so both branches are checked). */
    for (;; s.seed++) {
        int k = 0;
        for (int i = 0; i < 12; i += 2) k += batch_keeps_labels(&s, 1000 + i);
        if (k > 1 && k < 5) break;
    }
    DataOptions o;
    data_options_default(&o);
    DataSet set = {0};
    CHECK(data_load(ldata, &o, &set, NULL, &err) == 0);
    int labelled = 0, kept = 0, expected = 0, mismatches = 0;
    for (size_t i = 0; i < set.n; i++) {
        MicroBatch b = {0};
        int64_t index = (int64_t)i + 1000; /* the global index decides, not the position in the batch */
        CHECK(micro_batch_add(&b, &s, &set.recs[i], index, "x", &err) == 0);
        int has_labels = set.recs[i].responses[0].label.kind != LABEL_NONE;
        int on = b.items[0].labelled[0] || b.items[0].labelled[1];
        labelled += has_labels;
        kept += on;
        if (has_labels) expected += batch_keeps_labels(&s, index);
        if (on != (has_labels && batch_keeps_labels(&s, index))) mismatches++;
        micro_batch_free(&b);
    }
    fprintf(stderr, "  F=0.5 on %d labelled pairs: %d keep their labels\n", labelled, kept);
    CHECK(labelled == 6);
    CHECK(mismatches == 0 && kept == expected);
    CHECK(kept > 0 && kept < labelled); /* this seed keeps some and drops some */
    dataset_free(&set);
    scoring_template_free(&tpl);
    tok_free(tok);
}

int main(void) {
    if (tiny_fixture(tmp_dir, model, data, ldata, 12)) return 1;
    RUN(test_data_lengths_differ);
    RUN(test_grad_accumulation);
    RUN(test_label_fraction_subset);
    RUN(test_label_fraction_in_batches);
    OprmError err;
    remove_tree(tmp_dir, &err);
    return test_summary();
}
