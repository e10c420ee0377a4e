#include "synth/task.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "tok/prompt.h"
#include "util/vec.h"

const char *const SYNTH_RULE_NAMES[SYNTH_N_RULES] = {"even", "odd", "small", "large"};
const char *const SYNTH_RULE_DIGITS[SYNTH_N_RULES] = {"02468", "13579", "01234", "56789"};
static const char *const NUMBER_WORDS[] = {"zero", "one", "two",   "three", "four",
                                           "five", "six", "seven", "eight", "nine"};

const char SYNTH_DEMO_TEMPLATE[] =
    "[system]\n"
    "Rate the response from 1 to 9.\n"
    "[user]\n"
    "{conversation}\n"
    "\n"
    "Response: {response}\n"
    "[cue]\n"
    "Score: \n";

const char *synth_grade_name(SynthGrade g) {
    return g == SYNTH_GOOD ? "good" : g == SYNTH_NORMAL ? "normal" : "bad";
}

void synth_rng_seed(SynthRng *r, uint64_t seed) { r->state = seed ^ 0x6F70726D64656D6Full; /* "oprmdemo" */ }

uint64_t synth_rng_next(SynthRng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int synth_rng_below(SynthRng *r, int n) {
    /* Rejection keeps it exactly uniform. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % (uint64_t)n;
    uint64_t x;
    do x = synth_rng_next(r);
    while (x >= limit);
    return (int)(x % (uint64_t)n);
}

double synth_rng_uniform(SynthRng *r) { return (double)(synth_rng_next(r) >> 11) * 0x1.0p-53; }

void synth_prompt(int rule, int digits, char *out, size_t cap) {
    snprintf(out, cap, "Write %s %s digits.", NUMBER_WORDS[digits], SYNTH_RULE_NAMES[rule]);
}

static void wrong_range(SynthGrade g, int digits, int *lo, int *hi) {
    if (g == SYNTH_GOOD) *lo = *hi = 0;
    else if (g == SYNTH_NORMAL) *lo = digits / 3, *hi = digits / 2;
    else *lo = digits - 1, *hi = digits;
}

void synth_response(SynthRng *r, int rule, int digits, SynthGrade g, char *out) {
    int lo, hi;
    wrong_range(g, digits, &lo, &hi);
    int k = lo + synth_rng_below(r, hi - lo + 1);
    char wrong_digits[10];
    int nw = 0;
    for (char d = '0'; d <= '9'; d++)
        if (!strchr(SYNTH_RULE_DIGITS[rule], d)) wrong_digits[nw++] = d;
    /* Choose k wrong positions (partial Fisher-Yates over the positions). */
    int pos[SYNTH_MAX_DIGITS], is_wrong[SYNTH_MAX_DIGITS] = {0};
    for (int i = 0; i < digits; i++) pos[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + synth_rng_below(r, digits - i);
        int t = pos[i];
        pos[i] = pos[j];
        pos[j] = t;
        is_wrong[pos[i]] = 1;
    }
    for (int i = 0; i < digits; i++)
        out[i] = is_wrong[i] ? wrong_digits[synth_rng_below(r, nw)] : SYNTH_RULE_DIGITS[rule][synth_rng_below(r, 5)];
    out[digits] = 0;
}

int synth_count_wrong(const char *prompt, const char *response) {
    for (int digits = SYNTH_MIN_DIGITS; digits <= SYNTH_MAX_DIGITS; digits++)
        for (int rule = 0; rule < SYNTH_N_RULES; rule++) {
            char p[64];
            synth_prompt(rule, digits, p, sizeof p);
            if (strcmp(p, prompt)) continue;
            if (strlen(response) != (size_t)digits) return -1;
            int wrong = 0;
            for (int i = 0; i < digits; i++) {
                if (response[i] < '0' || response[i] > '9') return -1;
                wrong += !strchr(SYNTH_RULE_DIGITS[rule], response[i]);
            }
            return wrong;
        }
    return -1;
}

int synth_grade_of(int wrong, int digits) {
    for (int g = SYNTH_BAD; g <= SYNTH_GOOD; g++) {
        int lo, hi;
        wrong_range((SynthGrade)g, digits, &lo, &hi);
        if (wrong >= lo && wrong <= hi) return g;
    }
    return -1;
}

void synth_default_options(SynthOptions *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->digits = 6;
    o->n_train_pairs = 12000;
    o->n_test_pairs = 600;
    o->flip_fraction = 0.1;
    o->n_train_labels = 600;
    o->n_test_labels = 300;
    o->n_bon = 200;
    o->bon_size = 4;
}

/* ---------------------------------------------------------------- writing */

static const SynthGrade PAIR_KINDS[3][2] = {{SYNTH_GOOD, SYNTH_NORMAL}, {SYNTH_GOOD, SYNTH_BAD}, {SYNTH_NORMAL, SYNTH_BAD}};

static void append_line(StrBuf *b, json_t *obj) {
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    sb_puts(b, s);
    sb_puts(b, "\n");
    free(s);
    json_decref(obj);
}

static int flush_file(const char *dir, const char *name, StrBuf *b, OprmError *err) {
    char *path = path_join(dir, name);
    int rc = write_file_atomic(path, b->s ? b->s : "", b->n, err);
    free(path);
    sb_clear(b);
    return rc;
}

static void write_pairs(SynthRng *r, const SynthOptions *o, int n, const char *id_prefix, int flip, StrBuf *pairs,
                        StrBuf *truth, int *n_flipped) {
    for (int i = 0; i < n; i++) {
        int rule = synth_rng_below(r, SYNTH_N_RULES), kind = synth_rng_below(r, 3);
        char prompt[64], better[SYNTH_MAX_DIGITS + 1], worse[SYNTH_MAX_DIGITS + 1];
        synth_prompt(rule, o->digits, prompt, sizeof prompt);
        synth_response(r, rule, o->digits, PAIR_KINDS[kind][0], better);
        synth_response(r, rule, o->digits, PAIR_KINDS[kind][1], worse);
        int flipped = flip && synth_rng_uniform(r) < o->flip_fraction;
        char id[48], subset[24];
        snprintf(id, sizeof id, "%s-%d", id_prefix, i);
        snprintf(subset, sizeof subset, "%s>%s", synth_grade_name(PAIR_KINDS[kind][0]),
                 synth_grade_name(PAIR_KINDS[kind][1]));
        append_line(pairs, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "prompt", prompt, "chosen",
                                     flipped ? worse : better, "rejected", flipped ? better : worse, "chosen_label",
                                     synth_grade_name(PAIR_KINDS[kind][0]), "rejected_label",
                                     synth_grade_name(PAIR_KINDS[kind][1]), "subset", subset));
        if (truth) {
            int wb = synth_count_wrong(prompt, better), ww = synth_count_wrong(prompt, worse);
            append_line(truth, json_pack("{s:s, s:b, s:i, s:i}", "id", id, "flipped", flipped, "chosen_wrong",
                                         flipped ? ww : wb, "rejected_wrong", flipped ? wb : ww));
        }
        *n_flipped += flipped;
    }
}

static void write_labels(SynthRng *r, const SynthOptions *o, int n, const char *id_prefix, StrBuf *b) {
    for (int i = 0; i < n; i++) {
        int rule = synth_rng_below(r, SYNTH_N_RULES);
        SynthGrade g = (SynthGrade)synth_rng_below(r, 3);
        char prompt[64], resp[SYNTH_MAX_DIGITS + 1], id[48];
        synth_prompt(rule, o->digits, prompt, sizeof prompt);
        synth_response(r, rule, o->digits, g, resp);
        snprintf(id, sizeof id, "%s-%d", id_prefix, i);
        append_line(b, json_pack("{s:s, s:s, s:s, s:s}", "id", id, "prompt", prompt, "response", resp, "label",
                                 synth_grade_name(g)));
    }
}

int synth_write_task(const char *dir, const SynthOptions *o, SynthSummary *sum, OprmError *err) {
    if (o->digits < SYNTH_MIN_DIGITS || o->digits > SYNTH_MAX_DIGITS)
        return oprm_fail(err, "synthetic task: digits must be %d..%d, got %d", SYNTH_MIN_DIGITS, SYNTH_MAX_DIGITS,
                         o->digits);
    if (o->n_train_pairs < 0 || o->n_test_pairs < 0 || o->n_train_labels < 0 || o->n_test_labels < 0 || o->n_bon < 0)
        return oprm_fail(err, "synthetic task: counts must not be negative");
    if (!(o->flip_fraction >= 0 && o->flip_fraction <= 1))
        return oprm_fail(err, "synthetic task: flip fraction must be in [0, 1], got %g", o->flip_fraction);
    if (o->n_bon > 0 && o->bon_size < 2)
        return oprm_fail(err, "synthetic task: Best-of-N sets need at least 2 candidates, got %d", o->bon_size);
    if (make_dirs(dir, err)) return -1;
    SynthSummary s = {0};
    /* One stream per file, so changing one count leaves the other files as they were. */
    SynthRng r;
    StrBuf a = {0}, b = {0};
    int rc = 0, unused = 0;
    synth_rng_seed(&r, o->seed * 8 + 1);
    write_pairs(&r, o, o->n_train_pairs, "train", 1, &a, &b, &s.n_flipped);
    s.n_train_pairs = o->n_train_pairs;
    rc = flush_file(dir, "train_pairs.jsonl", &a, err);
    if (!rc) rc = flush_file(dir, "train_truth.jsonl", &b, err);
    synth_rng_seed(&r, o->seed * 8 + 2);
    write_pairs(&r, o, o->n_test_pairs, "test", 0, &a, NULL, &unused);
    s.n_test_pairs = o->n_test_pairs;
    if (!rc) rc = flush_file(dir, "test_pairs.jsonl", &a, err);
    synth_rng_seed(&r, o->seed * 8 + 3);
    write_labels(&r, o, o->n_train_labels, "train-label", &a);
    s.n_train_labels = o->n_train_labels;
    if (!rc) rc = flush_file(dir, "train_labels.jsonl", &a, err);
    synth_rng_seed(&r, o->seed * 8 + 4);
    write_labels(&r, o, o->n_test_labels, "test-label", &a);
    s.n_test_labels = o->n_test_labels;
    if (!rc) rc = flush_file(dir, "test_labels.jsonl", &a, err);
    synth_rng_seed(&r, o->seed * 8 + 5);
    for (int i = 0; i < o->n_bon; i++) {
        int rule = synth_rng_below(&r, SYNTH_N_RULES);
        char prompt[64], resp[SYNTH_MAX_DIGITS + 1], id[48];
        synth_prompt(rule, o->digits, prompt, sizeof prompt);
        synth_response(&r, rule, o->digits, SYNTH_GOOD, resp);
        json_t *others = json_array();
        for (int k = 1; k < o->bon_size; k++) {
            char other[SYNTH_MAX_DIGITS + 1];
            synth_response(&r, rule, o->digits, synth_rng_below(&r, 2) ? SYNTH_NORMAL : SYNTH_BAD, other);
            json_array_append_new(others, json_string(other));
        }
        snprintf(id, sizeof id, "bon-%d", i);
        append_line(&a, json_pack("{s:s, s:s, s:s, s:o}", "id", id, "prompt", prompt, "best", resp, "others", others));
    }
    s.n_bon = o->n_bon;
    if (!rc) rc = flush_file(dir, "test_bon.jsonl", &a, err);
    sb_free(&a);
    sb_free(&b);
    if (rc) return oprm_prefix(err, "writing the synthetic task into %s: ", dir);
    if (sum) *sum = s;
    return 0;
}

/* ---------------------------------------------------------------- the demo tokenizer */

int synth_write_tokenizer(const char *dir, uint64_t seed, int max_merges, int *vocab_size, OprmError *err) {
    enum { N_SAMPLES = 400, N_FRAME = 7 };
    /* The fixed text of every scoring prompt counts as much as all samples
     * together, so it merges into whole words first. */
    BpeText texts[N_FRAME + 2 * SYNTH_N_RULES * (SYNTH_MAX_DIGITS - SYNTH_MIN_DIGITS + 1) + N_SAMPLES];
    char prompts[SYNTH_N_RULES * (SYNTH_MAX_DIGITS - SYNTH_MIN_DIGITS + 1)][64];
    char samples[N_SAMPLES][SYNTH_MAX_DIGITS + 1];
    int n = 0, np = 0;
    /* The frames of the default scoring prompt (src/tok/prompt.c) and of the demo's short template. */
    texts[n++] = (BpeText){SCORING_DEFAULT_SYSTEM, N_SAMPLES};
    texts[n++] = (BpeText){"system\nuser\nassistant\nScore: ", N_SAMPLES};
    texts[n++] = (BpeText){"Conversation:\nUser: ", N_SAMPLES};
    texts[n++] = (BpeText){"\n\nResponse to rate:\n", N_SAMPLES};
    texts[n++] = (BpeText){"Rate the response from 1 to 9.", N_SAMPLES};
    texts[n++] = (BpeText){"\n\nResponse: ", N_SAMPLES};
    texts[n++] = (BpeText){"\n\n", N_SAMPLES};
    for (int d = SYNTH_MIN_DIGITS; d <= SYNTH_MAX_DIGITS; d++)
        for (int rule = 0; rule < SYNTH_N_RULES; rule++) {
            synth_prompt(rule, d, prompts[np], sizeof prompts[np]);
            texts[n++] = (BpeText){prompts[np++], N_SAMPLES / 8};
        }
    SynthRng r;
    synth_rng_seed(&r, seed * 8 + 6);
    for (int i = 0; i < N_SAMPLES; i++) {
        synth_response(&r, synth_rng_below(&r, SYNTH_N_RULES), 6, (SynthGrade)synth_rng_below(&r, 3), samples[i]);
        texts[n++] = (BpeText){samples[i], 1};
    }
    BpeMerges m;
    if (bpe_train(texts, n, max_merges > 0 ? max_merges : 400, &m, err)) return -1;
    int rc = bpe_write_tokenizer(dir, &m, vocab_size, err);
    bpe_merges_free(&m);
    return rc;
}
