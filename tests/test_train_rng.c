/* Seeded RNG against an independent Python implementation (values below from
 * splitmix64 / xoshiro256** written from their papers' definitions), plus the
 * interrupt flag. */
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "train/interrupt.h"
#include "train/rng.h"

static void test_reference_values(void) {
    uint64_t x = 0;
    CHECK(splitmix64_next(&x) == 0xe220a8397b1dcdafULL); /* published splitmix64(0) */
    Rng r;
    rng_seed(&r, 42);
    const uint64_t want[5] = {0x15780b2e0c2ec716ULL, 0x6104d9866d113a7eULL, 0xae17533239e499a1ULL,
                              0xecb8ad4703b360a1ULL, 0xfde6dc7fe2ec5e64ULL};
    for (int i = 0; i < 5; i++) CHECK(rng_next_u64(&r) == want[i]);
}

static void test_distributions(void) {
    Rng r;
    rng_seed(&r, 7);
    int n = 200000;
    double su = 0, sn = 0, sn2 = 0, umin = 1, umax = 0;
    for (int i = 0; i < n; i++) {
        double u = rng_uniform(&r);
        su += u;
        if (u < umin) umin = u;
        if (u > umax) umax = u;
        double z = rng_normal(&r);
        sn += z;
        sn2 += z * z;
    }
    CHECK(umin >= 0 && umax < 1);
    /* Tolerances: ~5 standard errors (sd/sqrt(n)). */
    CHECK_NEAR(su / n, 0.5, 5 * 0.2887 / sqrt(n), 0);
    CHECK_NEAR(sn / n, 0.0, 5.0 / sqrt(n), 0);
    CHECK_NEAR(sn2 / n, 1.0, 5 * sqrt(2.0) / sqrt(n), 0);
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 30000; i++) counts[rng_below(&r, 3)]++;
    for (int k = 0; k < 3; k++) CHECK_NEAR(counts[k], 10000, 5 * sqrt(30000 * (1 / 3.0) * (2 / 3.0)), 0);
}

static void test_shuffle(void) {
    Rng r;
    rng_seed(&r, 1);
    enum { N = 1000 };
    int64_t idx[N];
    rng_permutation(&r, idx, N);
    int seen[N] = {0}, fixed = 0, ok = 1;
    for (int i = 0; i < N; i++) {
        if (idx[i] >= 0 && idx[i] < N) seen[idx[i]]++;
        else ok = 0;
        fixed += idx[i] == i;
    }
    for (int i = 0; i < N; i++) ok &= seen[i] == 1;
    CHECK(ok);
    CHECK(fixed < 10); /* a real shuffle: expected 1 fixed point */
    /* Uniformity of where element 0 lands among 4 slots. */
    int pos[4] = {0};
    for (int t = 0; t < 8000; t++) {
        int64_t a[4];
        rng_permutation(&r, a, 4);
        for (int i = 0; i < 4; i++)
            if (a[i] == 0) pos[i]++;
    }
    for (int i = 0; i < 4; i++) CHECK_NEAR(pos[i], 2000, 5 * sqrt(8000 * 0.25 * 0.75), 0);
}

static void test_save_restore(void) {
    Rng a;
    rng_seed(&a, 123);
    for (int i = 0; i < 17; i++) rng_next_u64(&a);
    Rng saved = a; /* the state is plain data: copy = checkpoint */
    double x[6], y[6];
    for (int i = 0; i < 6; i++) x[i] = i % 2 ? rng_normal(&a) : rng_uniform(&a);
    Rng b = saved;
    for (int i = 0; i < 6; i++) y[i] = i % 2 ? rng_normal(&b) : rng_uniform(&b);
    CHECK(memcmp(x, y, sizeof x) == 0);
    Rng c, d;
    rng_seed(&c, 5);
    rng_seed(&d, 6);
    CHECK(rng_next_u64(&c) != rng_next_u64(&d));
}

static void test_interrupt_flag(void) {
    interrupt_install();
    CHECK(interrupt_requested() == 0);
    raise(SIGTERM);
    CHECK(interrupt_requested() == SIGTERM);
    interrupt_clear();
    raise(SIGINT);
    CHECK(interrupt_requested() == SIGINT);
    interrupt_clear();
    interrupt_uninstall();
    CHECK(interrupt_exit_code(SIGINT) == 130);
}

/* Second Ctrl-C exits immediately with 130; the loop never got to poll. */
static void test_second_interrupt_exits(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        interrupt_install();
        raise(SIGINT);
        if (interrupt_requested() != SIGINT) _exit(3);
        raise(SIGINT);
        _exit(4); /* not reached */
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 130);
}

int main(void) {
    RUN(test_reference_values);
    RUN(test_distributions);
    RUN(test_shuffle);
    RUN(test_save_restore);
    RUN(test_interrupt_flag);
    RUN(test_second_interrupt_exits);
    return test_summary();
}
