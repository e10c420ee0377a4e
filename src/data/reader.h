/* Reading data files: JSONL (one object per line) or one JSON array of
 * objects. data_open makes one pass that parses and validates every record and
 * keeps only its byte offset and line (memory O(records), never the file), so a
 * multi-GB file can be read record by record in any (seeded, shuffled) order.
 * By default any invalid record fails the open with "FILE:LINE: field 'F': ..."
 * before a single record is returned (training never starts); with
 * skip_invalid, invalid records are left out and counted by reason. Pairs
 * whose labels contradict the preference and pairs with identical chosen and
 * rejected text are always left out and counted (spec §3), with or without
 * skip_invalid: by_reason[DATA_CONTRADICTION] / [DATA_IDENTICAL]. */
#ifndef OPRM_DATA_READER_H
#define OPRM_DATA_READER_H

#include <stdio.h>

#include "data/record.h"

typedef struct {
    size_t records;                     /* valid records indexed */
    size_t by_kind[3];                  /* per RecordKind */
    size_t labelled_responses;          /* responses that carry a label */
    size_t skipped;                     /* invalid records left out (skip_invalid) */
    size_t by_reason[DATA_N_REASONS];   /* skipped per reason */
    char first_error[DATA_N_REASONS][256]; /* the first message of each reason */
} DataReport;

/* Prints "N records (P pairs, ...); skipped K: R1 x (first: msg) ..." lines. */
void data_report_print(const DataReport *r, const char *path, FILE *f);

typedef struct DataFile DataFile;

/* rep may be NULL. Fails on an unreadable file, a file with no records, a
 * malformed JSON array, or (without skip_invalid) any invalid record. */
DataFile *data_open(const char *path, const DataOptions *o, DataReport *rep, OprmError *err);
size_t data_count(const DataFile *f);
/* Reads valid record i (0-based, in file order) into rec (caller record_free()s). */
int data_read(DataFile *f, size_t i, DataRecord *rec, OprmError *err);
void data_close(DataFile *f);

/* Whole-file convenience for small files: every valid record in memory. */
typedef struct {
    DataRecord *recs;
    size_t n;
} DataSet;

int data_load(const char *path, const DataOptions *o, DataSet *out, DataReport *rep, OprmError *err);
void dataset_free(DataSet *s);

#endif
