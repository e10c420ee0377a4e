/* oprm's chat rendering against transformers' own apply_chat_template
 * (tests/fixtures/hf/chat_templates.json from tools/gen_hf_chat_vectors.py),
 * on real tokenizer_config.json templates of every family oprm knows:
 * multi-turn conversations with and without a system prompt and the scoring
 * prompt. A generation-prompt case compares oprm's scoring-style rendering
 * (cue "Score: ") with transformers' text + cue (one space before the cue for
 * the [INST] formats, as oprm renders it). Byte-exact where the fixture says
 * "equal"; where it says "differs" the difference is real and documented, and
 * oprm must say so when it meets that template (chat_template_match). */
#include <jansson.h>

#include "test.h"
#include "tok/chat.h"

#define FIXTURE "tests/fixtures/hf/chat_templates.json"

static json_t *fixture;

static char *template_text(const char *file) {
    char path[600];
    const char *shared = "../shared/data/";
    if (!strncmp(file, shared, strlen(shared))) snprintf(path, sizeof path, "%s/%s", shared_data_dir(), file + strlen(shared));
    else snprintf(path, sizeof path, "%s", file);
    json_error_t je;
    json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je); /* model_max_length 1e30 */
    if (!cfg) fprintf(stderr, "%s: %s\n", path, je.text);
    CHECK(cfg != NULL);
    const char *t = cfg ? json_string_value(json_object_get(cfg, "chat_template")) : NULL;
    char *out = t ? strdup(t) : NULL;
    json_decref(cfg);
    return out;
}

static void conv_from_json(json_t *msgs, Conversation *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        const char *content = json_string_value(json_object_get(m, "content"));
        int role = chat_role_parse(json_string_value(json_object_get(m, "role")));
        CHECK(role >= 0 && content);
        conv_push(c, (ChatRole)role, content, strlen(content));
    }
}

static json_t *template_entry(const char *name) {
    json_t *ts = json_object_get(fixture, "templates");
    for (size_t i = 0; i < json_array_size(ts); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(ts, i), "name")), name))
            return json_array_get(ts, i);
    return NULL;
}

/* Each real template maps to its format; exact ones silently, the others with
 * a note that names the difference and the format used instead. */
static void test_template_match(void) {
    json_t *ts = json_object_get(fixture, "templates");
    CHECK(json_array_size(ts) == 11);
    size_t exact = 0;
    for (size_t i = 0; i < json_array_size(ts); i++) {
        json_t *t = json_array_get(ts, i);
        char *text = template_text(json_string_value(json_object_get(t, "file")));
        if (!text) continue;
        ChatFormat f, want;
        ChatTemplateMatch m;
        StrBuf note = {0};
        OprmError err = {{0}};
        CHECK(chat_format_parse(json_string_value(json_object_get(t, "format")), &want, &err) == 0);
        CHECK(chat_template_match(text, &f, &m, &note, &err) == 0);
        CHECK(f == want);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)chat_template_hash(text));
        CHECK(!strcmp(hex, json_string_value(json_object_get(t, "fnv64"))));
        if (json_is_true(json_object_get(t, "exact"))) {
            CHECK(m == CHAT_TEMPLATE_EXACT);
            CHECK(note.n == 0);
            exact++;
        } else {
            CHECK(m == CHAT_TEMPLATE_FAMILY);
            CHECK_STR_CONTAINS(note.s, "does not render exactly");
            CHECK_STR_CONTAINS(note.s, chat_format_name(want));
        }
        /* a template edited by one byte is no longer the known one: oprm says so */
        size_t n = strlen(text);
        char *edited = malloc(n + 2);
        memcpy(edited, text, n);
        memcpy(edited + n, " ", 2);
        sb_free(&note);
        if (want != CHAT_PLAIN) {
            CHECK(chat_template_match(edited, &f, &m, &note, &err) == 0);
            CHECK(m == CHAT_TEMPLATE_FAMILY && f == want);
            CHECK_STR_CONTAINS(note.s, "none of the templates oprm renders exactly");
            CHECK_STR_CONTAINS(note.s, chat_format_name(want));
        } else { /* no family marker at all: oprm cannot guess, and says which flag chooses */
            CHECK(chat_template_match(edited, &f, &m, &note, &err) == -1);
            CHECK_STR_CONTAINS(err.msg, "--chat-format");
        }
        sb_free(&note);
        free(edited);
        free(text);
    }
    CHECK(exact == 8);
}

/* A template with no marker of a known family (the edited plain one above has
 * none either): an error that says so and names the flag; no chat_template at
 * all is a base model: plain, silently. */
static void test_unknown_and_none(void) {
    ChatFormat f;
    ChatTemplateMatch m;
    StrBuf note = {0};
    OprmError err = {{0}};
    const char *gemma = "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\\n' + "
                        "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}";
    CHECK(chat_template_match(gemma, &f, &m, &note, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "does not recognise");
    CHECK_STR_CONTAINS(err.msg, "--chat-format");
    CHECK(chat_template_match(NULL, &f, &m, &note, &err) == 0 && f == CHAT_PLAIN && m == CHAT_TEMPLATE_NONE);
    CHECK(note.n == 0);
    sb_free(&note);
}

static void test_renderings(void) {
    json_t *convs = json_object_get(fixture, "conversations"), *cases = json_object_get(fixture, "cases");
    CHECK(json_array_size(cases) == 77);
    size_t equal = 0, differs = 0, errors = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *name = json_string_value(json_object_get(c, "template"));
        json_t *t = template_entry(name);
        CHECK(t != NULL);
        if (!t) continue;
        ChatFormat f;
        OprmError err = {{0}};
        CHECK(chat_format_parse(json_string_value(json_object_get(t, "format")), &f, &err) == 0);
        Conversation conv;
        conv_from_json(json_array_get(convs, (size_t)json_integer_value(json_object_get(c, "conversation"))), &conv);
        int gen = json_is_true(json_object_get(c, "add_generation_prompt"));
        const char *bos = json_string_value(json_object_get(t, "bos")), *eos = json_string_value(json_object_get(t, "eos"));
        StrBuf got = {0}, want = {0};
        chat_render(f, &conv, bos, eos, gen ? "Score: " : NULL, &got);
        const char *expect = json_string_value(json_object_get(c, "expect"));
        const char *hf = json_string_value(json_object_get(c, "hf"));
        if (hf) {
            sb_puts(&want, hf);
            if (gen) sb_puts(&want, f == CHAT_LLAMA2 || f == CHAT_MISTRAL ? " Score: " : "Score: ");
        }
        if (!strcmp(expect, "equal")) {
            equal++;
            CHECK(hf && !strcmp(got.s, want.s));
            if (hf && strcmp(got.s, want.s))
                fprintf(stderr, "%s conversation %lld:\n  oprm: %s\n  hf:   %s\n", name,
                        (long long)json_integer_value(json_object_get(c, "conversation")), got.s, want.s);
        } else if (!strcmp(expect, "differs")) {
            differs++;
            CHECK(hf && strcmp(got.s, want.s) != 0);
        } else {
            /* transformers refuses (Mistral-Instruct has no system role); oprm
             * puts the system text at the start of the first user turn */
            errors++;
            CHECK(!strcmp(expect, "hf_error") && json_object_get(c, "hf_error"));
            CHECK(f == CHAT_MISTRAL && conv.msgs[0].role == ROLE_SYSTEM);
            char head[600];
            snprintf(head, sizeof head, "%s[INST] %s\n\n", bos, conv.msgs[0].content);
            CHECK(!strncmp(got.s, head, strlen(head)));
        }
        sb_free(&got);
        sb_free(&want);
        conv_free(&conv);
    }
    fprintf(stderr, "chat templates: %zu renderings equal transformers', %zu differ as documented, %zu refused by "
                    "transformers\n", equal, differs, errors);
    CHECK(equal == 53 && differs == 16 && errors == 8);
}

int main(void) {
    json_error_t je;
    fixture = json_load_file(FIXTURE, 0, &je);
    if (!fixture) fprintf(stderr, "%s: %s\n", FIXTURE, je.text);
    CHECK(fixture != NULL);
    if (fixture) {
        RUN_SHARED(test_template_match, "tokenizers");
        RUN(test_unknown_and_none);
        RUN(test_renderings);
    }
    json_decref(fixture);
    return test_summary();
}
