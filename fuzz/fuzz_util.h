/* Helpers shared by the libFuzzer targets: the parsers under test take file
 * paths, so each input is written to an anonymous in-memory file (memfd) and
 * handed over as /proc/self/fd/N. No disk I/O, nothing left behind. */
#ifndef OPRM_FUZZ_UTIL_H
#define OPRM_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    int fd;
    char path[64];
} MemFile;

static inline void write_all_or_die(int fd, const uint8_t *data, size_t size) {
    while (size > 0) {
        ssize_t w = write(fd, data, size);
        if (w <= 0) {
            perror("fuzz: write");
            abort();
        }
        data += w;
        size -= (size_t)w;
    }
}

static inline void memfile_open(MemFile *m, const uint8_t *data, size_t size) {
    m->fd = memfd_create("oprm-fuzz", MFD_CLOEXEC);
    if (m->fd < 0) {
        perror("fuzz: memfd_create");
        abort();
    }
    write_all_or_die(m->fd, data, size);
    lseek(m->fd, 0, SEEK_SET);
    snprintf(m->path, sizeof m->path, "/proc/self/fd/%d", m->fd);
}

static inline void memfile_close(MemFile *m) { close(m->fd); }

/* A crash of an invariant check: abort() so libFuzzer records the input. */
#define FUZZ_ASSERT(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#endif
