/* Shared by the training tests: a tiny random model (synth/init_model.h, 256
 * positions) with the demo tokenizer, preference files of responses of
 * unequal lengths and the fixture built from them (no shared data needed),
 * a run's files (its loss history, a file of a checkpoint), file hashing and
 * running the oprm binary. */
#ifndef OPRM_TRAIN_TESTUTIL_H
#define OPRM_TRAIN_TESTUTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "synth/init_model.h"
#include "test.h"
#include "train/trainer.h"
#include "train/trainer_state.h"

#define TINY_MAX_POS 256
#define TINY_MAX_LEN 160

/* hidden 32, 2 layers, 2 heads (1 KV head: GQA), FFN 64, 256 positions. */
static inline int tiny_model(const char *dir) {
    InitOptions o;
    init_default_options(&o, ARCH_LLAMA);
    o.hidden = 32;
    o.layers = 2;
    o.heads = 2;
    o.kv_heads = 1;
    o.ffn = 64;
    o.max_pos = TINY_MAX_POS;
    o.seed = 11;
    OprmError err = {{0}};
    int rc = init_model_dir(dir, &o, NULL, &err);
    if (rc) fprintf(stderr, "init_model_dir: %s\n", err.msg);
    return rc;
}

/* n pairs whose prompts and responses have unequal lengths (so packed
 * sequences differ); labelled: chosen good / rejected bad on every other pair. */
static inline void tiny_pairs(const char *path, int n, int labelled) {
    static const char *words[] = {"red", "blue", "calm", "river", "stone", "quick", "bright", "seven"};
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < n; i++) {
        char p[256] = "", c[512] = "", r[512] = "";
        for (int k = 0; k <= i % 5; k++) strcat(p, words[(i + k) % 8]), strcat(p, " ");
        for (int k = 0; k <= (i * 3) % 11; k++) strcat(c, words[(i * 7 + k) % 8]), strcat(c, " ");
        for (int k = 0; k <= (i * 5) % 4; k++) strcat(r, words[(i + 3 * k) % 8]), strcat(r, " ");
        fprintf(f, "{\"id\": \"p%d\", \"prompt\": \"Tell me %d: %s\", \"chosen\": \"%s.\", \"rejected\": \"%s!\"", i, i,
                p, c, r);
        if (labelled && i % 2 == 0) fprintf(f, ", \"chosen_label\": \"good\", \"rejected_label\": \"bad\"");
        fprintf(f, "}\n");
    }
    fclose(f);
}

/* The usual fixture under a fresh directory: mkdtemp(tmp_dir), then
 * TMP/model (tiny_model), TMP/pairs.jsonl (n unlabelled pairs) and, when
 * ldata is not NULL, TMP/labelled.jsonl (n labelled pairs). model, data and
 * ldata hold TINY_PATH bytes. Returns 0, or -1 (with a message). */
#define TINY_PATH 600
static inline int tiny_fixture(char *tmp_dir, char *model, char *data, char *ldata, int n) {
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(model, TINY_PATH, "%s/model", tmp_dir);
    snprintf(data, TINY_PATH, "%s/pairs.jsonl", tmp_dir);
    if (ldata) snprintf(ldata, TINY_PATH, "%s/labelled.jsonl", tmp_dir);
    if (tiny_model(model)) return -1;
    tiny_pairs(data, n, 0);
    if (ldata) tiny_pairs(ldata, n, 1);
    return 0;
}

static inline void tiny_config(TrainConfig *c, const char *model, const char *data, const char *out) {
    train_config_default(c);
    c->model_dir = model;
    c->data[0] = data;
    c->n_data = 1;
    c->output_dir = out;
    c->max_length = TINY_MAX_LEN;
    c->batch_size = 2;
    c->learning_rate = 3e-3;
    c->scheduler = SCHED_CONSTANT;
    c->save_steps = 0;
    c->seed = 5;
    c->quiet = 1;
    c->progress = 0;
    c->threads = 1;
}

/* The settings of the training tests on a real model (the shared
 * story-llama): scoring prompts up to 256 tokens, micro-batches of 2, a
 * constant 2e-3, no checkpoints, seed 7, quiet, one thread (the machines
 * running the suite are small and shared). */
static inline void story_config(TrainConfig *c, const char *model, const char *data, const char *out) {
    train_config_default(c);
    c->model_dir = model;
    c->data[0] = data;
    c->n_data = 1;
    c->output_dir = out;
    c->max_length = 256;
    c->batch_size = 2;
    c->learning_rate = 2e-3;
    c->scheduler = SCHED_CONSTANT;
    c->save_steps = 0;
    c->seed = 7;
    c->quiet = 1;
    c->progress = 0;
    c->threads = 1;
}

/* FNV-1a over every file under dir (names, sizes and bytes, sorted walk). */
static inline uint64_t tree_hash(const char *dir, uint64_t h) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) return h;
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        if (strcmp(nm, ".") && strcmp(nm, "..")) {
            char *p = path_join(dir, nm);
            for (const char *q = nm; *q; q++) h = (h ^ (unsigned char)*q) * 1099511628211ULL;
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
                h = tree_hash(p, h);
            } else {
                FILE *f = fopen(p, "rb");
                int ch;
                while (f && (ch = fgetc(f)) != EOF) h = (h ^ (unsigned)ch) * 1099511628211ULL;
                if (f) fclose(f);
                h = (h ^ (uint64_t)st.st_size) * 1099511628211ULL;
                h = (h ^ (uint64_t)st.st_mtime) * 1099511628211ULL;
            }
            free(p);
        }
        free(names[i]);
    }
    free(names);
    return h;
}

/* The loss of every step of the run (or checkpoint) in dir, from its
 * trainer state (NULL, *n = 0 and a failed check when it cannot be read). */
static inline double *run_losses(const char *dir, size_t *n) {
    char *p = path_join(dir, TRAINER_STATE_FILE);
    TrainerState st;
    OprmError err = {{0}};
    int rc = trainer_state_read(p, &st, &err);
    free(p);
    *n = 0;
    CHECK(rc == 0);
    if (rc) return NULL;
    double *l = malloc((st.loss_count + 1) * sizeof *l);
    memcpy(l, st.loss_history, st.loss_count * sizeof *l);
    *n = st.loss_count;
    trainer_state_free(&st);
    return l;
}

/* The bytes of dir/name (NULL when it cannot be read), their count in *len. */
static inline char *read_in(const char *dir, const char *name, size_t *len) {
    char *p = path_join(dir, name);
    OprmError err;
    char *d = read_file(p, len, &err);
    free(p);
    return d;
}

static inline const char *oprm_bin(void) {
    const char *bin = getenv("OPRM_BIN");
    return bin ? bin : "build/release/oprm";
}

/* Runs `PREFIX oprm ARGS` in sh with stdout+stderr into the file scratch,
 * then its text into out (size bytes, NUL-terminated); returns the exit
 * status (-1 when it did not exit). */
static inline int run_oprm_prefixed(const char *prefix, const char *args, const char *scratch, char *out,
                                    size_t size) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s%s %s > %s 2>&1", prefix, oprm_bin(), args, scratch);
    int rc = system(cmd);
    FILE *f = fopen(scratch, "r");
    size_t n = f ? fread(out, 1, size - 1, f) : 0;
    out[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Runs `oprm ARGS` with stdout+stderr into out; returns the exit status
 * (124 when it ran past 120 s: a server that should have refused to start). */
static inline int run_oprm(const char *args, const char *scratch, char *out, size_t size) {
    return run_oprm_prefixed("timeout 120 ", args, scratch, out, size);
}

#endif
