/* Shared by the tokenizer tests: GPT-2's byte alphabet as a test-side
 * reference, a byte-level BPE tokenizer.json built in memory, and loading a
 * tokenizer from such a JSON object. */
#ifndef OPRM_TOK_TESTUTIL_H
#define OPRM_TOK_TESTUTIL_H

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tok/tokenizer.h"

/* GPT-2's byte alphabet (bytes_to_unicode): the character byte b stands for. */
static inline void byte_char(int b, char out[4]) {
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    unsigned cp = (unsigned)b;
    if (!printable) {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
        cp = 256 + (unsigned)k;
    }
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 63)), out[2] = 0;
}

/* A byte-level BPE: ids 0..255 are the bytes, then the extra tokens in order
 * (ids 256, 257, ...) with one merge each ("a b" for an extra "ab"). The
 * pre-tokenizer is consumed; NULL = ByteLevel without prefix space. */
static inline json_t *bytelevel_tokenizer(const char *const *extra_merges, size_t n_extra, json_t *pre_tokenizer) {
    json_t *vocab = json_object(), *merges = json_array();
    for (int b = 0; b < 256; b++) {
        char c[4];
        byte_char(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    for (size_t i = 0; i < n_extra; i++) {
        char joined[64];
        const char *sp = strchr(extra_merges[i], ' ');
        snprintf(joined, sizeof joined, "%.*s%s", (int)(sp - extra_merges[i]), extra_merges[i], sp + 1);
        json_object_set_new(vocab, joined, json_integer(256 + (json_int_t)i));
        json_array_append_new(merges, json_string(extra_merges[i]));
    }
    json_t *model = json_pack("{s:s, s:o, s:o}", "type", "BPE", "vocab", vocab, "merges", merges);
    if (!pre_tokenizer)
        pre_tokenizer = json_pack("{s:s, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1);
    return json_pack("{s:s, s:[], s:n, s:o, s:n, s:{s:s}, s:o}", "version", "1.0", "added_tokens", "normalizer",
                     "pre_tokenizer", pre_tokenizer, "post_processor", "decoder", "type", "ByteLevel", "model",
                     model);
}

/* Writes root (consumed) to path, loads the tokenizer from it, removes the
 * file. NULL with err set on failure (the message names path). */
static inline Tokenizer *tok_load_json_at(json_t *root, const char *path, OprmError *err) {
    json_dump_file(root, path, 0);
    json_decref(root);
    Tokenizer *t = tok_load(path, err);
    unlink(path);
    return t;
}

#endif
