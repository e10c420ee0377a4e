/* Checkpoint files as a resumed run reads them: a complete checkpoint is
 * saved once (checkpoint_save) into /dev/shm; each input replaces one of its
 * files, picked by the first byte, with the rest of the input and runs the
 * reader of that file:
 *   0 trainer_state.json -> trainer_state_read
 *   1 oprm.json          -> oprm_meta_read
 *   2 optimizer.bin      -> adamw_load (into an optimizer of the saved shapes)
 *   3 the manifest       -> checkpoint_verify + checkpoint_load of everything
 * then puts the original file back. Whatever is accepted must be usable. */
#include <sys/stat.h>

#include "fuzz_util.h"
#include "io/fileio.h"
#include "train/checkpoint.h"

static char ck_fz_root[128], ck_fz_out[192], *ck_fz_dir;
static float ck_fz_w[40], ck_fz_g[40], ck_fz_b[3], ck_fz_gb[3];
static ModelParam ck_fz_params[2];
static const char *const ck_fz_files[4] = {TRAINER_STATE_FILE, OPRM_META_FILE, CHECKPOINT_OPTIMIZER_FILE,
                                           CHECKPOINT_MANIFEST};
static char *ck_fz_orig[4];
static size_t ck_fz_orig_len[4];

static int ck_fz_write_model(void *ctx, const char *dir, OprmError *err) {
    char *p = path_join(dir, "config.json");
    int rc = write_file_atomic(p, "{}", 2, err);
    free(p);
    return rc;
}

static void ck_fz_cleanup(void) {
    OprmError err;
    remove_tree(ck_fz_root, &err);
}

static AdamW *ck_fz_new_opt(void) {
    AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.01};
    return adamw_new(ck_fz_params, 2, &cfg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    snprintf(ck_fz_root, sizeof ck_fz_root, "/dev/shm/oprm-fuzz-ckpt-%d", (int)getpid());
    snprintf(ck_fz_out, sizeof ck_fz_out, "%s/out", ck_fz_root);
    OprmError err;
    for (int i = 0; i < 40; i++) ck_fz_w[i] = 0.1f * i, ck_fz_g[i] = 0.01f * (i - 20);
    for (int i = 0; i < 3; i++) ck_fz_b[i] = 1, ck_fz_gb[i] = 0.5f;
    ck_fz_params[0] = (ModelParam){.name = "model.layers.0.mlp.up_proj.weight", .data = ck_fz_w, .grad = ck_fz_g,
                                   .numel = 40, .ndim = 2, .shape = {5, 8}};
    ck_fz_params[1] = (ModelParam){.name = "model.norm.weight", .data = ck_fz_b, .grad = ck_fz_gb, .numel = 3,
                                   .ndim = 1, .shape = {3}};
    AdamW *opt = ck_fz_new_opt();
    FUZZ_ASSERT(adamw_step(opt, ck_fz_params, 2, 1e-3, &err) == 0);
    TrainerState st;
    memset(&st, 0, sizeof st);
    st.seed = 7;
    st.global_step = 3;
    st.max_steps = 10;
    rng_seed(&st.rng, 7);
    int64_t order[5] = {3, 1, 4, 0, 2};
    trainer_state_set_order(&st, order, 5);
    st.data_position = 2;
    trainer_state_push_loss(&st, 0.5);
    OprmMeta meta;
    memset(&meta, 0, sizeof meta);
    meta.head = "oprm";
    meta.chat_format = "chatml";
    meta.system_prompt = "Rate the answer from 1 to 9.";
    meta.cue = "Score: ";
    for (int i = 0; i < 9; i++) meta.digit_ids[i] = 16 + i;
    CheckpointContent c = {ck_fz_write_model, NULL, NULL, &meta, &st, opt};
    FUZZ_ASSERT(make_dirs(ck_fz_out, &err) == 0);
    atexit(ck_fz_cleanup);
    if (checkpoint_save(ck_fz_out, 1, &c, 0, &ck_fz_dir, &err) != 0) {
        fprintf(stderr, "fuzz_checkpoint: %s\n", err.msg);
        abort();
    }
    trainer_state_free(&st);
    adamw_free(opt);
    for (int k = 0; k < 4; k++) {
        char *p = path_join(ck_fz_dir, ck_fz_files[k]);
        ck_fz_orig[k] = read_file(p, &ck_fz_orig_len[k], &err);
        FUZZ_ASSERT(ck_fz_orig[k] != NULL);
        free(p);
    }
    /* OPRM_FUZZ_WRITE_SEEDS=DIR: write the four valid files as seeds */
    const char *seeds = getenv("OPRM_FUZZ_WRITE_SEEDS");
    for (int k = 0; seeds && k < 4; k++) {
        char name[512];
        snprintf(name, sizeof name, "%s/valid-%d", seeds, k);
        char *buf = malloc(ck_fz_orig_len[k] + 1);
        buf[0] = (char)k;
        memcpy(buf + 1, ck_fz_orig[k], ck_fz_orig_len[k]);
        FUZZ_ASSERT(write_file_atomic(name, buf, ck_fz_orig_len[k] + 1, &err) == 0);
        free(buf);
    }
    return 0;
}

static void ck_fz_put(int k, const void *data, size_t size) {
    char *p = path_join(ck_fz_dir, ck_fz_files[k]);
    FILE *f = fopen(p, "wb");
    FUZZ_ASSERT(f && fwrite(data, 1, size, f) == size && fclose(f) == 0);
    free(p);
}

static void ck_fz_check_state(const TrainerState *st) {
    FUZZ_ASSERT(st->data_position >= 0 && (size_t)st->data_position <= st->data_count);
    char *seen = calloc(st->data_count + 1, 1);
    for (size_t i = 0; i < st->data_count; i++) {
        FUZZ_ASSERT(st->data_order[i] >= 0 && (size_t)st->data_order[i] < st->data_count);
        FUZZ_ASSERT(!seen[st->data_order[i]]);
        seen[st->data_order[i]] = 1;
    }
    free(seen);
    for (size_t i = 0; i < st->loss_count; i++) (void)st->loss_history[i];
}

static void ck_fz_check_meta(const OprmMeta *m) {
    FUZZ_ASSERT(m->head && (!strcmp(m->head, "oprm") || !strcmp(m->head, "bt")));
    for (int i = 0; i < 9; i++) {
        FUZZ_ASSERT(m->digit_ids[i] >= 0);
        for (int j = 0; j < i; j++) FUZZ_ASSERT(m->digit_ids[i] != m->digit_ids[j]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int k = data[0] % 4;
    ck_fz_put(k, data + 1, size - 1);
    char *p = path_join(ck_fz_dir, ck_fz_files[k]);
    OprmError err;
    if (k == 0) {
        TrainerState st;
        if (trainer_state_read(p, &st, &err) == 0) {
            ck_fz_check_state(&st);
            trainer_state_free(&st);
        }
    } else if (k == 1) {
        OprmMeta m;
        if (oprm_meta_read(p, &m, &err) == 0) {
            ck_fz_check_meta(&m);
            oprm_meta_free(&m);
        }
    } else if (k == 2) {
        AdamW *opt = ck_fz_new_opt();
        (void)adamw_load(opt, p, &err);
        adamw_free(opt);
    } else {
        if (checkpoint_verify(ck_fz_dir, 1, &err) == 0) {
            TrainerState st;
            OprmMeta m;
            AdamW *opt = ck_fz_new_opt();
            if (checkpoint_load(ck_fz_dir, &st, opt, &m, &err) == 0) {
                ck_fz_check_state(&st);
                ck_fz_check_meta(&m);
                trainer_state_free(&st);
                oprm_meta_free(&m);
            }
            adamw_free(opt);
        }
        char *latest = NULL;
        int64_t step = 0;
        if (checkpoint_find_latest(ck_fz_out, &latest, &step, &err) == 1) FUZZ_ASSERT(step == 1);
        free(latest);
    }
    free(p);
    ck_fz_put(k, ck_fz_orig[k], ck_fz_orig_len[k]);
    return 0;
}
