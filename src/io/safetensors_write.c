/* Minimal safetensors writer: F32 tensors in the given order, header padded
 * with spaces to a multiple of 8 bytes so the data block stays aligned. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "io/safetensors.h"

void *st_serialize(const StWriteTensor *t, int n, const char *const *meta_kv, int n_meta, size_t *len) {
    json_t *root = json_object();
    if (n_meta > 0) {
        json_t *meta = json_object();
        for (int i = 0; i < n_meta; i++) json_object_set_new(meta, meta_kv[2 * i], json_string(meta_kv[2 * i + 1]));
        json_object_set_new(root, "__metadata__", meta);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) {
            numel *= (size_t)t[i].shape[d];
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        }
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + numel * 4)));
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(root, t[i].name, e);
        off += numel * 4;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    size_t total = 8 + padded + off;
    unsigned char *buf = xmalloc(total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, hdr, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    free(hdr);
    unsigned char *p = buf + 8 + padded;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        memcpy(p, t[i].data, numel * 4); /* little-endian host */
        p += numel * 4;
    }
    *len = total;
    return buf;
}

int st_write_f32(const char *path, const StWriteTensor *t, int n, const char *const *meta_kv, int n_meta,
                 OprmError *err) {
    size_t len;
    void *buf = st_serialize(t, n, meta_kv, n_meta, &len);
    int rc = write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
