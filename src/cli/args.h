/* Numeric flag values, parsed the same way by every subcommand: the whole
 * string must be a number inside [lo, hi]; otherwise one message,
 * "oprm CMD: FLAG expects an integer in [LO, HI], got 'V'" (or "a number",
 * without the range when both bounds are infinite),
 * goes to stderr and the result is -1 (a usage error, exit 2). */
#ifndef OPRM_CLI_ARGS_H
#define OPRM_CLI_ARGS_H

int arg_long(const char *cmd, const char *flag, const char *v, long lo, long hi, long *out);
int arg_double(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out);

#endif
