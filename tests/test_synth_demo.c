/* The oprm demo command end to end at a tiny size (4 training steps): exit
 * codes, the five steps' output, summary.json, report.html, and that the
 * trained model directory scores with the template of its oprm.json. The
 * full-size numbers are in docs/demo.md (too slow for the unit suite). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "model/model.h"
#include "test.h"

static void rm_rf(const char *dir) {
    char cmd[600];
    if (strncmp(dir, "/tmp/oprm-test-", 15) != 0) return; /* only our own temp dirs */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static int run_cmd(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/asan/oprm";
    if (!file_exists(bin)) {
        SKIP("CLI checks: %s not built (make; OPRM_BIN overrides)", bin);
        return;
    }
    char dir[] = "/tmp/oprm-test-democli-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "%s demo --help > /dev/null", bin);
    CHECK(run_cmd(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s demo --max-steps 0 > /dev/null 2>&1", bin);
    CHECK(run_cmd(cmd) == 2);
    snprintf(cmd, sizeof cmd, "%s demo --bogus 1 > /dev/null 2>&1", bin);
    CHECK(run_cmd(cmd) == 2);
    snprintf(cmd, sizeof cmd,
             "%s demo --output %s/d --max-steps 4 --batch-size 2 --audit-pairs 16 --threads 1 > %s/out.txt 2>&1", bin,
             dir, dir);
    CHECK(run_cmd(cmd) == 0);
    char *out_path = path_join(dir, "out.txt");
    OprmError err = {0};
    char *out = read_file(out_path, NULL, &err);
    CHECK_STR_CONTAINS(out, "[5/5] audit of 8 training pairs");
    CHECK_STR_CONTAINS(out, "held-out pairs (600): accuracy");
    free(out);
    free(out_path);
    char sum_path[600];
    snprintf(sum_path, sizeof sum_path, "%s/d/summary.json", dir);
    json_t *sum = json_load_file(sum_path, 0, NULL);
    CHECK(sum != NULL);
    double acc = json_real_value(json_object_get(sum, "heldout_pair_accuracy"));
    CHECK(acc >= 0 && acc <= 1);
    CHECK(json_integer_value(json_object_get(json_object_get(sum, "training"), "steps")) == 4);
    json_decref(sum);
    char path[600];
    snprintf(path, sizeof path, "%s/d/report.html", dir);
    char *html = read_file(path, NULL, &err);
    CHECK_STR_CONTAINS(html, "<svg");
    free(html);
    snprintf(path, sizeof path, "%s/d/model/oprm.json", dir);
    char *meta = read_file(path, NULL, &err);
    CHECK_STR_CONTAINS(meta, "Rate the response from 1 to 9.");
    free(meta);
    CHECK(run_cmd(cmd) == 1); /* refuses to overwrite without --force */
    rm_rf(dir);
}

int main(void) {
    model_set_threads(1); /* tiny matrices: threads only add synchronisation */
    RUN(test_cli);
    return test_summary();
}
