#include "train/train_batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ordinal/metrics.h"
#include "ordinal/ordinal.h"
#include "train/rng.h"

void micro_batch_clear(MicroBatch *b) {
    for (int i = 0; i < b->n_items; i++) {
        free(b->items[i].id);
        free(b->items[i].w);
        free(b->items[i].labelled);
    }
    b->n_items = 0;
    b->ids.n = 0;
    b->nseq = 0;
    b->tokens = 0;
    b->truncated = 0;
    b->contradictions = 0;
}

void micro_batch_free(MicroBatch *b) {
    micro_batch_clear(b);
    free(b->items);
    free(b->lens);
    free(b->group);
    idvec_free(&b->ids);
    memset(b, 0, sizeof *b);
}

int batch_keeps_labels(const BatchSetup *s, int64_t index) {
    if (s->label_fraction >= 1.0) return 1;
    if (s->label_fraction <= 0.0) return 0;
    uint64_t x = s->seed ^ (0x9e3779b97f4a7c15ULL * ((uint64_t)index + 1));
    uint64_t h = splitmix64_next(&x);
    double u = (double)(h >> 11) * 0x1.0p-53;
    return u < s->label_fraction;
}

static OprmLabel to_rgft_label(QualityLabel q) {
    OprmLabel l = {OPRM_LABEL_NONE, 0};
    switch (q.kind) {
    case LABEL_BAD: l.kind = OPRM_LABEL_BAD; break;
    case LABEL_NORMAL: l.kind = OPRM_LABEL_NORMAL; break;
    case LABEL_GOOD: l.kind = OPRM_LABEL_GOOD; break;
    case LABEL_RATING: l.kind = OPRM_LABEL_RATING; l.rating = q.centre; break;
    default: break;
    }
    return l;
}

/* Spec §3: a pair whose labels contradict its preference is reported and
 * skipped (checked before --label-fraction drops any label). */
int batch_record_contradicts(const DataRecord *rec) {
    if (rec->kind == REC_POINT || rec->n_responses < 2) return 0;
    OprmLabel best = to_rgft_label(rec->responses[0].label);
    for (size_t j = 1; j < rec->n_responses; j++) {
        OprmLabel other = to_rgft_label(rec->responses[j].label);
        if (rgft_labels_contradict(&best, &other)) return 1;
    }
    return 0;
}

int micro_batch_add(MicroBatch *b, const BatchSetup *s, const DataRecord *rec, int64_t index,
                    const char *where, OprmError *err) {
    int n = (int)rec->n_responses;
    if (n < 1) return oprm_fail(err, "%s: record has no response", where);
    if (batch_record_contradicts(rec)) {
        b->contradictions++;
        return 1;
    }
    int keep = rec->kind == REC_POINT ? 1 : batch_keeps_labels(s, index);
    BatchItem item = {0};
    item.id = xstrdup(rec->id ? rec->id : where);
    item.kind = rec->kind;
    item.first_seq = b->nseq;
    item.n_seq = n;
    item.w = xmalloc((size_t)n * 9 * sizeof(double));
    item.labelled = xcalloc((size_t)n, 1);
    int64_t truncated = 0;
    ScoringPrompt p = {0};
    for (int j = 0; j < n; j++) {
        OprmLabel l = to_rgft_label(rec->responses[j].label);
        if (!keep || !s->rgft_enabled) l.kind = OPRM_LABEL_NONE;
        item.labelled[j] = l.kind != OPRM_LABEL_NONE;
        if (rgft_landscape(&l, &s->rgft, item.w + 9 * j, err) != 0 ||
            scoring_build(&s->scoring, &rec->prompt, rec->responses[j].text, &p, err) != 0) {
            scoring_prompt_free(&p);
            free(item.id);
            free(item.w);
            free(item.labelled);
            return oprm_prefix(err, "%s (response %d): ", where, j);
        }
        if (b->nseq == b->cap_seq) {
            b->cap_seq = b->cap_seq ? 2 * b->cap_seq : 16;
            b->lens = xrealloc(b->lens, (size_t)b->cap_seq * sizeof *b->lens);
            b->group = xrealloc(b->group, (size_t)b->cap_seq * sizeof *b->group);
        }
        b->group[b->nseq] = b->n_items;
        b->lens[b->nseq++] = (int32_t)p.ids.n;
        idvec_extend(&b->ids, p.ids.v, p.ids.n);
        b->tokens += (int64_t)p.ids.n;
        truncated += p.truncated ? 1 : 0;
    }
    scoring_prompt_free(&p);
    b->truncated += truncated;
    if (b->n_items == b->cap_items) {
        b->cap_items = b->cap_items ? 2 * b->cap_items : 8;
        b->items = xrealloc(b->items, (size_t)b->cap_items * sizeof *b->items);
    }
    b->items[b->n_items++] = item;
    return 0;
}

static int all_finite_f(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* The pairs of a record: (0, 1) for a pair, (0, j) for every other j of a
 * best-of-N set; a point record has none. */
static int item_pairs(const BatchItem *it) {
    return it->kind == REC_POINT ? 0 : it->n_seq - 1;
}

int batch_oprm_loss(const MicroBatch *b, const float *logits, double scale, float *dlogits, BatchLoss *out,
                    OprmError *err) {
    memset(out, 0, sizeof *out);
    out->bad_item = -1;
    if (dlogits) memset(dlogits, 0, (size_t)b->nseq * 9 * sizeof *dlogits);
    for (int i = 0; i < b->n_items; i++) {
        const BatchItem *it = &b->items[i];
        const float *z0 = logits + 9 * it->first_seq;
        if (!all_finite_f(z0, 9 * it->n_seq)) {
            out->bad_item = i;
            return 0;
        }
        double loss = 0;
        if (it->kind == REC_POINT) {
            double z[9], g[9];
            for (int k = 0; k < 9; k++) z[k] = z0[k];
            if (rgft_point_loss(z, it->w, &loss, g, err) != 0) return oprm_prefix(err, "record %s: ", it->id);
            if (dlogits)
                for (int k = 0; k < 9; k++) dlogits[9 * it->first_seq + k] = (float)(scale * g[k]);
        } else {
            int np = item_pairs(it);
            double zc[9], gc[9], gc_sum[9] = {0};
            for (int k = 0; k < 9; k++) zc[k] = z0[k];
            OrdinalDist dc;
            if (ordinal_dist_from_logits(zc, &dc, err) != 0) return oprm_prefix(err, "record %s: ", it->id);
            ScoreStats sc;
            ordinal_stats(&dc, &sc);
            for (int j = 1; j <= np; j++) {
                double zr[9], gr[9], l;
                for (int k = 0; k < 9; k++) zr[k] = z0[9 * j + k];
                const double *wc = it->labelled[0] ? it->w : NULL;
                const double *wr = it->labelled[j] ? it->w + 9 * j : NULL;
                if (ordinal_weighted_pair_loss(zc, wc, zr, wr, &l, gc, gr, err) != 0)
                    return oprm_prefix(err, "record %s: ", it->id);
                loss += l / np;
                for (int k = 0; k < 9; k++) gc_sum[k] += gc[k] / np;
                if (dlogits)
                    for (int k = 0; k < 9; k++) dlogits[9 * (it->first_seq + j) + k] = (float)(scale * gr[k] / np);
                OrdinalDist dr;
                if (ordinal_dist_from_logits(zr, &dr, err) != 0) return oprm_prefix(err, "record %s: ", it->id);
                ScoreStats sr;
                ordinal_stats(&dr, &sr);
                out->pairs++;
                out->pairs_correct += sc.mean > sr.mean;
            }
            if (dlogits)
                for (int k = 0; k < 9; k++) dlogits[9 * it->first_seq + k] = (float)(scale * gc_sum[k]);
        }
        if (!isfinite(loss)) {
            out->bad_item = i;
            return 0;
        }
        out->loss_sum += loss;
        out->n_items++;
    }
    return 0;
}

int batch_bt_loss(const MicroBatch *b, const float *h, const float *w, int hidden, double scale, float *dh,
                  float *dw, BatchLoss *out, OprmError *err) {
    memset(out, 0, sizeof *out);
    out->bad_item = -1;
    double *r = xmalloc((size_t)b->nseq * sizeof *r);
    double *dr = xcalloc((size_t)b->nseq, sizeof *dr);
    for (int s = 0; s < b->nseq; s++) {
        double acc = 0;
        for (int d = 0; d < hidden; d++) acc += (double)h[(size_t)s * hidden + d] * w[d];
        r[s] = acc;
    }
    int rc = 0;
    for (int i = 0; i < b->n_items && rc == 0; i++) {
        const BatchItem *it = &b->items[i];
        int np = item_pairs(it);
        if (np == 0) {
            rc = oprm_fail(err, "record %s: a labelled response alone cannot train a Bradley-Terry head", it->id);
            break;
        }
        double loss = 0;
        int bad = !isfinite(r[it->first_seq]);
        for (int j = 1; j <= np && !bad; j++) {
            double l, gc, gr;
            int s = it->first_seq + j;
            if (!isfinite(r[s])) {
                bad = 1;
                break;
            }
            if (bt_loss(r[it->first_seq], r[s], &l, &gc, &gr, err) != 0) {
                rc = oprm_prefix(err, "record %s: ", it->id);
                break;
            }
            loss += l / np;
            dr[it->first_seq] += scale * gc / np;
            dr[s] += scale * gr / np;
            out->pairs++;
            out->pairs_correct += r[it->first_seq] > r[s];
        }
        if (rc) break;
        if (bad || !isfinite(loss)) {
            out->bad_item = i;
            break;
        }
        out->loss_sum += loss;
        out->n_items++;
    }
    if (rc == 0 && out->bad_item < 0) {
        for (int s = 0; s < b->nseq; s++) {
            const float *hs = h + (size_t)s * hidden;
            if (dh)
                for (int d = 0; d < hidden; d++) dh[(size_t)s * hidden + d] = (float)(dr[s] * w[d]);
            if (dw)
                for (int d = 0; d < hidden; d++) dw[d] += (float)(dr[s] * hs[d]);
        }
    }
    free(r);
    free(dr);
    return rc;
}
