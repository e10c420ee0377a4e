#include "tok/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void conv_push(Conversation *c, ChatRole role, const char *content, size_t len) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->msgs = xrealloc(c->msgs, c->cap * sizeof *c->msgs);
    }
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = xstrndup(content, len);
    c->n++;
}

void conv_free(Conversation *c) {
    for (size_t i = 0; i < c->n; i++) free(c->msgs[i].content);
    free(c->msgs);
    c->msgs = NULL;
    c->n = c->cap = 0;
}

void conv_copy(Conversation *dst, const Conversation *src) {
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->n; i++)
        conv_push(dst, src->msgs[i].role, src->msgs[i].content, strlen(src->msgs[i].content));
}

const char *chat_role_name(ChatRole r) {
    switch (r) {
    case ROLE_SYSTEM: return "system";
    case ROLE_USER: return "user";
    case ROLE_ASSISTANT: return "assistant";
    }
    return "?";
}

int chat_role_parse(const char *s) {
    if (!strcasecmp(s, "system")) return ROLE_SYSTEM;
    if (!strcasecmp(s, "user") || !strcasecmp(s, "human")) return ROLE_USER;
    if (!strcasecmp(s, "assistant") || !strcasecmp(s, "gpt") || !strcasecmp(s, "bot") ||
        !strcasecmp(s, "model"))
        return ROLE_ASSISTANT;
    return -1;
}

static const char *const format_names[] = {"chatml", "llama3", "llama2", "mistral", "plain"};

const char *chat_format_name(ChatFormat f) {
    return (unsigned)f < sizeof format_names / sizeof *format_names ? format_names[f] : "?";
}

int chat_format_parse(const char *name, ChatFormat *out, OprmError *err) {
    for (size_t i = 0; i < sizeof format_names / sizeof *format_names; i++)
        if (!strcmp(name, format_names[i])) {
            *out = (ChatFormat)i;
            return 0;
        }
    return oprm_fail(err, "unknown chat format '%s' (expected chatml, llama3, llama2, mistral or plain)",
                     name);
}

/* The marker of each format, for the messages below. */
static ChatFormat format_by_markers(const char *tpl, const char **marker) {
    if (strstr(tpl, "<|im_start|>")) return *marker = "<|im_start|>", CHAT_CHATML;
    if (strstr(tpl, "<|start_header_id|>")) return *marker = "<|start_header_id|>", CHAT_LLAMA3;
    if (strstr(tpl, "[INST]") && strstr(tpl, "<<SYS>>")) return *marker = "[INST] and <<SYS>>", CHAT_LLAMA2;
    if (strstr(tpl, "[INST]")) return *marker = "[INST]", CHAT_MISTRAL;
    *marker = NULL;
    return CHAT_PLAIN;
}

int chat_format_from_template(const char *tpl, ChatFormat *out, OprmError *err) {
    ChatTemplateMatch m;
    return chat_template_match(tpl, out, &m, NULL, err);
}

uint64_t chat_template_hash(const char *tpl) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)tpl; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    return h;
}

/* Templates known by their full text (FNV-1a 64; tools/gen_hf_chat_vectors.py
 * prints them). exact: transformers renders what oprm renders for every
 * conversation that ends with a user turn plus the generation prompt -- the
 * scoring prompt -- on tests/fixtures/hf/chat_templates.json. Otherwise `how`
 * says what the template does that oprm does not. */
static const struct {
    uint64_t hash;
    ChatFormat format;
    const char *name, *how;
} known_templates[] = {
    {0x2bfdb7aa9754484eULL, CHAT_CHATML, "Qwen3", NULL},
    {0x3751fe8ea48448abULL, CHAT_CHATML, "Qwen3-Instruct-2507", NULL},
    {0x74891e390e614ae2ULL, CHAT_LLAMA3, "Llama-3 (assistant header always added)", NULL},
    {0x0e60067a5537498eULL, CHAT_LLAMA3, "Meta-Llama-3-Instruct", NULL},
    {0xf344eecf1bd3a427ULL, CHAT_LLAMA2, "Llama-2-chat", NULL},
    {0x8c734b90b4f8d84dULL, CHAT_MISTRAL, "Mistral/Mixtral-Instruct v0.1", NULL},
    {0x1a50d411f3e56ca0ULL, CHAT_PLAIN, "oprm plain (docs/huggingface.md)", NULL},
    {0x2fa33477e0fdafecULL, CHAT_CHATML, "oprm ChatML (the demo's, src/synth/tokfiles.c)", NULL},
    {0xc2b27ee60f1b8775ULL, CHAT_CHATML, "Qwen2.5",
     "it adds a default system prompt (\"You are Qwen, ...\") when the conversation has none; oprm's scoring "
     "prompt has a system message unless --template's [system] is empty"},
    {0x60848a05837ce656ULL, CHAT_LLAMA3, "Llama-3.1",
     "it puts a system header with a knowledge cutoff and today's date into every prompt"},
    {0xc730acc029ce6ee0ULL, CHAT_MISTRAL, "Mistral-7B-Instruct v0.1", "it puts a space after every </s>"},
};

int chat_template_match(const char *tpl, ChatFormat *out, ChatTemplateMatch *match, StrBuf *note,
                        OprmError *err) {
    if (!tpl) {
        *out = CHAT_PLAIN; /* no chat template: a base model */
        *match = CHAT_TEMPLATE_NONE;
        return 0;
    }
    uint64_t h = chat_template_hash(tpl);
    for (size_t i = 0; i < sizeof known_templates / sizeof *known_templates; i++)
        if (known_templates[i].hash == h) {
            *out = known_templates[i].format;
            *match = known_templates[i].how ? CHAT_TEMPLATE_FAMILY : CHAT_TEMPLATE_EXACT;
            if (note && known_templates[i].how)
                sb_printf(note, "the chat_template in tokenizer_config.json is %s's, which oprm does not render "
                                "exactly: %s. oprm renders it as %s (pass --chat-format to choose another)",
                          known_templates[i].name, known_templates[i].how, chat_format_name(*out));
            return 0;
        }
    const char *marker;
    *out = format_by_markers(tpl, &marker);
    if (!marker)
        return oprm_fail(err, "tokenizer_config.json has a chat_template oprm does not recognise "
                              "(none of <|im_start|>, <|start_header_id|>, [INST]); pass "
                              "--chat-format chatml|llama3|llama2|mistral|plain");
    *match = CHAT_TEMPLATE_FAMILY;
    if (note)
        sb_printf(note, "the chat_template in tokenizer_config.json is none of the templates oprm renders exactly "
                        "(oprm does not run Jinja); it has %s, so oprm renders it as %s, which may differ from "
                        "transformers' apply_chat_template (pass --chat-format to choose another; "
                        "tools/hf_check.sh compares)",
                  marker, chat_format_name(*out));
    return 0;
}

int chat_format_choose(const Tokenizer *t, const char *override, ChatFormat *out, OprmError *err) {
    if (override) return chat_format_parse(override, out, err);
    ChatTemplateMatch m;
    StrBuf note = {0};
    int rc = chat_template_match(t ? tok_chat_template(t) : NULL, out, &m, &note, err);
    static int noted; /* once per process: every scorer/trainer setup would repeat it */
    if (rc == 0 && m == CHAT_TEMPLATE_FAMILY && !noted) {
        noted = 1;
        fprintf(stderr, "note: %s\n", note.s);
    }
    sb_free(&note);
    return rc;
}

int chat_encode_add_special(ChatFormat f) {
    return f == CHAT_PLAIN;
}

/* Python's str.strip(): the llama templates strip contents. */
static void append_trimmed(StrBuf *out, const char *s) {
    size_t a = 0, b = strlen(s);
    while (a < b && strchr(" \t\n\r\f\v", s[a])) a++;
    while (b > a && strchr(" \t\n\r\f\v", s[b - 1])) b--;
    sb_append(out, s + a, b - a);
}

static void render_chatml(const Conversation *c, const char *gen, StrBuf *out) {
    for (size_t i = 0; i < c->n; i++)
        sb_printf(out, "<|im_start|>%s\n%s<|im_end|>\n", chat_role_name(c->msgs[i].role),
                  c->msgs[i].content);
    if (gen) sb_printf(out, "<|im_start|>assistant\n%s", gen);
}

static void render_llama3(const Conversation *c, const char *gen, StrBuf *out) {
    sb_puts(out, "<|begin_of_text|>");
    for (size_t i = 0; i < c->n; i++) {
        sb_printf(out, "<|start_header_id|>%s<|end_header_id|>\n\n", chat_role_name(c->msgs[i].role));
        append_trimmed(out, c->msgs[i].content);
        sb_puts(out, "<|eot_id|>");
    }
    if (gen) sb_printf(out, "<|start_header_id|>assistant<|end_header_id|>\n\n%s", gen);
}

/* Llama-2: every user turn opens with BOS + "[INST] "; the system prompt sits
 * in <<SYS>> inside the first user turn; assistant turns end with EOS. */
static void render_llama2(const Conversation *c, const char *bos, const char *eos, const char *gen,
                          StrBuf *out) {
    const char *system = NULL;
    size_t i = 0;
    if (c->n && c->msgs[0].role == ROLE_SYSTEM) system = c->msgs[i++].content;
    int first_user = 1;
    for (; i < c->n; i++) {
        const ChatMessage *m = &c->msgs[i];
        if (m->role == ROLE_ASSISTANT) {
            sb_puts(out, " ");
            append_trimmed(out, m->content);
            sb_printf(out, " %s", eos);
            continue;
        }
        /* a later system message is shown as a user turn: Llama-2 has one system slot */
        sb_printf(out, "%s[INST] ", bos);
        if (first_user && system) {
            StrBuf body = {0};
            sb_printf(&body, "<<SYS>>\n%s\n<</SYS>>\n\n%s", system, m->content);
            append_trimmed(out, body.s);
            sb_free(&body);
        } else {
            append_trimmed(out, m->content);
        }
        first_user = 0;
        sb_puts(out, " [/INST]");
    }
    if (first_user && system) { /* system text and nothing else */
        sb_printf(out, "%s[INST] <<SYS>>\n", bos);
        append_trimmed(out, system);
        sb_puts(out, "\n<</SYS>>\n\n [/INST]");
    }
    if (gen) sb_printf(out, " %s", gen);
}

/* Mistral's template has no system role: the system text opens the first user
 * turn, separated by a blank line (what Mistral's later templates do). */
static void render_mistral(const Conversation *c, const char *bos, const char *eos, const char *gen,
                           StrBuf *out) {
    sb_puts(out, bos);
    const char *system = NULL;
    size_t i = 0;
    if (c->n && c->msgs[0].role == ROLE_SYSTEM) system = c->msgs[i++].content;
    int first_user = 1;
    for (; i < c->n; i++) {
        const ChatMessage *m = &c->msgs[i];
        if (m->role == ROLE_ASSISTANT) {
            sb_printf(out, "%s%s", m->content, eos);
            continue;
        }
        sb_puts(out, "[INST] ");
        if (first_user && system) sb_printf(out, "%s\n\n", system);
        sb_printf(out, "%s [/INST]", m->content);
        first_user = 0;
    }
    if (first_user && system) sb_printf(out, "[INST] %s [/INST]", system);
    if (gen) sb_printf(out, " %s", gen);
}

static void render_plain(const Conversation *c, const char *gen, StrBuf *out) {
    static const char *const label[] = {"System", "User", "Assistant"};
    for (size_t i = 0; i < c->n; i++)
        sb_printf(out, "%s: %s\n\n", label[c->msgs[i].role], c->msgs[i].content);
    if (gen) sb_printf(out, "Assistant: %s", gen);
}

void chat_render(ChatFormat f, const Conversation *c, const char *bos, const char *eos,
                 const char *gen_prefix, StrBuf *out) {
    if (!bos) bos = "<s>";
    if (!eos) eos = "</s>";
    sb_append(out, "", 0); /* out->s is a valid string even when nothing is rendered */
    switch (f) {
    case CHAT_CHATML: render_chatml(c, gen_prefix, out); break;
    case CHAT_LLAMA3: render_llama3(c, gen_prefix, out); break;
    case CHAT_LLAMA2: render_llama2(c, bos, eos, gen_prefix, out); break;
    case CHAT_MISTRAL: render_mistral(c, bos, eos, gen_prefix, out); break;
    case CHAT_PLAIN: render_plain(c, gen_prefix, out); break;
    }
}
