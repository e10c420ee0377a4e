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
#include "cli/device_flag.h"
#include "tok/chat.h"

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

/* --chat-format: the name is checked while parsing. */
static int parse_chat_format(void *ctx, const char *flag, const char *v) {
    ScoreArgs *a = ctx;
    ChatFormat fmt;
    OprmError err = {{0}};
    if (chat_format_parse(v, &fmt, &err) != 0) {
        fprintf(stderr, "oprm %s: %s: %s\n", a->cmd, flag, err.msg);
        return -1;
    }
    a->sopt.chat_format = v;
    return 0;
}

int options_data_flags(void *ctx, int argc, char **argv, int i) {
    DataFlagsCtx *d = ctx;
    OprmError err = {{0}};
    int used = data_flag_parse(d->opt, argc, argv, i, &err);
    if (used < 0) fprintf(stderr, "oprm %s: %s (see oprm %s --help)\n", d->cmd, err.msg, d->cmd);
    return used;
}

static int parse_weights(void *ctx, const char *flag, const char *value) {
    ScoreArgs *a = ctx;
    if (strcmp(value, "f32") && strcmp(value, "bf16")) {
        fprintf(stderr, "oprm %s: %s must be f32 or bf16, got '%s'\n", a->cmd, flag, value);
        return -1;
    }
    a->sopt.bf16 = !strcmp(value, "bf16");
    return 0;
}

void score_args_options(ScoreArgs *a, Options *o) {
    options_add(o, OPT(OPT_NAMES_DATA, "FILE", a->multi_data ? "data files (several after one --data, or repeat it)"
                                                                  : "data file (JSONL or a JSON array; docs/data.md)",
                            OPT_LIST, a->data, .ival = a->multi_data ? SCORE_ARGS_MAX_DATA : 1, .count = &a->n_data,
                            .greedy = a->multi_data));
    options_add(o, OPT(OPT_NAMES_OUTPUT, "FILE", "write the output here [stdout]", OPT_STRING, &a->output));
    options_section(o, "Model and scoring:");
    options_add(o, OPT(OPT_NAMES_MODEL, "DIR",
                            "model directory (Hugging Face layout; oprm.json when trained by oprm)", OPT_STRING,
                            &a->model_dir));
    options_add(o, OPT(OPT_NAMES_MAX_LEN, "N",
                            "scoring-prompt token limit; longer prompts are truncated and counted\n"
                            "[oprm.json's max_length, else min(1024, max_position_embeddings);\n"
                            "above max_position_embeddings is refused]",
                            OPT_INT, &a->sopt.max_len, 1, INT_MAX));
    options_add(o, OPT(OPT_NAMES_CHAT_FORMAT, "NAME", "chatml, llama3, llama2, mistral or plain [from the model]",
                            OPT_CUSTOM, .parse = parse_chat_format, .ctx = a));
    options_add(o, OPT(OPT_NAMES_TEMPLATE, "FILE", "scoring-prompt template (docs/data.md) [the default prompt]",
                            OPT_STRING, &a->sopt.template_path));
    options_add(o, OPT(OPT_NAMES_THREADS, "N", "compute threads [all cores]", OPT_INT, &a->sopt.threads, 0, 4096));
    a->device_flag = (DeviceFlag){a->cmd, &a->sopt.device};
    options_add(o, OPT(OPT_NAMES_DEVICE, "D", DEVICE_FLAG_HELP, OPT_CUSTOM, .parse = device_flag_parse,
                            .ctx = &a->device_flag));
    options_add(o, OPT("--weights", "f32|bf16",
                            "bf16: weights held in BF16 and BF16 matmuls with fp32\n"
                            "accumulation (avx512_bf16 CPUs; else fp32 compute with a notice) [f32]",
                            OPT_CUSTOM, .parse = parse_weights, .ctx = a));
    options_add(o, OPT(OPT_NAMES_BATCH_SIZE, "N", "responses per scoring call [64]", OPT_INT, &a->batch_size, 1,
                            1 << 20));
    options_add(o, OPT(OPT_NAMES_MAX_BATCH_TOKENS, "N", "tokens per packed forward pass [8192]", OPT_INT,
                            &a->sopt.max_batch_tokens, 1, INT_MAX));
    options_add(o, OPT(OPT_NAMES_NO_PREFIX_SHARING, NULL,
                            "compute a common prompt once per response instead of once per\n"
                            "group of consecutive responses (same scores; docs/engine.md) [shared]",
                            OPT_FLAG, &a->sopt.no_prefix_sharing, .ival = 1));
    options_add(o, OPT(OPT_NAMES_PROGRESS, NULL, "progress bar on stderr [only when stderr is a terminal]",
                            OPT_FLAG, &a->progress, .ival = 1));
    options_add(o, OPT(OPT_NAMES_NO_PROGRESS, NULL, "no progress bar", OPT_FLAG, &a->progress, .ival = 0));
    a->data_ctx = (DataFlagsCtx){a->cmd, &a->dopt};
    o->fallback = options_data_flags;
    o->fallback_ctx = &a->data_ctx;
    o->fallback_help = DATA_FLAGS_HELP;
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
    } else {
        fprintf(stderr, "oprm %s: device %s\n", a->cmd, scorer_device(s));
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
        else if (at_line && !a->dopt.skip_invalid && !strstr(err.msg, "cannot be skipped"))
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

void output_write_failed(const char *cmd, const char *path, int errnum) {
    if (!path || !strcmp(path, "-"))
        fprintf(stderr, "oprm %s: cannot write to stdout: %s%s\n", cmd, strerror(errnum),
                errnum == ENOSPC || errnum == EFBIG || errnum == EDQUOT ? " (is the disk full?)" : "");
    else
        fprintf(stderr, "oprm %s: cannot write %s: %s%s; %s is left as it was (the output is written to %s.tmp "
                        "and renamed when complete): free some space or choose another --output\n",
                cmd, path, strerror(errnum),
                errnum == ENOSPC || errnum == EFBIG || errnum == EDQUOT ? " (is the disk full?)" : "", path, path);
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
        output_write_failed(cmd, path, errno);
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
