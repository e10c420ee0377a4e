/* Data layouts from small inline fixtures (temp files), every bad-input case
 * (message names file, line and field; the loader returns no records), and
 * skip-invalid counting. */
#include "data/flags.h"
#include "data/reader.h"
#include "test.h"
#include "test_data_common.h"

static DataOptions defaults(void) {
    DataOptions o;
    data_options_default(&o);
    return o;
}

/* Loads text as a file; returns the rc, leaves the set in *s. */
static int load_text(const char *name, const char *text, const DataOptions *o, DataSet *s,
                     DataReport *rep, OprmError *err) {
    return data_load(write_tmp(name, text), o, s, rep, err);
}

static int msg_is(const DataRecord *r, size_t i, ChatRole role, const char *content) {
    return i < r->prompt.n && r->prompt.msgs[i].role == role && !strcmp(r->prompt.msgs[i].content, content);
}

static void test_string_pairs_and_labels(void) {
    const char *text =
        "{\"id\": \"a\", \"prompt\": \"Hi\", \"chosen\": \"Hello!\", \"rejected\": \"Go away\", \"subset\": \"s1\"}\n"
        "\n"
        "{\"id\": 7, \"prompt\": \"Q\", \"chosen\": \"A\", \"rejected\": \"B\", \"chosen_label\": \"good\", "
        "\"rejected_label\": \"Bad\"}\r\n"
        "{\"prompt\": \"Q\", \"chosen\": \"A\", \"rejected\": \"B\", \"chosen_label\": 7, \"rejected_label\": \"3\"}\n"
        "{\"prompt\": \"Q\", \"chosen\": \"A\", \"rejected\": \"\", \"chosen_label\": 9.0, \"rejected_label\": null}\n";
    DataOptions o = defaults();
    DataSet s;
    DataReport rep;
    OprmError err;
    CHECK(load_text("pairs.jsonl", text, &o, &s, &rep, &err) == 0);
    CHECK(s.n == 4);
    if (s.n != 4) return;
    CHECK(!strcmp(s.recs[0].id, "a") && !strcmp(s.recs[0].subset, "s1") && s.recs[0].line == 1);
    CHECK(msg_is(&s.recs[0], 0, ROLE_USER, "Hi") && s.recs[0].prompt.n == 1);
    CHECK(!strcmp(s.recs[0].responses[0].text, "Hello!") && !strcmp(s.recs[0].responses[1].text, "Go away"));
    CHECK(s.recs[0].responses[0].label.kind == LABEL_NONE);
    CHECK(!strcmp(s.recs[1].id, "7") && s.recs[1].line == 3 && s.recs[1].subset == NULL);
    CHECK(s.recs[1].responses[0].label.kind == LABEL_GOOD && s.recs[1].responses[0].label.centre == 8);
    CHECK(s.recs[1].responses[1].label.kind == LABEL_BAD && s.recs[1].responses[1].label.lo == 1 &&
          s.recs[1].responses[1].label.hi == 3);
    CHECK(s.recs[2].responses[0].label.kind == LABEL_RATING && s.recs[2].responses[0].label.centre == 7);
    CHECK(s.recs[2].responses[1].label.centre == 3);
    CHECK(s.recs[3].responses[0].label.centre == 9 && s.recs[3].responses[1].label.kind == LABEL_NONE);
    CHECK(!strcmp(s.recs[3].responses[1].text, "")); /* an empty answer is a valid (bad) response */
    CHECK(rep.labelled_responses == 5);
    dataset_free(&s);
}

static void test_message_lists_and_trl(void) {
    const char *text =
        /* explicit prompt as a message list, responses as final assistant messages */
        "{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}], "
        "\"chosen\": [{\"role\": \"assistant\", \"content\": \"Hello\"}], \"rejected\": {\"role\": \"assistant\", \"content\": \"No\"}}\n"
        /* TRL conversational, implicit prompt: whole conversations, shared prefix = prompt */
        "{\"chosen\": [{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}, "
        "{\"role\": \"user\", \"content\": \"3+3?\"}, {\"role\": \"assistant\", \"content\": \"6\"}], "
        "\"rejected\": [{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}, "
        "{\"role\": \"user\", \"content\": \"3+3?\"}, {\"role\": \"assistant\", \"content\": \"7\"}]}\n"
        /* ShareGPT-style keys */
        "{\"prompt\": [{\"from\": \"human\", \"value\": \"Yo\"}], \"chosen\": \"a\", \"rejected\": \"b\"}\n";
    DataOptions o = defaults();
    DataSet s;
    OprmError err;
    CHECK(load_text("conv.jsonl", text, &o, &s, NULL, &err) == 0);
    CHECK(s.n == 3);
    if (s.n != 3) return;
    CHECK(s.recs[0].prompt.n == 2 && msg_is(&s.recs[0], 0, ROLE_SYSTEM, "Be brief.") &&
          msg_is(&s.recs[0], 1, ROLE_USER, "Hi"));
    CHECK(!strcmp(s.recs[0].responses[0].text, "Hello") && !strcmp(s.recs[0].responses[1].text, "No"));
    CHECK(s.recs[1].prompt.n == 3 && msg_is(&s.recs[1], 0, ROLE_USER, "2+2?") &&
          msg_is(&s.recs[1], 1, ROLE_ASSISTANT, "4") && msg_is(&s.recs[1], 2, ROLE_USER, "3+3?"));
    CHECK(!strcmp(s.recs[1].responses[0].text, "6") && !strcmp(s.recs[1].responses[1].text, "7"));
    CHECK(msg_is(&s.recs[2], 0, ROLE_USER, "Yo"));
    dataset_free(&s);
}

static void test_hh_strings(void) {
    const char *text =
        "{\"chosen\": \"\\n\\nHuman: What is 2+2?\\n\\nAssistant: 4\\n\\nHuman: And 3+3? \\n\\nAssistant: 6, of course.\", "
        "\"rejected\": \"\\n\\nHuman: What is 2+2?\\n\\nAssistant: 4\\n\\nHuman: And 3+3? \\n\\nAssistant: 7\"}\n"
        "{\"prompt\": \"\\n\\nHuman: Hi there\\n\\nAssistant:\", \"chosen\": \" Hello!\", \"rejected\": \" Bye.\"}\n";
    DataOptions o = defaults();
    DataSet s;
    OprmError err;
    CHECK(load_text("hh.jsonl", text, &o, &s, NULL, &err) == 0);
    CHECK(s.n == 2);
    if (s.n != 2) return;
    CHECK(s.recs[0].prompt.n == 3 && msg_is(&s.recs[0], 0, ROLE_USER, "What is 2+2?") &&
          msg_is(&s.recs[0], 1, ROLE_ASSISTANT, "4") && msg_is(&s.recs[0], 2, ROLE_USER, "And 3+3?"));
    CHECK(!strcmp(s.recs[0].responses[0].text, "6, of course."));
    CHECK(!strcmp(s.recs[0].responses[1].text, "7"));
    CHECK(s.recs[1].prompt.n == 1 && msg_is(&s.recs[1], 0, ROLE_USER, "Hi there"));
    CHECK(!strcmp(s.recs[1].responses[0].text, "Hello!") && !strcmp(s.recs[1].responses[1].text, "Bye."));
    dataset_free(&s);
}

static void test_points_and_best_of_n(void) {
    const char *text =
        "{\"prompt\": [{\"role\": \"user\", \"content\": \"U1\"}, {\"role\": \"assistant\", \"content\": \"A1\"}, "
        "{\"role\": \"user\", \"content\": \"U2\"}], \"response\": \"R\", \"label\": \"normal\", \"rating\": 4.5}\n"
        "{\"prompt\": \"P\", \"best\": \"B\", \"others\": [\"O1\", {\"role\": \"assistant\", \"content\": \"O2\"}]}\n";
    DataOptions o = defaults();
    DataSet s;
    DataReport rep;
    OprmError err;
    CHECK(load_text("mixed.jsonl", text, &o, &s, &rep, &err) == 0);
    CHECK(s.n == 2 && rep.by_kind[REC_POINT] == 1 && rep.by_kind[REC_BEST_OF_N] == 1);
    if (s.n != 2) return;
    CHECK(s.recs[0].kind == REC_POINT && s.recs[0].prompt.n == 3 && s.recs[0].n_responses == 1);
    CHECK(s.recs[0].responses[0].label.kind == LABEL_NORMAL && s.recs[0].responses[0].label.centre == 5);
    CHECK(s.recs[1].kind == REC_BEST_OF_N && s.recs[1].n_responses == 3);
    CHECK(!strcmp(s.recs[1].responses[0].text, "B") && !strcmp(s.recs[1].responses[1].text, "O1") &&
          !strcmp(s.recs[1].responses[2].text, "O2"));
    dataset_free(&s);

    /* a point record without a label is fine when labels are not required (scoring) */
    o.point_label_required = 0;
    CHECK(load_text("nolabel.jsonl", "{\"prompt\": \"P\", \"response\": \"R\"}\n", &o, &s, NULL, &err) == 0);
    CHECK(s.n == 1 && s.recs[0].responses[0].label.kind == LABEL_NONE);
    dataset_free(&s);
}

static void test_json_array(void) {
    const char *text =
        "\xEF\xBB\xBF[\n"
        "  {\"prompt\": \"P1\", \"chosen\": \"c1\", \"rejected\": \"r1\"},\n"
        "  {\n"
        "    \"prompt\": \"P2\",\n"
        "    \"chosen\": \"c2\", \"rejected\": \"r2\"\n"
        "  }\n"
        "]\n";
    DataOptions o = defaults();
    DataSet s;
    OprmError err;
    CHECK(load_text("pairs.json", text, &o, &s, NULL, &err) == 0);
    CHECK(s.n == 2);
    if (s.n == 2) {
        CHECK(s.recs[0].line == 2 && s.recs[1].line == 3);
        CHECK(msg_is(&s.recs[1], 0, ROLE_USER, "P2") && !strcmp(s.recs[1].responses[1].text, "r2"));
    }
    dataset_free(&s);
    /* an invalid element: the error names its line */
    const char *bad = "[\n{\"prompt\": \"P1\", \"chosen\": \"c1\", \"rejected\": \"r1\"},\n\n"
                      "{\"prompt\": \"P2\", \"chosen\": 3, \"rejected\": \"r2\"}]";
    CHECK(load_text("bad.json", bad, &o, &s, NULL, &err) == -1 && s.n == 0);
    CHECK_STR_CONTAINS(err.msg, "bad.json:4: field 'chosen': expected a string or a message list, got number");
    CHECK(load_text("trunc.json", "[{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\"},\n{\"prompt\": ", &o,
                    &s, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "trunc.json:2: malformed JSON");
    CHECK(load_text("empty.json", "[]", &o, &s, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "empty.json: no records");
}

static void test_field_overrides(void) {
    const char *text = "{\"question\": \"Q\", \"good\": \"G\", \"poor\": \"P\", \"g_lab\": \"good\", \"p_lab\": \"normal\", \"uid\": \"x1\"}\n";
    DataOptions o = defaults();
    o.fields.prompt = "question";
    o.fields.chosen = "good";
    o.fields.rejected = "poor";
    o.fields.chosen_label = "g_lab";
    o.fields.rejected_label = "p_lab";
    o.fields.id = "uid";
    DataSet s;
    OprmError err;
    CHECK(load_text("custom.jsonl", text, &o, &s, NULL, &err) == 0);
    CHECK(s.n == 1);
    if (s.n == 1) {
        CHECK(msg_is(&s.recs[0], 0, ROLE_USER, "Q") && !strcmp(s.recs[0].responses[0].text, "G"));
        CHECK(s.recs[0].responses[1].label.kind == LABEL_NORMAL && !strcmp(s.recs[0].id, "x1"));
    }
    dataset_free(&s);
    /* the error message uses the overridden name */
    CHECK(load_text("custom2.jsonl", "{\"question\": \"Q\", \"good\": \"G\"}\n", &o, &s, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "custom2.jsonl:1: field 'poor': missing");
}

/* Each bad input: the loader fails, returns nothing, and names file:line and field. */
static void expect_error(const char *name, const char *text, const char *expected) {
    DataOptions o = defaults();
    DataSet s = {(DataRecord *)1, 99};
    DataReport rep;
    OprmError err = {{0}};
    int rc = load_text(name, text, &o, &s, &rep, &err);
    CHECK(rc == -1);
    CHECK(s.n == 0 && s.recs == NULL);
    CHECK(rep.records == 0);
    CHECK_STR_CONTAINS(err.msg, expected);
    /* the streaming open refuses the file too */
    CHECK(data_open(tmp_path(name), &o, NULL, &err) == NULL);
}

#define GOOD_LINE "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\"}\n"

static void test_bad_malformed(void) {
    expect_error("m.jsonl", GOOD_LINE "{\"prompt\": \"P\", \"chosen\": \n" GOOD_LINE, "m.jsonl:2: malformed JSON");
    expect_error("m2.jsonl", GOOD_LINE GOOD_LINE "[1, 2]\n", "m2.jsonl:3: expected a JSON object, got array");
}

static void test_bad_missing(void) {
    expect_error("miss.jsonl", GOOD_LINE "{\"prompt\": \"P\", \"chosen\": \"c\"}\n",
                 "miss.jsonl:2: field 'rejected': missing");
    expect_error("miss2.jsonl", "{\"chosen\": \"c\", \"rejected\": \"r\"}\n", "miss2.jsonl:1: field 'prompt': missing");
    expect_error("miss3.jsonl", "{\"prompt\": \"P\", \"response\": \"r\"}\n", "miss3.jsonl:1: field 'label': missing");
    expect_error("miss4.jsonl", "{\"prompt\": \"P\", \"text\": \"r\"}\n", "miss4.jsonl:1: field 'chosen': missing");
    expect_error("miss5.jsonl", "{\"prompt\": [{\"role\": \"user\"}], \"chosen\": \"c\", \"rejected\": \"r\"}\n",
                 "miss5.jsonl:1: field 'prompt': message 1: missing 'content'");
}

static void test_bad_empty(void) {
    expect_error("e.jsonl", GOOD_LINE GOOD_LINE GOOD_LINE "{\"prompt\": \"\", \"chosen\": \"c\", \"rejected\": \"r\"}\n",
                 "e.jsonl:4: field 'prompt': empty");
    expect_error("e2.jsonl", "{\"prompt\": [], \"chosen\": \"c\", \"rejected\": \"r\"}\n",
                 "e2.jsonl:1: field 'prompt': empty message list");
    expect_error("e3.jsonl", "{\"prompt\": \"P\", \"best\": \"b\", \"others\": []}\n", "e3.jsonl:1: field 'others': empty list");
}

static void test_bad_type(void) {
    expect_error("t.jsonl", GOOD_LINE "{\"prompt\": \"P\", \"chosen\": 5, \"rejected\": \"r\"}\n",
                 "t.jsonl:2: field 'chosen': expected a string or a message list, got number");
    expect_error("t2.jsonl", "{\"prompt\": {\"x\": 1}, \"chosen\": \"c\", \"rejected\": \"r\"}\n",
                 "t2.jsonl:1: field 'prompt': expected a string or a message list, got object");
    expect_error("t3.jsonl", "{\"prompt\": [{\"role\": \"robot\", \"content\": \"x\"}], \"chosen\": \"c\", \"rejected\": \"r\"}\n",
                 "t3.jsonl:1: field 'prompt': message 1: unknown role \"robot\"");
    expect_error("t4.jsonl", "{\"prompt\": \"P\", \"chosen\": [{\"role\": \"user\", \"content\": \"x\"}], \"rejected\": \"r\"}\n",
                 "t4.jsonl:1: field 'chosen': the message list must end with an assistant message");
    expect_error("t5.jsonl", "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\", \"chosen_label\": true}\n",
                 "t5.jsonl:1: field 'chosen_label': expected good, normal, bad or a rating 1..9, got boolean");
}

static void test_bad_label(void) {
    expect_error("l.jsonl", GOOD_LINE "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\", \"chosen_label\": 12}\n",
                 "l.jsonl:2: field 'chosen_label': rating 12 is out of range");
    expect_error("l2.jsonl", "{\"prompt\": \"P\", \"response\": \"r\", \"label\": \"excellent\"}\n",
                 "l2.jsonl:1: field 'label': expected good, normal, bad or a rating 1..9, got \"excellent\"");
    expect_error("l3.jsonl", "{\"prompt\": \"P\", \"response\": \"r\", \"label\": 5.5}\n",
                 "l3.jsonl:1: field 'label': rating 5.5 is out of range");
    expect_error("l4.jsonl", "{\"prompt\": \"P\", \"response\": \"r\", \"label\": 0}\n",
                 "l4.jsonl:1: field 'label': rating 0 is out of range");
}

/* Spec §3: contradicting and identical pairs are skipped and counted even
 * without --skip-invalid (a file of nothing else has no valid records). */
static void test_bad_contradiction(void) {
    DataOptions o0 = defaults();
    DataSet s0;
    DataReport rep0;
    OprmError err0 = {{0}};
    CHECK(load_text("c.jsonl", GOOD_LINE "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\", \"chosen_label\": \"bad\", \"rejected_label\": \"good\"}\n"
                    "{\"prompt\": \"P\", \"chosen\": \"same\", \"rejected\": \"same\"}\n" GOOD_LINE,
                    &o0, &s0, &rep0, &err0) == 0);
    CHECK(s0.n == 2 && rep0.records == 2 && rep0.skipped == 2);
    CHECK(rep0.by_reason[DATA_CONTRADICTION] == 1 && rep0.by_reason[DATA_IDENTICAL] == 1);
    CHECK_STR_CONTAINS(rep0.first_error[DATA_CONTRADICTION],
                       "c.jsonl:2: field 'chosen_label': chosen is labelled bad but rejected good: the labels contradict the preference");
    CHECK_STR_CONTAINS(rep0.first_error[DATA_IDENTICAL], "c.jsonl:3: field 'rejected': same text as 'chosen'");
    CHECK(s0.n == 2 && s0.recs[1].line == 4);
    dataset_free(&s0);
    expect_error("c2.jsonl", "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\", \"chosen_label\": 6, \"rejected_label\": \"good\"}\n",
                 "c2.jsonl:1: field 'chosen_label': chosen is labelled rating 6 but rejected good");
    /* same level, or overlapping regions, is not a contradiction */
    DataOptions o = defaults();
    DataSet s;
    OprmError err;
    CHECK(load_text("c3.jsonl", "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\", \"chosen_label\": \"good\", \"rejected_label\": \"good\"}\n"
                                "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\", \"chosen_label\": 7, \"rejected_label\": \"good\"}\n",
                    &o, &s, NULL, &err) == 0 && s.n == 2);
    dataset_free(&s);
}

static void test_bad_pair_shape(void) {
    expect_error("i.jsonl", "{\"prompt\": \"P\", \"chosen\": \"same\", \"rejected\": \"same\"}\n",
                 "i.jsonl:1: field 'rejected': same text as 'chosen'");
    expect_error("d.jsonl",
                 "{\"chosen\": [{\"role\": \"user\", \"content\": \"A\"}, {\"role\": \"assistant\", \"content\": \"x\"}], "
                 "\"rejected\": [{\"role\": \"user\", \"content\": \"B\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}\n",
                 "d.jsonl:1: field 'rejected': the conversations before the final assistant messages differ");
    expect_error("nofile.jsonl", "", "nofile.jsonl: no records");
    DataOptions o = defaults();
    OprmError err;
    CHECK(data_open("/nonexistent/x.jsonl", &o, NULL, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/x.jsonl: cannot open");
}

static void test_skip_invalid(void) {
    const char *text =
        GOOD_LINE
        "{\"prompt\": \"P\", \"chosen\": \n"                                          /* malformed */
        "{\"prompt\": \"P\", \"chosen\": \"c\"}\n"                                    /* missing */
        "{\"prompt\": \"\", \"chosen\": \"c\", \"rejected\": \"r\"}\n"                /* empty */
        "{\"prompt\": \"P\", \"chosen\": 1, \"rejected\": \"r\"}\n"                   /* type */
        "{\"prompt\": \"P\", \"chosen\": 2, \"rejected\": \"r\"}\n"                   /* type */
        "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\", \"rejected_label\": \"meh\"}\n" /* label */
        "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"r\", \"chosen_label\": \"bad\", \"rejected_label\": \"normal\"}\n"
        "{\"prompt\": \"P\", \"chosen\": \"c\", \"rejected\": \"c\"}\n"               /* identical */
        GOOD_LINE;
    DataOptions o = defaults();
    o.skip_invalid = 1;
    DataSet s;
    DataReport rep;
    OprmError err;
    CHECK(load_text("skip.jsonl", text, &o, &s, &rep, &err) == 0);
    CHECK(s.n == 2 && rep.records == 2);
    CHECK(s.n == 2 && s.recs[0].line == 1 && s.recs[1].line == 10);
    CHECK(rep.skipped == 8);
    CHECK(rep.by_reason[DATA_MALFORMED] == 1);
    CHECK(rep.by_reason[DATA_MISSING] == 1);
    CHECK(rep.by_reason[DATA_EMPTY] == 1);
    CHECK(rep.by_reason[DATA_WRONG_TYPE] == 2);
    CHECK(rep.by_reason[DATA_BAD_LABEL] == 1);
    CHECK(rep.by_reason[DATA_CONTRADICTION] == 1);
    CHECK(rep.by_reason[DATA_IDENTICAL] == 1);
    CHECK_STR_CONTAINS(rep.first_error[DATA_WRONG_TYPE], "skip.jsonl:5: field 'chosen'");
    CHECK_STR_CONTAINS(rep.first_error[DATA_CONTRADICTION], "skip.jsonl:8:");
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    data_report_print(&rep, "skip.jsonl", mf);
    fclose(mf);
    CHECK_STR_CONTAINS(buf, "skip.jsonl: 2 records (2 pairs");
    CHECK_STR_CONTAINS(buf, "skipped 8 invalid");
    CHECK_STR_CONTAINS(buf, "2 wrong type (first: ");
    CHECK_STR_CONTAINS(buf, "skip.jsonl:5: field 'chosen'");
    free(buf);
    dataset_free(&s);
    /* all invalid: still an error, with the report filled */
    CHECK(load_text("skip2.jsonl", "{\"prompt\": \"P\"}\n", &o, &s, &rep, &err) == -1);
    CHECK(rep.skipped == 1 && rep.records == 0);
    CHECK_STR_CONTAINS(err.msg, "skip2.jsonl: no valid records (1 invalid skipped; first: ");
    CHECK_STR_CONTAINS(err.msg, "skip2.jsonl:1: field 'chosen': missing");
}

static void test_flags(void) {
    DataOptions o = defaults();
    OprmError err;
    char *argv[] = {"train", "--prompt-key", "question", "--chosen_key=good", "--skip-invalid",
                    "--data-kind", "pair", "--lr", "1e-5", "--label-key"};
    int argc = 10;
    CHECK(data_flag_parse(&o, argc, argv, 1, &err) == 2 && !strcmp(o.fields.prompt, "question"));
    CHECK(data_flag_parse(&o, argc, argv, 3, &err) == 1 && !strcmp(o.fields.chosen, "good"));
    CHECK(data_flag_parse(&o, argc, argv, 4, &err) == 1 && o.skip_invalid == 1);
    CHECK(data_flag_parse(&o, argc, argv, 5, &err) == 2 && o.kind == REC_PAIR);
    CHECK(data_flag_parse(&o, argc, argv, 7, &err) == 0); /* not a data flag */
    CHECK(data_flag_parse(&o, argc, argv, 9, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "--label-key needs a value");
    char *bad[] = {"x", "--data-kind", "triples"};
    CHECK(data_flag_parse(&o, 3, bad, 1, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "unknown kind 'triples'");
    CHECK(!strcmp(o.fields.rejected, "rejected")); /* untouched */
}

/* Many records: the index holds them all, any record can be read back. */
static void test_many_records_streaming(void) {
    const char *path = tmp_path("many.jsonl");
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        CHECK(0);
        return;
    }
    const size_t n = 20000;
    for (size_t i = 0; i < n; i++)
        fprintf(fp, "{\"id\": \"r%zu\", \"prompt\": \"question %zu\", \"chosen\": \"yes %zu\", \"rejected\": \"no\"}\n",
                i, i, i);
    fclose(fp);
    DataOptions o = defaults();
    OprmError err;
    DataReport rep;
    DataFile *f = data_open(path, &o, &rep, &err);
    CHECK(f && data_count(f) == n && rep.records == n);
    size_t ok = 0;
    for (size_t k = 0; f && k < 1000; k++) {
        size_t i = (k * 7919) % n;
        DataRecord r;
        char id[32], chosen[32];
        snprintf(id, sizeof id, "r%zu", i);
        snprintf(chosen, sizeof chosen, "yes %zu", i);
        if (data_read(f, i, &r, &err)) break;
        ok += !strcmp(r.id, id) && !strcmp(r.responses[0].text, chosen) && r.line == i + 1;
        record_free(&r);
    }
    CHECK(ok == 1000);
    data_close(f);
}

int main(void) {
    RUN(test_many_records_streaming);
    RUN(test_flags);
    RUN(test_string_pairs_and_labels);
    RUN(test_message_lists_and_trl);
    RUN(test_hh_strings);
    RUN(test_points_and_best_of_n);
    RUN(test_json_array);
    RUN(test_field_overrides);
    RUN(test_bad_malformed);
    RUN(test_bad_missing);
    RUN(test_bad_empty);
    RUN(test_bad_type);
    RUN(test_bad_label);
    RUN(test_bad_contradiction);
    RUN(test_bad_pair_shape);
    RUN(test_skip_invalid);
    remove_tmp_dir();
    return test_summary();
}
