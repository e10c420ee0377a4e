#include "tok/prompt.h"

#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"

const char *const SCORING_DEFAULT_SYSTEM =
    "You are a reward model. Rate the quality of the assistant's response to the user's request "
    "on a scale from 1 (very poor) to 9 (excellent).";

static const char *const DEFAULT_USER = "Conversation:\n{conversation}\n\nResponse to rate:\n{response}";
static const char *const DEFAULT_CUE = "Score: ";

void scoring_template_default(ScoringTemplate *t) {
    t->system = xstrdup(SCORING_DEFAULT_SYSTEM);
    t->user = xstrdup(DEFAULT_USER);
    t->cue = xstrdup(DEFAULT_CUE);
}

void scoring_template_free(ScoringTemplate *t) {
    free(t->system);
    free(t->user);
    free(t->cue);
    memset(t, 0, sizeof *t);
}

static size_t count_occurrences(const char *s, const char *needle) {
    size_t n = 0, k = strlen(needle);
    for (const char *p = strstr(s, needle); p; p = strstr(p + k, needle)) n++;
    return n;
}

int scoring_template_parse(const char *text, const char *name, ScoringTemplate *t, OprmError *err) {
    static const char *const headers[3] = {"[system]", "[user]", "[cue]"};
    StrBuf sec[3] = {{0}};
    int seen[3] = {0}, cur = -1;
    size_t line = 0;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        size_t hn = n && p[n - 1] == '\r' ? n - 1 : n; /* a CRLF file still has headers */
        line++;
        int h = -1;
        for (int i = 0; i < 3; i++)
            if (hn == strlen(headers[i]) && !memcmp(p, headers[i], hn)) h = i;
        if (h >= 0) {
            if (seen[h]) {
                for (int i = 0; i < 3; i++) sb_free(&sec[i]);
                return oprm_fail(err, "%s:%zu: section %s appears twice", name, line, headers[h]);
            }
            seen[h] = 1;
            cur = h;
        } else if (cur < 0) {
            for (size_t i = 0; i < n; i++)
                if (!strchr(" \t\r", p[i])) {
                    for (int j = 0; j < 3; j++) sb_free(&sec[j]);
                    return oprm_fail(err, "%s:%zu: text before the first section header "
                                          "([system], [user] or [cue])", name, line);
                }
        } else {
            if (sec[cur].n || seen[cur] == 2) sb_puts(&sec[cur], "\n");
            sb_append(&sec[cur], p, n);
            seen[cur] = 2; /* has at least one line (possibly empty) */
        }
        p = eol ? eol + 1 : p + n;
    }
    const char *defaults[3] = {SCORING_DEFAULT_SYSTEM, DEFAULT_USER, DEFAULT_CUE};
    char *val[3];
    for (int i = 0; i < 3; i++) {
        val[i] = seen[i] ? xstrdup(sec[i].s ? sec[i].s : "") : xstrdup(defaults[i]);
        sb_free(&sec[i]);
    }
    const char *problem = NULL;
    if (count_occurrences(val[1], "{conversation}") != 1)
        problem = "section [user] must contain {conversation} exactly once";
    else if (count_occurrences(val[1], "{response}") != 1)
        problem = "section [user] must contain {response} exactly once";
    else if (!val[2][0])
        problem = "section [cue] is empty (the cue, e.g. \"Score: \", is what the rating digit follows)";
    if (problem) {
        for (int i = 0; i < 3; i++) free(val[i]);
        return oprm_fail(err, "%s: %s", name, problem);
    }
    t->system = val[0];
    t->user = val[1];
    t->cue = val[2];
    return 0;
}

int scoring_template_load(const char *path, ScoringTemplate *t, OprmError *err) {
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return oprm_prefix(err, "--template: ");
    if (strlen(text) != len) {
        free(text);
        return oprm_fail(err, "%s: template contains a NUL byte", path);
    }
    int rc = scoring_template_parse(text, path, t, err);
    free(text);
    return rc;
}

static const char *plain_role(ChatRole r) {
    return r == ROLE_SYSTEM ? "System" : r == ROLE_USER ? "User" : "Assistant";
}

void scoring_render_conversation(const Conversation *c, StrBuf *out) {
    sb_append(out, "", 0);
    for (size_t i = 0; i < c->n; i++)
        sb_printf(out, "%s%s: %s", i ? "\n\n" : "", plain_role(c->msgs[i].role), c->msgs[i].content);
}

/* What the truncation varies: the kept turns [first, n), the first of them
 * possibly shown only from byte first_from on, and the response's first
 * response_len bytes. */
typedef struct {
    const Conversation *prompt;
    size_t first, first_from;
    const char *response;
    size_t response_len;
} PromptView;

static void append_user_text(const ScoringTemplate *tpl, const PromptView *v, StrBuf *out) {
    const char *conv = strstr(tpl->user, "{conversation}");
    const char *resp = strstr(tpl->user, "{response}");
    StrBuf c = {0};
    sb_append(&c, "", 0);
    for (size_t i = v->first; i < v->prompt->n; i++) {
        const ChatMessage *m = &v->prompt->msgs[i];
        const char *content = m->content + (i == v->first ? v->first_from : 0);
        sb_printf(&c, "%s%s: %s", i > v->first ? "\n\n" : "", plain_role(m->role), content);
    }
    /* the two placeholders in whichever order the template has them */
    const char *a = conv < resp ? conv : resp, *b = conv < resp ? resp : conv;
    sb_append(out, tpl->user, (size_t)(a - tpl->user));
    if (a == conv) sb_append(out, c.s, c.n);
    else sb_append(out, v->response, v->response_len);
    const char *mid = a + (a == conv ? strlen("{conversation}") : strlen("{response}"));
    sb_append(out, mid, (size_t)(b - mid));
    if (b == conv) sb_append(out, c.s, c.n);
    else sb_append(out, v->response, v->response_len);
    sb_puts(out, b + (b == conv ? strlen("{conversation}") : strlen("{response}")));
    sb_free(&c);
}

static void render_view(const ScoringConfig *cfg, const ScoringTemplate *tpl, const PromptView *v,
                        StrBuf *out) {
    Conversation conv = {0};
    StrBuf user = {0};
    if (tpl->system[0]) conv_push(&conv, ROLE_SYSTEM, tpl->system, strlen(tpl->system));
    append_user_text(tpl, v, &user);
    conv_push(&conv, ROLE_USER, user.s, user.n);
    const char *bos = NULL, *eos = NULL;
    if (cfg->tok) {
        int32_t b = tok_bos_id(cfg->tok), e = tok_eos_id(cfg->tok);
        if (b >= 0) bos = tok_id_token(cfg->tok, b);
        if (e >= 0) eos = tok_id_token(cfg->tok, e);
    }
    chat_render(cfg->format, &conv, bos, eos, tpl->cue, out);
    conv_free(&conv);
    sb_free(&user);
}

static const ScoringTemplate *template_of(const ScoringConfig *cfg, ScoringTemplate *fallback) {
    if (cfg->tpl) return cfg->tpl;
    fallback->system = (char *)SCORING_DEFAULT_SYSTEM;
    fallback->user = (char *)DEFAULT_USER;
    fallback->cue = (char *)DEFAULT_CUE;
    return fallback;
}

void scoring_render(const ScoringConfig *cfg, const Conversation *prompt, const char *response,
                    StrBuf *out) {
    ScoringTemplate fb;
    PromptView v = {prompt, 0, 0, response, strlen(response)};
    render_view(cfg, template_of(cfg, &fb), &v, out);
}

static int encode_text(const ScoringConfig *cfg, const char *s, size_t n, int add_special, IdVec *out,
                       OprmError *err) {
    out->n = 0;
    return tok_encode(cfg->tok, s, n, add_special, out, err);
}

static int encode_count(const ScoringConfig *cfg, const char *s, size_t n, size_t *count,
                        OprmError *err) {
    IdVec ids = {0};
    int rc = encode_text(cfg, s, n, 0, &ids, err);
    *count = ids.n;
    idvec_free(&ids);
    return rc;
}

static int encode_view(const ScoringConfig *cfg, const ScoringTemplate *tpl, const PromptView *v,
                       IdVec *ids, OprmError *err) {
    StrBuf text = {0};
    render_view(cfg, tpl, v, &text);
    int rc = encode_text(cfg, text.s, text.n, chat_encode_add_special(cfg->format), ids, err);
    sb_free(&text);
    return rc;
}

static int utf8_boundary(const char *s, size_t len, size_t i) {
    return i == 0 || i >= len || ((unsigned char)s[i] & 0xC0) != 0x80;
}

/* Moves i to a UTF-8 character boundary of the kept part (down when down = 1). */
static size_t to_boundary(const char *s, size_t len, size_t i, int suffix, int down) {
    while (i > 0 && i < len && !utf8_boundary(s, len, suffix ? len - i : i)) i += down ? (size_t)-1 : 1;
    return i;
}

static int count_kept(const ScoringConfig *cfg, const char *s, size_t len, size_t keep, int suffix,
                      size_t *n, OprmError *err) {
    return encode_count(cfg, suffix ? s + len - keep : s, keep, n, err);
}

/* The longest prefix (suffix = 0) or suffix (suffix = 1) of s[0..len), cut at
 * a UTF-8 character boundary, that tokenizes to at most k tokens; n is the
 * token count of all of s. Returns its length in bytes in *keep. Gallops from
 * the proportional estimate to bracket the answer, then bisects, so that only a
 * few encodes of about the kept length are needed. */
static int fit_tokens(const ScoringConfig *cfg, const char *s, size_t len, size_t n, size_t k,
                      int suffix, size_t *keep, OprmError *err) {
    if (n <= k) {
        *keep = len;
        return 0;
    }
    size_t lo = 0, hi = len - 1; /* the answer lies in [lo, hi]; lo fits */
    size_t est = (size_t)((double)len * (double)k / (double)n);
    size_t step = n ? 8 * (len / n + 1) : 8;
    size_t probe = to_boundary(s, len, est, suffix, 1), c;
    if (probe > lo && probe <= hi) {
        if (count_kept(cfg, s, len, probe, suffix, &c, err)) return -1;
        if (c <= k) { /* gallop up */
            lo = probe;
            for (size_t up = probe + step; up <= hi; up += step, step *= 2) {
                size_t q = to_boundary(s, len, up, suffix, 0);
                if (q > hi) break;
                if (count_kept(cfg, s, len, q, suffix, &c, err)) return -1;
                if (c > k) {
                    hi = q - 1;
                    break;
                }
                lo = q;
            }
        } else { /* gallop down */
            hi = probe - 1;
            for (size_t down = probe > step ? probe - step : 0; down > lo; step *= 2,
                        down = down > step ? down - step : 0) {
                size_t q = to_boundary(s, len, down, suffix, 1);
                if (q <= lo) break;
                if (count_kept(cfg, s, len, q, suffix, &c, err)) return -1;
                if (c <= k) {
                    lo = q;
                    break;
                }
                hi = q - 1;
            }
        }
    }
    while (lo < hi) {
        size_t mid = to_boundary(s, len, lo + (hi - lo + 1) / 2, suffix, 1);
        if (mid <= lo) {
            mid = to_boundary(s, len, lo + (hi - lo + 1) / 2, suffix, 0);
            if (mid > hi) break;
        }
        if (count_kept(cfg, s, len, mid, suffix, &c, err)) return -1;
        if (c <= k) lo = mid;
        else hi = mid - 1;
    }
    *keep = lo;
    return 0;
}

void scoring_prompt_free(ScoringPrompt *p) {
    idvec_free(&p->ids);
    memset(p, 0, sizeof *p);
}

int scoring_build(const ScoringConfig *cfg, const Conversation *prompt, const char *response,
                  ScoringPrompt *out, OprmError *err) {
    ScoringTemplate fb;
    const ScoringTemplate *tpl = template_of(cfg, &fb);
    idvec_free(&out->ids);
    memset(out, 0, sizeof *out);
    size_t resp_len = strlen(response);
    PromptView v = {prompt, 0, 0, response, resp_len};
    if (encode_view(cfg, tpl, &v, &out->ids, err)) return -1;
    out->full_len = out->ids.n;
    if (!cfg->max_len || out->ids.n <= cfg->max_len) return 0;

    size_t max_len = cfg->max_len;
    PromptView frame = {prompt, prompt->n, 0, "", 0};
    IdVec tmp = {0};
    if (encode_view(cfg, tpl, &frame, &tmp, err)) goto fail;
    size_t frame_n = tmp.n;
    size_t resp_n;
    if (encode_count(cfg, response, resp_len, &resp_n, err)) goto fail;
    if (frame_n > max_len) {
        /* the counts are taken before `out` is reset (it used to report 0 tokens) */
        size_t full = out->full_len;
        idvec_free(&tmp);
        scoring_prompt_free(out);
        return oprm_fail(err, "the scoring prompt is %zu tokens (response %zu tokens, conversation %zu "
                              "turn%s) and does not fit --max-len %zu: the frame alone (system text, template, "
                              "chat markup, cue) is %zu tokens, and it is never cut; raise --max-len to at "
                              "least %zu or shorten the template's text (--template)",
                         full, resp_n, prompt->n, prompt->n == 1 ? "" : "s", max_len, frame_n, frame_n);
    }
    size_t m = prompt->n;
    size_t *turn_n = xcalloc(m ? m : 1, sizeof *turn_n);
    size_t conv_n = 0;
    for (size_t i = 0; i < m; i++) {
        if (encode_count(cfg, prompt->msgs[i].content, strlen(prompt->msgs[i].content), &turn_n[i], err)) {
            free(turn_n);
            goto fail;
        }
        conv_n += turn_n[i] + 2; /* role label and separator, roughly */
    }

    /* Plan in token counts, then render, encode and tighten until it fits. */
    size_t budget = max_len - frame_n;
    size_t resp_floor = resp_n < budget / 2 ? resp_n : budget / 2;
    size_t resp_keep = resp_n;
    if (conv_n + resp_keep > budget)
        resp_keep = budget > conv_n && budget - conv_n > resp_floor ? budget - conv_n : resp_floor;
    size_t conv_budget = budget - resp_keep;
    size_t first = 0, after = conv_n - (m ? turn_n[0] + 2 : 0); /* tokens of turns after `first` */
    while (first + 1 < m && after >= conv_budget) {
        first++;
        after -= turn_n[first] + 2;
    }
    size_t first_keep = m ? (conv_budget > after + 2 ? conv_budget - after - 2 : 0) : 0;
    if (m && first_keep > turn_n[first]) first_keep = turn_n[first];

    int rc = 0;
    for (int iter = 0;; iter++) {
        /* render the plan */
        v.first = first;
        v.first_from = 0;
        if (first < m) {
            const char *c = prompt->msgs[first].content;
            size_t cl = strlen(c), keep;
            if (first_keep < turn_n[first]) {
                if ((rc = fit_tokens(cfg, c, cl, turn_n[first], first_keep, 1, &keep, err))) break;
                v.first_from = cl - keep;
                while (c[v.first_from] == ' ' || c[v.first_from] == '\n') v.first_from++;
            }
        }
        v.response_len = resp_len;
        if (resp_keep < resp_n && (rc = fit_tokens(cfg, response, resp_len, resp_n, resp_keep, 0,
                                                    &v.response_len, err)))
            break;
        if ((rc = encode_view(cfg, tpl, &v, &tmp, err))) break;
        if (tmp.n <= max_len) break;
        /* over by a few tokens (joins tokenize differently): take them, doubling after a while */
        size_t over = (tmp.n - max_len) << (iter / 4 < 16 ? iter / 4 : 16);
        while (over) {
            if (resp_keep > resp_floor) {
                size_t d = resp_keep - resp_floor < over ? resp_keep - resp_floor : over;
                resp_keep -= d, over -= d;
            } else if (first < m && first + 1 < m) {
                size_t d = first_keep < over ? first_keep : over;
                first_keep -= d, over -= d;
                if (!first_keep) first++, first_keep = first < m ? turn_n[first] : 0;
            } else if (resp_keep) {
                size_t d = resp_keep < over ? resp_keep : over;
                resp_keep -= d, over -= d;
                resp_floor = resp_keep;
            } else if (first < m) {
                size_t d = first_keep < over ? first_keep : over;
                first_keep -= d, over -= d;
                if (!first_keep) first = m;
            } else {
                break; /* only the frame is left, and it fits */
            }
        }
    }
    free(turn_n);
    if (rc) goto fail;

    /* report what was cut, counted on the pieces alone */
    size_t kept;
    if (encode_count(cfg, response, v.response_len, &kept, err)) goto fail;
    out->response_cut = resp_n - kept;
    out->turns_dropped = v.first;
    if (v.first < m && v.first_from) {
        const char *c = prompt->msgs[v.first].content;
        size_t all, tail;
        if (encode_count(cfg, c, strlen(c), &all, err) ||
            encode_count(cfg, c + v.first_from, strlen(c) - v.first_from, &tail, err))
            goto fail;
        out->turn_cut = all - tail;
    }
    idvec_free(&out->ids);
    out->ids = tmp;
    out->truncated = 1;
    out->cut_tokens = out->full_len - out->ids.n;
    return 0;
fail:
    idvec_free(&tmp);
    scoring_prompt_free(out);
    return -1;
}

int scoring_setup(ScoringSetup *s, const Tokenizer *t, const char *chat_format,
                  const char *template_path, size_t max_len, OprmError *err) {
    memset(s, 0, sizeof *s);
    s->cfg.tok = t;
    s->cfg.max_len = max_len;
    if (chat_format_choose(t, chat_format, &s->cfg.format, err))
        return chat_format ? oprm_prefix(err, "--chat-format: ") : -1;
    s->tpl = xcalloc(1, sizeof *s->tpl);
    if (template_path) {
        if (scoring_template_load(template_path, s->tpl, err)) {
            free(s->tpl);
            s->tpl = NULL;
            return -1;
        }
    } else {
        scoring_template_default(s->tpl);
    }
    s->cfg.tpl = s->tpl;
    if (tok_digit_ids_after(t, s->tpl->cue, s->digits, err)) {
        scoring_setup_free(s);
        return -1;
    }
    return 0;
}

void scoring_setup_free(ScoringSetup *s) {
    if (s->tpl) scoring_template_free(s->tpl);
    free(s->tpl);
    memset(s, 0, sizeof *s);
}

void scoring_stats_add(ScoringStats *st, const ScoringPrompt *p) {
    st->prompts++;
    if (!p->truncated) return;
    st->truncated++;
    st->tokens_cut += p->cut_tokens;
    st->response_tokens_cut += p->response_cut;
    st->turns_dropped += p->turns_dropped;
    st->turn_tokens_cut += p->turn_cut;
}

void scoring_stats_describe(const ScoringStats *st, size_t max_len, StrBuf *out) {
    if (!st->truncated) {
        sb_printf(out, "no prompt truncated (%zu prompts)", st->prompts);
        return;
    }
    sb_printf(out,
              "%zu of %zu prompts truncated to --max-len %zu (%zu tokens cut: %zu from responses, "
              "%zu oldest turns dropped, %zu tokens cut from the start of a turn)",
              st->truncated, st->prompts, max_len, st->tokens_cut, st->response_tokens_cut,
              st->turns_dropped, st->turn_tokens_cut);
}
