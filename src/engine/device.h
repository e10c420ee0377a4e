/* Devices an engine can run on, and the `--device` flag's value:
 * "cpu", "cuda" (= cuda:0) or "cuda:N". The default is cuda when oprm was
 * built with CUDA and a GPU is visible, else cpu. */
#ifndef OPRM_ENGINE_DEVICE_H
#define OPRM_ENGINE_DEVICE_H

#include <stddef.h>

#include "util/err.h"

typedef enum { DEVICE_AUTO = 0, DEVICE_CPU, DEVICE_CUDA } DeviceKind;

typedef struct {
    DeviceKind kind;
    int index; /* CUDA device ordinal */
} Device;

/* Parses a --device value; the error lists the accepted forms. */
int device_parse(const char *s, Device *d, OprmError *err);
/* "cpu", "cuda:0". */
const char *device_str(Device d, char *buf, size_t n);

/* Resolves DEVICE_AUTO: cuda:0 when built with CUDA and cuda_device_count() > 0,
 * else cpu. *why (may be NULL) gets the reason when it falls back to cpu. */
Device device_choose(Device requested, char *why, size_t why_n);

/* 1 when this binary has the CUDA engine. */
int cuda_built(void);
/* Visible GPUs (0 without CUDA, without a driver or without a GPU); when 0 and
 * why != NULL, why says which. */
int cuda_device_count(char *why, size_t why_n);

#endif
