/* Scoring every response of a data file with a Scorer, record by record
 * (streaming: only a batch of records is in memory), with a progress bar.
 * Shared by `oprm score`, `eval`, `bon` and `audit`. */
#ifndef OPRM_EVAL_SCORE_DATA_H
#define OPRM_EVAL_SCORE_DATA_H

#include <jansson.h>

#include "data/reader.h"
#include "util/progress.h"
#include "eval/score_json.h"
#include "eval/scorer.h"
#include "ordinal/ordinal.h"

/* Called once per record in file order with its responses' results
 * (res[i] belongs to rec->responses[i]). Return 0, or -1 with err set to stop. */
typedef int (*ScoredRecordFn)(void *ctx, const DataRecord *rec, size_t index, const ScoreResult *res,
                              OprmError *err);

/* batch_responses: responses per scorer call (0 = 64); progress may be NULL.
 * Under mpirun (dist_size() > 1) the batches are shared out over the ranks
 * and rank 0 alone calls fn, for every record in file order; the other ranks
 * get SCORE_DATA_WORKER on success (their part is done, they write nothing).
 * Every rank must call it for the same files in the same order. */
#define SCORE_DATA_WORKER 1
int score_data_file(Scorer *s, DataFile *f, int batch_responses, Progress *progress, ScoredRecordFn fn,
                    void *ctx, OprmError *err);

/* The ScoreRequest of one response of a record (turns point into rec; the
 * caller provides room for rec->prompt.n turns). */
void score_request_of(const DataRecord *rec, size_t response, ScoreTurn *turns, ScoreRequest *out);

/* Rebuilds the ordinal distribution (p, log p, cdf) from a result's p. */
void dist_of_result(const ScoreResult *r, OrdinalDist *d);

/* "chosen"/"rejected", "response", "best"/"other". */
const char *response_side_name(RecordKind kind, size_t response);


#endif
