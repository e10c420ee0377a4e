#include "data/record.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

QualityLabel label_quality(LabelKind k) {
    QualityLabel l = {k, 0, 0, 0};
    if (k == LABEL_BAD) l.centre = 2, l.lo = 1, l.hi = 3;
    else if (k == LABEL_NORMAL) l.centre = 5, l.lo = 4, l.hi = 6;
    else if (k == LABEL_GOOD) l.centre = 8, l.lo = 7, l.hi = 9;
    else l.kind = LABEL_NONE;
    return l;
}

QualityLabel label_rating(int r) {
    QualityLabel l = {LABEL_RATING, r, r, r};
    return l;
}

const char *label_describe(QualityLabel l, char *buf, size_t size) {
    switch (l.kind) {
    case LABEL_NONE: snprintf(buf, size, "none"); break;
    case LABEL_BAD: snprintf(buf, size, "bad"); break;
    case LABEL_NORMAL: snprintf(buf, size, "normal"); break;
    case LABEL_GOOD: snprintf(buf, size, "good"); break;
    case LABEL_RATING: snprintf(buf, size, "rating %d", l.centre); break;
    }
    return buf;
}

int label_contradicts(QualityLabel c, QualityLabel r) {
    return c.kind != LABEL_NONE && r.kind != LABEL_NONE && c.hi < r.lo;
}

const char *record_kind_name(RecordKind k) {
    return k == REC_PAIR ? "pair" : k == REC_POINT ? "labelled response" : "best-of-N set";
}

void record_free(DataRecord *r) {
    free(r->id);
    free(r->subset);
    conv_free(&r->prompt);
    for (size_t i = 0; i < r->n_responses; i++) free(r->responses[i].text);
    free(r->responses);
    memset(r, 0, sizeof *r);
}

void data_options_default(DataOptions *o) {
    memset(o, 0, sizeof *o);
    o->fields = (DataFields){"prompt", "chosen", "rejected", "chosen_label", "rejected_label",
                             "response", "label", "best", "others", "id", "subset"};
    o->kind = KIND_AUTO;
    o->skip_invalid = 0;
    o->point_label_required = 1;
}

const char *data_reason_name(DataInvalid r) {
    static const char *const names[DATA_N_REASONS] = {
        "ok", "malformed JSON", "missing field", "empty field", "wrong type", "label out of range",
        "labels contradict the preference", "identical chosen and rejected",
        "chosen and rejected prompts differ"};
    return (unsigned)r < DATA_N_REASONS ? names[r] : "?";
}

static const char *json_type_word(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static DataInvalid fail_field(OprmError *err, DataInvalid why, const char *field, const char *fmt,
                              ...) __attribute__((format(printf, 4, 5)));
static DataInvalid fail_field(OprmError *err, DataInvalid why, const char *field, const char *fmt,
                              ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    oprm_fail(err, "field '%s': %s", field, msg);
    return why;
}

/* ---- labels ---- */

static DataInvalid parse_label(const json_t *v, const char *field, QualityLabel *out, OprmError *err) {
    *out = label_quality(LABEL_NONE);
    if (!v || json_is_null(v)) return DATA_OK;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcasecmp(s, "good")) *out = label_quality(LABEL_GOOD);
        else if (!strcasecmp(s, "normal")) *out = label_quality(LABEL_NORMAL);
        else if (!strcasecmp(s, "bad")) *out = label_quality(LABEL_BAD);
        else if (s[0] >= '1' && s[0] <= '9' && !s[1]) *out = label_rating(s[0] - '0');
        else
            return fail_field(err, DATA_BAD_LABEL, field,
                              "expected good, normal, bad or a rating 1..9, got \"%.80s\"", s);
        return DATA_OK;
    }
    if (json_is_number(v)) {
        double r = json_number_value(v);
        if (!(r >= 1 && r <= 9) || r != floor(r))
            return fail_field(err, DATA_BAD_LABEL, field,
                              "rating %g is out of range (expected a whole number 1..9)", r);
        *out = label_rating((int)r);
        return DATA_OK;
    }
    return fail_field(err, DATA_WRONG_TYPE, field,
                      "expected good, normal, bad or a rating 1..9, got %s", json_type_word(v));
}

/* ---- conversations ---- */

static int starts_with(const char *s, const char *p) {
    return !strncmp(s, p, strlen(p));
}

static int is_hh(const char *s) {
    return starts_with(s, "\n\nHuman:") || starts_with(s, "Human:");
}

static void push_trimmed(Conversation *c, ChatRole role, const char *s, size_t n) {
    while (n && strchr(" \t\r\n", *s)) s++, n--;
    while (n && strchr(" \t\r\n", s[n - 1])) n--;
    conv_push(c, role, s, n);
}

/* Anthropic HH text: "\n\nHuman: ...\n\nAssistant: ...". Turns are stripped;
 * keep_last_raw keeps the last assistant turn verbatim except the one space
 * after "Assistant:" (it is a response). A final empty "Assistant:" (the
 * generation prompt of an HH prompt string) is dropped. */
static void parse_hh(const char *s, int keep_last_raw, Conversation *out) {
    const char *p = s;
    for (;;) {
        ChatRole role;
        const char *body;
        if (starts_with(p, "\n\nHuman:")) role = ROLE_USER, body = p + 8;
        else if (starts_with(p, "\n\nAssistant:")) role = ROLE_ASSISTANT, body = p + 12;
        else if (p == s && starts_with(p, "Human:")) role = ROLE_USER, body = p + 6;
        else break;
        const char *nh = strstr(body, "\n\nHuman:"), *na = strstr(body, "\n\nAssistant:");
        const char *end = nh && (!na || nh < na) ? nh : na ? na : body + strlen(body);
        int last = !*end;
        if (last && role == ROLE_ASSISTANT && keep_last_raw) {
            if (*body == ' ') body++;
            conv_push(out, role, body, (size_t)(end - body));
        } else {
            size_t n = (size_t)(end - body);
            const char *b = body;
            while (n && strchr(" \t\r\n", *b)) b++, n--;
            if (!(last && role == ROLE_ASSISTANT && n == 0)) push_trimmed(out, role, body, (size_t)(end - body));
        }
        if (last) break;
        p = end;
    }
}

static int conv_equal(const Conversation *a, const Conversation *b) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->msgs[i].role != b->msgs[i].role || strcmp(a->msgs[i].content, b->msgs[i].content))
            return 0;
    return 1;
}

static const json_t *get2(const json_t *o, const char *k1, const char *k2) {
    const json_t *v = json_object_get(o, k1);
    return v ? v : json_object_get(o, k2);
}

/* A message list [{"role", "content"}, ...] ("from"/"value" also accepted). */
static DataInvalid parse_messages(const json_t *arr, const char *field, Conversation *out,
                                  OprmError *err) {
    if (json_array_size(arr) == 0) return fail_field(err, DATA_EMPTY, field, "empty message list");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *m = json_array_get(arr, i);
        if (!json_is_object(m))
            return fail_field(err, DATA_WRONG_TYPE, field, "message %zu: expected an object, got %s",
                              i + 1, json_type_word(m));
        const json_t *role = get2(m, "role", "from"), *content = get2(m, "content", "value");
        if (!role || !content)
            return fail_field(err, DATA_MISSING, field, "message %zu: missing '%s'", i + 1,
                              role ? "content" : "role");
        if (!json_is_string(role))
            return fail_field(err, DATA_WRONG_TYPE, field, "message %zu: 'role' must be a string, got %s",
                              i + 1, json_type_word(role));
        int r = chat_role_parse(json_string_value(role));
        if (r < 0)
            return fail_field(err, DATA_WRONG_TYPE, field,
                              "message %zu: unknown role \"%.40s\" (expected system, user or assistant)",
                              i + 1, json_string_value(role));
        if (!json_is_string(content))
            return fail_field(err, DATA_WRONG_TYPE, field,
                              "message %zu: 'content' must be a string, got %s", i + 1,
                              json_type_word(content));
        if (!json_string_length(content))
            return fail_field(err, DATA_EMPTY, field, "message %zu: empty content", i + 1);
        conv_push(out, (ChatRole)r, json_string_value(content), json_string_length(content));
    }
    return DATA_OK;
}

static DataInvalid parse_prompt(const json_t *v, const char *field, Conversation *out, OprmError *err) {
    if (!v || json_is_null(v)) return fail_field(err, DATA_MISSING, field, "missing");
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!json_string_length(v)) return fail_field(err, DATA_EMPTY, field, "empty");
        if (is_hh(s)) parse_hh(s, 0, out);
        else conv_push(out, ROLE_USER, s, json_string_length(v));
        if (!out->n) return fail_field(err, DATA_EMPTY, field, "no turns in the Human/Assistant text");
        return DATA_OK;
    }
    if (json_is_array(v)) return parse_messages(v, field, out, err);
    return fail_field(err, DATA_WRONG_TYPE, field, "expected a string or a message list, got %s",
                      json_type_word(v));
}

/* A response: a string, one assistant message object, or a message list
 * ending with an assistant message (the messages before it go to *context). */
static DataInvalid parse_response(const json_t *v, const char *field, char **text,
                                  Conversation *context, OprmError *err) {
    if (!v || json_is_null(v)) return fail_field(err, DATA_MISSING, field, "missing");
    if (json_is_string(v)) {
        *text = xstrndup(json_string_value(v), json_string_length(v));
        return DATA_OK;
    }
    Conversation c = {0};
    DataInvalid why;
    if (json_is_object(v)) {
        json_t *one = json_array();
        json_array_append(one, (json_t *)v);
        why = parse_messages(one, field, &c, err);
        json_decref(one);
    } else if (json_is_array(v)) {
        why = parse_messages(v, field, &c, err);
    } else {
        return fail_field(err, DATA_WRONG_TYPE, field, "expected a string or a message list, got %s",
                          json_type_word(v));
    }
    if (why) {
        conv_free(&c);
        return why;
    }
    if (c.msgs[c.n - 1].role != ROLE_ASSISTANT) {
        conv_free(&c);
        return fail_field(err, DATA_WRONG_TYPE, field,
                          "the message list must end with an assistant message (the response)");
    }
    *text = c.msgs[c.n - 1].content;
    c.n--;
    *context = c; /* owns the remaining messages */
    return DATA_OK;
}

static char *json_scalar_text(const json_t *v) {
    if (json_is_string(v)) return xstrndup(json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) {
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)json_integer_value(v));
        return xstrdup(b);
    }
    return NULL;
}

static void add_response(DataRecord *r, char *text, QualityLabel l) {
    r->responses = xrealloc(r->responses, (r->n_responses + 1) * sizeof *r->responses);
    r->responses[r->n_responses].text = text;
    r->responses[r->n_responses].label = l;
    r->n_responses++;
}

/* The prompt from the prompt field and/or the responses' own context. */
static DataInvalid assemble_prompt(const json_t *obj, const DataOptions *o, const char *side_field,
                                   Conversation *ctx_a, Conversation *ctx_b, int have_b,
                                   DataRecord *r, OprmError *err) {
    const json_t *pv = json_object_get(obj, o->fields.prompt);
    if (have_b && !conv_equal(ctx_a, ctx_b))
        return fail_field(err, DATA_MISMATCH, side_field,
                          "the conversations before the final assistant messages differ between "
                          "'%s' and '%s'", o->fields.chosen, o->fields.rejected);
    if (pv && !json_is_null(pv)) {
        DataInvalid why = parse_prompt(pv, o->fields.prompt, &r->prompt, err);
        if (why) return why;
        /* a response given as the whole conversation repeats the prompt */
        if (ctx_a->n && !conv_equal(ctx_a, &r->prompt))
            for (size_t i = 0; i < ctx_a->n; i++)
                conv_push(&r->prompt, ctx_a->msgs[i].role, ctx_a->msgs[i].content,
                          strlen(ctx_a->msgs[i].content));
        return DATA_OK;
    }
    if (!ctx_a->n) return fail_field(err, DATA_MISSING, o->fields.prompt, "missing");
    conv_copy(&r->prompt, ctx_a);
    return DATA_OK;
}

/* A response string that repeats an HH prompt string ("prompt + answer"), or
 * that is a whole HH conversation, is reduced to its answer. */
static void strip_prompt_copy(const json_t *pv, char **text, Conversation *ctx) {
    if (json_is_string(pv)) {
        const char *p = json_string_value(pv);
        size_t n = json_string_length(pv);
        if (is_hh(p) && !strncmp(*text, p, n) && strlen(*text) > n) {
            const char *rest = *text + n;
            if (*rest == ' ') rest++;
            char *t = xstrdup(rest);
            free(*text);
            *text = t;
        } else if (is_hh(p) && **text == ' ') { /* HH prompt ending in "Assistant:" + " answer" */
            memmove(*text, *text + 1, strlen(*text));
        }
        return;
    }
    if (!pv && is_hh(*text)) {
        Conversation c = {0};
        parse_hh(*text, 1, &c);
        if (c.n && c.msgs[c.n - 1].role == ROLE_ASSISTANT) {
            free(*text);
            *text = c.msgs[c.n - 1].content;
            c.n--;
            conv_free(ctx);
            *ctx = c;
        } else {
            conv_free(&c);
        }
    }
}

static DataInvalid parse_pair(const json_t *obj, const DataOptions *o, DataRecord *r, OprmError *err) {
    const DataFields *f = &o->fields;
    char *ct = NULL, *rt = NULL;
    Conversation cc = {0}, rc = {0};
    QualityLabel cl, rl;
    DataInvalid why = parse_response(json_object_get(obj, f->chosen), f->chosen, &ct, &cc, err);
    if (!why) why = parse_response(json_object_get(obj, f->rejected), f->rejected, &rt, &rc, err);
    if (!why) {
        const json_t *pv = json_object_get(obj, f->prompt);
        if (pv && json_is_null(pv)) pv = NULL;
        strip_prompt_copy(pv, &ct, &cc);
        strip_prompt_copy(pv, &rt, &rc);
        why = assemble_prompt(obj, o, f->rejected, &cc, &rc, 1, r, err);
    }
    if (!why) why = parse_label(json_object_get(obj, f->chosen_label), f->chosen_label, &cl, err);
    if (!why) why = parse_label(json_object_get(obj, f->rejected_label), f->rejected_label, &rl, err);
    if (!why && label_contradicts(cl, rl)) {
        char a[32], b[32];
        why = fail_field(err, DATA_CONTRADICTION, f->chosen_label,
                         "chosen is labelled %s but rejected %s: the labels contradict the preference",
                         label_describe(cl, a, sizeof a), label_describe(rl, b, sizeof b));
    }
    if (!why && !strcmp(ct, rt))
        why = fail_field(err, DATA_IDENTICAL, f->rejected, "same text as '%s'", f->chosen);
    conv_free(&cc);
    conv_free(&rc);
    if (why) {
        free(ct);
        free(rt);
        return why;
    }
    add_response(r, ct, cl);
    add_response(r, rt, rl);
    return DATA_OK;
}

static DataInvalid parse_point(const json_t *obj, const DataOptions *o, DataRecord *r, OprmError *err) {
    const DataFields *f = &o->fields;
    char *t = NULL;
    Conversation ctx = {0};
    QualityLabel l;
    DataInvalid why = parse_response(json_object_get(obj, f->response), f->response, &t, &ctx, err);
    if (!why) why = assemble_prompt(obj, o, f->response, &ctx, NULL, 0, r, err);
    if (!why) why = parse_label(json_object_get(obj, f->label), f->label, &l, err);
    if (!why && l.kind == LABEL_NONE && o->point_label_required)
        why = fail_field(err, DATA_MISSING, f->label, "missing (a labelled response needs "
                                                      "good, normal, bad or a rating 1..9)");
    conv_free(&ctx);
    if (why) {
        free(t);
        return why;
    }
    add_response(r, t, l);
    return DATA_OK;
}

static DataInvalid parse_best_of_n(const json_t *obj, const DataOptions *o, DataRecord *r,
                                   OprmError *err) {
    const DataFields *f = &o->fields;
    char *t = NULL;
    Conversation ctx = {0};
    QualityLabel none = label_quality(LABEL_NONE);
    DataInvalid why = parse_response(json_object_get(obj, f->best), f->best, &t, &ctx, err);
    if (!why) why = assemble_prompt(obj, o, f->best, &ctx, NULL, 0, r, err);
    conv_free(&ctx);
    if (why) {
        free(t);
        return why;
    }
    add_response(r, t, none);
    const json_t *others = json_object_get(obj, f->others);
    if (!others || json_is_null(others)) return fail_field(err, DATA_MISSING, f->others, "missing");
    if (!json_is_array(others))
        return fail_field(err, DATA_WRONG_TYPE, f->others, "expected a list of responses, got %s",
                          json_type_word(others));
    if (!json_array_size(others)) return fail_field(err, DATA_EMPTY, f->others, "empty list");
    for (size_t i = 0; i < json_array_size(others); i++) {
        char name[96];
        snprintf(name, sizeof name, "%s[%zu]", f->others, i);
        Conversation c = {0};
        why = parse_response(json_array_get(others, i), name, &t, &c, err);
        conv_free(&c);
        if (why) return why;
        add_response(r, t, none);
    }
    return DATA_OK;
}

DataInvalid record_from_json(const json_t *obj, const DataOptions *o, DataRecord *rec,
                             OprmError *err) {
    memset(rec, 0, sizeof *rec);
    if (!json_is_object(obj)) {
        oprm_fail(err, "expected a JSON object, got %s", json_type_word(obj));
        return DATA_MALFORMED;
    }
    const DataFields *f = &o->fields;
    int kind = o->kind;
    if (kind == KIND_AUTO) {
        if (json_object_get(obj, f->chosen) || json_object_get(obj, f->rejected)) kind = REC_PAIR;
        else if (json_object_get(obj, f->best) || json_object_get(obj, f->others)) kind = REC_BEST_OF_N;
        else if (json_object_get(obj, f->response)) kind = REC_POINT;
        else {
            oprm_fail(err, "field '%s': missing (no '%s'/'%s' pair, '%s' or '%s' in this record)",
                      f->chosen, f->chosen, f->rejected, f->response, f->best);
            return DATA_MISSING;
        }
    }
    rec->kind = (RecordKind)kind;
    DataInvalid why = kind == REC_PAIR ? parse_pair(obj, o, rec, err)
                    : kind == REC_POINT ? parse_point(obj, o, rec, err)
                                        : parse_best_of_n(obj, o, rec, err);
    if (!why) {
        const json_t *id = json_object_get(obj, f->id), *sub = json_object_get(obj, f->subset);
        rec->id = id ? json_scalar_text(id) : NULL;
        rec->subset = sub ? json_scalar_text(sub) : NULL;
    }
    if (why) record_free(rec);
    return why;
}
