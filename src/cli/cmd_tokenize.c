/* oprm tokenize: JSONL {"text": ...} on stdin -> {"ids": [...]} on stdout with a
 * model's tokenizer, for users and for checking against other tokenizers.
 * --bench FILE...: single-threaded encoding speed on preference-pair files
 * (every prompt, chosen and rejected text). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "tok/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: oprm tokenize --model DIR [--add-special]\n"
            "       oprm tokenize --model DIR --bench FILE.jsonl...\n\n"
            "Reads JSONL lines {\"text\": \"...\"} on stdin and writes one line {\"ids\": [...]} per\n"
            "input line to stdout. DIR is a Hugging Face model directory (tokenizer.json and, if\n"
            "present, tokenizer_config.json) or a tokenizer.json file.\n\n"
            "options:\n"
            "  --model DIR      tokenizer to use (required)\n"
            "  --add-special    add what the tokenizer adds around a sequence (e.g. BOS);\n"
            "                   off by default. Special-token strings in the text are always\n"
            "                   encoded as their tokens.\n"
            "  --bench FILE...  instead of stdin: encode every prompt/chosen/rejected text of\n"
            "                   these preference JSONL files, single-threaded, and report MB/s\n"
            "  -h, --help       show this help\n\n"
            "Invalid UTF-8 in a text is an error naming the line and byte offset (exit 1).\n");
}

static int write_ids(const IdVec *ids, StrBuf *line) {
    sb_clear(line);
    sb_puts(line, "{\"ids\": [");
    for (size_t i = 0; i < ids->n; i++) sb_printf(line, i ? ", %d" : "%d", (int)ids->v[i]);
    sb_puts(line, "]}\n");
    return fwrite(line->s, 1, line->n, stdout) == line->n ? 0 : -1;
}

static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

static int run_stdin(const Tokenizer *t, int add_special) {
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    IdVec ids = {0};
    StrBuf out = {0};
    int rc = EXIT_OK;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        if (is_blank(line)) continue;
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
        json_t *text = json_object_get(j, "text");
        if (!j || !json_is_string(text)) {
            if (!j) fprintf(stderr, "oprm tokenize: stdin line %zu: invalid JSON: %s\n", lineno, jerr.text);
            else fprintf(stderr, "oprm tokenize: stdin line %zu: expected an object with a string field \"text\"\n", lineno);
            json_decref(j);
            rc = EXIT_RUNTIME;
            break;
        }
        OprmError err = {{0}};
        ids.n = 0;
        if (tok_encode(t, json_string_value(text), json_string_length(text), add_special, &ids, &err)) {
            fprintf(stderr, "oprm tokenize: stdin line %zu: %s\n", lineno, err.msg);
            json_decref(j);
            rc = EXIT_RUNTIME;
            break;
        }
        json_decref(j);
        if (write_ids(&ids, &out)) {
            fprintf(stderr, "oprm tokenize: cannot write to stdout\n");
            rc = EXIT_RUNTIME;
            break;
        }
    }
    free(line);
    idvec_free(&ids);
    sb_free(&out);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        fprintf(stderr, "oprm tokenize: cannot write to stdout\n");
        rc = EXIT_RUNTIME;
    }
    return rc;
}

/* ---- --bench ---- */

typedef struct {
    char **s;
    size_t *len;
    size_t n, cap, bytes;
} Texts;

static void texts_add(Texts *t, json_t *s) {
    if (!json_is_string(s)) return;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 1024;
        t->s = realloc(t->s, t->cap * sizeof *t->s);
        t->len = realloc(t->len, t->cap * sizeof *t->len);
        if (!t->s || !t->len) abort();
    }
    size_t len = json_string_length(s);
    t->s[t->n] = malloc(len + 1);
    if (!t->s[t->n]) abort();
    memcpy(t->s[t->n], json_string_value(s), len + 1);
    t->len[t->n++] = len;
    t->bytes += len;
}

/* A prompt is a string or a list of {"role", "content"} messages. */
static void texts_add_field(Texts *t, json_t *v) {
    if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) texts_add(t, json_object_get(m, "content"));
    } else {
        texts_add(t, v);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int run_bench(const char *model, double load_s, const Tokenizer *t, char **files, int n_files) {
    Texts texts = {0};
    for (int f = 0; f < n_files; f++) {
        FILE *fp = fopen(files[f], "r");
        if (!fp) {
            fprintf(stderr, "oprm tokenize: cannot open %s\n", files[f]);
            return EXIT_RUNTIME;
        }
        char *line = NULL;
        size_t cap = 0, lineno = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, fp)) > 0) {
            lineno++;
            if (is_blank(line)) continue;
            json_error_t jerr;
            json_t *j = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
            if (!j) {
                fprintf(stderr, "oprm tokenize: %s line %zu: %s\n", files[f], lineno, jerr.text);
                free(line);
                fclose(fp);
                return EXIT_RUNTIME;
            }
            texts_add_field(&texts, json_object_get(j, "prompt"));
            texts_add(&texts, json_object_get(j, "chosen"));
            texts_add(&texts, json_object_get(j, "rejected"));
            json_decref(j);
        }
        free(line);
        fclose(fp);
    }
    IdVec ids = {0};
    size_t n_tokens = 0;
    int rc = EXIT_OK;
    double best = 1e30;
    for (int rep = 0; rep < 5 && rc == EXIT_OK; rep++) { /* best of 5: machines are shared */
        double t0 = now_s();
        n_tokens = 0;
        for (size_t i = 0; i < texts.n; i++) {
            OprmError err = {{0}};
            ids.n = 0;
            if (tok_encode(t, texts.s[i], texts.len[i], 0, &ids, &err)) {
                fprintf(stderr, "oprm tokenize: text %zu: %s\n", i, err.msg);
                rc = EXIT_RUNTIME;
                break;
            }
            n_tokens += ids.n;
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    if (rc == EXIT_OK)
        printf("tokenizer %s: load %.3f s; %zu texts, %.2f MB, %zu tokens; encode %.3f s = %.2f MB/s "
               "(%.0f tokens/s, single thread, best of 5)\n",
               model, load_s, texts.n, texts.bytes / 1e6, n_tokens, best, texts.bytes / 1e6 / best,
               n_tokens / best);
    for (size_t i = 0; i < texts.n; i++) free(texts.s[i]);
    free(texts.s);
    free(texts.len);
    idvec_free(&ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    int add_special = 0, bench_from = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return EXIT_OK;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strncmp(argv[i], "--model=", 8)) {
            model = argv[i] + 8;
        } else if (!strcmp(argv[i], "--add-special")) {
            add_special = 1;
        } else if (!strcmp(argv[i], "--bench")) {
            bench_from = i + 1;
            break;
        } else {
            fprintf(stderr, "oprm tokenize: unknown or incomplete option '%s'\n\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!model) {
        fprintf(stderr, "oprm tokenize: --model DIR is required\n\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (bench_from && bench_from >= argc) {
        fprintf(stderr, "oprm tokenize: --bench needs at least one JSONL file\n\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    OprmError err = {{0}};
    double t0 = now_s();
    Tokenizer *t = tok_load(model, &err);
    double load_s = now_s() - t0;
    if (!t) {
        fprintf(stderr, "oprm tokenize: %s\n", err.msg);
        return EXIT_RUNTIME;
    }
    int rc = bench_from ? run_bench(model, load_s, t, argv + bench_from, argc - bench_from) : run_stdin(t, add_special);
    tok_free(t);
    return rc;
}
