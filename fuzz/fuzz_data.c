/* The data readers: JSONL or a JSON array of pair / labelled-response /
 * best-of-N records. The first byte picks the options (record kind, skip
 * invalid, labels required, whole-file load or indexed reads in reverse
 * order); the rest is the file. Invariants: an accepted file has as many
 * readable records as it reports, each with the responses its kind needs and
 * labels inside 1..9. */
#include "data/reader.h"
#include "fuzz_util.h"

static void data_fz_check_record(const DataRecord *r) {
    FUZZ_ASSERT(r->kind == REC_PAIR || r->kind == REC_POINT || r->kind == REC_BEST_OF_N);
    if (r->kind == REC_PAIR) FUZZ_ASSERT(r->n_responses == 2);
    if (r->kind == REC_POINT) FUZZ_ASSERT(r->n_responses == 1);
    if (r->kind == REC_BEST_OF_N) FUZZ_ASSERT(r->n_responses >= 2);
    FUZZ_ASSERT(r->line >= 1);
    for (size_t i = 0; i < r->n_responses; i++) {
        const DataResponse *d = &r->responses[i];
        FUZZ_ASSERT(d->text != NULL);
        (void)strlen(d->text);
        const QualityLabel *l = &d->label;
        if (l->kind == LABEL_NONE) continue;
        FUZZ_ASSERT(l->lo >= 1 && l->lo <= l->centre && l->centre <= l->hi && l->hi <= 9);
        char buf[32];
        FUZZ_ASSERT(label_describe(*l, buf, sizeof buf) != NULL);
    }
    for (size_t t = 0; t < r->prompt.n; t++) FUZZ_ASSERT(r->prompt.msgs[t].content != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0];
    DataOptions o;
    data_options_default(&o);
    int kinds[4] = {KIND_AUTO, REC_PAIR, REC_POINT, REC_BEST_OF_N};
    o.kind = kinds[mode & 3];
    o.skip_invalid = (mode >> 2) & 1;
    o.point_label_required = (mode >> 3) & 1;
    int whole = (mode >> 4) & 1;
    MemFile m;
    memfile_open(&m, data + 1, size - 1);
    OprmError err;
    DataReport rep;
    if (whole) {
        DataSet set;
        if (data_load(m.path, &o, &set, &rep, &err) == 0) {
            FUZZ_ASSERT(set.n == rep.records && set.n > 0);
            for (size_t i = 0; i < set.n; i++) data_fz_check_record(&set.recs[i]);
            dataset_free(&set);
        } else {
            FUZZ_ASSERT(err.msg[0] != '\0');
        }
    } else {
        DataFile *f = data_open(m.path, &o, &rep, &err);
        if (f) {
            size_t n = data_count(f);
            FUZZ_ASSERT(n == rep.records && n > 0);
            FUZZ_ASSERT(rep.by_kind[0] + rep.by_kind[1] + rep.by_kind[2] == n);
            for (size_t i = n; i-- > 0;) {
                DataRecord r;
                int rc = data_read(f, i, &r, &err);
                if (rc) fprintf(stderr, "record %zu of %zu unreadable after a good open: %s\n", i, n, err.msg);
                FUZZ_ASSERT(rc == 0);
                data_fz_check_record(&r);
                record_free(&r);
            }
            DataRecord r;
            FUZZ_ASSERT(data_read(f, n, &r, &err) != 0);
            FILE *null = fopen("/dev/null", "w");
            data_report_print(&rep, "fuzz.jsonl", null);
            fclose(null);
            data_close(f);
        } else {
            FUZZ_ASSERT(err.msg[0] != '\0');
        }
    }
    memfile_close(&m);
    return 0;
}
