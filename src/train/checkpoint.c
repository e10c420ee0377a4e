#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fileio.h"
#include "tok/hf_export.h"

const char *const checkpoint_tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "tokenizer.model", "chat_template.jinja", NULL};

/* ---------- small helpers ---------- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    int rc = (type == FTW_DP) ? rmdir(path) : unlink(path);
    return rc != 0 && errno != ENOENT ? -1 : 0;
}

int remove_tree(const char *path, OprmError *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : oprm_fail(err, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0) return oprm_fail(err, "%s: cannot delete: %s", path, strerror(errno));
        return 0;
    }
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return oprm_fail(err, "%s: cannot delete directory: %s", path, strerror(errno));
    return 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* FNV-1a 64 over 64-bit little-endian words (tail bytes one at a time): a
 * checksum that runs at memory speed on multi-GB weights. Not cryptographic;
 * it catches truncation and torn writes. */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static int hash_file(const char *path, int do_fsync, uint64_t *size_out, uint64_t *hash_out, OprmError *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return oprm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20;
    unsigned char *buf = xmalloc(cap);
    uint64_t h = FNV_OFFSET, total = 0;
    for (;;) {
        ssize_t got = read(fd, buf, cap);
        if (got < 0) {
            if (errno == EINTR) continue;
            oprm_fail(err, "%s: read error: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (got == 0) break;
        /* Fill whole blocks so word boundaries do not depend on read sizes. */
        size_t n = (size_t)got;
        while (n % 8 && n < cap) {
            ssize_t more = read(fd, buf + n, cap - n);
            if (more < 0 && errno == EINTR) continue;
            if (more <= 0) break;
            n += (size_t)more;
        }
        size_t words = n / 8;
        for (size_t i = 0; i < words; i++) {
            uint64_t w;
            memcpy(&w, buf + 8 * i, 8);
            h = (h ^ w) * FNV_PRIME;
        }
        for (size_t i = words * 8; i < n; i++) h = (h ^ buf[i]) * FNV_PRIME;
        total += n;
    }
    free(buf);
    if (do_fsync && fsync(fd) != 0 && errno != EINVAL) {
        oprm_fail(err, "%s: fsync failed: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    *size_out = total;
    *hash_out = h;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Regular files directly in dir (sorted), leaving out the manifest. */
static char **list_files(const char *dir, int *count, OprmError *err) {
    DIR *d = opendir(dir);
    if (!d) {
        oprm_fail(err, "%s: cannot list: %s", dir, strerror(errno));
        return NULL;
    }
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        if (!strcmp(e->d_name, CHECKPOINT_MANIFEST)) continue;
        char *p = path_join(dir, e->d_name);
        struct stat st;
        int regular = lstat(p, &st) == 0 && S_ISREG(st.st_mode);
        free(p);
        if (!regular) continue;
        names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *count = n;
    return names ? names : xcalloc(1, sizeof *names);
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* fsyncs and checksums every file of dir, then writes the manifest (itself
 * fsynced, and the directory after it). */
static int write_manifest(const char *dir, int64_t step, OprmError *err) {
    int n = 0;
    char **names = list_files(dir, &n, err);
    if (!names) return -1;
    json_t *files = json_array();
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char *p = path_join(dir, names[i]);
        uint64_t size, hash;
        rc = hash_file(p, 1, &size, &hash, err);
        free(p);
        if (rc) break;
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, hash);
        json_t *f = json_object();
        json_object_set_new(f, "name", json_string(names[i]));
        json_object_set_new(f, "size", json_integer((json_int_t)size));
        json_object_set_new(f, "checksum", json_string(hex));
        json_array_append_new(files, f);
    }
    free_names(names, n);
    if (rc) {
        json_decref(files);
        return -1;
    }
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("oprm-checkpoint"));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "step", step >= 0 ? json_integer(step) : json_null());
    json_object_set_new(root, "checksum", json_string("fnv1a64-words"));
    json_object_set_new(root, "files", files);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    char *mpath = path_join(dir, CHECKPOINT_MANIFEST);
    rc = write_file_atomic(mpath, text, strlen(text), err); /* fsyncs the file and dir */
    free(mpath);
    free(text);
    return rc;
}

static int copy_file(const char *src, const char *dst, OprmError *err) {
    size_t len;
    char *data = read_file(src, &len, err);
    if (!data) return -1;
    int rc = write_file_atomic(dst, data, len, err);
    free(data);
    return rc;
}

/* Everything of a checkpoint into the (existing, empty) directory dir. */
static int build_checkpoint(const char *dir, int64_t step, const CheckpointContent *c, OprmError *err) {
    if (!c->write_model) return oprm_fail(err, "checkpoint: no model writer given");
    if (c->write_model(c->model_ctx, dir, err) != 0) return oprm_prefix(err, "saving the model into %s: ", dir);
    if (c->tokenizer_dir) {
        for (int i = 0; checkpoint_tokenizer_files[i]; i++) {
            char *src = path_join(c->tokenizer_dir, checkpoint_tokenizer_files[i]);
            int rc = 0;
            if (file_exists(src)) {
                char *dst = path_join(dir, checkpoint_tokenizer_files[i]);
                rc = copy_file(src, dst, err);
                free(dst);
            }
            free(src);
            if (rc) return -1;
        }
        /* so that transformers tokenizes and renders as oprm did (tok/hf_export.h) */
        if (tok_export_for_hf(dir, c->meta ? c->meta->chat_format : NULL, err))
            return oprm_prefix(err, "writing the tokenizer files of %s: ", dir);
    }
    int rc = 0;
    char *p;
    if (c->meta) {
        p = path_join(dir, OPRM_META_FILE);
        rc = oprm_meta_write(c->meta, p, err);
        free(p);
        if (rc) return -1;
    }
    if (c->state) {
        p = path_join(dir, TRAINER_STATE_FILE);
        rc = trainer_state_write(c->state, p, err);
        free(p);
        if (rc) return -1;
    }
    if (c->opt) {
        p = path_join(dir, CHECKPOINT_OPTIMIZER_FILE);
        rc = adamw_save(c->opt, p, err);
        free(p);
        if (rc) return -1;
    }
    if (write_manifest(dir, step, err)) return -1;
    return fsync_dir(dir, err);
}

static char *hidden_name(const char *output_dir, const char *fmt, int64_t step) {
    char name[128];
    snprintf(name, sizeof name, fmt, (long long)step, (long)getpid());
    return path_join(output_dir, name);
}

/* ---------- saving ---------- */

int checkpoint_save(const char *output_dir, int64_t step, const CheckpointContent *c, int save_total_limit,
                    char **path_out, OprmError *err) {
    if (path_out) *path_out = NULL;
    if (make_dirs(output_dir, err)) return -1;
    OprmError ignored;
    checkpoint_cleanup_stale(output_dir, &ignored);
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)step);
    char *target = path_join(output_dir, name);
    char *tmp = hidden_name(output_dir, ".checkpoint-%lld.tmp-%ld", step);
    char *old = hidden_name(output_dir, ".checkpoint-%lld.old-%ld", step);
    int rc = -1;
    if (remove_tree(tmp, err)) goto out;
    if (mkdir(tmp, 0755) != 0) {
        oprm_fail(err, "%s: cannot create directory: %s", tmp, strerror(errno));
        goto out;
    }
    if (build_checkpoint(tmp, step, c, err)) {
        oprm_prefix(err, "checkpoint %s not saved (previous checkpoints are intact): ", target);
        remove_tree(tmp, &ignored);
        goto out;
    }
    int replacing = is_dir(target);
    if (replacing && rename(target, old) != 0) {
        oprm_fail(err, "%s: cannot move the old checkpoint aside: %s", target, strerror(errno));
        remove_tree(tmp, &ignored);
        goto out;
    }
    if (rename(tmp, target) != 0) {
        oprm_fail(err, "%s: cannot rename %s into place: %s", target, tmp, strerror(errno));
        if (replacing) rename(old, target);
        remove_tree(tmp, &ignored);
        goto out;
    }
    if (fsync_dir(output_dir, err)) goto out;
    if (replacing && remove_tree(old, err)) goto out;
    if (save_total_limit > 0 && checkpoint_rotate(output_dir, save_total_limit, target, err)) goto out;
    if (path_out) {
        *path_out = target;
        target = NULL;
    }
    rc = 0;
out:
    free(target);
    free(tmp);
    free(old);
    return rc;
}

/* Names in a manifest file (NULL if unreadable: then nothing is deleted). */
static char **manifest_names(const char *manifest_path, int *count) {
    *count = 0;
    json_t *root = json_load_file(manifest_path, 0, NULL);
    if (!root) return NULL;
    json_t *files = json_object_get(root, "files");
    char **names = xcalloc(json_array_size(files) + 1, sizeof *names);
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) {
        const char *s = json_string_value(json_object_get(f, "name"));
        if (s && !strchr(s, '/') && strcmp(s, "..") && strcmp(s, ".")) names[(*count)++] = xstrdup(s);
    }
    json_decref(root);
    return names;
}

int checkpoint_save_final(const char *output_dir, const CheckpointContent *c, OprmError *err) {
    if (make_dirs(output_dir, err)) return -1;
    OprmError ignored;
    checkpoint_cleanup_stale(output_dir, &ignored);
    char tmp_name[64];
    snprintf(tmp_name, sizeof tmp_name, ".final.tmp-%ld", (long)getpid());
    char *tmp = path_join(output_dir, tmp_name);
    char *manifest = path_join(output_dir, CHECKPOINT_MANIFEST);
    char *tmp_manifest = path_join(tmp, CHECKPOINT_MANIFEST);
    char **new_names = NULL, **old_names = NULL;
    int n_new = 0, n_old = 0, rc = -1;
    if (remove_tree(tmp, err)) goto out;
    if (mkdir(tmp, 0755) != 0) {
        oprm_fail(err, "%s: cannot create directory: %s", tmp, strerror(errno));
        goto out;
    }
    if (build_checkpoint(tmp, -1, c, err)) {
        oprm_prefix(err, "final model not saved into %s: ", output_dir);
        remove_tree(tmp, &ignored);
        goto out;
    }
    new_names = list_files(tmp, &n_new, err);
    if (!new_names) goto out;
    old_names = manifest_names(manifest, &n_old);
    /* From here until the new manifest lands, output_dir has no manifest. */
    if (unlink(manifest) != 0 && errno != ENOENT) {
        oprm_fail(err, "%s: cannot remove the old manifest: %s", manifest, strerror(errno));
        goto out;
    }
    if (fsync_dir(output_dir, err)) goto out;
    for (int i = 0; i < n_new; i++) {
        char *src = path_join(tmp, new_names[i]), *dst = path_join(output_dir, new_names[i]);
        int r = rename(src, dst);
        if (r) oprm_fail(err, "%s: cannot move into place: %s", dst, strerror(errno));
        free(src);
        free(dst);
        if (r) goto out;
    }
    for (int i = 0; i < n_old; i++) {
        int still = 0;
        for (int j = 0; j < n_new; j++) still |= !strcmp(old_names[i], new_names[j]);
        if (still) continue;
        char *p = path_join(output_dir, old_names[i]);
        unlink(p);
        free(p);
    }
    if (fsync_dir(output_dir, err)) goto out;
    if (rename(tmp_manifest, manifest) != 0) {
        oprm_fail(err, "%s: cannot move into place: %s", manifest, strerror(errno));
        goto out;
    }
    if (fsync_dir(output_dir, err)) goto out;
    if (rmdir(tmp) != 0) remove_tree(tmp, &ignored);
    rc = 0;
out:
    if (rc && is_dir(tmp)) remove_tree(tmp, &ignored);
    if (new_names) free_names(new_names, n_new);
    if (old_names) free_names(old_names, n_old);
    free(tmp);
    free(manifest);
    free(tmp_manifest);
    return rc;
}

/* ---------- loading ---------- */

int checkpoint_verify(const char *dir, int full, OprmError *err) {
    char *mpath = path_join(dir, CHECKPOINT_MANIFEST);
    int rc = -1;
    json_t *root = NULL;
    if (!is_dir(dir)) {
        oprm_fail(err, "%s: no such checkpoint directory", dir);
        goto out;
    }
    if (!file_exists(mpath)) {
        oprm_fail(err, "%s: incomplete checkpoint (no %s): it was interrupted while being written; "
                  "resume from an earlier checkpoint or delete it", dir, CHECKPOINT_MANIFEST);
        goto out;
    }
    json_error_t je;
    root = json_load_file(mpath, 0, &je);
    json_t *files = root ? json_object_get(root, "files") : NULL;
    json_t *fmt = root ? json_object_get(root, "format") : NULL;
    if (!root || !json_is_array(files) || !json_is_string(fmt) || strcmp(json_string_value(fmt), "oprm-checkpoint")) {
        oprm_fail(err, "%s: corrupt manifest: %s", mpath, root ? "not an oprm-checkpoint manifest" : je.text);
        goto out;
    }
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        json_t *size = json_object_get(f, "size");
        const char *sum = json_string_value(json_object_get(f, "checksum"));
        if (!name || strchr(name, '/') || !json_is_integer(size) || !sum) {
            oprm_fail(err, "%s: corrupt manifest entry %zu", mpath, i);
            goto out;
        }
        char *p = path_join(dir, name);
        struct stat st;
        int ok = stat(p, &st) == 0;
        if (!ok) {
            oprm_fail(err, "%s: checkpoint file %s is missing", dir, name);
            free(p);
            goto out;
        }
        if ((json_int_t)st.st_size != json_integer_value(size)) {
            oprm_fail(err, "%s: %s has %lld bytes, the manifest says %lld (truncated or modified)", dir, name,
                      (long long)st.st_size, (long long)json_integer_value(size));
            free(p);
            goto out;
        }
        if (full) {
            uint64_t sz, h;
            char hex[17];
            int r = hash_file(p, 0, &sz, &h, err);
            snprintf(hex, sizeof hex, "%016" PRIx64, h);
            if (r == 0 && strcmp(hex, sum)) r = oprm_fail(err, "%s: %s fails its checksum (corrupt)", dir, name);
            if (r) {
                free(p);
                goto out;
            }
        }
        free(p);
    }
    rc = 0;
out:
    if (root) json_decref(root);
    free(mpath);
    return rc;
}

int checkpoint_load(const char *dir, TrainerState *state, AdamW *opt, OprmMeta *meta, OprmError *err) {
    if (checkpoint_verify(dir, 1, err)) return -1;
    char *p;
    int rc = 0;
    if (state) {
        p = path_join(dir, TRAINER_STATE_FILE);
        rc = trainer_state_read(p, state, err);
        free(p);
        if (rc) return -1;
    }
    if (opt) {
        p = path_join(dir, CHECKPOINT_OPTIMIZER_FILE);
        rc = adamw_load(opt, p, err);
        free(p);
        if (rc) goto fail;
    }
    if (meta) {
        p = path_join(dir, OPRM_META_FILE);
        rc = oprm_meta_read(p, meta, err);
        free(p);
        if (rc) goto fail;
    }
    return 0;
fail:
    if (state) trainer_state_free(state);
    return -1;
}

/* "checkpoint-<digits>" -> step, else -1. */
static int64_t checkpoint_step_of(const char *name) {
    const char *pre = "checkpoint-";
    size_t pl = strlen(pre);
    if (strncmp(name, pre, pl) || !name[pl]) return -1;
    int64_t v = 0;
    for (const char *s = name + pl; *s; s++) {
        if (*s < '0' || *s > '9' || v > INT64_MAX / 10 - 10) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

typedef struct {
    int64_t step;
    char *path;
} StepDir;

static int cmp_step(const void *a, const void *b) {
    int64_t x = ((const StepDir *)a)->step, y = ((const StepDir *)b)->step;
    return x < y ? -1 : x > y;
}

/* Complete checkpoint-* dirs of output_dir sorted by step; -1 if unreadable. */
static int list_checkpoints(const char *output_dir, StepDir **out, int *count, OprmError *err) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(output_dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return oprm_fail(err, "%s: cannot list: %s", output_dir, strerror(errno));
    }
    struct dirent *e;
    StepDir *v = NULL;
    int n = 0;
    while ((e = readdir(d))) {
        int64_t step = checkpoint_step_of(e->d_name);
        if (step < 0) continue;
        char *p = path_join(output_dir, e->d_name);
        OprmError ignored;
        if (!is_dir(p) || checkpoint_verify(p, 0, &ignored)) {
            free(p);
            continue;
        }
        v = xrealloc(v, (size_t)(n + 1) * sizeof *v);
        v[n].step = step;
        v[n++].path = p;
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_step);
    *out = v;
    *count = n;
    return 0;
}

static void free_steps(StepDir *v, int n) {
    for (int i = 0; i < n; i++) free(v[i].path);
    free(v);
}

int checkpoint_find_latest(const char *output_dir, char **path_out, int64_t *step_out, OprmError *err) {
    StepDir *v;
    int n;
    *path_out = NULL;
    if (list_checkpoints(output_dir, &v, &n, err)) return -1;
    if (n == 0) {
        free(v);
        return 0;
    }
    *path_out = v[n - 1].path;
    if (step_out) *step_out = v[n - 1].step;
    v[n - 1].path = NULL;
    free_steps(v, n);
    return 1;
}

char *checkpoint_resolve_resume(const char *output_dir, const char *arg, OprmError *err) {
    if (!arg || !strcmp(arg, "latest")) {
        char *p = NULL;
        int r = checkpoint_find_latest(output_dir, &p, NULL, err);
        if (r == 0) oprm_fail(err, "--resume: no complete checkpoint-* directory in %s", output_dir);
        return r == 1 ? p : NULL;
    }
    if (checkpoint_verify(arg, 0, err)) {
        oprm_prefix(err, "--resume: ");
        return NULL;
    }
    return xstrdup(arg);
}

int checkpoint_rotate(const char *output_dir, int keep, const char *keep_path, OprmError *err) {
    StepDir *v;
    int n;
    if (keep <= 0) return 0;
    if (list_checkpoints(output_dir, &v, &n, err)) return -1;
    const char *keep_base = keep_path ? strrchr(keep_path, '/') : NULL;
    keep_base = keep_base ? keep_base + 1 : keep_path;
    int rc = 0;
    for (int i = 0; i < n && n - i > keep; i++) {
        const char *base = strrchr(v[i].path, '/');
        base = base ? base + 1 : v[i].path;
        if (keep_base && !strcmp(base, keep_base)) continue;
        if (remove_tree(v[i].path, err)) {
            rc = -1;
            break;
        }
    }
    free_steps(v, n);
    return rc;
}

/* ---------- leftovers of interrupted saves ---------- */

static int pid_alive(long pid) {
    if (pid <= 0) return 0;
    if (pid == (long)getpid()) return 0; /* ours, but no save of ours is running now */
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Parses ".checkpoint-STEP.KIND-PID" or ".final.tmp-PID"; returns 1 on match. */
static int parse_hidden(const char *name, char kind[8], int64_t *step, long *pid) {
    long long s;
    long p;
    int used = 0;
    if (sscanf(name, ".checkpoint-%lld.tmp-%ld%n", &s, &p, &used) == 2 && !name[used]) {
        strcpy(kind, "tmp");
    } else if (sscanf(name, ".checkpoint-%lld.old-%ld%n", &s, &p, &used) == 2 && !name[used]) {
        strcpy(kind, "old");
    } else if (sscanf(name, ".final.tmp-%ld%n", &p, &used) == 1 && !name[used]) {
        strcpy(kind, "tmp");
        s = -1;
    } else {
        return 0;
    }
    *step = s;
    *pid = p;
    return 1;
}

int checkpoint_cleanup_stale(const char *output_dir, OprmError *err) {
    DIR *d = opendir(output_dir);
    if (!d) return errno == ENOENT ? 0 : oprm_fail(err, "%s: cannot list: %s", output_dir, strerror(errno));
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.') continue;
        names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    int done = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        char kind[8];
        int64_t step;
        long pid;
        if (!parse_hidden(names[i], kind, &step, &pid) || pid_alive(pid)) continue;
        char *p = path_join(output_dir, names[i]);
        if (!strcmp(kind, "old")) {
            char target_name[64];
            snprintf(target_name, sizeof target_name, "checkpoint-%lld", (long long)step);
            char *target = path_join(output_dir, target_name);
            OprmError ignored;
            /* Crash between the two renames: the old one is the complete one. */
            if (!is_dir(target) && checkpoint_verify(p, 0, &ignored) == 0 && rename(p, target) == 0) {
                done++;
            } else if (remove_tree(p, err) == 0) {
                done++;
            } else {
                rc = -1;
            }
            free(target);
        } else if (remove_tree(p, err) == 0) {
            done++;
        } else {
            rc = -1;
        }
        free(p);
    }
    free_names(names, n);
    if (done) fsync_dir(output_dir, err);
    return rc ? -1 : done;
}
