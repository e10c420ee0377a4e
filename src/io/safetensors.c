/* Memory-mapped safetensors reader. All validation happens in st_open, so a
 * StTensor handed out afterwards always lies inside the mapping. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    StDtype dtype;
    size_t size;
} dtype_table[] = {
    {"F64", ST_F64, 8},  {"F32", ST_F32, 4},   {"F16", ST_F16, 2},          {"BF16", ST_BF16, 2},
    {"I64", ST_I64, 8},  {"I32", ST_I32, 4},   {"I16", ST_I16, 2},          {"I8", ST_I8, 1},
    {"U64", ST_U64, 8},  {"U32", ST_U32, 4},   {"U16", ST_U16, 2},          {"U8", ST_U8, 1},
    {"BOOL", ST_BOOL, 1}, {"F8_E4M3", ST_F8_E4M3, 1}, {"F8_E5M2", ST_F8_E5M2, 1},
};
#define N_DTYPES (sizeof dtype_table / sizeof dtype_table[0])

const char *st_dtype_name(StDtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtype_table[i].dtype == d) return dtype_table[i].name;
    return "?";
}

size_t st_dtype_size(StDtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtype_table[i].dtype == d) return dtype_table[i].size;
    return 0;
}

static int dtype_parse(const char *s, StDtype *d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(dtype_table[i].name, s) == 0) {
            *d = dtype_table[i].dtype;
            return 0;
        }
    return -1;
}

void st_close(StFile *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->path);
    free(f);
}

static int cmp_by_offset(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : 0;
}

/* Parses one header entry into t; data_base/data_size describe the data block. */
static int parse_entry(const char *path, const char *name, json_t *v, const uint8_t *data_base,
                       size_t data_size, StTensor *t, OprmError *err) {
    if (!json_is_object(v)) return oprm_fail(err, "%s: header entry \"%s\" is not an object", path, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return oprm_fail(err, "%s: tensor \"%s\" has no dtype string", path, name);
    if (dtype_parse(json_string_value(jd), &t->dtype) != 0)
        return oprm_fail(err, "%s: tensor \"%s\" has unknown dtype \"%s\"", path, name, json_string_value(jd));
    if (!json_is_array(js) || json_array_size(js) > ST_MAX_DIMS)
        return oprm_fail(err, "%s: tensor \"%s\" has a missing or invalid shape", path, name);
    t->ndim = (int)json_array_size(js);
    size_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *e = json_array_get(js, (size_t)i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return oprm_fail(err, "%s: tensor \"%s\" has an invalid shape entry", path, name);
        t->shape[i] = json_integer_value(e);
        if (t->shape[i] != 0 && numel > SIZE_MAX / 16 / (size_t)t->shape[i])
            return oprm_fail(err, "%s: tensor \"%s\" shape is too large", path, name);
        numel *= (size_t)t->shape[i];
    }
    t->numel = numel;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return oprm_fail(err, "%s: tensor \"%s\" has no valid data_offsets [begin, end]", path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b || (uint64_t)e > data_size)
        return oprm_fail(err,
                         "%s: tensor \"%s\" data_offsets [%lld, %lld] out of range (data block is %zu bytes)",
                         path, name, (long long)b, (long long)e, data_size);
    size_t want = numel * st_dtype_size(t->dtype);
    if ((size_t)(e - b) != want)
        return oprm_fail(err, "%s: tensor \"%s\" data_offsets span %lld bytes but shape and dtype %s need %zu",
                         path, name, (long long)(e - b), st_dtype_name(t->dtype), want);
    t->data = data_base + b;
    t->nbytes = want;
    return 0;
}

static int parse_header(StFile *f, const char *json_text, size_t json_len, const uint8_t *data_base,
                        size_t data_size, OprmError *err) {
    json_error_t jerr;
    json_t *root = json_loadb(json_text, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return oprm_fail(err, "%s: header is not valid JSON (%s at column %d)", f->path, jerr.text, jerr.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return oprm_fail(err, "%s: header is not a JSON object", f->path);
    }
    size_t n = json_object_size(root);
    f->tensors = xcalloc(n ? n : 1, sizeof *f->tensors);
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                rc = oprm_fail(err, "%s: __metadata__ is not an object", f->path);
                break;
            }
            size_t m = json_object_size(v);
            f->meta_keys = xcalloc(m ? m : 1, sizeof(char *));
            f->meta_vals = xcalloc(m ? m : 1, sizeof(char *));
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) continue; /* the format allows only strings; ignore others */
                f->meta_keys[f->n_meta] = xstrdup(mk);
                f->meta_vals[f->n_meta] = xstrdup(json_string_value(mv));
                f->n_meta++;
            }
            continue;
        }
        StTensor *t = &f->tensors[f->n_tensors];
        memset(t, 0, sizeof *t);
        if (parse_entry(f->path, key, v, data_base, data_size, t, err) != 0) {
            rc = -1;
            break;
        }
        t->name = xstrdup(key);
        f->n_tensors++;
    }
    json_decref(root);
    if (rc != 0) return -1;

    /* Overlapping tensors would mean a corrupt (or malicious) file. */
    StTensor **order = xmalloc(sizeof(StTensor *) * (size_t)(f->n_tensors ? f->n_tensors : 1));
    for (int i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_by_offset);
    for (int i = 1; i < f->n_tensors; i++) {
        const StTensor *a = order[i - 1], *b = order[i];
        if (a->nbytes > 0 && b->nbytes > 0 && a->data + a->nbytes > b->data) {
            rc = oprm_fail(err, "%s: tensors \"%s\" and \"%s\" overlap in the data block", f->path, a->name, b->name);
            break;
        }
    }
    free(order);
    return rc;
}

StFile *st_open(const char *path, OprmError *err) {
    StFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        oprm_fail(err, "%s: cannot open: %s", path, strerror(errno));
        st_close(f);
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        oprm_fail(err, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        st_close(f);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        oprm_fail(err, "%s: file is %zu bytes, too short for a safetensors header", path, size);
        close(fd);
        st_close(f);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        oprm_fail(err, "%s: cannot mmap: %s", path, strerror(errno));
        st_close(f);
        return NULL;
    }
    f->map = map;
    f->map_size = size;
    const uint8_t *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > size - 8) {
        oprm_fail(err, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                  (unsigned long long)hlen, size);
        st_close(f);
        return NULL;
    }
    if (parse_header(f, (const char *)p + 8, (size_t)hlen, p + 8 + hlen, size - 8 - (size_t)hlen, err) != 0) {
        st_close(f);
        return NULL;
    }
    return f;
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float x;
    memcpy(&x, &u, 4);
    return x;
}

int st_to_f32(const StFile *f, const StTensor *t, float *dst, OprmError *err) {
    const uint8_t *s = t->data;
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, s, t->numel * 4);
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < t->numel; i++) dst[i] = bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return 0;
    case ST_F16:
        for (size_t i = 0; i < t->numel; i++) dst[i] = f16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return 0;
    default:
        return oprm_fail(err, "%s: tensor \"%s\" has dtype %s; only F32, BF16 and F16 weights are supported",
                         f->path, t->name, st_dtype_name(t->dtype));
    }
}
