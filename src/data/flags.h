/* The command-line flags of the data readers, shared by every subcommand that
 * reads a data file (train, eval, score, audit): field-name overrides,
 * --data-kind and --skip-invalid. Underscore spellings (OpenRLHF's
 * --chosen_key) are accepted as well as hyphens. */
#ifndef OPRM_DATA_FLAGS_H
#define OPRM_DATA_FLAGS_H

#include "data/record.h"

/* The field-name flags, in DataFields order: the flag, the training_args key
 * it is recorded under (oprm.json) and where it lives in DataFields. */
typedef struct {
    const char *flag, *key;
    size_t offset;
} DataFieldFlag;
#define DATA_N_FIELD_FLAGS 11
extern const DataFieldFlag DATA_FIELD_FLAGS[DATA_N_FIELD_FLAGS];

/* DataOptions.given: bit k for DATA_FIELD_FLAGS[k], and these two. */
#define DATA_GIVEN_FIELD(k) (1u << (k))
#define DATA_GIVEN_KIND (1u << DATA_N_FIELD_FLAGS)
#define DATA_GIVEN_SKIP_INVALID (1u << (DATA_N_FIELD_FLAGS + 1))

/* The field name DATA_FIELD_FLAGS[k] selects in o. */
const char *data_field_get(const DataOptions *o, int k);
void data_field_set(DataOptions *o, int k, const char *name);

/* --data-kind values: "auto", "pair", "point", "best-of-n". */
const char *data_kind_flag_name(int kind);
int data_kind_flag_parse(const char *value, int *kind, OprmError *err);

/* Looks at argv[i]; if it is a data flag, applies it (with its value argv[i+1]
 * where it takes one) and returns how many entries it used (1 or 2). Returns 0
 * if argv[i] is not a data flag, -1 with err set on a missing or bad value.
 * Both "--flag value" and "--flag=value" are accepted. */
int data_flag_parse(DataOptions *o, int argc, char **argv, int i, OprmError *err);

/* Help lines for the flags above (for --help output). */
extern const char *const DATA_FLAGS_HELP;

#endif
