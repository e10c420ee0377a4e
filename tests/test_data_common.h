/* Helpers shared by the data tests: temp fixture files. */
#ifndef OPRM_TEST_DATA_COMMON_H
#define OPRM_TEST_DATA_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp_dir_[256];

static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k = 0;
    if (!tmp_dir_[0]) {
        snprintf(tmp_dir_, sizeof tmp_dir_, "/tmp/oprm-test-data-XXXXXX");
        if (!mkdtemp(tmp_dir_)) abort();
    }
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir_, name);
    return buf[k];
}

/* Writes text to a fresh temp file and returns its path. */
static const char *write_tmp(const char *name, const char *text) {
    const char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
    return p;
}

static void remove_tmp_dir(void) {
    if (!tmp_dir_[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir_);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp_dir_);
}

#endif
