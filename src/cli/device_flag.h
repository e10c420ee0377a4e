/* `--device cpu|cuda|cuda:N` for every subcommand: one parser and one message.
 * Its signature is that of a table-driven option's custom parser
 * (parse(ctx, flag, value), prints its own message, -1 on a bad value), so a
 * flag table takes it as one row with ctx = a DeviceFlag that outlives parsing. */
#ifndef OPRM_CLI_DEVICE_FLAG_H
#define OPRM_CLI_DEVICE_FLAG_H

#include "engine/device.h"

typedef struct {
    const char *cmd; /* "score", for messages */
    Device *dst;
} DeviceFlag;

int device_flag_parse(void *ctx, const char *flag, const char *value);

/* The help line's text. */
#define DEVICE_FLAG_HELP "cpu, cuda or cuda:N [cuda when built with CUDA and a GPU is visible, else cpu]"

#endif
