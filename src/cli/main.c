#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dist/dist.h"

/* Subcommands are linked in from their own files; a weak default keeps the
 * binary building while a subcommand is still being written. */
#define WEAK_CMD(name)                                                              \
    __attribute__((weak)) int cmd_##name(int argc, char **argv) {                   \
        (void)argc;                                                                 \
        (void)argv;                                                                 \
        fprintf(stderr, "oprm: '%s' is not available in this build\n", #name);      \
        return EXIT_RUNTIME;                                                        \
    }
WEAK_CMD(train)
WEAK_CMD(score)
WEAK_CMD(eval)
WEAK_CMD(bon)
WEAK_CMD(audit)
WEAK_CMD(serve)
WEAK_CMD(demo)
WEAK_CMD(init)
WEAK_CMD(tokenize)
WEAK_CMD(bench)

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"demo", cmd_demo, "train a tiny OPRM on a synthetic task and show what it does"},
    {"train", cmd_train, "train an ordinal reward model on preference pairs (and labels)"},
    {"score", cmd_score, "score responses: the 9-level distribution, mean, std, bimodality"},
    {"eval", cmd_eval, "pair accuracy, calibration and reports on preference data"},
    {"bon", cmd_bon, "risk-aware Best-of-N selection"},
    {"audit", cmd_audit, "rank preference pairs by how likely their label is wrong"},
    {"serve", cmd_serve, "HTTP reward server for RLHF pipelines"},
    {"init", cmd_init, "write a fresh, randomly initialised Hugging Face model directory"},
    {"tokenize", cmd_tokenize, "encode JSONL {\"text\"} lines with a model's tokenizer"},
    {"bench", cmd_bench, "measure train and score throughput on a config.json"},
};

static void usage(FILE *f) {
    fprintf(f,
            "oprm %s - Ordinal Probabilistic Reward Models\n\n"
            "usage: oprm <command> [options]\n\n"
            "commands:\n",
            OPRM_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nRun 'oprm <command> --help' for a command's options.\n");
}

/* libgomp's default makes idle threads spin at every barrier; on a machine
 * whose cores are shared (CI, a laptop, two jobs at once) two spinning
 * threads run 2-5x slower than one (docs/performance.md). Passive waiting
 * costs little when the cores are free, so it is oprm's default. libgomp
 * reads the variable when it is loaded, before main, hence the re-exec; a
 * user's own OMP_WAIT_POLICY is respected. */
static void default_to_passive_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("OPRM_REEXECED")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv("OPRM_REEXECED", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with the default policy. */
}

int main(int argc, char **argv) {
    default_to_passive_wait(argv);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("oprm %s\n", OPRM_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(name, COMMANDS[i].name)) {
            /* Under mpirun/srun every rank joins the job (docs/distributed.md). */
            dist_init(&argc, &argv);
            int rc = COMMANDS[i].fn(argc - 1, argv + 1);
            dist_finalize(rc);
            return rc;
        }
    fprintf(stderr, "oprm: unknown command '%s'\n\n", name);
    usage(stderr);
    return EXIT_USAGE;
}
