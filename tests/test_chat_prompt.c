/* The scoring prompt (spec §6) with the real qwen3, llama3 and mistral
 * tokenizers: it ends with the cue, its ids equal tokenizing the whole rendered
 * text and also the concatenation of the pieces between special tokens, and
 * truncation keeps the frame and the cue and counts what it cut. */
#include "tok/prompt.h"
#include "test.h"
#include "test_data_common.h"

static Tokenizer *load_tok(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/%s", shared_data_dir(), name);
    OprmError err;
    Tokenizer *t = tok_load(path, &err);
    if (!t) fprintf(stderr, "%s\n", err.msg);
    return t;
}

static int ends_with_ids(const IdVec *v, const int32_t *tail, size_t n) {
    if (v->n < n) return 0;
    for (size_t i = 0; i < n; i++)
        if (v->v[v->n - n + i] != tail[i]) return 0;
    return 1;
}

static int ids_equal(const IdVec *a, const IdVec *b) {
    return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

/* Encodes text piece by piece, cutting before and after each special-token
 * string: what a piecewise tokenizer would do. */
static void encode_pieces(const Tokenizer *t, const char *text, const char *const *specials, IdVec *out) {
    OprmError err;
    const char *p = text;
    while (*p) {
        const char *best = NULL;
        size_t best_len = 0;
        for (size_t k = 0; specials[k]; k++) {
            const char *q = strstr(p, specials[k]);
            if (q && (!best || q < best)) best = q, best_len = strlen(specials[k]);
        }
        size_t n = best ? (size_t)(best - p) : strlen(p);
        if (n) tok_encode(t, p, n, 0, out, &err);
        if (!best) break;
        tok_encode(t, best, best_len, 0, out, &err);
        p = best + best_len;
    }
}

typedef struct {
    const char *tok;
    const char *format; /* NULL = from the tokenizer's chat_template */
    ChatFormat expect_format;
    int32_t cue[3];  /* "Score: " ends with these (README: "Score: 7" ids) */
    int32_t digits[9];
    const char *specials[6];
} Case;

static const Case cases[] = {
    {"qwen3", NULL, CHAT_CHATML, {10570, 25, 220}, {16, 17, 18, 19, 20, 21, 22, 23, 24},
     {"<|im_start|>", "<|im_end|>", NULL}},
    {"llama3", NULL, CHAT_LLAMA3, {10793, 25, 220}, {16, 17, 18, 19, 20, 21, 22, 23, 24},
     {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", NULL}},
    {"mistral", "llama2", CHAT_LLAMA2, {18528, 28747, 28705},
     {28740, 28750, 28770, 28781, 28782, 28784, 28787, 28783, 28774}, {"<s>", "</s>", NULL}},
    {"mistral", "mistral", CHAT_MISTRAL, {18528, 28747, 28705},
     {28740, 28750, 28770, 28781, 28782, 28784, 28787, 28783, 28774}, {"<s>", "</s>", NULL}},
};

static void test_whole_text_equality(void) {
    Conversation conv = {0};
    conv_push(&conv, ROLE_SYSTEM, "Answer in one word.", 19);
    conv_push(&conv, ROLE_USER, "What's the capital of France?  ", 31);
    conv_push(&conv, ROLE_ASSISTANT, "Paris.\n", 7);
    conv_push(&conv, ROLE_USER, "And of Italy (in Italian)?\n\n", 28);
    const char *response = " Roma — \"Rome\" in English; 2+2=4, naïve café 東京.\n";
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const Case *c = &cases[k];
        Tokenizer *t = load_tok(c->tok);
        if (!t) {
            CHECK(0);
            continue;
        }
        OprmError err;
        ChatFormat f;
        CHECK(chat_format_choose(t, c->format, &f, &err) == 0 && f == c->expect_format);
        int32_t digits[9];
        CHECK(tok_digit_ids(t, digits, &err) == 0 && !memcmp(digits, c->digits, sizeof digits));
        ScoringConfig cfg = {t, f, NULL, 0};
        StrBuf text = {0};
        scoring_render(&cfg, &conv, response, &text);
        size_t cue_len = strlen("Score: ");
        CHECK(text.n > cue_len && !strcmp(text.s + text.n - cue_len, "Score: "));
        CHECK_STR_CONTAINS(text.s, SCORING_DEFAULT_SYSTEM);
        CHECK_STR_CONTAINS(text.s, "User: What's the capital of France?");
        ScoringPrompt sp = {0};
        CHECK(scoring_build(&cfg, &conv, response, &sp, &err) == 0);
        CHECK(!sp.truncated && sp.cut_tokens == 0 && sp.full_len == sp.ids.n);
        IdVec whole = {0}, pieces = {0};
        tok_encode(t, text.s, text.n, chat_encode_add_special(f), &whole, &err);
        encode_pieces(t, text.s, c->specials, &pieces);
        CHECK(ids_equal(&sp.ids, &whole));
        CHECK(ids_equal(&sp.ids, &pieces));
        CHECK(ends_with_ids(&sp.ids, c->cue, 3));
        /* the formats that spell BOS start with it */
        if (f == CHAT_LLAMA3) CHECK(sp.ids.v[0] == 128000);
        if (f == CHAT_LLAMA2 || f == CHAT_MISTRAL) CHECK(sp.ids.v[0] == 1);
        if (f == CHAT_CHATML) CHECK(sp.ids.v[0] == 151644);
        /* decoding gives the rendered text back (qwen3/llama3 round-trip exactly) */
        if (f == CHAT_CHATML || f == CHAT_LLAMA3) {
            StrBuf dec = {0};
            tok_decode(t, sp.ids.v, sp.ids.n, 0, &dec, &err);
            CHECK(dec.s && !strcmp(dec.s, text.s));
            sb_free(&dec);
        }
        idvec_free(&whole);
        idvec_free(&pieces);
        sb_free(&text);
        scoring_prompt_free(&sp);
        tok_free(t);
    }
    conv_free(&conv);
}

static void words(StrBuf *b, const char *tag, int n) {
    for (int i = 0; i < n; i++) sb_printf(b, "%s%d%s", tag, i, i + 1 < n ? " " : "");
}

static char *decode(const Tokenizer *t, const IdVec *ids) {
    StrBuf dec = {0};
    OprmError err;
    tok_decode(t, ids->v, ids->n, 0, &dec, &err);
    return dec.s;
}

static size_t count_tokens(const Tokenizer *t, const char *s) {
    IdVec v = {0};
    OprmError err;
    tok_encode(t, s, strlen(s), 0, &v, &err);
    size_t n = v.n;
    idvec_free(&v);
    return n;
}

static void test_truncation(void) {
    Tokenizer *t = load_tok("qwen3");
    if (!t) {
        CHECK(0);
        return;
    }
    OprmError err;
    const int32_t cue[3] = {10570, 25, 220};
    const char *tail = "<|im_end|>\n<|im_start|>assistant\nScore: ";
    ScoringConfig cfg = {t, CHAT_CHATML, NULL, 0};
    Conversation one = {0};
    conv_push(&one, ROLE_USER, "Tell me a story.", 16);
    StrBuf longresp = {0};
    words(&longresp, "resp", 300);

    /* frame size: the prompt with no turns and an empty response */
    ScoringPrompt sp = {0};
    Conversation none = {0};
    CHECK(scoring_build(&cfg, &none, "", &sp, &err) == 0);
    size_t frame = sp.ids.n;
    CHECK(frame > 40 && frame < 80);

    /* 1. the response is cut from its end */
    CHECK(scoring_build(&cfg, &one, longresp.s, &sp, &err) == 0);
    size_t full = sp.ids.n;
    CHECK(!sp.truncated && full > frame + 500);
    cfg.max_len = full - 100;
    CHECK(scoring_build(&cfg, &one, longresp.s, &sp, &err) == 0);
    CHECK(sp.truncated && sp.full_len == full);
    CHECK(sp.ids.n <= cfg.max_len && sp.ids.n + 4 >= cfg.max_len); /* tight */
    CHECK(sp.cut_tokens == full - sp.ids.n);
    CHECK(sp.response_cut >= 100 && sp.response_cut <= 104);
    CHECK(sp.turns_dropped == 0 && sp.turn_cut == 0);
    CHECK(ends_with_ids(&sp.ids, cue, 3));
    char *text = decode(t, &sp.ids);
    CHECK_STR_CONTAINS(text, "User: Tell me a story.\n\nResponse to rate:\nresp0 resp1 ");
    CHECK(text && !strstr(text, "resp299"));
    CHECK(text && strlen(text) > strlen(tail) && !strcmp(text + strlen(text) - strlen(tail), tail));
    free(text);

    /* 2. the oldest turns are dropped (the response is short and kept whole) */
    Conversation many = {0};
    for (int k = 0; k < 6; k++) {
        StrBuf turn = {0};
        char tag[16];
        snprintf(tag, sizeof tag, "t%d_", k);
        words(&turn, tag, 40);
        conv_push(&many, k % 2 ? ROLE_ASSISTANT : ROLE_USER, turn.s, turn.n);
        sb_free(&turn);
    }
    const char *shortresp = "The answer is short.";
    cfg.max_len = 0;
    CHECK(scoring_build(&cfg, &many, shortresp, &sp, &err) == 0);
    full = sp.ids.n;
    size_t turn_tokens = count_tokens(t, many.msgs[0].content);
    cfg.max_len = frame + 10 + (5 * turn_tokens) / 2; /* room for about 2.5 turns */
    CHECK(scoring_build(&cfg, &many, shortresp, &sp, &err) == 0);
    CHECK(sp.truncated && sp.ids.n <= cfg.max_len);
    CHECK(sp.response_cut == 0);
    CHECK(sp.turns_dropped == 3);
    CHECK(sp.turn_cut > 0 && sp.turn_cut < turn_tokens);
    CHECK(sp.cut_tokens == full - sp.ids.n);
    text = decode(t, &sp.ids);
    CHECK(text && !strstr(text, "t0_") && !strstr(text, "t1_") && !strstr(text, "t2_0 "));
    CHECK_STR_CONTAINS(text, "Conversation:\nAssistant: t3_"); /* the kept tail of turn 3 */
    CHECK_STR_CONTAINS(text, "t3_39\n\nUser: t4_0 ");
    CHECK_STR_CONTAINS(text, "t5_39\n\nResponse to rate:\nThe answer is short.<|im_end|>");
    CHECK(ends_with_ids(&sp.ids, cue, 3));
    free(text);

    /* 3. a long single turn is cut from its start; the response keeps at least
     *    half of the room after the frame */
    StrBuf longprompt = {0};
    words(&longprompt, "p", 400);
    Conversation big = {0};
    conv_push(&big, ROLE_USER, longprompt.s, longprompt.n);
    cfg.max_len = frame + 400;
    CHECK(scoring_build(&cfg, &big, longresp.s, &sp, &err) == 0);
    CHECK(sp.truncated && sp.ids.n <= cfg.max_len && sp.turns_dropped == 0 && sp.turn_cut > 0);
    size_t resp_full = count_tokens(t, longresp.s);
    CHECK(resp_full - sp.response_cut >= 195); /* >= (max_len - frame) / 2, less a few join tokens */
    text = decode(t, &sp.ids);
    CHECK(text && !strstr(text, "User: p0 ") && !strstr(text, " p1 "));
    CHECK_STR_CONTAINS(text, "p399\n\nResponse to rate:\nresp0 ");
    CHECK(text && !strstr(text, "resp299"));
    free(text);

    /* 3b. multi-byte text is cut at a character boundary: the kept response is
     *     a prefix of the original (no broken UTF-8 after decoding) */
    StrBuf cjk = {0};
    for (int i = 0; i < 150; i++) sb_puts(&cjk, "東京は大きい。😀 ");
    cfg.max_len = 0;
    CHECK(scoring_build(&cfg, &one, cjk.s, &sp, &err) == 0);
    cfg.max_len = sp.ids.n - 150;
    CHECK(scoring_build(&cfg, &one, cjk.s, &sp, &err) == 0 && sp.truncated && sp.ids.n <= cfg.max_len);
    CHECK(sp.response_cut >= 150 && sp.response_cut < 160);
    text = decode(t, &sp.ids);
    const char *rs = text ? strstr(text, "Response to rate:\n") : NULL;
    const char *re = rs ? strstr(rs, "<|im_end|>") : NULL;
    CHECK(rs && re);
    if (rs && re) {
        rs += strlen("Response to rate:\n");
        size_t kept = (size_t)(re - rs);
        CHECK(kept > 100 && kept < cjk.n && !memcmp(rs, cjk.s, kept));
        CHECK(!strstr(text, "\xEF\xBF\xBD")); /* no U+FFFD from a split character */
    }
    free(text);
    sb_free(&cjk);

    /* 4. the frame alone does not fit: an error naming the lengths */
    cfg.max_len = 20;
    CHECK(scoring_build(&cfg, &one, longresp.s, &sp, &err) == -1);
    CHECK(sp.ids.n == 0);
    char expect[128];
    snprintf(expect, sizeof expect, "the frame alone (system text, template, chat markup, cue) is %zu tokens", frame);
    CHECK_STR_CONTAINS(err.msg, "does not fit --max-len 20");
    CHECK_STR_CONTAINS(err.msg, expect);

    /* 5. a limit the prompt already fits changes nothing */
    cfg.max_len = 100000;
    CHECK(scoring_build(&cfg, &one, longresp.s, &sp, &err) == 0 && !sp.truncated && sp.cut_tokens == 0);

    scoring_prompt_free(&sp);
    conv_free(&one);
    conv_free(&many);
    conv_free(&big);
    sb_free(&longresp);
    sb_free(&longprompt);
    tok_free(t);
}

static void test_template_file(void) {
    OprmError err;
    ScoringTemplate tpl;
    const char *path = write_tmp("tpl.txt",
                                 "[system]\nYou judge answers.\nBe strict.\n"
                                 "[user]\nQ: {conversation}\nA: {response}\n"
                                 "[cue]\nRating: \n");
    CHECK(scoring_template_load(path, &tpl, &err) == 0);
    CHECK(!strcmp(tpl.system, "You judge answers.\nBe strict."));
    CHECK(!strcmp(tpl.user, "Q: {conversation}\nA: {response}"));
    CHECK(!strcmp(tpl.cue, "Rating: "));
    Conversation c = {0};
    conv_push(&c, ROLE_USER, "Hi", 2);
    ScoringConfig cfg = {NULL, CHAT_CHATML, &tpl, 0};
    StrBuf out = {0};
    scoring_render(&cfg, &c, "Hello", &out);
    CHECK(!strcmp(out.s, "<|im_start|>system\nYou judge answers.\nBe strict.<|im_end|>\n"
                         "<|im_start|>user\nQ: User: Hi\nA: Hello<|im_end|>\n<|im_start|>assistant\nRating: "));
    scoring_template_free(&tpl);

    /* {response} before {conversation}; an empty [system] means no system message; default cue */
    CHECK(scoring_template_parse("[system]\n[user]\n{response} <- {conversation}\n", "t2", &tpl, &err) == 0);
    sb_clear(&out);
    cfg.tpl = &tpl;
    cfg.format = CHAT_PLAIN;
    scoring_render(&cfg, &c, "Hello", &out);
    CHECK(!strcmp(out.s, "User: Hello <- User: Hi\n\nAssistant: Score: "));
    scoring_template_free(&tpl);

    /* the default template renders the spec text */
    cfg.tpl = NULL;
    sb_clear(&out);
    scoring_render(&cfg, &c, "Hello", &out);
    CHECK(!strcmp(out.s, "System: You are a reward model. Rate the quality of the assistant's response to the "
                         "user's request on a scale from 1 (very poor) to 9 (excellent).\n\nUser: Conversation:\n"
                         "User: Hi\n\nResponse to rate:\nHello\n\nAssistant: Score: "));
    sb_free(&out);
    conv_free(&c);

    CHECK(scoring_template_parse("[user]\n{conversation} only\n", "t3", &tpl, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "t3: section [user] must contain {response} exactly once");
    CHECK(scoring_template_parse("hello\n[user]\n{conversation}{response}\n", "t4", &tpl, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "t4:1: text before the first section header");
    CHECK(scoring_template_parse("[cue]\nA\n[cue]\nB\n", "t5", &tpl, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "t5:3: section [cue] appears twice");
    CHECK(scoring_template_parse("[cue]\n", "t6", &tpl, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "t6: section [cue] is empty");
    CHECK(scoring_template_load(tmp_path("missing.txt"), &tpl, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "--template: ");
}

static void test_setup_and_stats(void) {
    Tokenizer *t = load_tok("llama3");
    if (!t) {
        CHECK(0);
        return;
    }
    OprmError err;
    ScoringSetup su;
    CHECK(scoring_setup(&su, t, NULL, NULL, 512, &err) == 0);
    CHECK(su.cfg.format == CHAT_LLAMA3 && su.cfg.max_len == 512 && su.cfg.tpl == su.tpl);
    CHECK(su.digits[0] == 16 && su.digits[8] == 24);
    CHECK(!strcmp(su.tpl->system, SCORING_DEFAULT_SYSTEM) && !strcmp(su.tpl->cue, "Score: "));
    scoring_setup_free(&su);
    CHECK(scoring_setup(&su, t, "chatml2", NULL, 0, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "--chat-format: unknown chat format 'chatml2'");
    CHECK(scoring_setup(&su, t, "plain", tmp_path("nope.tpl"), 0, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "--template: ");
    const char *tp = write_tmp("ok.tpl", "[user]\n{conversation}\n--\n{response}\n");
    CHECK(scoring_setup(&su, t, "plain", tp, 0, &err) == 0 && su.cfg.format == CHAT_PLAIN);
    CHECK(!strcmp(su.tpl->user, "{conversation}\n--\n{response}"));
    scoring_setup_free(&su);

    ScoringStats st = {0};
    ScoringPrompt a = {0}, b = {0};
    b.truncated = 1, b.cut_tokens = 30, b.response_cut = 20, b.turns_dropped = 1, b.turn_cut = 4;
    scoring_stats_add(&st, &a);
    scoring_stats_add(&st, &b);
    scoring_stats_add(&st, &b);
    StrBuf out = {0};
    scoring_stats_describe(&st, 256, &out);
    CHECK(!strcmp(out.s, "2 of 3 prompts truncated to --max-len 256 (60 tokens cut: 40 from responses, "
                         "2 oldest turns dropped, 8 tokens cut from the start of a turn)"));
    sb_free(&out);
    tok_free(t);
}

int main(void) {
    RUN_SHARED(test_setup_and_stats, "tokenizers");
    RUN_SHARED(test_whole_text_equality, "tokenizers");
    RUN_SHARED(test_truncation, "tokenizers");
    RUN(test_template_file);
    remove_tmp_dir();
    return test_summary();
}
