/* The experiments' raw scorer: the digit logits (OPRM) or the Bradley-Terry
 * reward of every response of a data file, as the training loop computes them
 * (the trainer's own micro-batches, scoring prompt, template and engine).
 * `oprm score` refuses Bradley-Terry models (they have no distribution), and
 * the BT calibration needs each pair's reward, so this tool reads both kinds.
 * The metrics are computed from its output by experiments/metrics.py.
 *
 * usage: exp_score MODEL_DIR DATA_FILE OUT_JSONL MAX_LEN [TEMPLATE_FILE|-]
 * Writes per record {"i", "id", "logits": [[9 floats] per response]} for an
 * OPRM model, or {"i", "id", "reward": [float per response]} when MODEL_DIR
 * holds bt_head.safetensors. Built by experiments/common.sh against
 * build/release/liboprm.a. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/reader.h"
#include "io/fileio.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "tok/chat.h"
#include "tok/prompt.h"
#include "tok/tokenizer.h"
#include "train/train_batch.h"
#include "train/trainer.h"

static int die(const OprmError *err) {
    fprintf(stderr, "exp_score: %s\n", err->msg);
    return 1;
}

static int flush(Model *m, MicroBatch *b, DataFile *f, const int32_t *digits, const float *bt_w, int hidden,
                 FILE *out, int64_t first_index, OprmError *err) {
    if (b->nseq == 0) return 0;
    SeqBatch sb = {.ids = b->ids.v, .lens = b->lens, .nseq = b->nseq};
    float *h = xmalloc((size_t)b->nseq * hidden * sizeof *h);
    float *logits = xmalloc((size_t)b->nseq * 9 * sizeof *logits);
    int rc = model_forward(m, &sb, 0, h, err);
    if (rc == 0 && !bt_w) model_head_rows_forward(m, h, b->nseq, digits, 9, logits);
    for (int it = 0; rc == 0 && it < b->n_items; it++) {
        const BatchItem *item = &b->items[it];
        json_t *o = json_object(), *arr = json_array();
        for (int j = 0; j < item->n_seq; j++) {
            int s = item->first_seq + j;
            if (bt_w) {
                double r = 0;
                for (int d = 0; d < hidden; d++) r += (double)h[(size_t)s * hidden + d] * bt_w[d];
                json_array_append_new(arr, json_real(r));
            } else {
                json_t *row = json_array();
                for (int k = 0; k < 9; k++) json_array_append_new(row, json_real(logits[s * 9 + k]));
                json_array_append_new(arr, row);
            }
        }
        json_object_set_new(o, "id", json_string(item->id));
        json_object_set_new(o, bt_w ? "reward" : "logits", arr);
        char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fprintf(out, "%s\n", line);
        free(line);
        json_decref(o);
    }
    (void)f;
    (void)first_index;
    free(h);
    free(logits);
    micro_batch_clear(b);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: exp_score MODEL_DIR DATA_FILE OUT_JSONL MAX_LEN [TEMPLATE_FILE|-]\n");
        return 2;
    }
    const char *model_dir = argv[1], *data_path = argv[2], *out_path = argv[3];
    int max_len = atoi(argv[4]);
    const char *tpl_path = argc == 6 && strcmp(argv[5], "-") != 0 ? argv[5] : NULL;
    OprmError err = {0};
    DataOptions dopt;
    data_options_default(&dopt);
    dopt.point_label_required = 0;
    DataFile *f = data_open(data_path, &dopt, NULL, &err);
    if (!f) return die(&err);
    Tokenizer *tok = tok_load(model_dir, &err);
    if (!tok) return die(&err);
    ChatFormat format;
    ScoringTemplate tpl;
    int32_t digits[9];
    if (chat_format_choose(tok, NULL, &format, &err)) return die(&err);
    if (tpl_path ? scoring_template_load(tpl_path, &tpl, &err) : (scoring_template_default(&tpl), 0))
        return die(&err);
    if (tok_digit_ids(tok, digits, &err)) return die(&err);
    model_set_threads(1);
    Model *m = model_load(model_dir, NULL, &err);
    if (!m) return die(&err);
    int hidden = model_config(m)->hidden;
    float *bt_w = NULL;
    char *bt_path = path_join(model_dir, BT_HEAD_FILE);
    if (file_exists(bt_path)) {
        StFile *st = st_open(bt_path, &err);
        if (!st) return die(&err);
        const StTensor *w = st_find(st, BT_HEAD_TENSOR);
        if (!w || w->numel != (size_t)hidden) {
            fprintf(stderr, "exp_score: %s: no %s of size %d\n", bt_path, BT_HEAD_TENSOR, hidden);
            return 1;
        }
        bt_w = xmalloc((size_t)hidden * sizeof *bt_w);
        if (st_to_f32(st, w, bt_w, &err)) return die(&err);
        st_close(st);
    }
    free(bt_path);
    BatchSetup setup = {0};
    setup.scoring = (ScoringConfig){.tok = tok, .format = format, .tpl = &tpl, .max_len = (size_t)max_len};
    setup.rgft_enabled = 0;
    setup.label_fraction = 0;
    FILE *out = fopen(out_path, "w");
    if (!out) {
        fprintf(stderr, "exp_score: cannot write %s\n", out_path);
        return 1;
    }
    MicroBatch b = {0};
    size_t n = data_count(f);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        DataRecord rec;
        if (data_read(f, i, &rec, &err)) {
            rc = -1;
            break;
        }
        char where[64];
        snprintf(where, sizeof where, "record-%zu", i);
        if (micro_batch_add(&b, &setup, &rec, (int64_t)i, where, &err) < 0) rc = -1;
        record_free(&rec);
        if (rc == 0 && (b.nseq >= 64 || i + 1 == n)) rc = flush(m, &b, f, digits, bt_w, hidden, out, 0, &err);
    }
    micro_batch_free(&b);
    fclose(out);
    free(bt_w);
    model_free(m);
    scoring_template_free(&tpl);
    tok_free(tok);
    data_close(f);
    if (rc) return die(&err);
    return 0;
}
