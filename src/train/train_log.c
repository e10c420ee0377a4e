#include "train/train_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"

int train_log_open(TrainLog *log, const char *output_dir, const char *name, int64_t keep_upto_step,
                   OprmError *err) {
    memset(log, 0, sizeof *log);
    log->path = path_join(output_dir, name);
    if (keep_upto_step >= 0 && file_exists(log->path)) {
        size_t len;
        OprmError ignored;
        char *text = read_file(log->path, &len, &ignored);
        if (text) {
            /* Rewrite keeping the lines up to the resumed step. */
            char *kept = xmalloc(len + 1);
            size_t n = 0;
            for (char *line = text; *line;) {
                char *end = strchr(line, '\n');
                size_t l = end ? (size_t)(end - line) : strlen(line);
                json_t *o = json_loadb(line, l, 0, NULL);
                json_t *st = o ? json_object_get(o, "step") : NULL;
                if (o && json_is_integer(st) && json_integer_value(st) <= keep_upto_step) {
                    memcpy(kept + n, line, l);
                    n += l;
                    kept[n++] = '\n';
                }
                json_decref(o);
                line += l + (end ? 1 : 0);
            }
            int rc = write_file_atomic(log->path, kept, n, err);
            free(kept);
            free(text);
            if (rc) return -1;
        }
    }
    log->f = fopen(log->path, keep_upto_step >= 0 ? "a" : "w");
    if (!log->f) return oprm_fail(err, "%s: cannot open the training log: %s", log->path, strerror(errno));
    return 0;
}

int train_log_write(TrainLog *log, json_t *obj, OprmError *err) {
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(obj);
    if (!log->f) {
        free(text);
        return 0;
    }
    int ok = text && fputs(text, log->f) >= 0 && fputc('\n', log->f) != EOF && fflush(log->f) == 0;
    free(text);
    if (!ok) return oprm_fail(err, "%s: cannot write the training log: %s", log->path, strerror(errno));
    return 0;
}

void train_log_close(TrainLog *log) {
    if (log->f) fclose(log->f);
    free(log->path);
    memset(log, 0, sizeof *log);
}
