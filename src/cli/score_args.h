/* Flags shared by the subcommands that score a data file with a model
 * (score, eval, bon, audit): model, data, output, scorer settings, batching,
 * progress bar and the data readers' field flags; and the common steps
 * (open the model, open a data file) with messages that say what to do. */
#ifndef OPRM_CLI_SCORE_ARGS_H
#define OPRM_CLI_SCORE_ARGS_H

#include <stdio.h>

#include "cli/device_flag.h"
#include "cli/options.h"
#include "data/reader.h"
#include "eval/scorer.h"

#define SCORE_ARGS_MAX_DATA 64

/* The data readers' flags (data/flags.h) as an Options fallback. */
typedef struct {
    const char *cmd;
    DataOptions *opt;
} DataFlagsCtx;
int options_data_flags(void *ctx, int argc, char **argv, int i);

typedef struct {
    const char *cmd; /* "score", ... for messages */
    const char *model_dir;
    const char *data[SCORE_ARGS_MAX_DATA];
    int n_data;
    int multi_data; /* --data takes several files (eval) */
    const char *output;
    ScorerOptions sopt;
    DataOptions dopt;
    int batch_size; /* responses per scorer call */
    int progress;   /* -1 when stderr is a terminal, 0 off, 1 on */
    DataFlagsCtx data_ctx;
    DeviceFlag device_flag; /* ctx of the --device row */
} ScoreArgs;

void score_args_init(ScoreArgs *a, const char *cmd, int multi_data);

/* Adds the shared rows (data, output, model and scoring settings, batching,
 * progress bar) to a command's options, and the data readers' flags as its
 * fallback; a command adds its own rows before calling this. */
void score_args_options(ScoreArgs *a, Options *o);

/* After parsing: --model and --data are required. Prints and returns -1. */
int score_args_check(ScoreArgs *a);

/* For flags of one subcommand: "--flag value" or "--flag=value". Returns the
 * value and sets *used (1 or 2), or NULL when argv[i] is not `name`; prints a
 * usage error and sets *used = -1 when the value is missing. */
const char *flag_value(const char *cmd, int argc, char **argv, int i, const char *name, int *used);

/* Opens the model; prints the error with a hint and returns NULL. */
Scorer *score_args_open_model(const ScoreArgs *a);
/* Opens a data file (prints what was skipped); prints the error and returns NULL. */
DataFile *score_args_open_data(const ScoreArgs *a, const char *path, DataReport *rep);

/* Opens --output (or stdout) for writing; *tmp_path gets a temporary path that
 * output_close renames into place only on success. */
FILE *output_open(const char *cmd, const char *path, char **tmp_path);
/* ok = 0: the command failed, remove the partial file. Returns 0 or -1 (printed). */
int output_close(const char *cmd, FILE *f, const char *path, char *tmp_path, int ok);
/* The message of a failed write to the output `path` (NULL or "-": stdout):
 * names the file being written, the error and what to do. */
void output_write_failed(const char *cmd, const char *path, int errnum);

/* Writes one compact JSON line. */
int write_json_line(FILE *f, json_t *obj);

#endif
