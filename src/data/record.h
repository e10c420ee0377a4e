/* The record model the trainer, scorer and evaluator use, and its parsing from
 * one JSON object. A record is a prompt (a conversation) and one or more
 * responses, each with an optional quality label:
 *   pair        responses[0] = chosen, [1] = rejected
 *   point       responses[0] = a single labelled response (RgFT)
 *   best-of-N   responses[0] = best, [1..] = the others
 * Accepted JSON layouts are described in docs/data.md. */
#ifndef OPRM_DATA_RECORD_H
#define OPRM_DATA_RECORD_H

#include <stddef.h>

#include <jansson.h>

#include "tok/chat.h"
#include "util/err.h"

/* Quality labels of spec §3: bad {1,2,3} centre 2, normal {4,5,6} centre 5,
 * good {7,8,9} centre 8, or a rating r in 1..9 (region {r}, centre r). */
typedef enum { LABEL_NONE, LABEL_BAD, LABEL_NORMAL, LABEL_GOOD, LABEL_RATING } LabelKind;

typedef struct {
    LabelKind kind;
    int centre; /* 1..9; 0 when LABEL_NONE */
    int lo, hi; /* the region R (inclusive); 0 when LABEL_NONE */
} QualityLabel;

QualityLabel label_quality(LabelKind k); /* LABEL_BAD / NORMAL / GOOD */
QualityLabel label_rating(int r);         /* 1..9 */
/* "good", "normal", "bad", "rating 7", or "none". Writes into buf (>= 16 bytes). */
const char *label_describe(QualityLabel l, char *buf, size_t size);
/* Whether a pair's labels contradict its preference: the chosen response's
 * region lies entirely below the rejected one's. */
int label_contradicts(QualityLabel chosen, QualityLabel rejected);

typedef enum { REC_PAIR, REC_POINT, REC_BEST_OF_N } RecordKind;
const char *record_kind_name(RecordKind k); /* "pair", "labelled response", "best-of-N set" */

typedef struct {
    char *text;         /* the response, verbatim */
    QualityLabel label; /* LABEL_NONE when unlabelled */
} DataResponse;

typedef struct {
    RecordKind kind;
    char *id, *subset;   /* NULL when absent (numbers are kept as their decimal text) */
    Conversation prompt; /* the conversation so far; ends with the turn the responses answer */
    DataResponse *responses;
    size_t n_responses;
    size_t line;         /* 1-based line in the source file where the record starts */
} DataRecord;

void record_free(DataRecord *r);

/* Field names; the CLI overrides them with --prompt-key, --chosen-key, ... */
typedef struct {
    const char *prompt, *chosen, *rejected, *chosen_label, *rejected_label;
    const char *response, *label, *best, *others, *id, *subset;
} DataFields;

typedef enum { KIND_AUTO = -1 } DataKindAuto;

typedef struct {
    DataFields fields;
    int kind;               /* KIND_AUTO (from the fields present) or a RecordKind */
    int skip_invalid;       /* skip invalid records and count them instead of failing */
    int point_label_required; /* a point record without a label is invalid (training) */
    unsigned given;         /* which were set by a flag (data/flags.h: DATA_GIVEN_*); a resumed
                               run takes the others from the run */
} DataOptions;

/* Default field names (prompt, chosen, rejected, chosen_label, rejected_label,
 * response, label, best, others, id, subset), KIND_AUTO, fail on invalid
 * records, labels required on point records. */
void data_options_default(DataOptions *o);

/* Why a record is invalid (the report counts each). */
typedef enum {
    DATA_OK = 0,
    DATA_MALFORMED,     /* not JSON, or not an object */
    DATA_MISSING,       /* a required field is absent (or null) */
    DATA_EMPTY,         /* a required text or list is empty */
    DATA_WRONG_TYPE,    /* a field has the wrong JSON type or an unknown role */
    DATA_BAD_LABEL,     /* a label that is not good/normal/bad or a rating in 1..9 */
    DATA_CONTRADICTION, /* chosen labelled worse than rejected */
    DATA_IDENTICAL,     /* chosen and rejected are the same text */
    DATA_MISMATCH,      /* chosen and rejected conversations have different prompts */
    DATA_N_REASONS
} DataInvalid;

const char *data_reason_name(DataInvalid r); /* e.g. "missing field" */

/* Parses one JSON object into rec (zeroed first). On failure returns the reason
 * (rec left empty) and sets err to "field 'NAME': problem" (the caller adds
 * file and line). */
DataInvalid record_from_json(const json_t *obj, const DataOptions *o, DataRecord *rec,
                             OprmError *err);

#endif
