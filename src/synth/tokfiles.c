/* Writes the demo tokenizer as Hugging Face files (layout in synth/bpe.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "synth/bpe.h"
#include "util/vec.h"

/* ChatML, as Qwen2.5's template renders a conversation without tools. */
static const char CHATML_TEMPLATE[] =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

static json_t *byte_level(void) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
                     "use_regex", 0);
}

static json_t *added_token_flags(const char *content) {
    return json_pack("{s:s, s:b, s:b, s:b, s:b, s:b}", "content", content, "lstrip", 0, "normalized", 0,
                     "rstrip", 0, "single_word", 0, "special", 1);
}

static int dump_to(const char *dir, const char *name, json_t *root, OprmError *err) {
    char *text = json_dumps(root, JSON_INDENT(2));
    if (!text) return oprm_fail(err, "%s: cannot serialise JSON", name);
    StrBuf buf = {0};
    sb_puts(&buf, text);
    sb_puts(&buf, "\n");
    free(text);
    char *path = path_join(dir, name);
    int rc = write_file_atomic(path, buf.s, buf.n, err);
    free(path);
    sb_free(&buf);
    return rc;
}

int bpe_write_tokenizer(const char *dir, const BpeMerges *m, int *vocab_size, OprmError *err) {
    json_t *vocab = json_object();
    int next_id = 0;
    /* Byte tokens in id order: GPT-2's order lists the printable bytes first. */
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
            if (printable == (pass == 0)) json_object_set_new(vocab, bpe_byte_char((unsigned char)b), json_integer(next_id++));
        }
    json_t *merges = json_array();
    StrBuf joined = {0};
    for (int i = 0; i < m->n_merges; i++) {
        if (strchr(m->left[i], ' ') || strchr(m->right[i], ' ')) {
            sb_free(&joined);
            json_decref(vocab);
            json_decref(merges);
            return oprm_fail(err, "bpe: merge %d contains a raw space (not byte-level text)", i);
        }
        sb_clear(&joined);
        sb_printf(&joined, "%s %s", m->left[i], m->right[i]);
        json_array_append_new(merges, json_string(joined.s));
        sb_clear(&joined);
        sb_printf(&joined, "%s%s", m->left[i], m->right[i]);
        if (!json_object_get(vocab, joined.s)) json_object_set_new(vocab, joined.s, json_integer(next_id++));
    }
    sb_free(&joined);

    json_t *added = json_array(), *added_decoder = json_object();
    for (int i = 0; i < BPE_N_ADDED; i++) {
        json_t *t = json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", next_id + i, "content",
                              BPE_ADDED_TOKENS[i], "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                              "special", 1);
        json_array_append_new(added, t);
        char key[16];
        snprintf(key, sizeof key, "%d", next_id + i);
        json_object_set_new(added_decoder, key, added_token_flags(BPE_ADDED_TOKENS[i]));
    }
    if (vocab_size) *vocab_size = next_id + BPE_N_ADDED;

    json_t *split = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", BPE_SPLIT_REGEX,
                              "behavior", "Isolated", "invert", 0);
    json_t *tok = json_object();
    json_object_set_new(tok, "version", json_string("1.0"));
    json_object_set_new(tok, "truncation", json_null());
    json_object_set_new(tok, "padding", json_null());
    json_object_set_new(tok, "added_tokens", added);
    json_object_set_new(tok, "normalizer", json_pack("{s:s}", "type", "NFC"));
    json_object_set_new(tok, "pre_tokenizer",
                        json_pack("{s:s, s:[o, o]}", "type", "Sequence", "pretokenizers", split, byte_level()));
    json_object_set_new(tok, "post_processor", byte_level());
    json_object_set_new(tok, "decoder", byte_level());
    json_t *model = json_object();
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "dropout", json_null());
    json_object_set_new(model, "unk_token", json_null());
    json_object_set_new(model, "continuing_subword_prefix", json_string(""));
    json_object_set_new(model, "end_of_word_suffix", json_string(""));
    json_object_set_new(model, "fuse_unk", json_false());
    json_object_set_new(model, "byte_fallback", json_false());
    json_object_set_new(model, "ignore_merges", json_false());
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", merges);
    json_object_set_new(tok, "model", model);

    json_t *cfg = json_object();
    json_object_set_new(cfg, "add_bos_token", json_false());
    json_object_set_new(cfg, "add_prefix_space", json_false());
    json_object_set_new(cfg, "added_tokens_decoder", added_decoder);
    json_object_set_new(cfg, "additional_special_tokens", json_pack("[s, s]", "<|im_start|>", "<|im_end|>"));
    json_object_set_new(cfg, "bos_token", json_null());
    json_object_set_new(cfg, "chat_template", json_string(CHATML_TEMPLATE));
    json_object_set_new(cfg, "clean_up_tokenization_spaces", json_false());
    json_object_set_new(cfg, "eos_token", json_string("<|im_end|>"));
    json_object_set_new(cfg, "errors", json_string("replace"));
    json_object_set_new(cfg, "model_max_length", json_integer(2048));
    json_object_set_new(cfg, "pad_token", json_string("<|endoftext|>"));
    json_object_set_new(cfg, "split_special_tokens", json_false());
    json_object_set_new(cfg, "tokenizer_class", json_string("PreTrainedTokenizerFast"));
    json_object_set_new(cfg, "unk_token", json_null());

    json_t *map = json_object();
    json_object_set_new(map, "additional_special_tokens", json_pack("[s, s]", "<|im_start|>", "<|im_end|>"));
    json_t *eos = added_token_flags("<|im_end|>"), *pad = added_token_flags("<|endoftext|>");
    json_object_del(eos, "special");
    json_object_del(pad, "special");
    json_object_set_new(map, "eos_token", eos);
    json_object_set_new(map, "pad_token", pad);

    int rc = dump_to(dir, "tokenizer.json", tok, err);
    if (!rc) rc = dump_to(dir, "tokenizer_config.json", cfg, err);
    if (!rc) rc = dump_to(dir, "special_tokens_map.json", map, err);
    json_decref(tok);
    json_decref(cfg);
    json_decref(map);
    return rc;
}
