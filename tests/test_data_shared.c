/* Reads every file of ../shared/data/prefs and ../shared/data/labels and
 * checks the counts that ../shared/data/README.md gives (the reference). */
#include "data/reader.h"
#include "test.h"

static int load(const char *rel, DataSet *s, DataReport *rep) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", shared_data_dir(), rel);
    DataOptions o;
    data_options_default(&o);
    OprmError err = {{0}};
    int rc = data_load(path, &o, s, rep, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    return rc;
}

static size_t count_subset(const DataSet *s, const char *subset) {
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) n += s->recs[i].subset && !strcmp(s->recs[i].subset, subset);
    return n;
}

static size_t count_prefix(const DataSet *s, const char *prefix) {
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->recs[i].subset && !strncmp(s->recs[i].subset, prefix, strlen(prefix));
    return n;
}

static size_t count_label(const DataSet *s, int resp, LabelKind k) {
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) n += s->recs[i].responses[resp].label.kind == k;
    return n;
}

static size_t count_multi_turn(const DataSet *s, size_t turns) {
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) n += s->recs[i].prompt.n == turns;
    return n;
}

static void check_pairs_basic(const DataSet *s, const DataReport *rep, size_t expect) {
    CHECK(s->n == expect);
    CHECK(rep->records == expect);
    CHECK(rep->by_kind[REC_PAIR] == expect);
    CHECK(rep->skipped == 0);
    size_t well_formed = 0;
    for (size_t i = 0; i < s->n; i++) {
        const DataRecord *r = &s->recs[i];
        well_formed += r->kind == REC_PAIR && r->n_responses == 2 && r->prompt.n >= 1 && r->id &&
                       r->line == i + 1 && r->prompt.msgs[r->prompt.n - 1].role == ROLE_USER;
    }
    CHECK(well_formed == expect);
}

static void test_autoj_pairwise(void) {
    DataSet s;
    DataReport rep;
    if (load("prefs/autoj-pairwise.jsonl", &s, &rep)) {
        CHECK(0);
        return;
    }
    check_pairs_basic(&s, &rep, 1018);
    CHECK(count_multi_turn(&s, 1) == 1018); /* prompts are single strings */
    size_t named = 0;
    for (size_t i = 0; i < s.n; i++) named += !strncmp(s.recs[i].id, "autoj-pairwise-", 15);
    CHECK(named == 1018);
    dataset_free(&s);
}

static void test_pandalm(void) {
    DataSet s;
    DataReport rep;
    if (load("prefs/pandalm.jsonl", &s, &rep)) {
        CHECK(0);
        return;
    }
    check_pairs_basic(&s, &rep, 894);
    size_t named = 0;
    for (size_t i = 0; i < s.n; i++)
        named += s.recs[i].subset && !strncmp(s.recs[i].id, "pandalm-", 8);
    CHECK(named == 894);
    size_t trues = 0;
    for (size_t i = 0; i < s.n; i++)
        for (int k = 0; k < 2; k++) trues += !strcmp(s.recs[i].responses[k].text, "True");
    CHECK(trues == 6); /* README: 6 boolean responses written as "True" */
    size_t empty = 0;
    for (size_t i = 0; i < s.n; i++)
        for (int k = 0; k < 2; k++) empty += s.recs[i].responses[k].text[0] == 0;
    CHECK(empty == 52); /* counted with Python's json module: empty answers are valid responses */
    dataset_free(&s);
}

static void test_llmbar(void) {
    DataSet s;
    DataReport rep;
    if (load("prefs/llmbar.jsonl", &s, &rep)) {
        CHECK(0);
        return;
    }
    check_pairs_basic(&s, &rep, 1199);
    static const struct { const char *name; size_t n; } subsets[] = {
        {"llmbar-natural", 100},      {"llmbar-adver-neighbor", 134}, {"llmbar-adver-GPTInst", 92},
        {"llmbar-adver-GPTOut", 47},  {"llmbar-adver-manual", 46},    {"faireval-human", 66},
        {"llmeval2-human", 199},      {"mtbench-human", 200},         {"casestudy-constraint", 89},
        {"casestudy-negation", 59},   {"casestudy-normal", 59},       {"casestudy-base9", 54},
        {"casestudy-base10", 54}};
    size_t total = 0;
    for (size_t i = 0; i < sizeof subsets / sizeof *subsets; i++) {
        size_t n = count_subset(&s, subsets[i].name);
        if (n != subsets[i].n) fprintf(stderr, "  subset %s: %zu, expected %zu\n", subsets[i].name, n, subsets[i].n);
        CHECK(n == subsets[i].n);
        total += n;
    }
    CHECK(total == 1199);
    CHECK(count_label(&s, 0, LABEL_NONE) == 1199);
    dataset_free(&s);
}

static void test_hhh(void) {
    DataSet s;
    DataReport rep;
    if (load("prefs/hhh.jsonl", &s, &rep)) {
        CHECK(0);
        return;
    }
    check_pairs_basic(&s, &rep, 221);
    CHECK(count_subset(&s, "hhh-harmless") == 58);
    CHECK(count_subset(&s, "hhh-helpful") == 59);
    CHECK(count_subset(&s, "hhh-honest") == 61);
    CHECK(count_subset(&s, "hhh-other") == 43);
    /* 41 dialogue prompts as message lists: more than one turn, alternating, ending with user */
    size_t lists = 0, alternating = 0;
    for (size_t i = 0; i < s.n; i++) {
        const Conversation *c = &s.recs[i].prompt;
        if (c->n < 2) continue;
        lists++;
        int ok = 1;
        for (size_t k = 0; k < c->n; k++)
            ok &= c->msgs[k].role == ((c->n - 1 - k) % 2 == 0 ? ROLE_USER : ROLE_ASSISTANT) &&
                  c->msgs[k].content[0] != 0;
        alternating += ok;
    }
    CHECK(lists == 41);
    CHECK(alternating == 41);
    dataset_free(&s);
}

static void test_judgebench(void) {
    DataSet s;
    DataReport rep;
    if (load("prefs/judgebench.jsonl", &s, &rep)) {
        CHECK(0);
        return;
    }
    check_pairs_basic(&s, &rep, 619);
    CHECK(count_label(&s, 0, LABEL_GOOD) == 619);
    CHECK(count_label(&s, 1, LABEL_BAD) == 619);
    CHECK(rep.labelled_responses == 2 * 619);
    CHECK(s.recs[0].responses[0].label.centre == 8 && s.recs[0].responses[1].label.centre == 2);
    /* subsets: mmlu-pro-* 308, livebench-* 239, livecodebench 72 (counted from the file) */
    CHECK(count_prefix(&s, "mmlu-pro-") == 308);
    CHECK(count_subset(&s, "livebench-reasoning") + count_subset(&s, "livebench-math") == 239);
    CHECK(count_subset(&s, "livecodebench") == 72);
    dataset_free(&s);
}

static void test_xstest_pairs(void) {
    DataSet s;
    DataReport rep;
    if (load("prefs/xstest-pairs.jsonl", &s, &rep)) {
        CHECK(0);
        return;
    }
    check_pairs_basic(&s, &rep, 1566);
    /* every pair is strictly ordered by its labels (good > normal > bad) */
    size_t ordered = 0;
    for (size_t i = 0; i < s.n; i++)
        ordered += s.recs[i].responses[0].label.lo > s.recs[i].responses[1].label.hi;
    CHECK(ordered == 1566);
    CHECK(count_label(&s, 0, LABEL_GOOD) == 976 + 494);
    CHECK(count_label(&s, 1, LABEL_BAD) == 976 + 96);
    dataset_free(&s);
}

static void check_labels(const char *rel, size_t n, size_t good, size_t normal, size_t bad) {
    DataSet s;
    DataReport rep;
    if (load(rel, &s, &rep)) {
        CHECK(0);
        return;
    }
    CHECK(s.n == n);
    CHECK(rep.by_kind[REC_POINT] == n);
    CHECK(rep.labelled_responses == n);
    CHECK(count_label(&s, 0, LABEL_GOOD) == good);
    CHECK(count_label(&s, 0, LABEL_NORMAL) == normal);
    CHECK(count_label(&s, 0, LABEL_BAD) == bad);
    dataset_free(&s);
}

static void test_labels_files(void) {
    check_labels("labels/xstest-labels.jsonl", 2250, 1766, 176, 308);
    check_labels("labels/autoj-single.jsonl", 960, 275, 341, 344);
    check_labels("labels/prometheus.jsonl", 640, 478, 59, 103);
    DataSet s;
    DataReport rep;
    if (load("labels/prometheus.jsonl", &s, &rep)) {
        CHECK(0);
        return;
    }
    /* 320 MT-Bench second-turn answers with (user, assistant, user) prompts */
    CHECK(count_multi_turn(&s, 3) == 320);
    CHECK(count_multi_turn(&s, 1) == 320);
    size_t shape = 0;
    for (size_t i = 0; i < s.n; i++) {
        const Conversation *c = &s.recs[i].prompt;
        shape += c->n == 3 && c->msgs[0].role == ROLE_USER && c->msgs[1].role == ROLE_ASSISTANT &&
                 c->msgs[2].role == ROLE_USER;
    }
    CHECK(shape == 320);
    CHECK(count_prefix(&s, "mt-bench/") == 320 && count_prefix(&s, "vicuna/") == 320);
    dataset_free(&s);
}

/* The streaming reader gives the same records as the loader, in any order. */
static void test_streaming_random_access(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/prefs/hhh.jsonl", shared_data_dir());
    DataOptions o;
    data_options_default(&o);
    OprmError err;
    DataSet all;
    DataReport rep;
    if (data_load(path, &o, &all, &rep, &err)) {
        CHECK(0);
        return;
    }
    DataFile *f = data_open(path, &o, NULL, &err);
    CHECK(f && data_count(f) == all.n);
    size_t same = 0;
    for (size_t k = 0; f && k < all.n; k++) {
        size_t i = (k * 97) % all.n; /* 97 is coprime to 221: a permutation */
        DataRecord r;
        if (data_read(f, i, &r, &err)) break;
        same += !strcmp(r.id, all.recs[i].id) && r.line == all.recs[i].line &&
                !strcmp(r.responses[0].text, all.recs[i].responses[0].text) &&
                r.prompt.n == all.recs[i].prompt.n;
        record_free(&r);
    }
    CHECK(same == all.n);
    DataRecord r;
    CHECK(f && data_read(f, all.n, &r, &err) == -1);
    data_close(f);
    dataset_free(&all);
}

int main(void) {
    RUN_SHARED(test_autoj_pairwise, "prefs/autoj-pairwise.jsonl");
    RUN_SHARED(test_pandalm, "prefs/pandalm.jsonl");
    RUN_SHARED(test_llmbar, "prefs/llmbar.jsonl");
    RUN_SHARED(test_hhh, "prefs/hhh.jsonl");
    RUN_SHARED(test_judgebench, "prefs/judgebench.jsonl");
    RUN_SHARED(test_xstest_pairs, "prefs/xstest-pairs.jsonl");
    RUN_SHARED(test_labels_files, "labels");
    RUN_SHARED(test_streaming_random_access, "prefs/hhh.jsonl");
    return test_summary();
}
