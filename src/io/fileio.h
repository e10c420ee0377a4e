/* Whole-file reads and atomic writes. Every file oprm writes that a user would
 * miss if half-written (checkpoints, reports) goes through the atomic path:
 * write to a temp file beside the target, fsync, rename, fsync the directory. */
#ifndef OPRM_IO_FILEIO_H
#define OPRM_IO_FILEIO_H

#include <stddef.h>

#include "util/err.h"

/* Reads the whole file; returns a NUL-terminated buffer (caller frees) and its
 * length in *len, or NULL with err set. */
char *read_file(const char *path, size_t *len, OprmError *err);

/* Writes data to path atomically. Returns 0 or -1 with err set (disk full,
 * permission, ...); on failure the previous file at path is untouched and no
 * temp file is left behind. */
int write_file_atomic(const char *path, const void *data, size_t len, OprmError *err);

/* fsyncs a directory so a rename inside it is durable. */
int fsync_dir(const char *dir, OprmError *err);

/* mkdir -p. */
int make_dirs(const char *path, OprmError *err);

/* Joins dir and name with one '/'; caller frees. */
char *path_join(const char *dir, const char *name);

int file_exists(const char *path);

#endif
