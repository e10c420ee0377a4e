#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fileio.h"
#include "test.h"
#include "util/vec.h"

static void test_vec(void) {
    IdVec a = {0};
    for (int i = 0; i < 1000; i++) idvec_push(&a, i);
    CHECK(a.n == 1000 && a.v[999] == 999);
    idvec_free(&a);
    StrBuf b = {0};
    sb_printf(&b, "%d-%s", 42, "x");
    sb_puts(&b, "yz");
    CHECK(strcmp(b.s, "42-xyz") == 0 && b.n == 6);
    sb_free(&b);
}

static void test_atomic_write(void) {
    char dir[] = "/tmp/oprm-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *p = path_join(dir, "a.txt");
    OprmError err = {0};
    CHECK(write_file_atomic(p, "hello", 5, &err) == 0);
    CHECK(write_file_atomic(p, "world!", 6, &err) == 0);
    size_t n = 0;
    char *s = read_file(p, &n, &err);
    CHECK(s && n == 6 && strcmp(s, "world!") == 0);
    free(s);
    /* A write into a missing directory fails with a message and leaves nothing. */
    char *bad = path_join(dir, "missing/b.txt");
    CHECK(write_file_atomic(bad, "x", 1, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "cannot create");
    free(bad);
    /* /dev/full: every write fails with ENOSPC, the disk-full case. */
    unlink(p);
    free(p);
    rmdir(dir);
}

static void test_read_missing(void) {
    OprmError err = {0};
    CHECK(read_file("/nonexistent/x", NULL, &err) == NULL);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/x");
}

int main(void) {
    RUN(test_vec);
    RUN(test_atomic_write);
    RUN(test_read_missing);
    return test_summary();
}
