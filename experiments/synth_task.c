/* Writes the demo's synthetic graded task (src/synth/task.h) with chosen sizes,
 * plus the demo's short scoring template, for the experiments. A stand-in
 * until `oprm demo` exposes the generator on the command line; it calls the
 * very same synth_write_task. Built by experiments/common.sh against
 * build/release/liboprm.a.
 *
 * usage: synth_task DIR SEED N_TRAIN_PAIRS N_TEST_PAIRS FLIP N_TRAIN_LABELS N_TEST_LABELS N_BON BON_SIZE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "synth/task.h"
#include "util/err.h"

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: synth_task DIR SEED N_TRAIN_PAIRS N_TEST_PAIRS FLIP N_TRAIN_LABELS "
                        "N_TEST_LABELS N_BON BON_SIZE\n");
        return 2;
    }
    SynthOptions o;
    synth_default_options(&o);
    o.seed = strtoull(argv[2], NULL, 10);
    o.n_train_pairs = atoi(argv[3]);
    o.n_test_pairs = atoi(argv[4]);
    o.flip_fraction = atof(argv[5]);
    o.n_train_labels = atoi(argv[6]);
    o.n_test_labels = atoi(argv[7]);
    o.n_bon = atoi(argv[8]);
    o.bon_size = atoi(argv[9]);
    OprmError err = {0};
    SynthSummary s;
    if (synth_write_task(argv[1], &o, &s, &err) != 0) {
        fprintf(stderr, "synth_task: %s\n", err.msg);
        return 1;
    }
    char *tpl = path_join(argv[1], "template.txt");
    int rc = write_file_atomic(tpl, SYNTH_DEMO_TEMPLATE, strlen(SYNTH_DEMO_TEMPLATE), &err);
    free(tpl);
    if (rc) {
        fprintf(stderr, "synth_task: %s\n", err.msg);
        return 1;
    }
    printf("{\"train_pairs\": %d, \"flipped\": %d, \"test_pairs\": %d, \"train_labels\": %d, \"test_labels\": %d, "
           "\"bon_sets\": %d}\n",
           s.n_train_pairs, s.n_flipped, s.n_test_pairs, s.n_train_labels, s.n_test_labels, s.n_bon);
    return 0;
}
