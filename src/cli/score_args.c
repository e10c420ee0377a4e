#include "cli/score_args.h"
#include "dist/dist.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "data/flags.h"
#include "io/fileio.h"
#include "tok/chat.h"

const char *const SCORE_ARGS_HELP =
    "Model and scoring:\n"
    "  --model DIR             model directory (Hugging Face layout; oprm.json when trained by oprm)\n"
    "  --max-len N             scoring-prompt token limit; longer prompts are truncated and counted\n"
    "                          [oprm.json, else 2048, at most the model's max_position_embeddings]\n"
    "  --chat-format NAME      chatml, llama3, llama2, mistral or plain [from the model]\n"
    "  --template FILE         scoring-prompt template (docs/data.md) [the default prompt]\n"
    "  --threads N             compute threads [all cores]\n"
    "  --batch-size N          responses per scoring call [64]\n"
    "  --max-batch-tokens N    tokens per packed forward pass [8192]\n"
    "  --progress / --no-progress  progress bar on stderr [only when stderr is a terminal]\n";

void score_args_init(ScoreArgs *a, const char *cmd, int multi_data) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->multi_data = multi_data;
    a->batch_size = 64;
    a->progress = -1;
    data_options_default(&a->dopt);
    a->dopt.point_label_required = 0; /* scoring needs no labels */
}

const char *flag_value(const char *cmd, int argc, char **argv, int i, const char *name, int *used) {
    const char *arg = argv[i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n)) return NULL;
    if (arg[n] == '=') {
        *used = 1;
        if (!arg[n + 1]) goto missing;
        return arg + n + 1;
    }
    if (arg[n]) return NULL;
    if (i + 1 >= argc) goto missing;
    *used = 2;
    return argv[i + 1];
missing:
    fprintf(stderr, "oprm %s: %s needs a value (see oprm %s --help)\n", cmd, name, cmd);
    *used = -1;
    return NULL;
}

static int parse_int_flag(const char *cmd, const char *flag, const char *v, long lo, long hi, int *out) {
    long x;
    if (arg_long(cmd, flag, v, lo, hi, &x)) return -1;
    *out = (int)x;
    return 0;
}


int score_args_parse(ScoreArgs *a, int argc, char **argv, int i) {
    const char *arg = argv[i], *v;
    int used = 0;
    if (!strcmp(arg, "--progress")) {
        a->progress = 1;
        return 1;
    }
    if (!strcmp(arg, "--no-progress")) {
        a->progress = 0;
        return 1;
    }
    if ((v = flag_value(a->cmd, argc, argv, i, "--model", &used)) || used < 0) {
        a->model_dir = v;
        return used;
    }
    if ((v = flag_value(a->cmd, argc, argv, i, "--output", &used)) || used < 0 ||
        (v = flag_value(a->cmd, argc, argv, i, "-o", &used)) || used < 0) {
        a->output = v;
        return used;
    }
    if ((v = flag_value(a->cmd, argc, argv, i, "--data", &used)) || used < 0) {
        if (used < 0) return -1;
        int k = i + used; /* eval: --data A B C takes files until the next flag */
        for (;;) {
            if (!a->multi_data && a->n_data > 0) {
                fprintf(stderr, "oprm %s: one --data file only (got %s and %s)\n", a->cmd, a->data[0], v);
                return -1;
            }
            if (a->n_data == SCORE_ARGS_MAX_DATA) {
                fprintf(stderr, "oprm %s: at most %d data files\n", a->cmd, SCORE_ARGS_MAX_DATA);
                return -1;
            }
            a->data[a->n_data++] = v;
            if (!a->multi_data || k >= argc || !strncmp(argv[k], "-", 1)) break;
            v = argv[k++];
            used++;
        }
        return used;
    }
    if ((v = flag_value(a->cmd, argc, argv, i, "--chat-format", &used)) || used < 0) {
        ChatFormat fmt;
        OprmError err = {{0}};
        if (v && chat_format_parse(v, &fmt, &err) != 0) {
            fprintf(stderr, "oprm %s: --chat-format: %s\n", a->cmd, err.msg);
            return -1;
        }
        a->sopt.chat_format = v;
        return used;
    }
    if ((v = flag_value(a->cmd, argc, argv, i, "--template", &used)) || used < 0) {
        a->sopt.template_path = v;
        return used;
    }
    static const struct {
        const char *flag;
        long lo, hi;
    } ints[] = {{"--max-len", 1, INT_MAX}, {"--threads", 0, 4096}, {"--batch-size", 1, 1 << 20}, {"--max-batch-tokens", 1, INT_MAX}};
    for (int k = 0; k < 4; k++) {
        if ((v = flag_value(a->cmd, argc, argv, i, ints[k].flag, &used)) || used < 0) {
            if (used < 0) return -1;
            int *dst = k == 0 ? &a->sopt.max_len : k == 1 ? &a->sopt.threads : k == 2 ? &a->batch_size : &a->sopt.max_batch_tokens;
            return parse_int_flag(a->cmd, ints[k].flag, v, ints[k].lo, ints[k].hi, dst) ? -1 : used;
        }
    }
    OprmError err = {{0}};
    int d = data_flag_parse(&a->dopt, argc, argv, i, &err);
    if (d < 0) {
        fprintf(stderr, "oprm %s: %s (see oprm %s --help)\n", a->cmd, err.msg, a->cmd);
        return -1;
    }
    if (d == 0) {
        fprintf(stderr, "oprm %s: unknown option %s (see oprm %s --help)\n", a->cmd, arg, a->cmd);
        return -1;
    }
    return d;
}

int score_args_check(ScoreArgs *a) {
    if (dist_rank() != 0) a->progress = 0; /* under mpirun rank 0 alone shows progress */
    if (!a->model_dir) {
        fprintf(stderr, "oprm %s: --model DIR is required (a model directory with config.json, model.safetensors "
                        "and tokenizer.json; see oprm %s --help)\n", a->cmd, a->cmd);
        return -1;
    }
    if (a->n_data == 0) {
        fprintf(stderr, "oprm %s: --data FILE is required (JSONL or a JSON array; formats in docs/data.md)\n", a->cmd);
        return -1;
    }
    return 0;
}

Scorer *score_args_open_model(const ScoreArgs *a) {
    OprmError err = {{0}};
    Scorer *s = scorer_open(a->model_dir, &a->sopt, &err);
    /* Under mpirun: every rank stops if one cannot load the model, rank 0 says why. */
    if (dist_agree(s ? 0 : -1, &err) && s) {
        scorer_close(s);
        s = NULL;
    }
    if (!s && dist_rank() != 0) return NULL;
    if (!s) {
        /* Errors of --template / --chat-format already name the flag. */
        fprintf(stderr, "oprm %s: %s%s\n", a->cmd, strncmp(err.msg, "--", 2) ? "cannot load the model: " : "", err.msg);
        char *cfg = path_join(a->model_dir, "config.json");
        if (!file_exists(cfg))
            fprintf(stderr, "  --model must be a Hugging Face model directory (config.json, model.safetensors, "
                            "tokenizer.json)\n");
        free(cfg);
    }
    return s;
}

DataFile *score_args_open_data(const ScoreArgs *a, const char *path, DataReport *rep) {
    OprmError err = {{0}};
    DataFile *f = data_open(path, &a->dopt, rep, &err);
    /* Under mpirun: a file one rank cannot read stops every rank. */
    if (dist_agree(f ? 0 : -1, &err) && f) {
        data_close(f);
        f = NULL;
    }
    if (!f && dist_rank() != 0) return NULL;
    if (!f) {
        fprintf(stderr, "oprm %s: %s\n", a->cmd, err.msg);
        size_t n = strlen(path);
        int at_line = !strncmp(err.msg, path, n) && err.msg[n] == ':' && isdigit((unsigned char)err.msg[n + 1]);
        if (!file_exists(path))
            fprintf(stderr, "  check the path given to --data\n");
        else if (at_line && !a->dopt.skip_invalid)
            fprintf(stderr, "  fix that record, or pass --skip-invalid to leave invalid records out (they are "
                            "counted); field names can be changed with --prompt-key, --chosen-key, ...\n");
        return NULL;
    }
    if (rep->skipped && dist_rank() == 0) data_report_print(rep, path, stderr);
    return f;
}

FILE *output_open(const char *cmd, const char *path, char **tmp_path) {
    *tmp_path = NULL;
    /* Under mpirun rank 0 alone writes; the others write nowhere. */
    if (dist_rank() != 0) return fopen("/dev/null", "w");
    if (!path || !strcmp(path, "-")) return stdout;
    size_t n = strlen(path) + 16;
    *tmp_path = xmalloc(n);
    snprintf(*tmp_path, n, "%s.tmp", path);
    FILE *f = fopen(*tmp_path, "w");
    if (!f) {
        fprintf(stderr, "oprm %s: cannot write %s: %s (check the directory exists and is writable)\n", cmd, *tmp_path,
                strerror(errno));
        free(*tmp_path);
        *tmp_path = NULL;
    }
    return f;
}

int output_close(const char *cmd, FILE *f, const char *path, char *tmp_path, int ok) {
    int rc = 0;
    if (f == stdout) {
        if (fflush(stdout) != 0) {
            fprintf(stderr, "oprm %s: cannot write to stdout: %s\n", cmd, strerror(errno));
            rc = -1;
        }
        return rc;
    }
    if (!tmp_path) return fclose(f) == 0 ? 0 : -1; /* a worker rank's /dev/null */
    if (fclose(f) != 0 && ok) {
        fprintf(stderr, "oprm %s: cannot write %s: %s\n", cmd, tmp_path, strerror(errno));
        ok = 0;
        rc = -1;
    }
    if (ok && rename(tmp_path, path) != 0) {
        fprintf(stderr, "oprm %s: cannot rename %s to %s: %s\n", cmd, tmp_path, path, strerror(errno));
        rc = -1;
        ok = 0;
    }
    if (!ok) remove(tmp_path);
    free(tmp_path);
    return rc;
}

int write_json_line(FILE *f, json_t *obj) {
    char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(17));
    int rc = s && fputs(s, f) >= 0 && fputc('\n', f) != EOF ? 0 : -1;
    free(s);
    return rc;
}
