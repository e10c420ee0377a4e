/* Batch layout with prompt-prefix sharing (see SeqBatch in model.h).
 *
 * A group's shared prefix is laid out once, followed by each member's
 * continuation. Attention then has two kinds of units: the prefix (keys and
 * queries its own rows) and each continuation (keys: the prefix rows, then its
 * own rows; queries: its own rows), so a continuation never sees another one.
 * Every other layer works per row and needs nothing but fewer rows. Positions
 * of a continuation continue from the end of the prefix, so RoPE sees each
 * token at the position it has in its full sequence. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/model_internal.h"

/* Common prefix length of a and b, at most n. */
static int common_len(const int32_t *a, const int32_t *b, int n) {
    int t = 0;
    while (t < n && a[t] == b[t]) t++;
    return t;
}

/* The shared length of sequences [s0, s1) starting at ids + start[s]: their
 * common prefix, each keeping at least one token; 0 when not worth sharing. */
static int group_shared(const int32_t *ids, const int32_t *lens, const int64_t *start, int s0, int s1) {
    if (s1 - s0 < 2) return 0;
    int P = lens[s0] - 1;
    for (int s = s0 + 1; s < s1; s++)
        if (lens[s] - 1 < P) P = lens[s] - 1;
    for (int s = s0 + 1; s < s1 && P >= MODEL_PREFIX_MIN; s++) P = common_len(ids + start[s0], ids + start[s], P);
    return P >= MODEL_PREFIX_MIN ? P : 0;
}

/* End of the group run starting at s0. */
static int run_end(const SeqBatch *b, int s0) {
    int s1 = s0 + 1;
    while (b->group && s1 < b->nseq && b->group[s1] == b->group[s0]) s1++;
    return s1;
}

static int64_t *seq_starts(const SeqBatch *b) {
    int64_t *start = xmalloc(sizeof(int64_t) * (size_t)b->nseq);
    for (int s = 0, o = 0; s < b->nseq; o += b->lens[s], s++) start[s] = o;
    return start;
}

int64_t model_prefix_saved(const SeqBatch *b) {
    if (!b->group || b->nseq < 2) return 0;
    int64_t *start = seq_starts(b), saved = 0;
    for (int s0 = 0, s1; s0 < b->nseq; s0 = s1) {
        s1 = run_end(b, s0);
        saved += (int64_t)(s1 - s0 - 1) * group_shared(b->ids, b->lens, start, s0, s1);
    }
    free(start);
    return saved;
}

void model_prefix_groups(const int32_t *ids, const int32_t *lens, int nseq, int32_t *group) {
    int64_t o = 0, first = 0;
    int g = 0, k = 0, P = 0;
    for (int s = 0; s < nseq; o += lens[s], s++) {
        if (k > 0) {
            int cap = lens[s] - 1 < P ? lens[s] - 1 : P;
            int p2 = common_len(ids + first, ids + o, cap < 0 ? 0 : cap);
            if (p2 >= MODEL_PREFIX_MIN && (int64_t)k * p2 >= (int64_t)(k - 1) * P) {
                group[s] = g;
                k++;
                P = p2;
                continue;
            }
            g++;
        }
        /* A new group: s alone shares with nobody yet; P is its length less one. */
        group[s] = g;
        first = o;
        k = 1;
        P = lens[s] - 1;
    }
}

int model_plan_batch(Model *m, const SeqBatch *b) {
    int nseq = b->nseq;
    /* Units: at most one prefix per two sequences, plus the sequences. */
    size_t need = (size_t)nseq * 19 + 8;
    if (need > m->plan_cap) {
        free(m->plan);
        m->plan = xmalloc(sizeof(int32_t) * need);
        m->plan_cap = need;
    }
    int32_t *p = m->plan;
    int32_t *u_off = p, *u_len = u_off + 2 * nseq, *u_poff = u_len + 2 * nseq, *u_plen = u_poff + 2 * nseq,
            *u_clus = u_plen + 2 * nseq;                       /* 2 nseq + 1 */
    int32_t *l_off = u_clus + 2 * nseq + 1, *l_len = l_off + nseq, *l_poff = l_len + nseq, *l_plen = l_poff + nseq,
            *l_clus = l_plen + nseq;                           /* nseq + 1 */
    m->last_row = l_clus + nseq + 1;
    m->last_pos = m->last_row + nseq;
    m->seq_index = m->last_pos + nseq;
    m->ones = m->seq_index + nseq;

    int64_t *start = seq_starts(b);
    int N = 0, nu = 0, nc = 0, nlc = 0;
    for (int s0 = 0, s1; s0 < nseq; s0 = s1) {
        s1 = run_end(b, s0);
        int P = b->group ? group_shared(b->ids, b->lens, start, s0, s1) : 0, pre = N;
        u_clus[nc++] = nu;
        if (P > 0) { /* the prefix, once */
            memcpy(m->ids + N, b->ids + start[s0], sizeof(int32_t) * (size_t)P);
            for (int t = 0; t < P; t++) m->pos[N + t] = t;
            u_off[nu] = N, u_len[nu] = P, u_poff[nu] = 0, u_plen[nu] = 0, nu++;
            N += P;
            l_clus[nlc++] = s0;
        }
        for (int s = s0; s < s1; s++) {
            int own = b->lens[s] - P;
            if (P == 0 && s > s0) u_clus[nc++] = nu;
            if (P == 0) l_clus[nlc++] = s;
            memcpy(m->ids + N, b->ids + start[s] + P, sizeof(int32_t) * (size_t)own);
            for (int t = 0; t < own; t++) m->pos[N + t] = P + t;
            u_off[nu] = N, u_len[nu] = own, u_poff[nu] = pre, u_plen[nu] = P, nu++;
            l_off[s] = N, l_len[s] = own, l_poff[s] = pre, l_plen[s] = P;
            m->last_row[s] = N + own - 1;
            m->last_pos[s] = b->lens[s] - 1;
            m->seq_index[s] = s;
            m->ones[s] = 1;
            N += own;
        }
    }
    u_clus[nc] = nu;
    l_clus[nlc] = nseq;
    free(start);
    m->units = (AttnUnits){.n = nu, .off = u_off, .len = u_len, .pre_off = u_poff, .pre_len = u_plen,
                           .n_clus = nc, .clus = u_clus};
    m->units_last = (AttnUnits){.n = nseq, .off = l_off, .len = l_len, .pre_off = l_poff, .pre_len = l_plen,
                                .q_off = m->seq_index, .q_len = m->ones, .n_clus = nlc, .clus = l_clus};
    return N;
}
