/* safetensors files: a memory-mapped reader that validates the whole header
 * up front (lengths, dtypes, offsets, overlaps) so that later reads cannot go
 * out of bounds, and a minimal F32 writer.
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data block that the offsets index. */
#ifndef OPRM_IO_SAFETENSORS_H
#define OPRM_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8,
    ST_BOOL, ST_F8_E4M3, ST_F8_E5M2
} StDtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    const uint8_t *data; /* inside the mapping */
    size_t nbytes;
} StTensor;

typedef struct {
    char *path;
    void *map;
    size_t map_size;
    StTensor *tensors;
    int n_tensors;
    /* "__metadata__" string pairs (may be empty). */
    char **meta_keys, **meta_vals;
    int n_meta;
} StFile;

/* Maps and validates path. Every problem is reported as "PATH: what". */
StFile *st_open(const char *path, OprmError *err);
void st_close(StFile *f);

/* The tensor of that name, or NULL. */
const StTensor *st_find(const StFile *f, const char *name);
/* The __metadata__ value of key, or NULL. */
const char *st_meta(const StFile *f, const char *key);

const char *st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);

/* Converts an F32/BF16/F16 tensor to fp32 into dst[t->numel]. */
int st_to_f32(const StFile *f, const StTensor *t, float *dst, OprmError *err);

/* One tensor to write (always F32). */
typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} StWriteTensor;

/* Serialises the tensors (+ optional metadata pairs) into a malloc'd buffer. */
void *st_serialize(const StWriteTensor *t, int n, const char *const *meta_kv, int n_meta, size_t *len);
/* Writes path atomically (write_file_atomic). */
int st_write_f32(const char *path, const StWriteTensor *t, int n, const char *const *meta_kv, int n_meta,
                 OprmError *err);

#endif
