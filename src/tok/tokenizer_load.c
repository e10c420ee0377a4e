/* Loading tokenizer.json: the BPE model (vocab, merges, options), added
 * tokens, normalizer, pre-tokenizer, decoder and post-processor, then
 * tokenizer_config.json when the path is a model directory. Everything the
 * encoder cannot reproduce exactly is refused with an error naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fileio.h"
#include "tok/tokenizer_internal.h"

static void set_token(Tokenizer *t, int32_t id, const char *s, size_t len) {
    free(t->token_str[id]);
    t->token_str[id] = xstrndup(s, len);
    t->token_len[id] = (uint32_t)len;
}

/* Maps a vocabulary string from the GPT-2 byte alphabet to raw bytes. Returns
 * 0 if some character is outside the alphabet. */
static int bytelevel_to_raw(const char *s, size_t len, StrBuf *out) {
    sb_clear(out);
    size_t i = 0;
    while (i < len) {
        const unsigned char *u = (const unsigned char *)s + i;
        size_t k = utf8_seq_len(u, len - i);
        uint32_t cp;
        if (k == 1) cp = u[0];
        else if (k == 2) cp = (uint32_t)(u[0] & 31) << 6 | (u[1] & 63);
        else return 0; /* the alphabet is U+0021..U+0143 */
        int b = bytelevel_byte_of_char(cp);
        if (b < 0) return 0;
        char c = (char)b;
        sb_append(out, &c, 1);
        i += k;
    }
    return 1;
}

static int check_model_options(json_t *model, OprmError *err) {
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
        return oprm_fail(err, "model.dropout is not supported (BPE dropout is for training)");
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(model, keys[i]);
        if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v)))
            return oprm_fail(err, "model.%s is not supported", keys[i]);
    }
    return 0;
}

/* Ids index dense tables, so one stray huge id in a 4 KB file would cost GBs;
 * real vocabularies stay far below this. */
#define MAX_TOKEN_ID ((1 << 24) - 1)

static int load_vocab(Tokenizer *t, json_t *vocab, json_t *added, OprmError *err) {
    if (!json_is_object(vocab)) return oprm_fail(err, "model.vocab must be an object");
    int32_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > MAX_TOKEN_ID)
            return oprm_fail(err, "model.vocab[\"%s\"]: id must be an integer in 0..%d", key, MAX_TOKEN_ID);
        if (json_integer_value(val) > max_id) max_id = (int32_t)json_integer_value(val);
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_t *id = json_object_get(val, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > MAX_TOKEN_ID)
            return oprm_fail(err, "added_tokens[%zu]: \"id\" must be an integer in 0..%d", i, MAX_TOKEN_ID);
        if (json_integer_value(id) > max_id) max_id = (int32_t)json_integer_value(id);
    }
    t->vocab_size = max_id + 1;
    t->token_str = xcalloc((size_t)t->vocab_size + 1, sizeof *t->token_str);
    t->token_len = xcalloc((size_t)t->vocab_size + 1, sizeof *t->token_len);
    t->is_special = xcalloc((size_t)t->vocab_size + 1, 1);
    size_t n_vocab = json_object_size(vocab);
    strmap_init(&t->token_ids, n_vocab + json_array_size(added));
    strmap_init(&t->model_vocab, n_vocab);
    StrBuf raw = {0};
    json_object_foreach(vocab, key, val) {
        /* jansson object keys cannot hold NUL, so strlen is the key length */
        int32_t id = (int32_t)json_integer_value(val);
        size_t len = strlen(key);
        set_token(t, id, key, len);
        strmap_put(&t->token_ids, key, len, id);
        if (t->byte_level && bytelevel_to_raw(key, len, &raw)) strmap_put(&t->model_vocab, raw.s, raw.n, id);
        else strmap_put(&t->model_vocab, key, len, id);
    }
    sb_free(&raw);
    return 0;
}

static int merge_side(const Tokenizer *t, const char *s, size_t len, size_t i, OprmError *err) {
    int32_t id = strmap_get(&t->token_ids, s, len);
    if (id < 0) return oprm_fail(err, "model.merges[%zu]: token '%.*s' is not in the vocabulary", i, (int)len, s);
    return id;
}

static int load_merges(Tokenizer *t, json_t *merges, OprmError *err) {
    if (!json_is_array(merges)) return oprm_fail(err, "model.merges must be a list");
    size_t n = json_array_size(merges);
    pairmap_init(&t->merges, n);
    StrBuf joined = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(m)) {
            /* "left right": exactly one space separates the two tokens */
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = oprm_fail(err, "model.merges[%zu]: '%s' is not two tokens separated by one space", i, a);
                break;
            }
            alen = (size_t)(sp - a);
            b = sp + 1;
            blen = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            alen = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            blen = json_string_length(json_array_get(m, 1));
        } else {
            rc = oprm_fail(err, "model.merges[%zu]: must be \"a b\" or [\"a\", \"b\"]", i);
            break;
        }
        int left = merge_side(t, a, alen, i, err);
        int right = left < 0 ? -1 : merge_side(t, b, blen, i, err);
        if (left < 0 || right < 0) {
            rc = -1;
            break;
        }
        sb_clear(&joined);
        sb_append(&joined, a, alen);
        sb_append(&joined, b, blen);
        int32_t merged = strmap_get(&t->token_ids, joined.s, joined.n);
        if (merged < 0) {
            rc = oprm_fail(err, "model.merges[%zu]: merged token '%s' is not in the vocabulary", i, joined.s);
            break;
        }
        pairmap_put(&t->merges, left, right, (int32_t)i, merged);
    }
    sb_free(&joined);
    return rc;
}

static int load_added(Tokenizer *t, json_t *added, OprmError *err) {
    if (!added || json_is_null(added)) return 0;
    if (!json_is_array(added)) return oprm_fail(err, "added_tokens must be a list");
    t->n_added = json_array_size(added);
    t->added = xcalloc(t->n_added ? t->n_added : 1, sizeof *t->added);
    for (size_t i = 0; i < t->n_added; i++) {
        json_t *a = json_array_get(added, i);
        json_t *content = json_object_get(a, "content");
        if (!json_is_string(content) || !json_string_length(content))
            return oprm_fail(err, "added_tokens[%zu]: \"content\" must be a non-empty string", i);
        AddedToken *tok = &t->added[i];
        tok->len = json_string_length(content);
        tok->content = xstrndup(json_string_value(content), tok->len);
        tok->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        tok->special = json_is_true(json_object_get(a, "special"));
        json_t *normalized = json_object_get(a, "normalized");
        /* Hugging Face's default: special tokens are not normalized. */
        tok->normalized = normalized ? json_is_true(normalized) : !tok->special;
        tok->lstrip = json_is_true(json_object_get(a, "lstrip"));
        tok->rstrip = json_is_true(json_object_get(a, "rstrip"));
        tok->single_word = json_is_true(json_object_get(a, "single_word"));
        set_token(t, tok->id, tok->content, tok->len);
        strmap_put(&t->token_ids, tok->content, tok->len, tok->id);
        if (tok->special) t->is_special[tok->id] = 1;
    }
    return 0;
}

/* The two matchers: tokens matched in the raw text, and normalized:true tokens
 * matched (by their normalized content) in the normalized text. */
static int build_matchers(Tokenizer *t, OprmError *err) {
    AddedToken **raw = xmalloc((t->n_added ? t->n_added : 1) * sizeof *raw);
    AddedToken **norm = xmalloc((t->n_added ? t->n_added : 1) * sizeof *norm);
    size_t n_raw = 0;
    t->added_normed = xcalloc(t->n_added ? t->n_added : 1, sizeof *t->added_normed);
    StrBuf buf = {0};
    int rc = 0;
    for (size_t i = 0; i < t->n_added; i++) {
        AddedToken *a = &t->added[i];
        if (!a->normalized || !t->normalizer) {
            raw[n_raw++] = a;
            continue;
        }
        if (normalizer_apply(t->normalizer, a->content, a->len, &buf, err)) {
            rc = -1;
            break;
        }
        AddedToken *c = &t->added_normed[t->n_added_normed];
        *c = *a;
        c->content = xstrndup(buf.s, buf.n);
        c->len = buf.n;
        norm[t->n_added_normed] = c;
        t->n_added_normed++;
    }
    sb_free(&buf);
    if (!rc) {
        added_matcher_build(&t->raw_matcher, raw, n_raw);
        added_matcher_build(&t->norm_matcher, norm, t->n_added_normed);
    }
    free(raw);
    free(norm);
    return rc;
}

static int metaspace_only_leads(const StrMap *vocab) {
    static const char ms[] = "\xE2\x96\x81"; /* U+2581 */
    for (size_t e = 0; e < vocab->n; e++) {
        const char *k = vocab->keys.s + vocab->key_off[e];
        size_t len = vocab->key_len[e];
        for (size_t i = 1; i + 3 <= len; i++)
            if (!memcmp(k + i, ms, 3) && (i < 3 || memcmp(k + i - 3, ms, 3))) return 0;
    }
    return 1;
}

static int parse_tokenizer_json(Tokenizer *t, json_t *root, OprmError *err) {
    if (!json_is_object(root)) return oprm_fail(err, "the top level must be an object");
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return oprm_fail(err, "missing \"model\" object");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type && json_object_get(model, "merges")) type = "BPE"; /* older files omit it */
    if (!type) return oprm_fail(err, "model: missing \"type\"");
    if (strcmp(type, "BPE")) return oprm_fail(err, "model type '%s' is not supported (only BPE)", type);
    if (check_model_options(model, err)) return -1;

    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        t->normalizer = xcalloc(1, sizeof *t->normalizer);
        if (normalizer_parse(t->normalizer, norm, err)) return -1;
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !json_is_null(pre)) {
        t->pretok = xcalloc(1, sizeof *t->pretok);
        if (pretok_parse(t->pretok, pre, err)) return -1;
    }
    json_t *dec = json_object_get(root, "decoder");
    if (dec && !json_is_null(dec)) {
        t->decoder = xcalloc(1, sizeof *t->decoder);
        if (decoder_parse(t->decoder, dec, err)) return -1;
    }
    t->byte_level = pretok_has_bytelevel(t->pretok);

    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added) && !json_is_null(added)) return oprm_fail(err, "added_tokens must be a list");
    if (load_vocab(t, json_object_get(model, "vocab"), json_is_array(added) ? added : NULL, err)) return -1;
    if (load_merges(t, json_object_get(model, "merges"), err)) return -1;
    if (load_added(t, added, err)) return -1;

    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    t->unk_id = unk ? strmap_get(&t->model_vocab, unk, strlen(unk)) : -1;
    if (unk && t->unk_id < 0) t->unk_id = strmap_get(&t->token_ids, unk, strlen(unk));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_fallback_id[b] = strmap_get(&t->model_vocab, name, strlen(name));
        char c = (char)b;
        t->byte_id[b] = t->byte_level ? strmap_get(&t->model_vocab, &c, 1) : -1;
    }
    if (build_matchers(t, err)) return -1;
    t->split_at_metaspace = !t->byte_level && !t->ignore_merges && metaspace_only_leads(&t->model_vocab);
    json_t *pp = json_object_get(root, "post_processor");
    return tok_parse_post_processor(t, pp, err);
}

Tokenizer *tok_load(const char *path, OprmError *err) {
    struct stat st;
    if (stat(path, &st) != 0) {
        oprm_fail(err, "tokenizer: '%s' does not exist", path);
        return NULL;
    }
    int is_dir = S_ISDIR(st.st_mode);
    char *json_path = is_dir ? path_join(path, "tokenizer.json") : xstrdup(path);
    Tokenizer *t = xcalloc(1, sizeof *t);
    static _Atomic uint32_t next_uid = 1;
    t->uid = next_uid++;
    t->name = xstrdup(json_path);
    t->bos_id = t->eos_id = -1;
    t->unk_id = -1;
    size_t len;
    char *text = read_file(json_path, &len, err);
    if (!text) {
        oprm_prefix(err, "tokenizer: ");
        goto fail;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    free(text);
    if (!root) {
        oprm_fail(err, "%s: line %d column %d: invalid JSON: %s", json_path, jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    int rc = parse_tokenizer_json(t, root, err);
    json_decref(root);
    if (rc) {
        oprm_prefix(err, "%s: ", json_path);
        goto fail;
    }
    if (is_dir) {
        char *cfg_path = path_join(path, "tokenizer_config.json");
        if (file_exists(cfg_path)) {
            /* model_max_length is often 1e30 written as an integer */
            json_t *cfg = json_load_file(cfg_path, JSON_DECODE_INT_AS_REAL, &jerr);
            if (!cfg) {
                oprm_fail(err, "%s: line %d column %d: invalid JSON: %s", cfg_path, jerr.line, jerr.column, jerr.text);
                free(cfg_path);
                goto fail;
            }
            rc = tok_apply_config(t, cfg, err);
            json_decref(cfg);
            if (rc) {
                oprm_prefix(err, "%s: ", cfg_path);
                free(cfg_path);
                goto fail;
            }
        }
        free(cfg_path);
    }
    free(json_path);
    return t;
fail:
    free(json_path);
    tok_free(t);
    return NULL;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    free(t->name);
    if (t->token_str)
        for (int32_t i = 0; i < t->vocab_size; i++) free(t->token_str[i]);
    free(t->token_str);
    free(t->token_len);
    free(t->is_special);
    strmap_free(&t->token_ids);
    strmap_free(&t->model_vocab);
    pairmap_free(&t->merges);
    normalizer_free(t->normalizer);
    free(t->normalizer);
    pretok_free(t->pretok);
    free(t->pretok);
    decoder_free(t->decoder);
    free(t->decoder);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    for (size_t i = 0; i < t->n_added_normed; i++) free(t->added_normed[i].content);
    free(t->added_normed);
    added_matcher_free(&t->raw_matcher);
    added_matcher_free(&t->norm_matcher);
    idvec_free(&t->prefix_ids);
    idvec_free(&t->suffix_ids);
    free(t->chat_template);
    free(t);
}
