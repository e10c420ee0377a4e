/* kill -9 during checkpoint saves: a child process saves a large checkpoint
 * (a 4 MB model file, an 8 MB optimizer.bin, tokenizer files, the state) and
 * is SIGKILLed after a random delay spread over the whole save, several
 * times, alternating a new step with the replacement of an existing one.
 * After each kill the parent checks what a resumed run would see: the
 * previous checkpoint still verifies (checksums) and loads, the new one is
 * complete or absent, and checkpoint_cleanup_stale removes (or restores)
 * every leftover of the dead saver. The final save into --output itself is
 * killed the same way (its contract: complete old, complete new, or no
 * manifest at all) and is run against a full disk (RLIMIT_FSIZE). */
#include <signal.h>
#include <sys/resource.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "io/fileio.h"
#include "test.h"
#include "train/checkpoint.h"

enum { NBIG = 1 << 20, NTRIALS = 10 };
static float *weights, *grads;
static ModelParam params[1];
static char root[200], out_dir[512], src_dir[300];

typedef struct {
    float fill; /* every weight of the saved model; tells A from B */
} BigModel;

static int big_write_model(void *ctx, const char *dir, OprmError *err) {
    BigModel *m = ctx;
    for (size_t i = 0; i < NBIG; i++) weights[i] = m->fill + (float)(i % 7);
    char *p = path_join(dir, "config.json");
    const char *cfg = "{\"architectures\": [\"LlamaForCausalLM\"]}\n";
    int rc = write_file_atomic(p, cfg, strlen(cfg), err);
    free(p);
    if (rc) return rc;
    p = path_join(dir, "model.safetensors");
    rc = write_file_atomic(p, weights, NBIG * sizeof(float), err);
    free(p);
    return rc;
}

static char *sub(const char *name) { return path_join(out_dir, name); }

static int count_hidden(void) {
    DIR *d = opendir(out_dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int dir_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The model's first weight, read back from a checkpoint (-1 if unreadable). */
static float saved_fill(const char *ckpt) {
    char *p = path_join(ckpt, "model.safetensors");
    size_t len = 0;
    OprmError err;
    char *data = read_file(p, &len, &err);
    free(p);
    float v = -1;
    if (data && len == NBIG * sizeof(float)) memcpy(&v, data, sizeof v);
    free(data);
    return v;
}

/* Saves step with fill and seed; what the child runs (and the parent for setup). */
static int save(int64_t step, float fill, uint64_t seed, OprmError *err) {
    BigModel bm = {fill};
    AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.01};
    AdamW *opt = adamw_new(params, 1, &cfg);
    TrainerState st;
    memset(&st, 0, sizeof st);
    st.seed = seed;
    st.global_step = step;
    rng_seed(&st.rng, seed);
    CheckpointContent c = {big_write_model, &bm, src_dir, NULL, &st, opt};
    int rc = checkpoint_save(out_dir, step, &c, 0, NULL, err);
    adamw_free(opt);
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The checkpoint at step must verify (checksums) and load; returns the seed of
 * the save it holds (0 if it does not). */
static uint64_t complete_seed(int64_t step) {
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)step);
    char *p = sub(name);
    OprmError err;
    int ok = checkpoint_verify(p, 1, &err) == 0;
    if (!ok) fprintf(stderr, "  %s: %s\n", name, err.msg);
    CHECK(ok);
    TrainerState st;
    uint64_t seed = 0;
    if (checkpoint_load(p, &st, NULL, NULL, &err) == 0) {
        seed = st.seed;
        CHECK(st.global_step == step);
        CHECK(saved_fill(p) == (float)st.seed); /* weights and state come from the same save */
        trainer_state_free(&st);
    } else {
        CHECK(0);
    }
    free(p);
    return seed;
}

static void test_kill_during_save(void) {
    OprmError err;
    /* step 10, content A: the checkpoint every trial must leave intact (or replace whole) */
    CHECK(save(10, 100.0f, 100, &err) == 0);
    /* how long one save takes here, to spread the kills over it */
    double t0 = now_s();
    CHECK(save(20, 200.0f, 200, &err) == 0);
    double save_s = now_s() - t0;
    char *p20 = sub("checkpoint-20");
    CHECK(remove_tree(p20, &err) == 0);
    fprintf(stderr, "  one save takes %.3f s\n", save_s);

    uint64_t lcg = 12345;
    int killed_mid = 0, finished = 0, replaced_new = 0, cleaned_total = 0;
    uint64_t cur10 = 100, cur20 = 0; /* the seed each checkpoint holds; 0 = absent */
    for (int trial = 0; trial < NTRIALS; trial++) {
        int replace = trial % 2; /* odd trials replace checkpoint-10, even ones write checkpoint-20 */
        int64_t step = replace ? 10 : 20;
        uint64_t seed = 1000 + (uint64_t)trial;
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        double delay = save_s * 1.6 * (double)(lcg >> 11) / 9007199254740992.0;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            OprmError cerr;
            _exit(save(step, (float)seed, seed, &cerr) == 0 ? 0 : 3);
        }
        CHECK(pid > 0);
        struct timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        int was_killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        if (!was_killed) CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        killed_mid += was_killed;
        finished += !was_killed;

        /* what a resume sees: leftovers of the dead pid are stale */
        int cleaned = checkpoint_cleanup_stale(out_dir, &err);
        CHECK(cleaned >= 0);
        if (cleaned > 0) cleaned_total += cleaned;
        CHECK(count_hidden() == 0);
        /* each checkpoint holds what it held before this trial or, for the
         * step being saved, the new content: never a mix, never missing */
        uint64_t got10 = complete_seed(10);
        CHECK(got10 == cur10 || (replace && got10 == seed));
        cur10 = got10;
        if (dir_exists(p20)) {
            uint64_t got20 = complete_seed(20);
            CHECK(got20 == cur20 || (!replace && got20 == seed));
            cur20 = got20;
        } else {
            CHECK(cur20 == 0); /* once complete, a checkpoint is only ever replaced whole */
        }
        replaced_new += got10 == seed;
    }
    fprintf(stderr, "  %d saves killed midway, %d finished before the kill\n", killed_mid, finished);
    fprintf(stderr, "  checkpoint-10 holds seed %llu, checkpoint-20 seed %llu\n", (unsigned long long)cur10,
            (unsigned long long)cur20);
    fprintf(stderr, "  cleanup removed or restored %d leftovers\n", cleaned_total);
    CHECK(killed_mid >= 2); /* most delays land inside the save, some after it */
    CHECK(cleaned_total >= 1);         /* ... and some while a temp dir existed */
    (void)replaced_new;
    free(p20);
}

static int save_final(const char *dir, float fill, uint64_t seed, OprmError *err) {
    BigModel bm = {fill};
    AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.01};
    AdamW *opt = adamw_new(params, 1, &cfg);
    TrainerState st;
    memset(&st, 0, sizeof st);
    st.seed = seed;
    rng_seed(&st.rng, seed);
    CheckpointContent c = {big_write_model, &bm, src_dir, NULL, &st, opt};
    int rc = checkpoint_save_final(dir, &c, err);
    adamw_free(opt);
    return rc;
}

/* What a loader finds in the final dir: the seed of a complete model, or 0
 * when there is no manifest (refused as incomplete). Anything else fails. */
static uint64_t final_state(const char *dir) {
    OprmError err;
    if (checkpoint_verify(dir, 1, &err) != 0) {
        CHECK_STR_CONTAINS(err.msg, "incomplete checkpoint");
        return 0;
    }
    TrainerState st;
    uint64_t seed = 0;
    CHECK(checkpoint_load(dir, &st, NULL, NULL, &err) == 0);
    seed = st.seed;
    CHECK(saved_fill(dir) == (float)st.seed);
    trainer_state_free(&st);
    return seed;
}

static void test_kill_during_final_save(void) {
    OprmError err;
    char final_dir[300];
    snprintf(final_dir, sizeof final_dir, "%s/final", root);
    CHECK(save_final(final_dir, 300.0f, 300, &err) == 0);
    /* an intermediate checkpoint inside --output must outlive every final save */
    char *saved_out = strdup(out_dir);
    snprintf(out_dir, sizeof out_dir, "%s", final_dir);
    CHECK(save(5, 5.0f, 5, &err) == 0);
    double t0 = now_s();
    CHECK(save_final(final_dir, 300.0f, 300, &err) == 0);
    double save_s = now_s() - t0;

    /* full disk: nothing is renamed in before every file is written, so the
     * previous final model stays complete */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {1 << 20, old.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = save_final(final_dir, 301.0f, 301, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CHECK(rc == -1);
    CHECK_STR_CONTAINS(err.msg, "File too large");
    CHECK(final_state(final_dir) == 300);
    CHECK(count_hidden() == 0);

    uint64_t lcg = 777, cur = 300;
    int incomplete = 0;
    for (int trial = 0; trial < NTRIALS; trial++) {
        uint64_t seed = 2000 + (uint64_t)trial;
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        double delay = save_s * 1.6 * (double)(lcg >> 11) / 9007199254740992.0;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            OprmError cerr;
            _exit(save_final(final_dir, (float)seed, seed, &cerr) == 0 ? 0 : 3);
        }
        struct timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        CHECK(checkpoint_cleanup_stale(final_dir, &err) >= 0);
        CHECK(count_hidden() == 0);
        uint64_t got = final_state(final_dir);
        CHECK(got == 0 || got == cur || got == seed); /* old, new or refused: never a mix */
        incomplete += got == 0;
        if (got) cur = got;
        char *ck5 = sub("checkpoint-5");
        CHECK(checkpoint_verify(ck5, 1, &err) == 0);
        free(ck5);
        if (got == 0) { /* the next run rewrites the final model */
            CHECK(save_final(final_dir, 300.0f, 300, &err) == 0);
            cur = 300;
        }
    }
    fprintf(stderr, "  final save: %d of %d kills left no manifest (refused, as documented)\n", incomplete,
            NTRIALS);
    snprintf(out_dir, sizeof out_dir, "%s", saved_out);
    free(saved_out);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/oprm_test_ckkill_%d", (int)getpid());
    snprintf(out_dir, sizeof out_dir, "%s/out", root);
    snprintf(src_dir, sizeof src_dir, "%s/src", root);
    OprmError err;
    remove_tree(root, &err);
    make_dirs(src_dir, &err);
    make_dirs(out_dir, &err);
    char *p = path_join(src_dir, "tokenizer.json");
    write_file_atomic(p, "{\"model\":{}}", 12, &err);
    free(p);
    weights = calloc(NBIG, sizeof *weights);
    grads = calloc(NBIG, sizeof *grads);
    params[0] = (ModelParam){.name = "model.layers.0.mlp.up_proj.weight", .data = weights, .grad = grads, .numel = NBIG};
    RUN(test_kill_during_save);
    RUN(test_kill_during_final_save);
    remove_tree(root, &err);
    free(weights);
    free(grads);
    return test_summary();
}
