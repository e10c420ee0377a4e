#include "data/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    size_t offset, len, line;
} RecordPos;

struct DataFile {
    char *path;
    DataOptions opts;
    int fd;
    int is_array;
    const char *map; /* JSON array files: the read-only mapping */
    size_t map_len;
    RecordPos *pos;
    size_t n, cap;
};

static void add_pos(DataFile *f, size_t offset, size_t len, size_t line) {
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 1024;
        f->pos = xrealloc(f->pos, f->cap * sizeof *f->pos);
    }
    f->pos[f->n++] = (RecordPos){offset, len, line};
}

void data_close(DataFile *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->map_len);
    if (f->fd >= 0) close(f->fd);
    free(f->pos);
    free(f->path);
    free(f);
}

size_t data_count(const DataFile *f) {
    return f->n;
}

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* jansson says "near end of file" when the text it was given ends early; for a
 * JSONL line that is the end of the line, not of the file. Writes jansson's
 * message with that part reworded and what to do. */
static void malformed_line_message(const json_error_t *je, OprmError *out) {
    const char *eof = strstr(je->text, "near end of file");
    if (eof)
        oprm_fail(out, "malformed JSON: %.*sat the end of the line: the record is cut short (JSONL needs each "
                       "record complete on one line; a newline inside a string must be written \\n)",
                  (int)(eof - je->text), je->text);
    else
        oprm_fail(out, "malformed JSON at column %d: %s (fix the record, e.g. a missing comma or quote)", je->column,
                  je->text);
}

/* Validates one JSON text; returns 0 if it became a valid record (kept), 1 if it
 * was invalid and skipped, -1 on a fatal error (err set). */
static int check_record(DataFile *f, const char *text, size_t len, size_t line, DataReport *rep,
                        OprmError *err) {
    json_error_t je;
    json_t *v = json_loadb(text, len, 0, &je);
    DataRecord rec;
    OprmError why_msg;
    DataInvalid why;
    if (!v) {
        malformed_line_message(&je, &why_msg);
        why = DATA_MALFORMED;
    } else {
        why = record_from_json(v, &f->opts, &rec, &why_msg);
        json_decref(v);
    }
    if (why == DATA_OK) {
        rep->by_kind[rec.kind]++;
        for (size_t i = 0; i < rec.n_responses; i++)
            rep->labelled_responses += rec.responses[i].label.kind != LABEL_NONE;
        record_free(&rec);
        return 0;
    }
    OprmError full;
    oprm_fail(&full, "%s:%zu: %s", f->path, line, why_msg.msg);
    /* Spec §3: a pair whose labels contradict its preference, or whose two
     * responses are the same text, is well-formed but teaches nothing right:
     * it is always skipped and counted (every command reports the count),
     * never trained, evaluated or audited. Other invalid records stop the
     * load unless --skip-invalid. */
    int always_skip = why == DATA_CONTRADICTION || why == DATA_IDENTICAL;
    if (!f->opts.skip_invalid && !always_skip) return oprm_fail(err, "%s", full.msg);
    if (!rep->by_reason[why])
        snprintf(rep->first_error[why], sizeof rep->first_error[why], "%.255s", full.msg);
    rep->by_reason[why]++;
    rep->skipped++;
    return 1;
}

static int index_jsonl(DataFile *f, DataReport *rep, OprmError *err) {
    FILE *fp = fdopen(dup(f->fd), "rb");
    if (!fp) return oprm_fail(err, "%s: %s", f->path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, offset = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        size_t start = 0, len = (size_t)n;
        if (lineno == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) start = 3; /* UTF-8 BOM */
        size_t a = start;
        while (a < len && is_ws(line[a])) a++;
        if (a < len) {
            int r = check_record(f, line + start, len - start, lineno, rep, err);
            if (r < 0) {
                rc = -1;
                break;
            }
            if (r == 0) add_pos(f, offset + start, len - start, lineno);
        }
        offset += (size_t)n;
    }
    if (!rc && ferror(fp)) rc = oprm_fail(err, "%s: read error: %s", f->path, strerror(errno));
    free(line);
    fclose(fp);
    return rc;
}

static size_t count_newlines(const char *a, const char *b) {
    size_t n = 0;
    for (const char *p = a; p < b && (p = memchr(p, '\n', (size_t)(b - p))); p++) n++;
    return n;
}

/* The elements of a top-level array, each decoded once to find its end. */
static int index_array(DataFile *f, DataReport *rep, OprmError *err) {
    const char *s = f->map, *end = f->map + f->map_len, *p = s, *line_at = s;
    size_t line = 1;
    if (end - p >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    while (p < end && is_ws(*p)) p++;
    p++; /* '[' (checked by the caller) */
    for (size_t k = 0;; k++) {
        while (p < end && is_ws(*p)) p++;
        line += count_newlines(line_at, p);
        line_at = p;
        if (p < end && *p == ']' && k == 0) break;
        if (p >= end)
            return oprm_fail(err, "%s:%zu: malformed JSON array: missing ']' at the end of the file", f->path, line);
        json_error_t je;
        json_t *v = json_loadb(p, (size_t)(end - p), JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
        if (!v) {
            /* A malformed array cannot be resynchronised: --skip-invalid does not help. */
            const char *eof = strstr(je.text, "near end of file");
            if (eof)
                return oprm_fail(err, "%s:%zu: malformed JSON array: the file ends inside element %zu, which starts "
                                      "on line %zu (%.*s); complete that element and close the array with ']' "
                                      "(a malformed array cannot be skipped with --skip-invalid)",
                                 f->path, line, k + 1, line, (int)(eof > je.text ? eof - je.text - 1 : 0), je.text);
            return oprm_fail(err, "%s:%zu: malformed JSON in array element %zu (which starts on line %zu), column %d: %s; "
                                  "fix that element (a malformed array cannot be skipped with --skip-invalid)",
                             f->path, line + (je.line > 0 ? (size_t)je.line - 1 : 0), k + 1, line, je.column, je.text);
        }
        size_t used = (size_t)je.position;
        json_decref(v);
        int r = check_record(f, p, used, line, rep, err);
        if (r < 0) return -1;
        if (r == 0) add_pos(f, (size_t)(p - s), used, line);
        p += used;
        while (p < end && is_ws(*p)) p++;
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == ']') break;
        line += count_newlines(line_at, p);
        return oprm_fail(err, "%s:%zu: malformed JSON array: expected ',' or ']' after element %zu; add the missing "
                              "',' between elements (a malformed array cannot be skipped with --skip-invalid)",
                         f->path, line, k + 1);
    }
    return 0;
}

DataFile *data_open(const char *path, const DataOptions *o, DataReport *rep, OprmError *err) {
    DataReport local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    DataFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    f->opts = *o;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        oprm_fail(err, "%s: cannot open: %s", path, strerror(errno));
        data_close(f);
        return NULL;
    }
    /* the first non-blank byte decides: '[' = one JSON array, else JSONL */
    char head[4096];
    ssize_t got = pread(f->fd, head, sizeof head, 0);
    size_t i = got >= 3 && !memcmp(head, "\xEF\xBB\xBF", 3) ? 3 : 0;
    while (got > 0 && i < (size_t)got && is_ws(head[i])) i++;
    f->is_array = got > 0 && i < (size_t)got && head[i] == '[';
    int rc;
    if (f->is_array) {
        struct stat st;
        if (fstat(f->fd, &st)) {
            oprm_fail(err, "%s: %s", path, strerror(errno));
            data_close(f);
            return NULL;
        }
        f->map_len = (size_t)st.st_size;
        void *m = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, f->fd, 0);
        if (m == MAP_FAILED) {
            oprm_fail(err, "%s: cannot map: %s", path, strerror(errno));
            data_close(f);
            return NULL;
        }
        f->map = m;
        rc = index_array(f, rep, err);
    } else {
        rc = index_jsonl(f, rep, err);
    }
    if (!rc && f->n == 0) {
        if (rep->skipped) {
            int first = 1;
            while (first < DATA_N_REASONS - 1 && !rep->by_reason[first]) first++;
            rc = oprm_fail(err, "%s: no valid records (%zu invalid skipped; first: %s)", path,
                           rep->skipped, rep->first_error[first]);
        } else {
            rc = oprm_fail(err, "%s: no records", path);
        }
    }
    if (rc) {
        /* nothing is returned: no record counts, only what was skipped */
        rep->records = rep->labelled_responses = 0;
        memset(rep->by_kind, 0, sizeof rep->by_kind);
        data_close(f);
        return NULL;
    }
    rep->records = f->n;
    return f;
}

int data_read(DataFile *f, size_t i, DataRecord *rec, OprmError *err) {
    memset(rec, 0, sizeof *rec);
    if (i >= f->n) return oprm_fail(err, "%s: record %zu out of range (%zu records)", f->path, i, f->n);
    const RecordPos *p = &f->pos[i];
    char *own = NULL;
    const char *text;
    if (f->map) {
        text = f->map + p->offset;
    } else {
        own = xmalloc(p->len + 1);
        size_t done = 0;
        while (done < p->len) {
            ssize_t r = pread(f->fd, own + done, p->len - done, (off_t)(p->offset + done));
            if (r <= 0) {
                free(own);
                return oprm_fail(err, "%s:%zu: read error: %s", f->path, p->line,
                                 r < 0 ? strerror(errno) : "file shrank since it was indexed");
            }
            done += (size_t)r;
        }
        text = own;
    }
    json_error_t je;
    json_t *v = json_loadb(text, p->len, 0, &je);
    free(own);
    if (!v) return oprm_fail(err, "%s:%zu: malformed JSON (file changed?): %s", f->path, p->line, je.text);
    OprmError why;
    DataInvalid r = record_from_json(v, &f->opts, rec, &why);
    json_decref(v);
    if (r) return oprm_fail(err, "%s:%zu: %s", f->path, p->line, why.msg);
    rec->line = p->line;
    return 0;
}

int data_load(const char *path, const DataOptions *o, DataSet *out, DataReport *rep, OprmError *err) {
    memset(out, 0, sizeof *out);
    DataFile *f = data_open(path, o, rep, err);
    if (!f) return -1;
    out->recs = xcalloc(f->n, sizeof *out->recs);
    for (size_t i = 0; i < f->n; i++) {
        if (data_read(f, i, &out->recs[i], err)) {
            dataset_free(out);
            data_close(f);
            return -1;
        }
        out->n++;
    }
    data_close(f);
    return 0;
}

void dataset_free(DataSet *s) {
    for (size_t i = 0; i < s->n; i++) record_free(&s->recs[i]);
    free(s->recs);
    s->recs = NULL;
    s->n = 0;
}

void data_report_print(const DataReport *r, const char *path, FILE *f) {
    fprintf(f, "%s: %zu records (%zu pairs, %zu point-wise responses, %zu best-of-N sets; %zu "
               "responses carry a label)",
            path, r->records, r->by_kind[REC_PAIR], r->by_kind[REC_POINT], r->by_kind[REC_BEST_OF_N],
            r->labelled_responses);
    if (r->skipped) {
        fprintf(f, "; skipped %zu invalid:\n", r->skipped);
        for (int k = 1; k < DATA_N_REASONS; k++)
            if (r->by_reason[k])
                fprintf(f, "  %zu %s (first: %s)\n", r->by_reason[k], data_reason_name((DataInvalid)k),
                        r->first_error[k]);
    } else {
        fprintf(f, "\n");
    }
}
