#include "engine/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int device_parse(const char *s, Device *d, OprmError *err) {
    if (!s) return oprm_fail(err, "--device needs a value: cpu, cuda or cuda:N");
    if (!strcmp(s, "cpu")) {
        *d = (Device){DEVICE_CPU, 0};
        return 0;
    }
    if (!strcmp(s, "auto")) {
        *d = (Device){DEVICE_AUTO, 0};
        return 0;
    }
    if (!strcmp(s, "cuda")) {
        *d = (Device){DEVICE_CUDA, 0};
        return 0;
    }
    if (!strncmp(s, "cuda:", 5) && s[5] >= '0' && s[5] <= '9') {
        char *end;
        long n = strtol(s + 5, &end, 10);
        if (!*end && n >= 0 && n < 1024) {
            *d = (Device){DEVICE_CUDA, (int)n};
            return 0;
        }
    }
    return oprm_fail(err, "--device: '%s' is not a device (expected cpu, cuda or cuda:N, N a GPU ordinal)", s);
}

const char *device_str(Device d, char *buf, size_t n) {
    if (d.kind == DEVICE_CUDA) snprintf(buf, n, "cuda:%d", d.index);
    else snprintf(buf, n, "%s", d.kind == DEVICE_CPU ? "cpu" : "auto");
    return buf;
}

Device device_choose(Device requested, char *why, size_t why_n) {
    if (requested.kind != DEVICE_AUTO) return requested;
    char tmp[256] = "";
    if (cuda_built() && cuda_device_count(tmp, sizeof tmp) > 0) return (Device){DEVICE_CUDA, 0};
    if (why) snprintf(why, why_n, "%s", cuda_built() ? tmp : "this oprm was built without CUDA");
    return (Device){DEVICE_CPU, 0};
}
