/* The command-line options of every subcommand, table-driven: a command lists
 * its options as rows (names, value kind, destination, help text), the shared
 * rows come from one spelling table (OPT_NAMES_* below), and the same rows
 * drive both parsing and `oprm CMD --help`.
 *
 * Spelling: a row's names are separated by '|'; the first is shown first in
 * the help (the TRL / Hugging Face spelling where there is one). '-' and '_'
 * are the same inside a name (--max-length = --max_length), and every
 * valued option takes "--flag value" or "--flag=value".
 *
 * To add an option (e.g. --device), add one OPT_NAMES_ line here when several
 * commands share it, and one row in each command's table. */
#ifndef OPRM_CLI_OPTIONS_H
#define OPRM_CLI_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

/* The spelling table: one entry per option that several commands share. */
#define OPT_NAMES_MODEL "--model_name_or_path|--model"
#define OPT_NAMES_DATA "--data"
#define OPT_NAMES_OUTPUT "--output_dir|--output|-o"
#define OPT_NAMES_MAX_LEN "--max_length|--max-len"
#define OPT_NAMES_CHAT_FORMAT "--chat-format"
#define OPT_NAMES_TEMPLATE "--template"
#define OPT_NAMES_THREADS "--threads"
#define OPT_NAMES_BATCH_SIZE "--per_device_eval_batch_size|--batch-size"
#define OPT_NAMES_MAX_BATCH_TOKENS "--max-batch-tokens"
#define OPT_NAMES_PROGRESS "--progress"
#define OPT_NAMES_NO_PROGRESS "--no-progress"
#define OPT_NAMES_LORA_R "--lora_r|--lora-rank"
#define OPT_NAMES_LORA_ALPHA "--lora_alpha|--lora-alpha"
#define OPT_NAMES_LORA_TARGETS "--lora_target_modules|--lora-targets|--target-modules"

typedef enum {
    OPT_SECTION, /* no option: a heading in the help (help = the heading) */
    OPT_FLAG,    /* no value: *(int *)dst = ival */
    OPT_STRING,  /* *(const char **)dst = value */
    OPT_INT,     /* *(int *)dst, in [lo, hi] */
    OPT_I64,     /* *(int64_t *)dst, in [lo, hi] */
    OPT_DOUBLE,  /* *(double *)dst, in [lo, hi] */
    OPT_LIST,    /* appends to (const char **)dst, count in *count, at most ival entries;
                    greedy: also takes the following arguments up to the next option */
    OPT_CUSTOM,  /* parse(ctx, flag, value): prints its own message, returns -1 on a bad value */
} OptKind;

typedef struct {
    const char *names; /* "--max_length|--max-len"; NULL for OPT_SECTION */
    const char *arg;   /* value placeholder in the help ("N", "DIR"); NULL for a flag */
    const char *help;  /* help text; '\n' starts an indented continuation line */
    OptKind kind;
    void *dst;
    double lo, hi;     /* bounds of numeric values */
    int ival;          /* OPT_FLAG: the value stored; OPT_LIST: capacity */
    int *count;        /* OPT_LIST */
    int greedy;        /* OPT_LIST */
    int (*parse)(void *ctx, const char *flag, const char *value);
    void *ctx;
    const char *optional_value; /* value used when the option is given without one (e.g. --resume) */
    int tag;           /* free for the command (e.g. which setting the row sets) */
    int seen;          /* set by options_parse: how many times the option was given */
} Option;

/* A row: OPT(names, arg, help, kind, dst, lo, hi) or with designators after
 * kind (.ival = 1, .parse = f, ...). */
#define OPT(names_, arg_, help_, kind_, ...) \
    ((Option){.names = (names_), .arg = (arg_), .help = (help_), .kind = (kind_), __VA_ARGS__})

#define OPTIONS_MAX 96

typedef struct {
    const char *cmd;   /* "train", for messages */
    const char *usage; /* printed by options_help before the rows */
    Option rows[OPTIONS_MAX];
    int n;
    /* Flags no row knows are offered to this parser (the data readers' flags):
     * returns entries used (>= 1), 0 when unknown, -1 after printing an error. */
    int (*fallback)(void *ctx, int argc, char **argv, int i);
    void *fallback_ctx;
    const char *fallback_help; /* printed after the rows */
} Options;

void options_init(Options *o, const char *cmd);
/* Adds a row (copied); returns it. Aborts past OPTIONS_MAX (a programming error). */
Option *options_add(Options *o, Option row);
void options_section(Options *o, const char *heading);

enum { OPTIONS_OK = 0, OPTIONS_HELP = 1, OPTIONS_ERROR = -1 };
/* Parses argv[1..argc). Returns OPTIONS_HELP for -h/--help (nothing printed),
 * OPTIONS_ERROR after printing a usage error naming the option (unknown
 * option, missing or bad value), else OPTIONS_OK. */
int options_parse(Options *o, int argc, char **argv);

/* options_parse, and on -h/--help options_help on stdout. Returns
 * OPTIONS_OK, OPTIONS_HELP (help printed) or OPTIONS_ERROR (message printed). */
int options_parse_or_help(Options *o, int argc, char **argv);

/* The row whose names include `name` (any spelling), or NULL. */
Option *options_find(Options *o, const char *name);
/* Whether `arg` (e.g. "--max-len=5") names one of `names`; *value gets what
 * follows '=' (or NULL). */
int options_name_matches(const char *names, const char *arg, const char **value);

/* o->usage, then the help of every row: "  --max_length N (--max-len)   text". */
void options_help(const Options *o, FILE *f);

#endif
