/* optimizer.bin: the AdamW state of a checkpoint.
 *   "OPRMADAM" | u32 version=1 | u32 nslots | i64 step |
 *   f64 beta1, beta2, eps, weight_decay |
 *   per slot: u32 name_len, name bytes, u64 numel, u32 decay |
 *   per slot: m[numel] f32, v[numel] f32 |
 *   u64 FNV-1a 64 of every byte above.
 * All little-endian (the only byte order oprm runs on; checked at load). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/adamw.h"

#define OPT_MAGIC "OPRMADAM"
#define OPT_VERSION 1u
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

typedef struct {
    FILE *f;
    const char *path;
    uint64_t hash;
    int failed;
    int saved_errno;
} HashFile;

static void hash_bytes(uint64_t *h, const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t x = *h;
    for (size_t i = 0; i < n; i++) x = (x ^ p[i]) * FNV_PRIME;
    *h = x;
}

static void hw(HashFile *w, const void *data, size_t n) {
    if (w->failed || n == 0) return;
    hash_bytes(&w->hash, data, n);
    if (fwrite(data, 1, n, w->f) != n) {
        w->failed = 1;
        w->saved_errno = errno;
    }
}

static int little_endian(void) {
    uint32_t x = 1;
    unsigned char b;
    memcpy(&b, &x, 1);
    return b == 1;
}

int adamw_save(const AdamW *opt, const char *path, OprmError *err) {
    if (!little_endian()) return oprm_fail(err, "%s: optimizer state needs a little-endian machine", path);
    FILE *f = fopen(path, "wb");
    if (!f) return oprm_fail(err, "%s: cannot create: %s", path, strerror(errno));
    HashFile w = {f, path, FNV_OFFSET, 0, 0};
    uint32_t version = OPT_VERSION, nslots = (uint32_t)opt->nslots;
    int64_t step = opt->step;
    double cfg[4] = {opt->cfg.beta1, opt->cfg.beta2, opt->cfg.eps, opt->cfg.weight_decay};
    hw(&w, OPT_MAGIC, 8);
    hw(&w, &version, 4);
    hw(&w, &nslots, 4);
    hw(&w, &step, 8);
    hw(&w, cfg, sizeof cfg);
    for (int i = 0; i < opt->nslots; i++) {
        const AdamWSlot *s = &opt->slots[i];
        uint32_t len = (uint32_t)strlen(s->name), decay = (uint32_t)s->decay;
        uint64_t numel = s->numel;
        hw(&w, &len, 4);
        hw(&w, s->name, len);
        hw(&w, &numel, 8);
        hw(&w, &decay, 4);
    }
    for (int i = 0; i < opt->nslots; i++) {
        hw(&w, opt->slots[i].m, opt->slots[i].numel * sizeof(float));
        hw(&w, opt->slots[i].v, opt->slots[i].numel * sizeof(float));
    }
    uint64_t h = w.hash;
    hw(&w, &h, 8);
    if (!w.failed && fflush(f) != 0) w.failed = 1, w.saved_errno = errno;
    if (!w.failed && fsync(fileno(f)) != 0) w.failed = 1, w.saved_errno = errno;
    if (fclose(f) != 0 && !w.failed) w.failed = 1, w.saved_errno = errno;
    if (w.failed) return oprm_fail(err, "%s: write failed: %s", path, strerror(w.saved_errno));
    return 0;
}

static int rd(FILE *f, uint64_t *h, void *dst, size_t n) {
    if (n == 0) return 0;
    if (fread(dst, 1, n, f) != n) return -1;
    hash_bytes(h, dst, n);
    return 0;
}

int adamw_load(AdamW *opt, const char *path, OprmError *err) {
    if (!little_endian()) return oprm_fail(err, "%s: optimizer state needs a little-endian machine", path);
    FILE *f = fopen(path, "rb");
    if (!f) return oprm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    uint64_t h = FNV_OFFSET;
    char magic[8];
    uint32_t version, nslots;
    int64_t step;
    double cfg[4];
    int rc = -1;
    float **newm = xcalloc((size_t)opt->nslots + 1, sizeof(float *));
    float **newv = xcalloc((size_t)opt->nslots + 1, sizeof(float *));
    if (rd(f, &h, magic, 8) || memcmp(magic, OPT_MAGIC, 8)) {
        oprm_fail(err, "%s: not an oprm optimizer state (bad magic)", path);
        goto out;
    }
    if (rd(f, &h, &version, 4) || rd(f, &h, &nslots, 4) || rd(f, &h, &step, 8) || rd(f, &h, cfg, sizeof cfg)) {
        oprm_fail(err, "%s: truncated header", path);
        goto out;
    }
    if (version != OPT_VERSION) {
        oprm_fail(err, "%s: unsupported optimizer state version %u (expected %u)", path, version, OPT_VERSION);
        goto out;
    }
    if ((int)nslots != opt->nslots) {
        oprm_fail(err, "%s: holds %u tensors, the model has %d trainable tensors", path, nslots, opt->nslots);
        goto out;
    }
    for (int i = 0; i < opt->nslots; i++) {
        uint32_t len, decay;
        uint64_t numel;
        char name[1024];
        if (rd(f, &h, &len, 4) || len >= sizeof name || rd(f, &h, name, len)) {
            oprm_fail(err, "%s: truncated or corrupt tensor entry %d", path, i);
            goto out;
        }
        name[len] = 0;
        if (rd(f, &h, &numel, 8) || rd(f, &h, &decay, 4)) {
            oprm_fail(err, "%s: truncated tensor entry %d ('%s')", path, i, name);
            goto out;
        }
        if (strcmp(name, opt->slots[i].name) || numel != opt->slots[i].numel) {
            oprm_fail(err, "%s: tensor %d is '%s' with %llu elements, the model has '%s' with %zu", path, i, name,
                      (unsigned long long)numel, opt->slots[i].name, opt->slots[i].numel);
            goto out;
        }
    }
    for (int i = 0; i < opt->nslots; i++) {
        size_t n = opt->slots[i].numel;
        newm[i] = xmalloc((n ? n : 1) * sizeof(float));
        newv[i] = xmalloc((n ? n : 1) * sizeof(float));
        if (rd(f, &h, newm[i], n * sizeof(float)) || rd(f, &h, newv[i], n * sizeof(float))) {
            oprm_fail(err, "%s: truncated moments of '%s'", path, opt->slots[i].name);
            goto out;
        }
    }
    uint64_t stored, computed = h;
    if (fread(&stored, 1, 8, f) != 8) {
        oprm_fail(err, "%s: truncated (checksum missing)", path);
        goto out;
    }
    if (stored != computed) {
        oprm_fail(err, "%s: checksum mismatch (file corrupt or half-written)", path);
        goto out;
    }
    if (fgetc(f) != EOF) {
        oprm_fail(err, "%s: trailing bytes after the checksum", path);
        goto out;
    }
    /* Everything verified: only now replace the live state. */
    for (int i = 0; i < opt->nslots; i++) {
        free(opt->slots[i].m);
        free(opt->slots[i].v);
        opt->slots[i].m = newm[i];
        opt->slots[i].v = newv[i];
        newm[i] = newv[i] = NULL;
    }
    opt->step = step;
    opt->cfg.beta1 = cfg[0];
    opt->cfg.beta2 = cfg[1];
    opt->cfg.eps = cfg[2];
    opt->cfg.weight_decay = cfg[3];
    rc = 0;
out:
    for (int i = 0; i < opt->nslots; i++) {
        free(newm[i]);
        free(newv[i]);
    }
    free(newm);
    free(newv);
    fclose(f);
    return rc;
}
