/* Micro-batches of the training loop: records turned into scoring-prompt
 * token sequences packed back to back (no padding), with each record's RgFT
 * landscapes, and the per-record losses and logit gradients computed from
 * the digit logits (OPRM / RgFT) or from the hidden states (Bradley-Terry). */
#ifndef OPRM_TRAIN_TRAIN_BATCH_H
#define OPRM_TRAIN_TRAIN_BATCH_H

#include <stdint.h>

#include "data/record.h"
#include "ordinal/rgft.h"
#include "tok/prompt.h"
#include "util/err.h"
#include "util/vec.h"

typedef struct {
    ScoringConfig scoring;   /* tokenizer, chat format, template, max_len */
    int rgft_enabled;        /* labels weight the loss */
    RgftConfig rgft;
    double label_fraction;   /* keep the labels of this (seeded) fraction of pairs */
    uint64_t seed;
} BatchSetup;

typedef struct {
    char *id;          /* the record's id, or "FILE:LINE" */
    RecordKind kind;
    int first_seq, n_seq;
    double *w;         /* n_seq x 9 landscapes */
    unsigned char *labelled; /* n_seq flags: w applies */
} BatchItem;

typedef struct {
    BatchItem *items;
    int n_items, cap_items;
    IdVec ids;         /* every sequence's tokens, back to back */
    int32_t *lens;
    int32_t *group;    /* per sequence: its item (a pair / best-of-N set shares its prompt prefix) */
    int nseq, cap_seq;
    int64_t tokens;
    int64_t truncated;       /* scoring prompts cut to max_len in this batch */
    int64_t contradictions;  /* pairs skipped */
} MicroBatch;

void micro_batch_clear(MicroBatch *b);
void micro_batch_free(MicroBatch *b);

/* Whether record index's labels are kept under --label-fraction (a seeded
 * hash of the index: the same records keep their labels in every epoch and
 * after a resume, and no draw is taken from the run's RNG). */
int batch_keeps_labels(const BatchSetup *s, int64_t index);

/* 1 if the record would be skipped: its labels contradict its preference
 * (what micro_batch_add returns 1 for, without tokenizing; data-parallel
 * ranks use it on the records other ranks own). */
int batch_record_contradicts(const DataRecord *rec);

/* Appends a record. Returns 0 (added), 1 (skipped: its labels contradict the
 * preference; counted in b->contradictions), -1 on error. where = "FILE:LINE". */
int micro_batch_add(MicroBatch *b, const BatchSetup *s, const DataRecord *rec, int64_t index,
                    const char *where, OprmError *err);

typedef struct {
    double loss_sum;   /* sum of per-record losses */
    int n_items;
    int pairs, pairs_correct; /* pair accuracy: mu_c > mu_r (BT: r_c > r_r) */
    int bad_item;      /* first record with a non-finite loss or logits, -1 if none */
} BatchLoss;

/* OPRM / RgFT: per-record losses from the digit logits [nseq x 9]; if
 * dlogits is non-NULL it receives scale * dL/dz. */
int batch_oprm_loss(const MicroBatch *b, const float *logits, double scale, float *dlogits, BatchLoss *out,
                    OprmError *err);
/* Bradley-Terry: r_s = h_s . w; dh (if non-NULL) receives scale * dL/dr_s * w
 * (assigned, not added) and dw accumulates scale * dL/dr_s * h_s. */
int batch_bt_loss(const MicroBatch *b, const float *h, const float *w, int hidden, double scale, float *dh,
                  float *dw, BatchLoss *out, OprmError *err);

#endif
