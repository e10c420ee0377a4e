/* The synthetic task: every written record's quality is re-derived here from
 * the rules themselves (parity / size of each digit, written independently of
 * src/synth's tables), and the files are checked for determinism, the flip
 * rate, label consistency and the Best-of-N ordering. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fileio.h"
#include "synth/task.h"
#include "test.h"

/* Independent oracle: the rule named in the prompt, applied digit by digit. */
static int oracle_wrong(const char *prompt, const char *resp, int digits) {
    int rule = strstr(prompt, " even ") ? 0 : strstr(prompt, " odd ") ? 1 : strstr(prompt, " small ") ? 2
             : strstr(prompt, " large ") ? 3 : -1;
    if (rule < 0 || (int)strlen(resp) != digits) return -1;
    int wrong = 0;
    for (int i = 0; i < digits; i++) {
        int d = resp[i] - '0';
        if (d < 0 || d > 9) return -1;
        int ok = rule == 0 ? d % 2 == 0 : rule == 1 ? d % 2 == 1 : rule == 2 ? d < 5 : d >= 5;
        wrong += !ok;
    }
    return wrong;
}

/* good 0 wrong, normal 2..3, bad 5..6 (for 6 digits). */
static int oracle_grade(int wrong) { return wrong == 0 ? 2 : (wrong >= 2 && wrong <= 3) ? 1 : wrong >= 5 ? 0 : -1; }

static int grade_of_name(const char *s) {
    return !s ? -1 : !strcmp(s, "good") ? 2 : !strcmp(s, "normal") ? 1 : !strcmp(s, "bad") ? 0 : -1;
}

static json_t **read_jsonl(const char *dir, const char *name, int *n) {
    char *path = path_join(dir, name);
    OprmError err = {0};
    size_t len;
    char *text = read_file(path, &len, &err);
    free(path);
    *n = 0;
    if (!text) return NULL;
    json_t **rows = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        rows = realloc(rows, (size_t)(*n + 1) * sizeof *rows);
        rows[*n] = json_loads(line, 0, NULL);
        (*n)++;
    }
    free(text);
    return rows;
}

static void free_rows(json_t **rows, int n) {
    for (int i = 0; i < n; i++) json_decref(rows[i]);
    free(rows);
}

static const char *S(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static void remove_dir(const char *dir) {
    const char *names[] = {"train_pairs.jsonl", "train_truth.jsonl", "test_pairs.jsonl", "train_labels.jsonl",
                           "test_labels.jsonl", "test_bon.jsonl",    "tokenizer.json",   "tokenizer_config.json",
                           "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = path_join(dir, names[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
}

static void test_responses(void) {
    SynthRng r;
    synth_rng_seed(&r, 7);
    int counts[3][10] = {{0}};
    for (int i = 0; i < 3000; i++) {
        int rule = synth_rng_below(&r, SYNTH_N_RULES);
        SynthGrade g = (SynthGrade)synth_rng_below(&r, 3);
        char prompt[64], resp[16];
        synth_prompt(rule, 6, prompt, sizeof prompt);
        synth_response(&r, rule, 6, g, resp);
        int w = oracle_wrong(prompt, resp, 6);
        CHECK(w >= 0 && oracle_grade(w) == (int)g);
        CHECK(synth_count_wrong(prompt, resp) == w);
        if (w >= 0) counts[g][w]++;
    }
    /* Each allowed count of wrong digits does occur. */
    CHECK(counts[2][0] > 0 && counts[1][2] > 0 && counts[1][3] > 0 && counts[0][5] > 0 && counts[0][6] > 0);
    CHECK(synth_count_wrong("Write six even digits.", "24680") == -1); /* too short */
    CHECK(synth_count_wrong("Write six even digits.", "24680x") == -1);
    CHECK(synth_count_wrong("Write six blue digits.", "246802") == -1);
    CHECK(synth_count_wrong("Write six even digits.", "246813") == 2);
    CHECK(synth_grade_of(0, 6) == SYNTH_GOOD && synth_grade_of(3, 6) == SYNTH_NORMAL && synth_grade_of(4, 6) == -1);
    char p[64];
    synth_prompt(3, 9, p, sizeof p);
    CHECK(strcmp(p, "Write nine large digits.") == 0);
}

static void test_write_task(void) {
    char dir[] = "/tmp/oprm-test-synth-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    SynthOptions o;
    synth_default_options(&o);
    o.n_train_pairs = 3000;
    o.seed = 5;
    SynthSummary sum;
    OprmError err = {0};
    CHECK(synth_write_task(dir, &o, &sum, &err) == 0);
    CHECK(sum.n_train_pairs == 3000 && sum.n_test_pairs == 600 && sum.n_bon == 200);

    int n, nt;
    json_t **pairs = read_jsonl(dir, "train_pairs.jsonl", &n), **truth = read_jsonl(dir, "train_truth.jsonl", &nt);
    CHECK(n == 3000 && nt == 3000);
    int flipped = 0, consistent = 0, kinds[3] = {0};
    for (int i = 0; i < n && i < nt; i++) {
        json_t *p = pairs[i], *t = truth[i];
        int wc = oracle_wrong(S(p, "prompt"), S(p, "chosen"), 6), wr = oracle_wrong(S(p, "prompt"), S(p, "rejected"), 6);
        int gc = oracle_grade(wc), gr = oracle_grade(wr);
        int is_flipped = json_is_true(json_object_get(t, "flipped"));
        flipped += is_flipped;
        CHECK(!strcmp(S(p, "id"), S(t, "id")));
        CHECK(json_integer_value(json_object_get(t, "chosen_wrong")) == wc);
        /* Labels stay with the positions: they describe the better text first. */
        int lc = grade_of_name(S(p, "chosen_label")), lr = grade_of_name(S(p, "rejected_label"));
        if (is_flipped) consistent += gc == lr && gr == lc && gc < gr;
        else consistent += gc == lc && gr == lr && gc > gr;
        char subset[32];
        snprintf(subset, sizeof subset, "%s>%s", S(p, "chosen_label"), S(p, "rejected_label"));
        CHECK(!strcmp(S(p, "subset"), subset));
        kinds[lc + lr - 1]++; /* good>normal 2, good>bad 1, normal>bad 0 */
    }
    CHECK(consistent == n);
    CHECK_NEAR(flipped / 3000.0, 0.1, 0.02, 0); /* binomial sd 0.0055 */
    CHECK(sum.n_flipped == flipped);
    for (int k = 0; k < 3; k++) CHECK_NEAR(kinds[k] / 3000.0, 1.0 / 3, 0.04, 0);
    free_rows(pairs, n);
    free_rows(truth, nt);

    pairs = read_jsonl(dir, "test_pairs.jsonl", &n);
    CHECK(n == 600);
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += oracle_grade(oracle_wrong(S(pairs[i], "prompt"), S(pairs[i], "chosen"), 6)) >
              oracle_grade(oracle_wrong(S(pairs[i], "prompt"), S(pairs[i], "rejected"), 6));
    CHECK(ok == n); /* held-out pairs are never flipped */
    free_rows(pairs, n);

    json_t **labels = read_jsonl(dir, "train_labels.jsonl", &n);
    CHECK(n == 600);
    ok = 0;
    for (int i = 0; i < n; i++)
        ok += oracle_grade(oracle_wrong(S(labels[i], "prompt"), S(labels[i], "response"), 6)) ==
              grade_of_name(S(labels[i], "label"));
    CHECK(ok == n);
    free_rows(labels, n);

    json_t **bon = read_jsonl(dir, "test_bon.jsonl", &n);
    CHECK(n == 200);
    ok = 0;
    for (int i = 0; i < n; i++) {
        json_t *others = json_object_get(bon[i], "others");
        int best = oracle_wrong(S(bon[i], "prompt"), S(bon[i], "best"), 6), good = best == 0;
        good &= json_array_size(others) == 3;
        for (size_t k = 0; k < json_array_size(others); k++)
            good &= oracle_wrong(S(bon[i], "prompt"), json_string_value(json_array_get(others, k)), 6) >= 2;
        ok += good;
    }
    CHECK(ok == n);
    free_rows(bon, n);

    /* Deterministic: the same seed writes the same bytes; another seed does not. */
    char *p1 = path_join(dir, "train_pairs.jsonl");
    size_t l1, l2;
    char *a = read_file(p1, &l1, &err);
    CHECK(synth_write_task(dir, &o, NULL, &err) == 0);
    char *b = read_file(p1, &l2, &err);
    CHECK(a && b && l1 == l2 && memcmp(a, b, l1) == 0);
    free(b);
    o.seed = 6;
    CHECK(synth_write_task(dir, &o, NULL, &err) == 0);
    b = read_file(p1, &l2, &err);
    CHECK(a && b && (l1 != l2 || memcmp(a, b, l1) != 0));
    free(a);
    free(b);
    free(p1);
    remove_dir(dir);
}

static void test_bad_options(void) {
    SynthOptions o;
    synth_default_options(&o);
    OprmError err = {0};
    o.digits = 12;
    CHECK(synth_write_task("/tmp/oprm-never-written", &o, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "digits must be 3..9");
    synth_default_options(&o);
    o.flip_fraction = 1.5;
    CHECK(synth_write_task("/tmp/oprm-never-written", &o, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "flip fraction");
    CHECK(!file_exists("/tmp/oprm-never-written"));
}

static void test_demo_tokenizer(void) {
    char dir[] = "/tmp/oprm-test-synthtok-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    OprmError err = {0};
    int vocab = 0;
    CHECK(synth_write_tokenizer(dir, 1, 0, &vocab, &err) == 0);
    /* 256 bytes + merges (the corpus is small: it stops below 400) + 3 added tokens. */
    CHECK(vocab > 256 + 50 && vocab <= 256 + 400 + 3);
    char *p = path_join(dir, "tokenizer.json");
    json_t *t = json_load_file(p, 0, NULL);
    free(p);
    CHECK(t != NULL);
    if (t) {
        json_t *v = json_object_get(json_object_get(t, "model"), "vocab");
        /* The scoring prompt's words became single tokens. */
        CHECK(json_object_get(v, "\xC4\xA0" "reward") != NULL);
        CHECK(json_object_get(v, "excellent") != NULL);
        CHECK(json_object_get(v, "Score") != NULL);
        json_decref(t);
    }
    remove_dir(dir);
}

int main(void) {
    RUN(test_responses);
    RUN(test_write_task);
    RUN(test_bad_options);
    RUN(test_demo_tokenizer);
    return test_summary();
}
