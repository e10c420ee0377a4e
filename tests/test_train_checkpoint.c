/* Checkpoint directories: state round trip, atomic replace, failing saves
 * (callback error, full disk via RLIMIT_FSIZE), leftovers of a killed save,
 * rotation, the final save into --output, oprm.json validation. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "test.h"
#include "train/checkpoint.h"

static char root_dir[256], out_dir[300], src_dir[300];

/* Stand-in for model_save: config.json + a weights file of the tensor bytes. */
typedef struct {
    const float *w;
    size_t n;
    int fail;
} FakeModel;

static int fake_write_model(void *ctx, const char *dir, OprmError *err) {
    FakeModel *m = ctx;
    if (m->fail) return oprm_fail(err, "simulated engine failure");
    char *p = path_join(dir, "config.json");
    const char *cfg = "{\"architectures\": [\"LlamaForCausalLM\"]}\n";
    int rc = write_file_atomic(p, cfg, strlen(cfg), err);
    free(p);
    if (rc) return rc;
    p = path_join(dir, "model.safetensors");
    rc = write_file_atomic(p, m->w, m->n * sizeof(float), err);
    free(p);
    return rc;
}

static int count_hidden(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static char *sub(const char *name) { return path_join(out_dir, name); }

static int dir_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A small training state: params, an optimizer after 3 steps, a state. */
enum { NW = 20000 };
static float weights[NW], grads[NW], bias[8], gbias[8];
static ModelParam params[2];

static void setup_params(void) {
    for (int i = 0; i < NW; i++) {
        weights[i] = (float)((i % 97) - 48) / 64.0f;
        grads[i] = (float)((i * 7 % 31) - 15) / 16.0f;
    }
    for (int i = 0; i < 8; i++) bias[i] = 0.1f * i, gbias[i] = 0.01f * (i - 4);
    params[0] = (ModelParam){.name = "model.layers.0.mlp.up_proj.weight", .data = weights, .grad = grads, .numel = NW};
    params[1] = (ModelParam){.name = "model.layers.0.self_attn.q_proj.bias", .data = bias, .grad = gbias, .numel = 8};
}

static AdamW *make_opt(int steps) {
    AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.01};
    AdamW *o = adamw_new(params, 2, &cfg);
    OprmError err;
    for (int s = 0; s < steps; s++) adamw_step(o, params, 2, 1e-3, &err);
    return o;
}

static void make_state(TrainerState *st, uint64_t seed) {
    memset(st, 0, sizeof *st);
    st->seed = seed;
    rng_seed(&st->rng, seed);
    int64_t order[50];
    rng_permutation(&st->rng, order, 50);
    trainer_state_set_order(st, order, 50);
    st->global_step = 10;
    st->max_steps = 100;
    st->epoch = 1;
    st->data_position = 17;
    trainer_state_push_loss(st, 0.1 + 0.2); /* not representable in short decimal */
    trainer_state_push_loss(st, 2.0 / 3.0);
    trainer_state_push_loss(st, 1e-300);
    st->extra = json_pack("{s:f}", "best_eval_accuracy", 0.75);
}

static void make_meta(OprmMeta *m) {
    memset(m, 0, sizeof *m);
    m->head = "oprm";
    m->chat_format = "chatml";
    m->system_prompt = "You are a reward model. Rate ... from 1 (very poor) to 9 (excellent).";
    m->user_template = NULL;
    m->cue = "Score: ";
    for (int i = 0; i < 9; i++) m->digit_ids[i] = 16 + i;
    m->base_model = "/models/qwen";
    m->training_args = json_pack("{s:f,s:i,s:s}", "learning_rate", 1e-5, "per_device_train_batch_size", 4,
                                 "lr_scheduler_type", "cosine");
}

static void setup_dirs(void) {
    snprintf(root_dir, sizeof root_dir, "/tmp/oprm_test_ckpt_%d", (int)getpid());
    snprintf(out_dir, sizeof out_dir, "%s/out", root_dir);
    snprintf(src_dir, sizeof src_dir, "%s/src", root_dir);
    OprmError err;
    remove_tree(root_dir, &err);
    make_dirs(src_dir, &err);
    char *p = path_join(src_dir, "tokenizer.json");
    write_file_atomic(p, "{\"model\":{}}", 12, &err);
    free(p);
    p = path_join(src_dir, "tokenizer_config.json");
    write_file_atomic(p, "{}", 2, &err);
    free(p);
}

static void test_round_trip(void) {
    FakeModel fm = {weights, NW, 0};
    AdamW *opt = make_opt(3);
    TrainerState st;
    make_state(&st, 1234);
    OprmMeta meta;
    make_meta(&meta);
    CheckpointContent c = {fake_write_model, &fm, src_dir, &meta, &st, opt};
    OprmError err;
    char *path = NULL;
    CHECK(checkpoint_save(out_dir, 10, &c, 0, &path, &err) == 0);
    CHECK_STR_CONTAINS(path, "/out/checkpoint-10");
    CHECK(count_hidden(out_dir) == 0);
    char *f = path_join(path, "tokenizer.json");
    CHECK(file_exists(f));
    free(f);
    f = path_join(path, "special_tokens_map.json"); /* absent in the source: not invented */
    CHECK(!file_exists(f));
    free(f);
    CHECK(checkpoint_verify(path, 1, &err) == 0);

    TrainerState st2;
    OprmMeta meta2;
    AdamW *opt2 = make_opt(0);
    CHECK(checkpoint_load(path, &st2, opt2, &meta2, &err) == 0);
    CHECK(opt2->step == 3);
    CHECK(memcmp(opt2->slots[0].m, opt->slots[0].m, NW * sizeof(float)) == 0);
    CHECK(memcmp(opt2->slots[0].v, opt->slots[0].v, NW * sizeof(float)) == 0);
    CHECK(memcmp(opt2->slots[1].v, opt->slots[1].v, 8 * sizeof(float)) == 0);
    CHECK(st2.global_step == 10 && st2.max_steps == 100 && st2.epoch == 1 && st2.data_position == 17);
    CHECK(st2.seed == 1234);
    CHECK(st2.data_count == 50 && memcmp(st2.data_order, st.data_order, 50 * sizeof(int64_t)) == 0);
    CHECK(st2.loss_count == 3 && memcmp(st2.loss_history, st.loss_history, 3 * sizeof(double)) == 0);
    CHECK_NEAR(json_real_value(json_object_get(st2.extra, "best_eval_accuracy")), 0.75, 0, 0);
    /* The RNG continues identically after the round trip. */
    int same = 1;
    for (int i = 0; i < 100; i++) same &= rng_next_u64(&st.rng) == rng_next_u64(&st2.rng);
    CHECK(same);
    CHECK(!strcmp(meta2.head, "oprm") && !strcmp(meta2.cue, "Score: ") && !strcmp(meta2.chat_format, "chatml"));
    CHECK(!strcmp(meta2.system_prompt, meta.system_prompt) && meta2.user_template == NULL);
    CHECK(memcmp(meta2.digit_ids, meta.digit_ids, sizeof meta.digit_ids) == 0);
    CHECK(json_integer_value(json_object_get(meta2.training_args, "per_device_train_batch_size")) == 4);
    int64_t step = 0;
    char *latest = NULL;
    CHECK(checkpoint_find_latest(out_dir, &latest, &step, &err) == 1 && step == 10);
    free(latest);
    oprm_meta_free(&meta2);
    trainer_state_free(&st2);
    trainer_state_free(&st);
    json_decref(meta.training_args);
    adamw_free(opt);
    adamw_free(opt2);
    free(path);
}

static int latest_step(void) {
    OprmError err;
    char *p = NULL;
    int64_t s = -1;
    int r = checkpoint_find_latest(out_dir, &p, &s, &err);
    free(p);
    return r == 1 ? (int)s : -r;
}

static void test_failed_saves_keep_previous(void) {
    OprmError err;
    FakeModel fm = {weights, NW, 1};
    AdamW *opt = make_opt(1);
    TrainerState st;
    make_state(&st, 99);
    CheckpointContent c = {fake_write_model, &fm, src_dir, NULL, &st, opt};
    /* 1. The engine's writer fails. */
    CHECK(checkpoint_save(out_dir, 20, &c, 0, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "simulated engine failure");
    CHECK_STR_CONTAINS(err.msg, "previous checkpoints are intact");
    char *p20 = sub("checkpoint-20");
    CHECK(!dir_exists(p20));
    CHECK(count_hidden(out_dir) == 0);
    /* Replacing checkpoint-10 with a failing save leaves the old one. */
    CHECK(checkpoint_save(out_dir, 10, &c, 0, NULL, &err) == -1);
    char *p10 = sub("checkpoint-10");
    CHECK(checkpoint_verify(p10, 1, &err) == 0);

    /* 2. Full disk: files may not grow past 64 KiB. The model (80 KB) fails
     * first; with a small model, optimizer.bin (160 KB) fails. */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {65536, old.rlim_max};
    fm.fail = 0;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc1 = checkpoint_save(out_dir, 20, &c, 0, NULL, &err);
    char msg1[1024];
    memcpy(msg1, err.msg, sizeof msg1);
    fm.n = 100;
    int rc2 = checkpoint_save(out_dir, 20, &c, 0, NULL, &err);
    int rc3 = checkpoint_save(out_dir, 10, &c, 0, NULL, &err); /* replacing: also refused cleanly */
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CHECK(rc1 == -1);
    CHECK_STR_CONTAINS(msg1, "model.safetensors");
    CHECK_STR_CONTAINS(msg1, "File too large");
    CHECK(rc2 == -1 && rc3 == -1);
    CHECK_STR_CONTAINS(err.msg, "optimizer.bin");
    CHECK(!dir_exists(p20));
    CHECK(count_hidden(out_dir) == 0);
    CHECK(latest_step() == 10);
    TrainerState back;
    CHECK(checkpoint_load(p10, &back, NULL, NULL, &err) == 0);
    CHECK(back.seed == 1234); /* still the state of test_round_trip's save */
    trainer_state_free(&back);
    /* Without the limit the same save succeeds. */
    CHECK(checkpoint_save(out_dir, 20, &c, 0, NULL, &err) == 0);
    CHECK(latest_step() == 20);
    free(p10);
    free(p20);
    trainer_state_free(&st);
    adamw_free(opt);
}

static long dead_pid(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    return (long)pid;
}

static void test_killed_save_leftovers(void) {
    OprmError err;
    long pid = dead_pid();
    /* What kill -9 during a save of step 30 leaves: a half-filled temp dir. */
    char name[128];
    snprintf(name, sizeof name, ".checkpoint-30.tmp-%ld", pid);
    char *tmp = sub(name);
    make_dirs(tmp, &err);
    char *half = path_join(tmp, "model.safetensors");
    write_file_atomic(half, "abc", 3, &err);
    free(half);
    /* A checkpoint-40 without a manifest (e.g. a partial copy by hand). */
    char *p40 = sub("checkpoint-40");
    make_dirs(p40, &err);
    char *cfg = path_join(p40, "config.json");
    write_file_atomic(cfg, "{}", 2, &err);
    free(cfg);
    CHECK(latest_step() == 20);
    CHECK(checkpoint_verify(p40, 0, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "incomplete checkpoint");
    TrainerState st;
    CHECK(checkpoint_load(p40, &st, NULL, NULL, &err) == -1);
    /* A temp dir of a live process (ours is skipped as stale only when not saving:
     * use pid 1, always alive) is left alone. */
    char *live = sub(".checkpoint-31.tmp-1");
    make_dirs(live, &err);
    CHECK(checkpoint_cleanup_stale(out_dir, &err) == 1);
    CHECK(!dir_exists(tmp));
    CHECK(dir_exists(live));
    CHECK(dir_exists(p40)); /* not ours to delete: just never loaded */
    remove_tree(live, &err);
    remove_tree(p40, &err);
    /* Crash between the two renames of a replace: only .checkpoint-20.old-PID
     * exists; cleanup puts it back. */
    char *p20 = sub("checkpoint-20");
    snprintf(name, sizeof name, ".checkpoint-20.old-%ld", pid);
    char *old = sub(name);
    CHECK(rename(p20, old) == 0);
    CHECK(latest_step() == 10);
    CHECK(checkpoint_cleanup_stale(out_dir, &err) == 1);
    CHECK(checkpoint_verify(p20, 1, &err) == 0);
    CHECK(latest_step() == 20);
    /* A save also cleans leftovers first. */
    snprintf(name, sizeof name, ".checkpoint-50.tmp-%ld", pid);
    char *tmp2 = sub(name);
    make_dirs(tmp2, &err);
    FakeModel fm = {weights, 10, 0};
    CheckpointContent c = {fake_write_model, &fm, NULL, NULL, NULL, NULL};
    CHECK(checkpoint_save(out_dir, 20, &c, 0, NULL, &err) == 0); /* replace in place */
    CHECK(!dir_exists(tmp2));
    CHECK(count_hidden(out_dir) == 0);
    char *opt_file = path_join(p20, CHECKPOINT_OPTIMIZER_FILE); /* new content replaced the old fully */
    CHECK(!file_exists(opt_file));
    free(opt_file);
    char *resumed = checkpoint_resolve_resume(out_dir, "latest", &err);
    CHECK_STR_CONTAINS(resumed, "checkpoint-20");
    free(resumed);
    free(tmp);
    free(tmp2);
    free(p40);
    free(live);
    free(p20);
    free(old);
}

static void test_corruption_and_rotation(void) {
    OprmError err;
    char *p20 = sub("checkpoint-20");
    char *w = path_join(p20, "model.safetensors");
    FILE *f = fopen(w, "r+b");
    fseek(f, 5, SEEK_SET);
    fputc(0x7f, f);
    fclose(f);
    CHECK(checkpoint_verify(p20, 0, &err) == 0); /* same size */
    CHECK(checkpoint_verify(p20, 1, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "checksum");
    CHECK(truncate(w, 8) == 0);
    CHECK(checkpoint_verify(p20, 0, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "manifest says");
    CHECK(latest_step() == 10);
    free(w);
    FakeModel fm = {weights, 10, 0};
    CheckpointContent c = {fake_write_model, &fm, NULL, NULL, NULL, NULL};
    CHECK(checkpoint_save(out_dir, 30, &c, 0, NULL, &err) == 0);
    CHECK(checkpoint_save(out_dir, 40, &c, 0, NULL, &err) == 0);
    CHECK(checkpoint_save(out_dir, 50, &c, 2, NULL, &err) == 0);
    char *p10 = sub("checkpoint-10"), *p30 = sub("checkpoint-30"), *p40 = sub("checkpoint-40"),
         *p50 = sub("checkpoint-50");
    CHECK(!dir_exists(p10) && !dir_exists(p30) && dir_exists(p40) && dir_exists(p50));
    CHECK(dir_exists(p20)); /* corrupt (no valid manifest sizes): not counted, not deleted */
    free(p10);
    free(p20);
    free(p30);
    free(p40);
    free(p50);
}

static void test_final_save(void) {
    OprmError err;
    FakeModel fm = {weights, 64, 0};
    AdamW *opt = make_opt(1);
    OprmMeta meta;
    make_meta(&meta);
    CheckpointContent c = {fake_write_model, &fm, src_dir, &meta, NULL, opt};
    CHECK(checkpoint_save_final(out_dir, &c, &err) == 0);
    CHECK(checkpoint_verify(out_dir, 1, &err) == 0);
    char *optf = path_join(out_dir, CHECKPOINT_OPTIMIZER_FILE);
    CHECK(file_exists(optf));
    char *p50 = sub("checkpoint-50");
    CHECK(checkpoint_verify(p50, 1, &err) == 0); /* checkpoints survive */
    OprmMeta back;
    CHECK(checkpoint_load(out_dir, NULL, NULL, &back, &err) == 0);
    CHECK(back.digit_ids[8] == 24);
    oprm_meta_free(&back);
    /* Second final save without optimizer: the stale optimizer.bin goes. */
    c.opt = NULL;
    fm.n = 32;
    CHECK(checkpoint_save_final(out_dir, &c, &err) == 0);
    CHECK(!file_exists(optf));
    CHECK(checkpoint_verify(out_dir, 1, &err) == 0);
    /* A failing final save leaves the previous final model loadable. */
    fm.fail = 1;
    CHECK(checkpoint_save_final(out_dir, &c, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "final model not saved");
    CHECK(checkpoint_verify(out_dir, 1, &err) == 0);
    CHECK(count_hidden(out_dir) == 0);
    /* The output dir itself is not mistaken for a checkpoint-STEP. */
    CHECK(latest_step() == 50);
    free(optf);
    free(p50);
    json_decref(meta.training_args);
    adamw_free(opt);
}

static void test_meta_validation(void) {
    OprmError err;
    OprmMeta m;
    json_t *good = NULL;
    OprmMeta src;
    make_meta(&src);
    good = oprm_meta_to_json(&src);
    CHECK(oprm_meta_from_json(good, &m, &err) == 0);
    oprm_meta_free(&m);
    json_t *bad = json_deep_copy(good);
    json_array_set_new(json_object_get(json_object_get(bad, "scoring"), "digit_ids"), 3, json_integer(16));
    CHECK(oprm_meta_from_json(bad, &m, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "digit_ids[0] and [3]");
    json_decref(bad);
    bad = json_deep_copy(good);
    json_object_set_new(bad, "head", json_string("regression"));
    CHECK(oprm_meta_from_json(bad, &m, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "\"head\"");
    json_decref(bad);
    bad = json_deep_copy(good);
    json_object_del(json_object_get(bad, "scoring"), "cue");
    CHECK(oprm_meta_from_json(bad, &m, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "\"cue\"");
    json_decref(bad);
    json_decref(good);
    json_decref(src.training_args);
    /* --resume with nothing to resume from. */
    char *p = checkpoint_resolve_resume(src_dir, NULL, &err);
    CHECK(p == NULL);
    CHECK_STR_CONTAINS(err.msg, "no complete checkpoint");
    p = checkpoint_resolve_resume(out_dir, "/nonexistent/checkpoint-5", &err);
    CHECK(p == NULL);
    CHECK_STR_CONTAINS(err.msg, "no such checkpoint");
}

int main(void) {
    setup_dirs();
    setup_params();
    RUN(test_round_trip);
    RUN(test_failed_saves_keep_previous);
    RUN(test_killed_save_leftovers);
    RUN(test_corruption_and_rotation);
    RUN(test_final_save);
    RUN(test_meta_validation);
    OprmError err;
    remove_tree(root_dir, &err);
    return test_summary();
}
