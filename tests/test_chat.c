/* Chat formats: exact renderings per format (written out by hand from each
 * family's Hugging Face template) and the choice of format from real
 * tokenizer_config.json chat_template strings. */
#include <jansson.h>

#include "tok/chat.h"
#include "test.h"

static Conversation sample(void) {
    Conversation c = {0};
    conv_push(&c, ROLE_SYSTEM, "S", 1);
    conv_push(&c, ROLE_USER, " Hi ", 4);
    conv_push(&c, ROLE_ASSISTANT, "Yo\n", 3);
    conv_push(&c, ROLE_USER, "Q", 1);
    return c;
}

static void check_render(ChatFormat f, const Conversation *c, const char *gen, const char *expected) {
    StrBuf out = {0};
    chat_render(f, c, NULL, NULL, gen, &out);
    int same = !strcmp(out.s, expected);
    if (!same) fprintf(stderr, "  %s rendered:\n[%s]\n  expected:\n[%s]\n", chat_format_name(f), out.s, expected);
    CHECK(same);
    sb_free(&out);
}

static void test_render_chatml(void) {
    Conversation c = sample();
    check_render(CHAT_CHATML, &c, "Score: ",
                 "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
                 "<|im_start|>assistant\nYo\n<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
                 "<|im_start|>assistant\nScore: ");
    check_render(CHAT_CHATML, &c, NULL,
                 "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
                 "<|im_start|>assistant\nYo\n<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n");
    conv_free(&c);
}

static void test_render_llama3(void) {
    Conversation c = sample();
    check_render(CHAT_LLAMA3, &c, "Score: ",
                 "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nScore: ");
    conv_free(&c);
}

static void test_render_llama2(void) {
    Conversation c = sample();
    /* HF: '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content, then strip() */
    check_render(CHAT_LLAMA2, &c, "Score: ",
                 "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n Hi [/INST] Yo </s><s>[INST] Q [/INST] Score: ");
    Conversation u = {0};
    conv_push(&u, ROLE_USER, "Hello", 5);
    check_render(CHAT_LLAMA2, &u, NULL, "<s>[INST] Hello [/INST]");
    StrBuf out = {0};
    chat_render(CHAT_LLAMA2, &u, "<BOS>", "<EOS>", "x", &out);
    CHECK(!strcmp(out.s, "<BOS>[INST] Hello [/INST] x"));
    sb_free(&out);
    conv_free(&u);
    conv_free(&c);
}

static void test_render_mistral(void) {
    Conversation c = sample();
    /* no system role: the system text opens the first user turn */
    check_render(CHAT_MISTRAL, &c, "Score: ", "<s>[INST] S\n\n Hi  [/INST]Yo\n</s>[INST] Q [/INST] Score: ");
    conv_free(&c);
}

static void test_render_plain(void) {
    Conversation c = sample();
    check_render(CHAT_PLAIN, &c, "Score: ",
                 "System: S\n\nUser:  Hi \n\nAssistant: Yo\n\n\nUser: Q\n\nAssistant: Score: ");
    CHECK(chat_encode_add_special(CHAT_PLAIN) == 1 && chat_encode_add_special(CHAT_CHATML) == 0);
    Conversation empty = {0};
    check_render(CHAT_PLAIN, &empty, NULL, "");
    conv_free(&c);
}

static char *config_template(const char *tok_name) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer_config.json", shared_data_dir(), tok_name);
    json_error_t je;
    json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je); /* model_max_length overflows int64 */
    if (!cfg) return NULL;
    const char *t = json_string_value(json_object_get(cfg, "chat_template"));
    char *copy = t ? strdup(t) : NULL;
    json_decref(cfg);
    return copy;
}

static void test_format_from_template(void) {
    ChatFormat f = CHAT_PLAIN;
    OprmError err;
    char *qwen = config_template("qwen3"), *llama = config_template("llama3"),
         *mistral = config_template("mistral");
    CHECK(qwen && llama && !mistral); /* the staged mistral config has no chat_template */
    CHECK(chat_format_from_template(qwen, &f, &err) == 0 && f == CHAT_CHATML);
    CHECK(chat_format_from_template(llama, &f, &err) == 0 && f == CHAT_LLAMA3);
    CHECK(chat_format_from_template(mistral, &f, &err) == 0 && f == CHAT_PLAIN);
    free(qwen);
    free(llama);
    CHECK(chat_format_from_template("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}",
                                    &f, &err) == 0 && f == CHAT_MISTRAL);
    CHECK(chat_format_from_template("[INST] <<SYS>>\\n{{ system }}\\n<</SYS>>", &f, &err) == 0 && f == CHAT_LLAMA2);
    CHECK(chat_format_from_template("{% for m in messages %}### {{ m.role }}: {{ m.content }}{% endfor %}",
                                    &f, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "pass --chat-format chatml|llama3|llama2|mistral|plain");
    /* the override wins over the template, and bad names are refused */
    CHECK(chat_format_choose(NULL, "llama2", &f, &err) == 0 && f == CHAT_LLAMA2);
    CHECK(chat_format_choose(NULL, "vicuna", &f, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "unknown chat format 'vicuna'");
    for (int i = 0; i <= CHAT_PLAIN; i++) {
        ChatFormat g;
        CHECK(chat_format_parse(chat_format_name((ChatFormat)i), &g, &err) == 0 && (int)g == i);
    }
}

static void test_roles(void) {
    CHECK(chat_role_parse("user") == ROLE_USER && chat_role_parse("human") == ROLE_USER);
    CHECK(chat_role_parse("Assistant") == ROLE_ASSISTANT && chat_role_parse("gpt") == ROLE_ASSISTANT);
    CHECK(chat_role_parse("system") == ROLE_SYSTEM && chat_role_parse("tool") == -1);
    Conversation c = sample(), d;
    conv_copy(&d, &c);
    CHECK(d.n == 4 && !strcmp(d.msgs[1].content, " Hi ") && d.msgs[1].content != c.msgs[1].content);
    conv_free(&c);
    conv_free(&d);
}

int main(void) {
    RUN(test_render_chatml);
    RUN(test_render_llama3);
    RUN(test_render_llama2);
    RUN(test_render_mistral);
    RUN(test_render_plain);
    RUN_SHARED(test_format_from_template, "tokenizers");
    RUN(test_roles);
    return test_summary();
}
