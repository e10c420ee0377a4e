#include "eval/score_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void score_request_of(const DataRecord *rec, size_t response, ScoreTurn *turns, ScoreRequest *out) {
    for (size_t t = 0; t < rec->prompt.n; t++) {
        turns[t].role = chat_role_name(rec->prompt.msgs[t].role);
        turns[t].content = rec->prompt.msgs[t].content;
    }
    out->turns = turns;
    out->n_turns = (int)rec->prompt.n;
    out->response = rec->responses[response].text;
}

void dist_of_result(const ScoreResult *r, OrdinalDist *d) {
    double acc = 0;
    for (int k = 0; k < OPRM_LEVELS; k++) {
        d->p[k] = r->p[k];
        d->logp[k] = r->p[k] > 0 ? log(r->p[k]) : -1e300;
        acc += r->p[k];
        d->cdf[k] = acc;
    }
}

const char *response_side_name(RecordKind kind, size_t response) {
    switch (kind) {
    case REC_PAIR: return response == 0 ? "chosen" : "rejected";
    case REC_POINT: return "response";
    default: return response == 0 ? "best" : "other";
    }
}

/* One batch: records [first, first+n) already read into recs. */
static int score_batch(Scorer *s, DataRecord *recs, size_t n, size_t first, ScoredRecordFn fn, void *ctx,
                       OprmError *err) {
    size_t n_items = 0, n_turns = 0;
    for (size_t r = 0; r < n; r++) {
        n_items += recs[r].n_responses;
        n_turns += recs[r].n_responses * recs[r].prompt.n;
    }
    ScoreRequest *items = xcalloc(n_items, sizeof *items);
    ScoreTurn *turns = xcalloc(n_turns ? n_turns : 1, sizeof *turns);
    ScoreResult *res = xcalloc(n_items, sizeof *res);
    size_t it = 0, tt = 0;
    for (size_t r = 0; r < n; r++)
        for (size_t k = 0; k < recs[r].n_responses; k++) {
            score_request_of(&recs[r], k, turns + tt, &items[it++]);
            tt += recs[r].prompt.n;
        }
    int rc = scorer_score(s, items, (int)n_items, res, err);
    if (rc != 0) {
        /* The scorer names the item; say which record and line it was. */
        int bad = 0;
        if (sscanf(err->msg, "item %d:", &bad) == 1 && bad >= 0) {
            size_t acc = 0;
            for (size_t r = 0; r < n; r++) {
                if ((size_t)bad < acc + recs[r].n_responses) {
                    oprm_prefix(err, "line %zu (record %zu, %s): ", recs[r].line, first + r,
                                response_side_name(recs[r].kind, (size_t)bad - acc));
                    break;
                }
                acc += recs[r].n_responses;
            }
        }
    }
    for (size_t r = 0, at = 0; rc == 0 && r < n; at += recs[r].n_responses, r++)
        rc = fn(ctx, &recs[r], first + r, res + at, err);
    free(res);
    free(turns);
    free(items);
    return rc;
}

int score_data_file(Scorer *s, DataFile *f, int batch_responses, Progress *progress, ScoredRecordFn fn,
                    void *ctx, OprmError *err) {
    if (batch_responses <= 0) batch_responses = 64;
    size_t total = data_count(f);
    DataRecord *recs = xcalloc((size_t)batch_responses, sizeof *recs);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < total;) {
        size_t n = 0, responses = 0;
        while (i + n < total && n < (size_t)batch_responses && responses < (size_t)batch_responses) {
            if (data_read(f, i + n, &recs[n], err) != 0) {
                rc = -1;
                break;
            }
            responses += recs[n].n_responses;
            n++;
        }
        if (rc == 0) rc = score_batch(s, recs, n, i, fn, ctx, err);
        for (size_t r = 0; r < n; r++) record_free(&recs[r]);
        i += n;
        if (progress) progress_update(progress, i);
    }
    free(recs);
    return rc;
}

