/* The test runner and the test binaries without the shared data:
 * - tests/run.sh names a binary that a signal ended, with the signal, before
 *   or after its RESULT line (it used to print only "exit 139");
 * - the binaries that build fixtures from ../shared/data skip, with a reason,
 *   when it is missing (OPRM_SHARED_DATA pointing nowhere) instead of
 *   crashing (test_eval_cli and test_trainer segfaulted; test_fuzz_regressions
 *   exited before its RESULT line). `make test-no-shared-data` runs every
 *   binary that way;
 * - `make valgrind` builds its tests on a library of its own objects (its
 *   archive was empty, so no valgrind test linked). */
#include <libgen.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "io/fileio.h"
#include "test.h"
#include "train/checkpoint.h"

static char tmp_dir[] = "/tmp/oprm_test_runner_XXXXXX";
static char self_dir[1024]; /* where this binary and its siblings are */

/* Runs cmd with stdout+stderr into a file, returns the wait status and the text. */
static int run_capture(const char *cmd, char **text) {
    char full[8192];
    snprintf(full, sizeof full, "%s > %s/out.txt 2>&1", cmd, tmp_dir);
    int status = system(full);
    char path[600];
    snprintf(path, sizeof path, "%s/out.txt", tmp_dir);
    size_t n = 0;
    OprmError err;
    *text = read_file(path, &n, &err);
    if (!*text) *text = calloc(1, 1);
    return status;
}

static void script(const char *dir, const char *name, const char *body) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(path, 0755);
}

static void test_run_sh_names_signals(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/bins", tmp_dir);
    CHECK(mkdir(dir, 0755) == 0);
    script(dir, "test_segv", "kill -SEGV $$");
    script(dir, "test_abrt_late", "echo 'RESULT 3 0'; kill -ABRT $$");
    script(dir, "test_fine", "echo 'RESULT 2 0 1'; echo 'SKIP test_x (f.c:1): why'");
    script(dir, "test_exit3", "echo 'RESULT 4 0'; exit 3");
    char cmd[800], *out = NULL;
    /* Without CI (a skip is no failure here) and without the fuzz smoke run make test asks for. */
    snprintf(cmd, sizeof cmd, "env -u CI -u OPRM_FUZZ_SMOKE tests/run.sh %s", dir);
    int status = run_capture(cmd, &out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    CHECK_STR_CONTAINS(out, "CRASH test_segv: killed by signal 11 (SIGSEGV) before its RESULT line");
    CHECK_STR_CONTAINS(out, "CRASH test_abrt_late: killed by signal 6 (SIGABRT) after its RESULT line (3 passed");
    CHECK_STR_CONTAINS(out, "FAIL  test_exit3: 4 passed, 1 failed, exit 3");
    CHECK_STR_CONTAINS(out, "ok    test_fine");
    CHECK_STR_CONTAINS(out, "test_segv (killed by signal 11 (SIGSEGV), no RESULT)");
    /* 3 + 2 + 4 checks passed; segv, abrt and exit 3 count one failure each. */
    CHECK_STR_CONTAINS(out, "9 passed, 3 failed, 1 skipped");
    free(out);
}

/* What `make valgrind` would run to build its library (a dry run: nothing is
 * built): the archive holds the library's objects, compiled without sanitizers. */
static void test_valgrind_target_links(void) {
    char *out = NULL;
    int status = run_capture("env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -n -B NO_CUDA=1 build/valgrind/liboprm.a",
                             &out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_STR_CONTAINS(out, "-c src/io/safetensors.c -o build/valgrind/obj/src/io/safetensors.o");
    CHECK_STR_CONTAINS(out, "ar rcs build/valgrind/liboprm.a build/valgrind/obj/src/");
    CHECK(!strstr(out, "fsanitize"));
    free(out);
}

/* The sibling binary `name` with the shared data pointing nowhere: a normal
 * exit, a RESULT line, no failed check, every skip saying what is missing. */
static void no_shared_data(const char *self_dir, const char *name, int min_skips) {
    char cmd[2400], *out = NULL;
    snprintf(cmd, sizeof cmd, "env -u CI OPRM_SHARED_DATA=/nonexistent/oprm-shared %s/%s", self_dir, name);
    int status = run_capture(cmd, &out);
    int exited = WIFEXITED(status);
    if (!exited) fprintf(stderr, "%s: killed by signal %d\n", name, WTERMSIG(status));
    CHECK(exited && WEXITSTATUS(status) == 0);
    const char *r = strstr(out, "RESULT ");
    int p = -1, f = -1, s = -1;
    CHECK(r != NULL && sscanf(r, "RESULT %d %d %d", &p, &f, &s) == 3);
    CHECK(f == 0);
    CHECK(s >= min_skips);
    CHECK_STR_CONTAINS(out, "needs /nonexistent/oprm-shared/models/story-llama, which is missing");
    if (f != 0 || s < min_skips) fprintf(stderr, "%s said:\n%s\n", name, out);
    free(out);
}


static void test_eval_cli_without_shared_data(void) { no_shared_data(self_dir, "test_eval_cli", 5); }
static void test_trainer_without_shared_data(void) { no_shared_data(self_dir, "test_trainer", 8); }
static void test_fuzz_regressions_without_shared_data(void) { no_shared_data(self_dir, "test_fuzz_regressions", 1); }

int main(int argc, char **argv) {
    if (!mkdtemp(tmp_dir)) return 1;
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    snprintf(self_dir, sizeof self_dir, "%s", n > 0 ? dirname(self) : ".");
    RUN(test_run_sh_names_signals);
    RUN(test_valgrind_target_links);
    RUN(test_eval_cli_without_shared_data);
    RUN(test_trainer_without_shared_data);
    RUN(test_fuzz_regressions_without_shared_data);
    OprmError err;
    remove_tree(tmp_dir, &err);
    return test_summary();
}
