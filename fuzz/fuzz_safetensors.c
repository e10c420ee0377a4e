/* safetensors: st_open on arbitrary bytes (header length, JSON header,
 * tensor table, data offsets). Whatever it accepts must be readable in full
 * without leaving the mapping, and an accepted F32 tensor must survive a
 * write/read round trip through st_serialize. */
#include <math.h>

#include "fuzz_util.h"
#include "io/safetensors.h"

static void st_fz_check_roundtrip(const StFile *f, const StTensor *t) {
    if (t->dtype != ST_F32 || t->ndim > ST_MAX_DIMS) return;
    StWriteTensor w = {.name = t->name, .data = (const float *)(const void *)t->data, .ndim = t->ndim};
    float *copy = NULL;
    if (t->numel > 0) { /* the mapping is byte-aligned only after an odd header: copy first */
        copy = malloc(t->nbytes);
        memcpy(copy, t->data, t->nbytes);
        w.data = copy;
    }
    for (int d = 0; d < t->ndim; d++) w.shape[d] = t->shape[d];
    size_t len = 0;
    void *buf = st_serialize(&w, 1, NULL, 0, &len);
    MemFile m;
    memfile_open(&m, buf, len);
    OprmError err;
    StFile *g = st_open(m.path, &err);
    if (!g) fprintf(stderr, "re-reading a serialized tensor failed: %s\n", err.msg);
    FUZZ_ASSERT(g != NULL);
    const StTensor *u = st_find(g, t->name);
    FUZZ_ASSERT(u && u->dtype == ST_F32 && u->numel == t->numel && u->nbytes == t->nbytes);
    FUZZ_ASSERT(t->nbytes == 0 || memcmp(u->data, t->data, t->nbytes) == 0);
    st_close(g);
    memfile_close(&m);
    free(buf);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    MemFile m;
    memfile_open(&m, data, size);
    OprmError err;
    StFile *f = st_open(m.path, &err);
    memfile_close(&m);
    if (!f) {
        FUZZ_ASSERT(err.msg[0] != '\0');
        return 0;
    }
    const uint8_t *lo = f->map, *hi = (const uint8_t *)f->map + f->map_size;
    unsigned sum = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
        FUZZ_ASSERT(t->nbytes == t->numel * st_dtype_size(t->dtype));
        FUZZ_ASSERT(t->nbytes == 0 || (t->data >= lo && t->data + t->nbytes <= hi));
        for (size_t b = 0; b < t->nbytes; b++) sum += t->data[b]; /* ASan: every byte readable */
        FUZZ_ASSERT(st_find(f, t->name) != NULL);
        FUZZ_ASSERT(st_dtype_name(t->dtype) != NULL);
        if (t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16) {
            float *dst = malloc((t->numel ? t->numel : 1) * sizeof *dst);
            FUZZ_ASSERT(st_to_f32(f, t, dst, &err) == 0);
            free(dst);
        }
        st_fz_check_roundtrip(f, t);
    }
    for (int i = 0; i < f->n_meta; i++) FUZZ_ASSERT(st_meta(f, f->meta_keys[i]) != NULL);
    (void)sum;
    st_close(f);
    return 0;
}
