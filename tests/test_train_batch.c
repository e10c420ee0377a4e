/* The per-record losses of a training micro-batch: pair, labelled pair,
 * point and best-of-N records against the ordinal functions and against
 * central finite differences of the batch loss; the Bradley-Terry head
 * likewise; the label-fraction hash keeps about f of the labels, stably. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ordinal/metrics.h"
#include "ordinal/ordinal.h"
#include "ordinal/rgft.h"
#include "train/train_batch.h"
#include "test.h"

/* A hand-built batch: pair (seqs 0,1, chosen labelled good), point (seq 2,
 * labelled bad), best-of-3 (seqs 3,4,5, unlabelled). */
static void make_batch(MicroBatch *b) {
    memset(b, 0, sizeof *b);
    static const RecordKind kinds[3] = {REC_PAIR, REC_POINT, REC_BEST_OF_N};
    static const int nseq[3] = {2, 1, 3};
    b->items = calloc(3, sizeof *b->items);
    b->n_items = b->cap_items = 3;
    RgftConfig cfg = rgft_default_config();
    OprmError err;
    int first = 0;
    for (int i = 0; i < 3; i++) {
        BatchItem *it = &b->items[i];
        it->id = xstrdup(i == 0 ? "pair" : i == 1 ? "point" : "bon");
        it->kind = kinds[i];
        it->first_seq = first;
        it->n_seq = nseq[i];
        it->w = malloc((size_t)nseq[i] * 9 * sizeof(double));
        it->labelled = calloc((size_t)nseq[i], 1);
        for (int j = 0; j < nseq[i]; j++) {
            OprmLabel l = {OPRM_LABEL_NONE, 0};
            if (i == 0 && j == 0) l.kind = OPRM_LABEL_GOOD;
            if (i == 1) l.kind = OPRM_LABEL_BAD;
            it->labelled[j] = l.kind != OPRM_LABEL_NONE;
            CHECK(rgft_landscape(&l, &cfg, it->w + 9 * j, &err) == 0);
        }
        first += nseq[i];
    }
    b->nseq = first;
}

static double batch_loss_at(const MicroBatch *b, const float *z) {
    BatchLoss bl;
    OprmError err;
    CHECK(batch_oprm_loss(b, z, 1.0, NULL, &bl, &err) == 0);
    return bl.loss_sum;
}

static void test_oprm_losses(void) {
    MicroBatch b;
    make_batch(&b);
    float z[6 * 9];
    unsigned s = 12345;
    for (int i = 0; i < 6 * 9; i++) {
        s = s * 1103515245u + 12345u;
        z[i] = (float)((int)(s >> 16 & 0x7fff) - 16384) / 8192.0f;
    }
    BatchLoss bl;
    OprmError err;
    float dz[6 * 9];
    CHECK(batch_oprm_loss(&b, z, 0.5, dz, &bl, &err) == 0);
    CHECK(bl.n_items == 3 && bl.pairs == 3 && bl.bad_item == -1);
    /* Independent: each record's loss from the ordinal / RgFT functions. */
    double zd[6][9];
    for (int s2 = 0; s2 < 6; s2++)
        for (int k = 0; k < 9; k++) zd[s2][k] = z[9 * s2 + k];
    double lp, lpt, l1, l2;
    CHECK(rgft_pair_loss(zd[0], b.items[0].w, zd[1], b.items[0].w + 9, &lp, NULL, NULL, &err) == 0);
    CHECK(rgft_point_loss(zd[2], b.items[1].w, &lpt, NULL, &err) == 0);
    CHECK(ordinal_pair_loss(zd[3], zd[4], &l1, NULL, NULL, &err) == 0);
    CHECK(ordinal_pair_loss(zd[3], zd[5], &l2, NULL, NULL, &err) == 0);
    CHECK_NEAR(bl.loss_sum, lp + lpt + 0.5 * (l1 + l2), 1e-12, 1e-12);
    /* Gradients: 0.5 x central differences of the summed loss (in float z). */
    double max_err = 0;
    for (int i = 0; i < 6 * 9; i++) {
        float zp[6 * 9], zm[6 * 9];
        memcpy(zp, z, sizeof z);
        memcpy(zm, z, sizeof z);
        const float h = 1e-2f;
        zp[i] += h;
        zm[i] -= h;
        double fd = (batch_loss_at(&b, zp) - batch_loss_at(&b, zm)) / (double)(zp[i] - zm[i]);
        double e = fabs(dz[i] - 0.5 * fd);
        if (e > max_err) max_err = e;
    }
    CHECK(max_err < 2e-4);
    /* Accuracy: pair counted by mu_c > mu_r on each of the three pairs. */
    int correct = 0;
    int pairs[3][2] = {{0, 1}, {3, 4}, {3, 5}};
    for (int p = 0; p < 3; p++) {
        OrdinalDist dc, dr;
        ScoreStats sc, sr;
        ordinal_dist_from_logits(zd[pairs[p][0]], &dc, &err);
        ordinal_dist_from_logits(zd[pairs[p][1]], &dr, &err);
        ordinal_stats(&dc, &sc);
        ordinal_stats(&dr, &sr);
        correct += sc.mean > sr.mean;
    }
    CHECK(bl.pairs_correct == correct);
    /* A NaN logit marks its record, and nothing is summed after it. */
    z[9 * 2 + 4] = NAN;
    CHECK(batch_oprm_loss(&b, z, 1.0, NULL, &bl, &err) == 0);
    CHECK(bl.bad_item == 1);
    micro_batch_free(&b);
}

static void test_bt_losses(void) {
    MicroBatch b;
    make_batch(&b);
    /* Drop the point record: BT trains on pairs only. */
    free(b.items[1].id);
    free(b.items[1].w);
    free(b.items[1].labelled);
    b.items[1] = b.items[2];
    b.n_items = 2;
    enum { H = 5 };
    float h[6 * H], w[H] = {0.3f, -0.2f, 0.5f, 0.1f, -0.4f};
    for (int i = 0; i < 6 * H; i++) h[i] = (float)sin(0.7 * i + 0.3);
    float dh[6 * H], dw[H] = {0};
    BatchLoss bl;
    OprmError err;
    CHECK(batch_bt_loss(&b, h, w, H, 1.0, dh, dw, &bl, &err) == 0);
    double r[6];
    for (int s = 0; s < 6; s++) {
        r[s] = 0;
        for (int d = 0; d < H; d++) r[s] += (double)h[s * H + d] * w[d];
    }
    double l01 = log1p(exp(-(r[0] - r[1]))), l34 = log1p(exp(-(r[3] - r[4]))), l35 = log1p(exp(-(r[3] - r[5])));
    CHECK_NEAR(bl.loss_sum, l01 + 0.5 * (l34 + l35), 1e-12, 1e-12);
    CHECK(bl.pairs == 3 && bl.pairs_correct == (r[0] > r[1]) + (r[3] > r[4]) + (r[3] > r[5]));
    /* dL/dw by central differences. */
    for (int d = 0; d < H; d++) {
        float wp[H], wm[H], dummy[H] = {0};
        memcpy(wp, w, sizeof w);
        memcpy(wm, w, sizeof w);
        wp[d] += 1e-3f;
        wm[d] -= 1e-3f;
        BatchLoss a, c;
        batch_bt_loss(&b, h, wp, H, 1.0, NULL, dummy, &a, &err);
        batch_bt_loss(&b, h, wm, H, 1.0, NULL, dummy, &c, &err);
        CHECK_NEAR(dw[d], (a.loss_sum - c.loss_sum) / (double)(wp[d] - wm[d]), 1e-4, 0);
    }
    /* dL/dh of sequence 3 (the best of the set) by central differences. */
    for (int d = 0; d < H; d++) {
        float hp[6 * H], hm[6 * H], dummy[H] = {0};
        memcpy(hp, h, sizeof h);
        memcpy(hm, h, sizeof h);
        hp[3 * H + d] += 1e-3f;
        hm[3 * H + d] -= 1e-3f;
        BatchLoss a, c;
        batch_bt_loss(&b, hp, w, H, 1.0, NULL, dummy, &a, &err);
        batch_bt_loss(&b, hm, w, H, 1.0, NULL, dummy, &c, &err);
        CHECK_NEAR(dh[3 * H + d], (a.loss_sum - c.loss_sum) / (double)(hp[3 * H + d] - hm[3 * H + d]), 1e-4, 0);
    }
    micro_batch_free(&b);
}

static void test_label_fraction(void) {
    BatchSetup s = {0};
    s.seed = 42;
    for (double f = 0.1; f < 1.0; f += 0.4) {
        s.label_fraction = f;
        int kept = 0, n = 20000;
        for (int i = 0; i < n; i++) kept += batch_keeps_labels(&s, i);
        CHECK_NEAR((double)kept / n, f, 0.015, 0);
        /* The subset is a function of (seed, index) alone: asked again in the
         * opposite order, on a fresh copy of the setup, every answer is the one
         * recorded in the first pass (a hidden state, e.g. an RNG advanced per
         * call, would change them); another seed keeps a different subset. */
        char first[1000];
        for (int i = 0; i < 1000; i++) first[i] = (char)batch_keeps_labels(&s, i);
        BatchSetup again = {0}, t = s;
        again.seed = 42;
        again.label_fraction = f;
        t.seed = 43;
        int same = 0, differ = 0, kept_first = 0;
        for (int i = 999; i >= 0; i--) {
            same += batch_keeps_labels(&again, i) == first[i];
            differ += batch_keeps_labels(&t, i) != first[i];
            kept_first += first[i];
        }
        CHECK(same == 1000);
        CHECK(differ > 50);
        CHECK(kept_first > 0 && kept_first < 1000); /* the pass above saw both answers */
    }
    s.label_fraction = 0;
    CHECK(!batch_keeps_labels(&s, 7));
    s.label_fraction = 1;
    CHECK(batch_keeps_labels(&s, 7));
}

int main(void) {
    RUN(test_oprm_losses);
    RUN(test_bt_losses);
    RUN(test_label_fraction);
    return test_summary();
}
