/* A tiny test harness. Each test binary defines test functions, registers them
 * in main with RUN(fn), and ends with `return test_summary();`, which prints a
 * line `RESULT <passed> <failed> <skipped> <device_skipped>` that tests/run.sh
 * adds up.
 * A check is counted once per CHECK call; a failing check prints file:line and
 * the values, and the test goes on (so one run shows every failure).
 * A test that cannot run says so with SKIP("why") (counted, shown by run.sh, and
 * a failure on CI, where everything must run) or, only for checks that need an
 * accelerator this machine lacks, SKIP_DEVICE("why") (counted, allowed on CI). */
#ifndef OPRM_TEST_H
#define OPRM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test_passed_ = 0, test_failed_ = 0, test_skipped_ = 0, test_device_skipped_ = 0;
static const char *test_current_ = "";

/* The current test function cannot run; the caller returns after it. Printed on
 * stdout so that run.sh can list what skipped. */
#define SKIP(...)                                                                     \
    do {                                                                              \
        test_skipped_++;                                                              \
        printf("SKIP %s (%s:%d): ", test_current_, __FILE__, __LINE__);               \
        printf(__VA_ARGS__);                                                          \
        printf("\n");                                                                 \
        fflush(stdout);                                                               \
    } while (0)

/* Same, for a check that needs a device (GPU) the machine does not have. */
#define SKIP_DEVICE(...)                                                              \
    do {                                                                              \
        test_device_skipped_++;                                                       \
        printf("SKIP_DEVICE %s (%s:%d): ", test_current_, __FILE__, __LINE__);        \
        printf(__VA_ARGS__);                                                          \
        printf("\n");                                                                 \
        fflush(stdout);                                                               \
    } while (0)

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            test_passed_++;                                                           \
        } else {                                                                      \
            test_failed_++;                                                           \
            fprintf(stderr, "FAIL %s (%s:%d): %s\n", test_current_, __FILE__, __LINE__, #cond); \
        }                                                                             \
    } while (0)

/* |a-b| <= tol_abs + tol_rel*|b|  (b is the reference). */
#define CHECK_NEAR(a, b, tol_abs, tol_rel)                                            \
    do {                                                                              \
        double a_ = (a), b_ = (b);                                                    \
        if (isfinite(a_) && isfinite(b_) && fabs(a_ - b_) <= (tol_abs) + (tol_rel) * fabs(b_)) { \
            test_passed_++;                                                           \
        } else {                                                                      \
            test_failed_++;                                                           \
            fprintf(stderr, "FAIL %s (%s:%d): %s = %.12g, expected %s = %.12g\n", test_current_, \
                    __FILE__, __LINE__, #a, a_, #b, b_);                              \
        }                                                                             \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                               \
    do {                                                                              \
        const char *h_ = (hay), *n_ = (needle);                                       \
        if (h_ && strstr(h_, n_)) {                                                   \
            test_passed_++;                                                           \
        } else {                                                                      \
            test_failed_++;                                                           \
            fprintf(stderr, "FAIL %s (%s:%d): \"%s\" does not contain \"%s\"\n", test_current_, \
                    __FILE__, __LINE__, h_ ? h_ : "(null)", n_);                      \
        }                                                                             \
    } while (0)

#define RUN(fn)                                                                       \
    do {                                                                              \
        test_current_ = #fn;                                                          \
        int before_ = test_failed_, skips_ = test_skipped_ + test_device_skipped_;    \
        fn();                                                                         \
        fprintf(stderr, "%s %s\n", test_failed_ != before_ ? "FAIL"                  \
                : test_skipped_ + test_device_skipped_ != skips_ ? "skip" : "ok  ", #fn); \
    } while (0)

static inline int test_summary(void) {
    printf("RESULT %d %d %d %d\n", test_passed_, test_failed_, test_skipped_, test_device_skipped_);
    return test_failed_ ? 1 : 0;
}

/* Root of the team's shared data, relative to the repo (tests run from it). */
static inline const char *shared_data_dir(void) {
    const char *d = getenv("OPRM_SHARED_DATA");
    return d ? d : "../shared/data";
}

/* Whether REL (a file or directory under shared_data_dir()) is there. */
static inline int shared_data_exists(const char *rel) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", shared_data_dir(), rel);
    return access(p, F_OK) == 0;
}

/* The first of a NULL-ended list of shared paths that is missing, or NULL. */
static inline const char *shared_data_missing(const char *const *rels) {
    for (; *rels; rels++)
        if (!shared_data_exists(*rels)) return *rels;
    return NULL;
}

/* Without the shared data a test cannot run: it says so (a SKIP, which fails
 * on CI) instead of failing on, or crashing over, files that are not there.
 * NEED_SHARED(rel) goes at the top of a test function (it returns from it);
 * RUN_SHARED(fn, rel) in main, where main prepares fixtures from the data. */
#define SHARED_MISSING_(rel) \
    SKIP("needs %s/%s, which is missing (the team's shared data; OPRM_SHARED_DATA sets where)", shared_data_dir(), rel)
#define NEED_SHARED(rel)                                                              \
    do {                                                                              \
        if (!shared_data_exists(rel)) {                                               \
            SHARED_MISSING_(rel);                                                     \
            return;                                                                   \
        }                                                                             \
    } while (0)
#define RUN_SHARED(fn, rel)                                                           \
    do {                                                                              \
        if (shared_data_exists(rel)) {                                                \
            RUN(fn);                                                                  \
        } else {                                                                      \
            test_current_ = #fn;                                                      \
            SHARED_MISSING_(rel);                                                     \
            fprintf(stderr, "skip %s\n", #fn);                                       \
        }                                                                             \
    } while (0)

#endif
