#include "eval/score_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

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

/* Reads the batch that starts at record i (the same greedy cut as one
 * process makes, so every batch is scored exactly as it would be alone).
 * On an error, *n counts the records read before it (the caller frees them). */
static int read_batch(DataFile *f, size_t i, size_t total, int batch_responses, DataRecord *recs, size_t *n,
                      OprmError *err) {
    size_t responses = 0;
    *n = 0;
    while (i + *n < total && *n < (size_t)batch_responses && responses < (size_t)batch_responses) {
        if (data_read(f, i + *n, &recs[*n], err) != 0) return -1;
        responses += recs[*n].n_responses;
        (*n)++;
    }
    return 0;
}

/* Scores the responses of records [first, first+n), read into recs, into
 * *res_out (*n_res results, in record order; the caller frees it). A scorer
 * error names the item; the message then says which record and line it was. */
static int score_only(Scorer *s, DataRecord *recs, size_t n, size_t first, ScoreResult **res_out, size_t *n_res,
                      OprmError *err) {
    size_t n_items = 0, n_turns = 0;
    for (size_t r = 0; r < n; r++) {
        n_items += recs[r].n_responses;
        n_turns += recs[r].n_responses * recs[r].prompt.n;
    }
    ScoreRequest *items = xcalloc(n_items ? n_items : 1, sizeof *items);
    ScoreTurn *turns = xcalloc(n_turns ? n_turns : 1, sizeof *turns);
    ScoreResult *res = xcalloc(n_items ? n_items : 1, sizeof *res);
    size_t it = 0, tt = 0;
    for (size_t r = 0; r < n; r++)
        for (size_t k = 0; k < recs[r].n_responses; k++) {
            score_request_of(&recs[r], k, turns + tt, &items[it++]);
            tt += recs[r].prompt.n;
        }
    int rc = n_items ? scorer_score(s, items, (int)n_items, res, err) : 0;
    if (rc != 0) {
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
    free(turns);
    free(items);
    *res_out = res;
    *n_res = n_items;
    return rc;
}

/* One batch scored in this process, then fn for each of its records. */
static int score_batch(Scorer *s, DataRecord *recs, size_t n, size_t first, ScoredRecordFn fn, void *ctx,
                       OprmError *err) {
    ScoreResult *res = NULL;
    size_t n_res = 0;
    int rc = score_only(s, recs, n, first, &res, &n_res, err);
    for (size_t r = 0, at = 0; rc == 0 && r < n; at += recs[r].n_responses, r++)
        rc = fn(ctx, &recs[r], first + r, res + at, err);
    free(res);
    return rc;
}

/* Data parallel (mpirun): rounds of K batches, batch j of a round scored by
 * rank j; rank 0 gathers the results and calls fn for every record in file
 * order, so the output is that of one process. Every rank parses every
 * record (cheap next to scoring) to cut the batches as one process does. */
static int score_data_file_dist(Scorer *s, DataFile *f, int batch_responses, Progress *progress,
                                ScoredRecordFn fn, void *ctx, OprmError *err) {
    const int K = dist_size(), me = dist_rank();
    size_t total = data_count(f);
    DataRecord *recs = xcalloc((size_t)K * (size_t)batch_responses, sizeof *recs);
    size_t *nrec = xcalloc((size_t)K, sizeof *nrec), *first = xcalloc((size_t)K, sizeof *first);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < total;) {
        int nb = 0;
        for (; nb < K && i < total && rc == 0; nb++) {
            first[nb] = i;
            rc = read_batch(f, i, total, batch_responses, recs + (size_t)nb * batch_responses, &nrec[nb], err);
            i += nrec[nb];
        }
        if (dist_agree(rc, err)) {
            rc = -1;
        } else {
            ScoreResult *res = NULL;
            size_t n_res = 0;
            if (me < nb)
                rc = score_only(s, recs + (size_t)me * batch_responses, nrec[me], first[me], &res, &n_res, err);
            rc = dist_agree(rc, err);
            char *all = NULL;
            size_t all_len = 0;
            if (rc == 0) dist_gather_bytes(res, n_res * sizeof *res, &all, &all_len);
            if (rc == 0 && me == 0) {
                const ScoreResult *r = (const ScoreResult *)all;
                for (int b = 0; b < nb && rc == 0; b++)
                    for (size_t k = 0; k < nrec[b] && rc == 0; k++) {
                        DataRecord *rec = &recs[(size_t)b * batch_responses + k];
                        rc = fn(ctx, rec, first[b] + k, r, err);
                        r += rec->n_responses;
                    }
            }
            free(all);
            free(res);
            if (dist_agree(rc, err)) rc = -1;
        }
        for (int b = 0; b < nb; b++)
            for (size_t k = 0; k < nrec[b]; k++) record_free(&recs[(size_t)b * batch_responses + k]);
        if (progress) progress_update(progress, i);
    }
    free(recs);
    free(nrec);
    free(first);
    return rc ? -1 : me == 0 ? 0 : SCORE_DATA_WORKER;
}

int score_data_file(Scorer *s, DataFile *f, int batch_responses, Progress *progress, ScoredRecordFn fn,
                    void *ctx, OprmError *err) {
    if (batch_responses <= 0) batch_responses = 64;
    if (dist_size() > 1) return score_data_file_dist(s, f, batch_responses, progress, fn, ctx, err);
    size_t total = data_count(f);
    DataRecord *recs = xcalloc((size_t)batch_responses, sizeof *recs);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < total;) {
        size_t n = 0;
        rc = read_batch(f, i, total, batch_responses, recs, &n, err);
        if (rc == 0) rc = score_batch(s, recs, n, i, fn, ctx, err);
        for (size_t r = 0; r < n; r++) record_free(&recs[r]);
        i += n;
        if (progress) progress_update(progress, i);
    }
    free(recs);
    return rc;
}

