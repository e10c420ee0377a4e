#include "serve/chat_split.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

static const char *const END_MARKERS[] = {
    "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|end|>",
    "</s>",       "<pad>",      "<|end_story|>",   "<|pad|>",
};
static const char *const BOS_MARKERS[] = {"<|begin_of_text|>", "<s>", "<|start_story|>",
                                          "<|endoftext|>", "<pad>", "<unk>"};
#define N_OF(a) ((int)(sizeof a / sizeof *a))

void split_chat_free(SplitChat *c) {
    for (int i = 0; i < c->n; i++) free((char *)c->turns[i].content);
    free(c->turns);
    free(c->response);
    memset(c, 0, sizeof *c);
}

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t m = strlen(suf);
    return n >= m && !memcmp(s + n - m, suf, m);
}

void strip_end_markers(char *s) {
    size_t n = strlen(s);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < N_OF(END_MARKERS); i++) {
            if (ends_with(s, n, END_MARKERS[i])) {
                n -= strlen(END_MARKERS[i]);
                s[n] = 0;
                changed = 1;
            }
        }
    }
}

static const char *skip_bos(const char *s) {
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < N_OF(BOS_MARKERS); i++) {
            size_t m = strlen(BOS_MARKERS[i]);
            if (!strncmp(s, BOS_MARKERS[i], m)) {
                s += m;
                changed = 1;
            }
        }
    }
    return s;
}

static const char *known_role(const char *s, size_t n) {
    static const char *const roles[] = {"system", "user", "assistant"};
    for (int i = 0; i < 3; i++)
        if (strlen(roles[i]) == n && !memcmp(s, roles[i], n)) return roles[i];
    return NULL;
}

static void push_turn(SplitChat *c, const char *role, const char *content, size_t n) {
    c->turns = xrealloc(c->turns, (size_t)(c->n + 1) * sizeof *c->turns);
    c->turns[c->n].role = role;
    c->turns[c->n].content = xstrndup(content, n);
    c->n++;
}

/* One chat format: the markers that open a header, close it, and end a turn. */
typedef struct {
    const char *open, *close, *end;
} Format;
static const Format FORMATS[] = {
    {"<|im_start|>", "\n", "<|im_end|>"},
    {"<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>"},
};

/* Parses every turn of s in format f; the last turn may be open (no end
 * marker). Returns 0, or -1 when s is not entirely in that format. */
static int parse_format(const char *s, const Format *f, SplitChat *out) {
    size_t lo = strlen(f->open), lc = strlen(f->close), le = strlen(f->end);
    const char *p = s;
    while (*p) {
        while (*p == '\n') p++; /* separators between turns */
        if (!*p) break;
        if (strncmp(p, f->open, lo)) return -1;
        p += lo;
        const char *close = strstr(p, f->close);
        if (!close) return -1;
        const char *role = known_role(p, (size_t)(close - p));
        if (!role) return -1;
        p = close + lc;
        const char *end = strstr(p, f->end);
        if (!end) { /* open last turn: the rest is its content */
            push_turn(out, role, p, strlen(p));
            return 0;
        }
        push_turn(out, role, p, (size_t)(end - p));
        p = end + le;
    }
    return out->n > 0 ? 0 : -1;
}

/* Fills out->turns from templated text; 0 if a known format matched. */
static int parse_templated(const char *text, SplitChat *out) {
    const char *s = skip_bos(text);
    for (int i = 0; i < N_OF(FORMATS); i++) {
        if (strncmp(s, FORMATS[i].open, strlen(FORMATS[i].open))) continue;
        if (parse_format(s, &FORMATS[i], out) == 0) return 0;
        split_chat_free(out);
    }
    return -1;
}

void split_prompt(const char *prompt, SplitChat *out) {
    memset(out, 0, sizeof *out);
    if (parse_templated(prompt, out) == 0) {
        while (out->n > 0 && !strcmp(out->turns[out->n - 1].role, "assistant") &&
               !out->turns[out->n - 1].content[0]) {
            free((char *)out->turns[out->n - 1].content);
            out->n--;
        }
        if (out->n > 0 && !strcmp(out->turns[out->n - 1].role, "user")) return;
        split_chat_free(out);
    }
    push_turn(out, "user", skip_bos(prompt), strlen(skip_bos(prompt)));
}

int split_query_with_prompt(const char *query, const char *prompt, SplitChat *out) {
    memset(out, 0, sizeof *out);
    const char *rest = NULL;
    size_t lp = strlen(prompt);
    if (!strncmp(query, prompt, lp)) {
        rest = query + lp;
    } else if (lp > 0) {
        /* Decoded rollouts may carry left padding or a second BOS before the prompt. */
        const char *at = strstr(query, prompt);
        if (at) rest = at + lp;
    }
    if (!rest) return -1;
    split_prompt(prompt, out);
    out->response = xstrdup(rest);
    strip_end_markers(out->response);
    return 0;
}

void split_query_alone(const char *query, SplitChat *out) {
    memset(out, 0, sizeof *out);
    if (parse_templated(query, out) == 0 && out->n >= 2 &&
        !strcmp(out->turns[out->n - 1].role, "assistant") &&
        !strcmp(out->turns[out->n - 2].role, "user")) {
        out->n--;
        out->response = (char *)out->turns[out->n].content;
        strip_end_markers(out->response);
        return;
    }
    split_chat_free(out);
    push_turn(out, "user", "", 0);
    out->response = xstrdup(skip_bos(query));
    strip_end_markers(out->response);
}
