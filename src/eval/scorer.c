#include "eval/scorer.h"

#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "model/max_length.h"
#include "model/model.h"
#include "ordinal/ordinal.h"
#include "tok/chat.h"
#include "tok/prompt.h"
#include "tok/tokenizer.h"
#include "train/oprm_meta.h"

#define SCORER_DEFAULT_BATCH_TOKENS 8192

struct Scorer {
    Tokenizer *tok;
    Model *model;
    ChatFormat format;
    ScoringTemplate tpl;
    int32_t digits[9];
    int max_len;
    int meta_max_len; /* oprm.json training_args.max_length, 0 when absent */
    int max_batch_tokens;
    int hidden;
};

/* A checkpoint written by `oprm train` carries its scoring prompt in oprm.json;
 * score with exactly that prompt unless the caller overrides it. */
static int apply_meta(Scorer *s, const char *model_dir, const ScorerOptions *opt, OprmError *err) {
    char *path = path_join(model_dir, OPRM_META_FILE);
    int rc = 0;
    if (file_exists(path)) {
        OprmMeta meta = {0};
        if (oprm_meta_read(path, &meta, err) != 0) {
            free(path);
            return -1;
        }
        if (meta.head && strcmp(meta.head, "oprm") != 0) {
            rc = oprm_fail(err, "%s: head '%s' is a Bradley-Terry baseline, not an ordinal model; "
                           "it cannot produce score distributions", path, meta.head);
        } else {
            if (!opt->chat_format && meta.chat_format &&
                chat_format_parse(meta.chat_format, &s->format, err) != 0)
                rc = oprm_prefix(err, "%s: ", path);
            if (rc == 0 && !opt->template_path) {
                if (meta.system_prompt) {
                    free(s->tpl.system);
                    s->tpl.system = xstrdup(meta.system_prompt);
                }
                if (meta.user_template) {
                    free(s->tpl.user);
                    s->tpl.user = xstrdup(meta.user_template);
                }
                if (meta.cue) {
                    free(s->tpl.cue);
                    s->tpl.cue = xstrdup(meta.cue);
                }
            }
            if (rc == 0) memcpy(s->digits, meta.digit_ids, sizeof s->digits);
            /* Score with the length the model was trained at unless told otherwise. */
            json_t *ml = meta.training_args ? json_object_get(meta.training_args, "max_length") : NULL;
            if (rc == 0 && opt->max_len <= 0 && json_is_integer(ml) && json_integer_value(ml) > 0)
                s->meta_max_len = (int)json_integer_value(ml);
        }
        oprm_meta_free(&meta);
    }
    free(path);
    return rc;
}

Scorer *scorer_open(const char *model_dir, const ScorerOptions *opt_in, OprmError *err) {
    ScorerOptions opt = {0};
    if (opt_in) opt = *opt_in;
    Scorer *s = xcalloc(1, sizeof *s);
    if (opt.threads > 0) model_set_threads(opt.threads);
    s->tok = tok_load(model_dir, err);
    if (!s->tok) goto fail;
    if (chat_format_choose(s->tok, opt.chat_format, &s->format, err) != 0) goto fail;
    if (opt.template_path) {
        if (scoring_template_load(opt.template_path, &s->tpl, err) != 0) goto fail;
    } else {
        scoring_template_default(&s->tpl);
    }
    if (tok_digit_ids(s->tok, s->digits, err) != 0) goto fail;
    if (apply_meta(s, model_dir, &opt, err) != 0) goto fail;
    s->model = model_load(model_dir, NULL, err);
    if (!s->model) goto fail;
    const ModelConfig *cfg = model_config(s->model);
    s->hidden = cfg->hidden;
    for (int k = 0; k < 9; k++)
        if (s->digits[k] < 0 || s->digits[k] >= cfg->vocab) {
            oprm_fail(err, "%s: digit '%d' has token id %d, outside the model's vocabulary (%d)", model_dir,
                      k + 1, s->digits[k], cfg->vocab);
            goto fail;
        }
    if (max_length_resolve(opt.max_len, s->meta_max_len, cfg->max_pos, "--max-len", &s->max_len, err) != 0)
        goto fail;
    s->max_batch_tokens = opt.max_batch_tokens > 0 ? opt.max_batch_tokens : SCORER_DEFAULT_BATCH_TOKENS;
    if (s->max_batch_tokens < s->max_len) s->max_batch_tokens = s->max_len;
    return s;
fail:
    scorer_close(s);
    return NULL;
}

void scorer_close(Scorer *s) {
    if (!s) return;
    model_free(s->model);
    tok_free(s->tok);
    scoring_template_free(&s->tpl);
    free(s);
}

int scorer_max_len(const Scorer *s) {
    return s->max_len;
}

static int to_conversation(const ScoreRequest *item, Conversation *c, OprmError *err) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < item->n_turns; i++) {
        const ScoreTurn *t = &item->turns[i];
        int role = chat_role_parse(t->role ? t->role : "");
        if (role < 0) {
            conv_free(c);
            return oprm_fail(err, "turn %d: unknown role '%s' (expected system, user or assistant)", i,
                             t->role ? t->role : "");
        }
        const char *content = t->content ? t->content : "";
        conv_push(c, (ChatRole)role, content, strlen(content));
    }
    return 0;
}

static int build_prompt(Scorer *s, const ScoreRequest *item, size_t max_len, ScoringPrompt *out,
                        OprmError *err) {
    Conversation c;
    if (to_conversation(item, &c, err) != 0) return -1;
    ScoringConfig cfg = {.tok = s->tok, .format = s->format, .tpl = &s->tpl, .max_len = max_len};
    int rc = scoring_build(&cfg, &c, item->response ? item->response : "", out, err);
    conv_free(&c);
    return rc;
}

int scorer_count_tokens(Scorer *s, const ScoreRequest *item, OprmError *err) {
    ScoringPrompt p = {0};
    if (build_prompt(s, item, 0, &p, err) != 0) return -1;
    int n = (int)p.full_len;
    scoring_prompt_free(&p);
    return n;
}

/* Runs one packed forward over items [first, first+count) whose prompts are
 * already built, and fills their results. */
static int score_packed(Scorer *s, ScoringPrompt *prompts, int count, ScoreResult *out, OprmError *err) {
    IdVec ids = {0};
    int32_t *lens = xmalloc((size_t)count * sizeof *lens);
    for (int i = 0; i < count; i++) {
        idvec_extend(&ids, prompts[i].ids.v, prompts[i].ids.n);
        lens[i] = (int32_t)prompts[i].ids.n;
    }
    float *h = xmalloc((size_t)count * (size_t)s->hidden * sizeof *h);
    float *logits = xmalloc((size_t)count * 9 * sizeof *logits);
    SeqBatch b = {.ids = ids.v, .lens = lens, .nseq = count};
    int rc = model_forward(s->model, &b, 0, h, err);
    if (rc == 0) {
        model_head_rows_forward(s->model, h, count, s->digits, 9, logits);
        for (int i = 0; i < count && rc == 0; i++) {
            OrdinalDist d;
            if (ordinal_dist_from_logits_f(logits + 9 * i, &d, err) != 0) {
                rc = -1;
                break;
            }
            ScoreStats st;
            ordinal_stats(&d, &st);
            ScoreResult *r = &out[i];
            memcpy(r->p, d.p, sizeof r->p);
            r->mean = st.mean;
            r->std = st.std;
            r->entropy = st.entropy;
            r->bimodality = st.bimodality;
            r->mode = st.mode;
            r->truncated = prompts[i].truncated;
            r->n_tokens = (int)prompts[i].full_len;
        }
    }
    free(logits);
    free(h);
    free(lens);
    idvec_free(&ids);
    return rc;
}

int scorer_score(Scorer *s, const ScoreRequest *items, int n, ScoreResult *out, OprmError *err) {
    if (n <= 0) return 0;
    ScoringPrompt *prompts = xcalloc((size_t)n, sizeof *prompts);
    int rc = 0, built = 0;
    for (; built < n; built++) {
        if (build_prompt(s, &items[built], (size_t)s->max_len, &prompts[built], err) != 0) {
            oprm_prefix(err, "item %d: ", built);
            rc = -1;
            break;
        }
    }
    /* Pack consecutive items up to the token budget; results do not depend on
     * how items are grouped (no padding, per-sequence attention). */
    for (int first = 0; rc == 0 && first < n;) {
        int count = 0;
        size_t tokens = 0;
        while (first + count < n &&
               (count == 0 || tokens + prompts[first + count].ids.n <= (size_t)s->max_batch_tokens))
            tokens += prompts[first + count++].ids.n;
        rc = score_packed(s, prompts + first, count, out + first, err);
        first += count;
    }
    for (int i = 0; i < built; i++) scoring_prompt_free(&prompts[i]);
    free(prompts);
    return rc;
}
