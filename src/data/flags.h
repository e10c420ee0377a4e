/* The command-line flags of the data readers, shared by every subcommand that
 * reads a data file (train, eval, score, audit): field-name overrides,
 * --data-kind and --skip-invalid. Underscore spellings (OpenRLHF's
 * --chosen_key) are accepted as well as hyphens. */
#ifndef OPRM_DATA_FLAGS_H
#define OPRM_DATA_FLAGS_H

#include "data/record.h"

/* Looks at argv[i]; if it is a data flag, applies it (with its value argv[i+1]
 * where it takes one) and returns how many entries it used (1 or 2). Returns 0
 * if argv[i] is not a data flag, -1 with err set on a missing or bad value.
 * Both "--flag value" and "--flag=value" are accepted. */
int data_flag_parse(DataOptions *o, int argc, char **argv, int i, OprmError *err);

/* Help lines for the flags above (for --help output). */
extern const char *const DATA_FLAGS_HELP;

#endif
