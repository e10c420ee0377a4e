/* `oprm train`'s data reports on the real binary and the real story-llama model:
 * each --data file and the --eval-data file get their own report, labelled so
 * that one is not taken for the other (the eval file had none: invalid records
 * skipped there with --skip-invalid went unreported), and every evaluation
 * line says how many of its scoring prompts were truncated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "test.h"
#include "util/vec.h"

static char dir[] = "/tmp/oprm-test-trainreport-XXXXXX";

static char *write_tmp(const char *name, const char *text) {
    char *p = path_join(dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return p;
}

/* Runs `oprm train ARGS`; stdout and stderr into *out (caller frees). */
static int run_train(const char *bin, const char *args, char **out) {
    char *res = path_join(dir, "out.txt");
    size_t n = strlen(bin) + strlen(args) + strlen(res) + 32;
    char *cmd = malloc(n);
    snprintf(cmd, n, "%s train %s > %s 2>&1", bin, args, res);
    int rc = system(cmd);
    size_t len = 0;
    OprmError err = {{0}};
    *out = read_file(res, &len, &err);
    free(cmd);
    unlink(res);
    free(res);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_eval_data_report(void) {
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/release/oprm";
    if (access(bin, X_OK)) {
        SKIP("%s not built (make; OPRM_BIN overrides)", bin);
        return;
    }
    char *train = write_tmp("train.jsonl",
                            "{\"prompt\": \"Tell a story.\", \"chosen\": \"The cat sat on the mat.\", \"rejected\": \"No.\"}\n"
                            "{\"prompt\": \"Name a color.\", \"chosen\": \"Blue.\", \"rejected\": \"Dog.\"}\n"
                            "{\"prompt\": \"Say hi.\", \"chosen\": \"Hi!\", \"rejected\": \"Go away.\"}\n"
                            "{\"prompt\": \"Count to three.\", \"chosen\": \"One, two, three.\", \"rejected\": \"Five.\"}\n");
    /* Two valid pairs, one of them with a chosen response far over --max_length
     * 160, and one invalid record (no "rejected") skipped by --skip-invalid. */
    StrBuf ev = {0};
    sb_puts(&ev, "{\"prompt\": \"Tell me a long story.\", \"chosen\": \"");
    for (int i = 0; i < 80; i++) sb_puts(&ev, "the dog ran to the park and ");
    sb_puts(&ev, "\", \"rejected\": \"The end.\"}\n"
                 "{\"prompt\": \"What is two plus two?\", \"chosen\": \"Four.\"}\n"
                 "{\"prompt\": \"Name an animal.\", \"chosen\": \"A cat.\", \"rejected\": \"A rock.\"}\n");
    char *eval = write_tmp("eval.jsonl", ev.s);
    sb_free(&ev);
    char *run_dir = path_join(dir, "run");
    char *model = path_join(shared_data_dir(), "models/story-llama");
    StrBuf args = {0};
    sb_printf(&args,
              "--model %s --data %s --eval-data %s --output %s --max_steps 1 --max_length 160 "
              "--per_device_train_batch_size 2 --skip-invalid --threads 1",
              model, train, eval, run_dir);
    char *out = NULL;
    int rc = run_train(bin, args.s, &out);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out ? out : "(no output)");
    char want[2048];
    snprintf(want, sizeof want, "training data %s: 4 records (4 pairs, 0 point-wise responses", train);
    CHECK_STR_CONTAINS(out, want);
    /* The eval file's report, with its skipped record under its own name. */
    snprintf(want, sizeof want,
             "eval data (--eval-data) %s: 2 records (2 pairs, 0 point-wise responses, 0 best-of-N sets; 0 "
             "responses carry a label); skipped 1 invalid:\n",
             eval);
    CHECK_STR_CONTAINS(out, want);
    snprintf(want, sizeof want, "%s:2: field 'rejected'", eval);
    CHECK_STR_CONTAINS(out, want);
    /* The training report does not claim the eval file's skip. */
    snprintf(want, sizeof want, "training data %s: 4 records (4 pairs, 0 point-wise responses, 0 best-of-N sets; "
                                "0 responses carry a label)\n", train);
    CHECK_STR_CONTAINS(out, want);
    /* Both evaluations (step 0 and the end) count the one truncated prompt of 4. */
    const char *line = "(2 records of --eval-data; 1 of 4 scoring prompts truncated to 160 tokens)";
    const char *a = out ? strstr(out, line) : NULL;
    CHECK(a != NULL);
    CHECK(a && strstr(a + 1, line) != NULL);
    CHECK_STR_CONTAINS(out, "eval at step 0:");
    CHECK_STR_CONTAINS(out, "eval at step 1:");
    /* Training prompts are all short: its own count stays 0. */
    CHECK_STR_CONTAINS(out, "0 scoring prompts truncated to 160 tokens (training data)");
    char *log = path_join(run_dir, "train_log.jsonl");
    size_t n;
    OprmError err = {{0}};
    char *text = read_file(log, &n, &err);
    CHECK_STR_CONTAINS(text, "\"eval_truncated\":1");
    free(text);
    free(log);
    free(out);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run_dir);
    CHECK(system(cmd) == 0);
    sb_free(&args);
    free(model);
    free(run_dir);
    unlink(train);
    unlink(eval);
    free(train);
    free(eval);
}

/* docs/training.md's flag table against `oprm train --help`: it said LoRA was
 * "not available yet" long after the engine had it. */
static void test_docs_lora(void) {
    size_t n;
    OprmError err = {{0}};
    char *doc = read_file("docs/training.md", &n, &err);
    CHECK(doc != NULL);
    CHECK(doc && !strstr(doc, "not available yet"));
    CHECK(doc && !strstr(doc, "the engine has no LoRA"));
    CHECK_STR_CONTAINS(doc, "`--lora-rank");
    CHECK_STR_CONTAINS(doc, "`--lora-alpha");
    CHECK_STR_CONTAINS(doc, "`--lora-targets");
    const char *bin = getenv("OPRM_BIN");
    if (!bin) bin = "build/release/oprm";
    if (access(bin, X_OK)) {
        SKIP("%s not built (make; OPRM_BIN overrides)", bin);
        free(doc);
        return;
    }
    char *help = NULL;
    run_train(bin, "--help", &help);
    CHECK_STR_CONTAINS(help, "--lora-rank");
    CHECK_STR_CONTAINS(help, "--lora-alpha");
    CHECK_STR_CONTAINS(help, "--lora-targets");
    free(help);
    free(doc);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_SHARED(test_eval_data_report, "models/story-llama");
    RUN(test_docs_lora);
    rmdir(dir);
    return test_summary();
}
