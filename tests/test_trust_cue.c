/* Issue 12, item 4: the digit ids are resolved after the scoring template's
 * own cue, not after the built-in "Score: ". With the real qwen3 (byte-level)
 * and mistral (SentencePiece-style) tokenizers and cues without a trailing
 * space and ending in a newline, the id of digit d is exactly the token that
 * encoding the whole rendered scoring prompt followed by d appends. A cue after
 * which some digit is not exactly one token is refused with a message that
 * shows the cue and the digit; one that works is accepted even where
 * "Score: " would not. Also item 11: a digit that encodes as <unk>. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tok/prompt.h"
#include "tok/tokenizer.h"
#include "tok_testutil.h"
#include "test.h"

static char tmp_dir[64];

static char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
    return buf[k];
}

/* A --template file whose [cue] section is `cue` (a cue ending in a newline is
 * written as its text plus one empty line: the section's lines are joined by
 * newlines). */
static const char *template_file(const char *name, const char *cue) {
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "w");
    fprintf(f, "[system]\nRate the response from 1 to 9.\n[user]\n{conversation}\n\nAnswer:\n{response}\n[cue]\n%s", cue);
    size_t n = strlen(cue);
    if (n && cue[n - 1] == '\n') fputs("\n", f); /* the last line's own newline */
    fclose(f);
    return path;
}

static Tokenizer *load_shared(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/%s", shared_data_dir(), name);
    OprmError err = {{0}};
    Tokenizer *t = tok_load(path, &err);
    if (!t) fprintf(stderr, "%s\n", err.msg);
    return t;
}

static Tokenizer *load_json(json_t *root, OprmError *err) {
    return tok_load_json_at(root, tmp_path("tokenizer.json"), err);
}

/* A byte-level BPE (ids 0..255 = bytes) with one merged token per extra merge. */
static json_t *bytelevel(const char *const *merges_in, size_t n) {
    return bytelevel_tokenizer(merges_in, n, NULL);
}

/* For every digit d: encode(rendered prompt + d) == scoring ids + [digit id]. */
static int digits_follow_prompt(const ScoringSetup *s, const Tokenizer *t) {
    Conversation conv = {0};
    conv_push(&conv, ROLE_USER, "Name a prime number.", 20);
    const char *response = "Seven.";
    ScoringPrompt sp = {0};
    OprmError err = {{0}};
    if (scoring_build(&s->cfg, &conv, response, &sp, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        conv_free(&conv);
        return 0;
    }
    StrBuf text = {0};
    scoring_render(&s->cfg, &conv, response, &text);
    int ok = 1;
    for (int d = 1; d <= 9; d++) {
        StrBuf with = {0};
        sb_printf(&with, "%s%d", text.s, d);
        IdVec ids = {0};
        ok &= tok_encode(t, with.s, with.n, chat_encode_add_special(s->cfg.format), &ids, &err) == 0;
        ok &= ids.n == sp.ids.n + 1 && !memcmp(ids.v, sp.ids.v, sp.ids.n * sizeof *ids.v) &&
              ids.v[sp.ids.n] == s->digits[d - 1];
        idvec_free(&ids);
        sb_free(&with);
    }
    sb_free(&text);
    scoring_prompt_free(&sp);
    conv_free(&conv);
    return ok;
}

typedef struct {
    const char *tok, *format;
} TokCase;

static void test_real_tokenizers_custom_cue(void) {
    static const TokCase toks[] = {{"qwen3", NULL}, {"mistral", "mistral"}};
    static const char *const cues[] = {"Score:", "Rating:\n", "Score: "};
    for (size_t k = 0; k < 2; k++) {
        Tokenizer *t = load_shared(toks[k].tok);
        CHECK(t != NULL);
        if (!t) continue;
        for (size_t c = 0; c < 3; c++) {
            ScoringSetup s;
            OprmError err = {{0}};
            int rc = scoring_setup(&s, t, toks[k].format, template_file("t.txt", cues[c]), 0, &err);
            CHECK(rc == 0);
            if (rc) {
                fprintf(stderr, "%s: %s\n", toks[k].tok, err.msg);
                continue;
            }
            CHECK(!strcmp(s.tpl->cue, cues[c]));
            int32_t want[9];
            CHECK(tok_digit_ids_after(t, cues[c], want, &err) == 0 && !memcmp(want, s.digits, sizeof want));
            CHECK(digits_follow_prompt(&s, t));
            scoring_setup_free(&s);
        }
        tok_free(t);
    }
}

/* Cues after which a digit is not one token are refused, naming cue and digit:
 * qwen3 "Score:  " (two spaces: the cue's "  " is one token, but before a
 * digit the spaces split), llama3 "Score: 1" (digits merge up to three). The
 * built-in "Score: " works for both, so checking it alone accepted these. */
static void test_refused_cues(void) {
    static const struct {
        const char *tok, *cue, *shown;
    } cases[] = {{"qwen3", "Score:  ", "\"Score:  \""}, {"llama3", "Score: 1", "\"Score: 1\""},
                 {"qwen3", "Grade:\n  ", "\"Grade:\\n  \""}};
    for (size_t k = 0; k < 3; k++) {
        Tokenizer *t = load_shared(cases[k].tok);
        CHECK(t != NULL);
        if (!t) continue;
        ScoringSetup s;
        OprmError err = {{0}};
        CHECK(scoring_setup(&s, t, NULL, template_file("bad.txt", cases[k].cue), 0, &err) == -1);
        CHECK_STR_CONTAINS(err.msg, "the digit '1' is not exactly one token after the cue");
        CHECK_STR_CONTAINS(err.msg, cases[k].shown);
        CHECK_STR_CONTAINS(err.msg, "tokenizer.json");
        CHECK_STR_CONTAINS(err.msg, "[cue]");
        int32_t ids[9];
        CHECK(tok_digit_ids_after(t, cases[k].cue, ids, &err) == -1);
        tok_free(t);
    }
}

/* GPT-2 style: " 7" is one token, so no digit is alone after "Score: ", but
 * after "Score:" or "Score:\n" each is; such a template is accepted. And the
 * reverse: merges ":1".. make "Score:" unusable while "Score: " is fine. */
static void test_synthetic_cues(void) {
    const char *space_merges[] = {"\xC4\xA0 1", "\xC4\xA0 2", "\xC4\xA0 3", "\xC4\xA0 4", "\xC4\xA0 5",
                                  "\xC4\xA0 6", "\xC4\xA0 7", "\xC4\xA0 8", "\xC4\xA0 9"};
    OprmError err = {{0}};
    Tokenizer *t = load_json(bytelevel(space_merges, 9), &err);
    CHECK(t != NULL);
    if (t) {
        ScoringSetup s;
        CHECK(scoring_setup(&s, t, "plain", NULL, 0, &err) == -1); /* default cue "Score: " */
        CHECK_STR_CONTAINS(err.msg, "after the cue \"Score: \"");
        const char *good[] = {"Score:", "Score:\n"};
        for (int i = 0; i < 2; i++) {
            int rc = scoring_setup(&s, t, "plain", template_file("g.txt", good[i]), 0, &err);
            CHECK(rc == 0);
            if (rc) {
                fprintf(stderr, "%s\n", err.msg);
                continue;
            }
            CHECK(s.digits[0] == '1' && s.digits[8] == '9'); /* the byte tokens */
            CHECK(digits_follow_prompt(&s, t));
            scoring_setup_free(&s);
        }
        tok_free(t);
    }
    /* digits merge with a colon before them: "Score:" (no space) is refused. The
     * ByteLevel pre-tokenizer keeps ":7" apart, so use no pre-tokenizer here. */
    const char *colon_merges[] = {": 1", ": 2", ": 3", ": 4", ": 5", ": 6", ": 7", ": 8", ": 9"};
    json_t *root = bytelevel(colon_merges, 9);
    json_object_set_new(root, "pre_tokenizer", json_null());
    json_object_set_new(root, "decoder", json_null());
    t = load_json(root, &err);
    if (t) {
        int32_t ids[9];
        int rc = tok_digit_ids_after(t, "Score:", ids, &err);
        CHECK(rc == -1);
        if (rc == -1) {
            CHECK_STR_CONTAINS(err.msg, "the digit '1' is not exactly one token after the cue \"Score:\"");
        }
        tok_free(t);
    } else {
        fprintf(stderr, "colon tokenizer: %s\n", err.msg);
        CHECK(0);
    }
}

/* SentencePiece style without digit pieces: '2' encodes as <unk>; the message
 * says so (not "not exactly one token") and names the tokenizer and the cue. */
static void test_unk_digit_message(void) {
    json_t *sp = json_pack(
        "{s:[{s:i, s:s, s:b, s:b}], s:{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}, s:n,"
        " s:{s:s, s:s, s:b, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:[]}}",
        "added_tokens", "id", 0, "content", "<unk>", "special", 1, "normalized", 0, "normalizer", "type", "Sequence",
        "normalizers", "type", "Prepend", "prepend", "\xE2\x96\x81", "type", "Replace", "pattern", "String", " ",
        "content", "\xE2\x96\x81", "pre_tokenizer", "model", "type", "BPE", "unk_token", "<unk>", "fuse_unk", 1,
        "vocab", "<unk>", 0, "\xE2\x96\x81", 1, "S", 2, "c", 3, "o", 4, "r", 5, "e", 6, ":", 7, "1", 8, "merges");
    OprmError err = {{0}};
    Tokenizer *t = load_json(sp, &err);
    CHECK(t != NULL);
    if (!t) return;
    int32_t ids[9];
    CHECK(tok_digit_ids_after(t, "Score:", ids, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "the digit '2' is not in its vocabulary");
    CHECK_STR_CONTAINS(err.msg, "unknown token <unk> (id 0)");
    CHECK_STR_CONTAINS(err.msg, "after the cue \"Score:\"");
    CHECK_STR_CONTAINS(err.msg, "tokenizer.json");
    CHECK_STR_CONTAINS(err.msg, "use a tokenizer whose vocabulary has the digits");
    tok_free(t);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/oprm_cue_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_SHARED(test_real_tokenizers_custom_cue, "tokenizers");
    RUN_SHARED(test_refused_cues, "tokenizers");
    RUN(test_synthetic_cues);
    RUN(test_unk_digit_message);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return test_summary();
}
