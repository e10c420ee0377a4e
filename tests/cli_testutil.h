/* Shared by the tests that run the oprm binary and read what it wrote: the
 * binary (OPRM_BIN), a file's text, running `PREFIX oprm ARGS` with stdout
 * and stderr captured, JSONL output, numbers of a JSON object, and the port
 * `oprm serve --port 0` prints. */
#ifndef OPRM_CLI_TESTUTIL_H
#define OPRM_CLI_TESTUTIL_H

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "util/vec.h"

/* The binary under test: OPRM_BIN, else the sanitizer build. */
static inline const char *cli_bin(void) {
    const char *b = getenv("OPRM_BIN");
    return b ? b : "build/asan/oprm";
}

/* The text of a file; "" (allocated) when it cannot be read. */
static inline char *slurp_text(const char *path) {
    OprmError err = {{0}};
    size_t n;
    char *s = read_file(path, &n, &err);
    return s ? s : xstrdup("");
}

/* Runs `PREFIX oprm ARGS` in sh, stdout and stderr into DIR/stdout.txt and
 * DIR/stderr.txt; *out and *err_text (when not NULL) get their text. Returns
 * the exit code (-1 when it did not exit). */
static inline int cli_run_in(const char *dir, const char *prefix, const char *args, char **out, char **err_text) {
    char *o = path_join(dir, "stdout.txt"), *e = path_join(dir, "stderr.txt");
    StrBuf cmd = {0};
    sb_printf(&cmd, "%s%s%s %s >%s 2>%s", prefix, prefix[0] ? " " : "", cli_bin(), args, o, e);
    int st = system(cmd.s);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (out) *out = slurp_text(o);
    if (err_text) *err_text = slurp_text(e);
    sb_free(&cmd);
    free(o);
    free(e);
    return rc;
}

/* Every line of a JSONL file, as an array (a bad line is reported and left out). */
static inline json_t *load_jsonl(const char *path) {
    json_t *arr = json_array();
    char *text = slurp_text(path);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (o) json_array_append_new(arr, o);
        else fprintf(stderr, "bad JSON line in %s: %s\n", path, jerr.text);
    }
    free(text);
    return arr;
}

/* o[key] as a number; NaN when absent or not a number. */
static inline double json_num(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return v && json_is_number(v) ? json_number_value(v) : NAN;
}

/* Reads the "listening on http://127.0.0.1:PORT" line of `oprm serve` from fd
 * (bounded wait); -1 when it does not come. */
static inline int read_port(int fd) {
    char buf[512];
    size_t n = 0;
    for (int i = 0; i < 600 && n < sizeof buf - 1; i++) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r > 0) {
            n += (size_t)r;
            buf[n] = 0;
            const char *p = strstr(buf, "listening on http://127.0.0.1:");
            if (p && strchr(p, '\n')) return atoi(p + strlen("listening on http://127.0.0.1:"));
        } else if (r == 0) {
            return -1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return -1;
}

/* Starts `oprm serve ARGS...` (args NULL-ended, at most 30) with its stdout
 * on a pipe: *port gets the port it prints (-1 when it does not), *out_fd the
 * pipe's read end (kept open while it runs; the caller closes it). Returns
 * the pid (-1 when fork failed). */
static inline pid_t serve_spawn(const char *const *args, int *port, int *out_fd) {
    const char *argv[34] = {cli_bin(), "serve"};
    int n = 2;
    for (; args[n - 2] && n < 32; n++) argv[n] = args[n - 2];
    argv[n] = NULL;
    int out[2];
    *port = -1;
    *out_fd = -1;
    if (pipe(out)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    *out_fd = out[0];
    if (pid > 0) *port = read_port(out[0]);
    return pid;
}

#endif
