#include "cli/device_flag.h"

#include <stdio.h>

int device_flag_parse(void *ctx, const char *flag, const char *value) {
    DeviceFlag *f = ctx;
    OprmError err = {{0}};
    Device d;
    if (device_parse(value, &d, &err)) {
        fprintf(stderr, "oprm %s: %s\n", f->cmd, err.msg);
        return -1;
    }
    *f->dst = d;
    return 0;
}
