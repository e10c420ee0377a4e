#include "train/train_dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

/* 4 Mi floats (16 MiB) per bucket: large enough that per-call latency is
 * negligible, small enough that the extra buffer is a rounding error. */
#define DIST_BUCKET ((size_t)1 << 22)

void train_dist_init(TrainDist *d, const ModelParam *params, int nparams, int zero) {
    memset(d, 0, sizeof *d);
    d->rank = dist_rank();
    d->size = dist_size();
    d->zero = zero && d->size > 1;
    d->t = xcalloc((size_t)(nparams > 0 ? nparams : 1), sizeof *d->t);
    for (int i = 0; i < nparams; i++) {
        if (!params[i].grad) continue;
        d->t[d->nt++] = (DistTensor){params[i].data, params[i].grad, params[i].numel, d->total};
        d->total += params[i].numel;
    }
    d->lo = xcalloc((size_t)d->size + 1, sizeof *d->lo);
    for (int r = 0; r <= d->size; r++) d->lo[r] = d->total * (size_t)r / (size_t)d->size;
    if (d->size > 1) {
        d->bucket = d->zero ? DIST_BUCKET / (size_t)d->size : DIST_BUCKET;
        if (d->bucket < 1) d->bucket = 1;
        /* ZeRO: send (size buckets) + receive (one bucket). */
        d->buf = xmalloc((d->zero ? (size_t)d->size + 1 : 1) * d->bucket * sizeof *d->buf);
    }
    if (!d->zero) return;
    /* The shard as views of the tensors it crosses (the names stay, so AdamW
     * applies weight decay exactly as to the whole tensor). */
    size_t a = d->lo[d->rank], b = d->lo[d->rank + 1];
    d->views = xcalloc((size_t)(nparams > 0 ? nparams : 1), sizeof *d->views);
    int k = 0;
    for (int i = 0; i < nparams; i++) {
        if (!params[i].grad) continue;
        const DistTensor *t = &d->t[k++];
        size_t s = a > t->off ? a : t->off, e = b < t->off + t->numel ? b : t->off + t->numel;
        if (s >= e) continue;
        ModelParam v = params[i];
        v.data = t->data + (s - t->off);
        v.grad = t->grad + (s - t->off);
        v.numel = e - s;
        v.ndim = 1;
        v.shape[0] = (int)(e - s);
        d->views[d->nviews++] = v;
    }
}

void train_dist_free(TrainDist *d) {
    free(d->t);
    free(d->lo);
    free(d->views);
    free(d->buf);
    memset(d, 0, sizeof *d);
}

AdamW *train_dist_new_opt(TrainDist *d, const ModelParam *params, int nparams, const AdamWConfig *cfg) {
    return d->zero ? adamw_new(d->views, d->nviews, cfg) : adamw_new(params, nparams, cfg);
}

/* Copies flat range [a, a + n) of the gradients (grad = 1) or weights into
 * or out of buf (to_buf = 1: pack). */
static void flat_copy(const TrainDist *d, size_t a, size_t n, float *buf, int grad, int to_buf) {
    int i = 0;
    while (i < d->nt && d->t[i].off + d->t[i].numel <= a) i++;
    for (size_t done = 0; done < n && i < d->nt; i++) {
        const DistTensor *t = &d->t[i];
        size_t s = a + done - t->off, len = t->numel - s < n - done ? t->numel - s : n - done;
        float *p = (grad ? t->grad : t->data) + s;
        if (to_buf)
            memcpy(buf + done, p, len * sizeof *p);
        else
            memcpy(p, buf + done, len * sizeof *p);
        done += len;
    }
}

static void flat_zero_grads(const TrainDist *d, size_t a, size_t b) {
    for (int i = 0; i < d->nt; i++) {
        const DistTensor *t = &d->t[i];
        size_t s = a > t->off ? a : t->off, e = b < t->off + t->numel ? b : t->off + t->numel;
        if (s < e) memset(t->grad + (s - t->off), 0, (e - s) * sizeof(float));
    }
}

/* Rank r's piece of bucket c of the sharded space. */
static size_t piece(const TrainDist *d, int r, size_t c, size_t *start) {
    size_t len = d->lo[r + 1] - d->lo[r], a = c * d->bucket;
    *start = d->lo[r] + a;
    return a >= len ? 0 : len - a < d->bucket ? len - a : d->bucket;
}

static size_t n_buckets(const TrainDist *d) {
    size_t most = 0;
    for (int r = 0; r < d->size; r++)
        if (d->lo[r + 1] - d->lo[r] > most) most = d->lo[r + 1] - d->lo[r];
    return (most + d->bucket - 1) / d->bucket;
}

double train_dist_grads(TrainDist *d, ModelParam *params, int nparams, double max_norm) {
    if (d->size < 2) return clip_grad_norm(params, nparams, max_norm);
    /* A barrier first separates waiting for the slowest rank (load imbalance,
     * a busy core) from the transfer itself; it costs one latency. */
    d->wait_s += dist_barrier();
    double t0 = dist_comm_seconds();
    if (!d->zero) {
        for (size_t a = 0; a < d->total; a += d->bucket) {
            size_t n = d->total - a < d->bucket ? d->total - a : d->bucket;
            flat_copy(d, a, n, d->buf, 1, 1);
            dist_allreduce_sum_f32(d->buf, n);
            flat_copy(d, a, n, d->buf, 1, 0);
        }
        d->comm_s += dist_comm_seconds() - t0;
        return clip_grad_norm(params, nparams, max_norm);
    }
    /* ZeRO-1: reduce-scatter, bucket by bucket: bucket c holds piece c of
     * every rank's shard, so each call sums one piece for every rank. */
    size_t *counts = xmalloc((size_t)d->size * sizeof *counts);
    float *recv = d->buf + (size_t)d->size * d->bucket;
    size_t nb = n_buckets(d);
    for (size_t c = 0; c < nb; c++) {
        size_t off = 0, start;
        for (int r = 0; r < d->size; r++) {
            counts[r] = piece(d, r, c, &start);
            flat_copy(d, start, counts[r], d->buf + off, 1, 1);
            off += counts[r];
        }
        dist_reduce_scatter_sum_f32(d->buf, recv, counts);
        piece(d, d->rank, c, &start);
        flat_copy(d, start, counts[d->rank], recv, 1, 0);
    }
    free(counts);
    /* The other ranks' parts are theirs now; ours must start the next step at 0. */
    flat_zero_grads(d, 0, d->lo[d->rank]);
    flat_zero_grads(d, d->lo[d->rank + 1], d->total);
    /* Global norm: sum of squares of every shard (fixed order per shard). */
    double sq = 0;
    if (d->nviews) {
        double n = grad_global_norm(d->views, d->nviews);
        sq = n * n;
    }
    dist_allreduce_sum_f64(&sq, 1);
    d->comm_s += dist_comm_seconds() - t0;
    double norm = sqrt(sq);
    if (max_norm > 0 && isfinite(norm)) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) grads_scale(d->views, d->nviews, (float)coef);
    }
    return norm;
}

int train_dist_step(TrainDist *d, AdamW *opt, ModelParam *params, int nparams, double lr, OprmError *err) {
    if (!d->zero) return adamw_step_zero_grad(opt, params, nparams, lr, err);
    int rc = adamw_step_zero_grad(opt, d->views, d->nviews, lr, err);
    /* A failure here is a programming error on one rank; the others would wait
     * in the all-gather forever. */
    if (rc) dist_abort(1, err->msg);
    double t0 = dist_comm_seconds();
    size_t *counts = xmalloc((size_t)d->size * sizeof *counts);
    float *mine = d->buf + (size_t)d->size * d->bucket;
    size_t nb = n_buckets(d);
    for (size_t c = 0; c < nb; c++) {
        size_t start;
        for (int r = 0; r < d->size; r++) counts[r] = piece(d, r, c, &start);
        piece(d, d->rank, c, &start);
        flat_copy(d, start, counts[d->rank], mine, 0, 1);
        dist_allgather_f32(mine, d->buf, counts);
        size_t off = 0;
        for (int r = 0; r < d->size; r++) {
            piece(d, r, c, &start);
            if (r != d->rank) flat_copy(d, start, counts[r], d->buf + off, 0, 0);
            off += counts[r];
        }
    }
    free(counts);
    d->comm_s += dist_comm_seconds() - t0;
    return 0;
}

/* Copies n elements of the slot-concatenated m or v of opt, from offset a,
 * into or out of buf. */
static void state_copy(const AdamW *opt, size_t a, size_t n, float *buf, int v, int to_buf) {
    size_t base = 0;
    for (int i = 0; i < opt->nslots && n; i++) {
        const AdamWSlot *s = &opt->slots[i];
        if (a >= base + s->numel) {
            base += s->numel;
            continue;
        }
        size_t o = a - base, len = s->numel - o < n ? s->numel - o : n;
        float *p = (v ? s->v : s->m) + o;
        if (to_buf)
            memcpy(buf, p, len * sizeof *p);
        else
            memcpy(p, buf, len * sizeof *p);
        buf += len;
        a += len;
        n -= len;
        base += s->numel;
    }
}

AdamW *train_dist_full_opt(TrainDist *d, AdamW *opt, const ModelParam *params, int nparams) {
    if (!d->zero) return opt;
    AdamW *full = d->rank == 0 ? adamw_new(params, nparams, &opt->cfg) : NULL;
    if (full) full->step = opt->step;
    size_t nb = n_buckets(d);
    float *mine = d->buf;
    for (int v = 0; v < 2; v++)
        for (size_t c = 0; c < nb; c++) {
            size_t start, n = piece(d, d->rank, c, &start);
            state_copy(opt, start - d->lo[d->rank], n, mine, v, 1);
            char *all;
            size_t all_len;
            dist_gather_bytes(mine, n * sizeof *mine, &all, &all_len);
            if (full) {
                size_t off = 0;
                for (int r = 0; r < d->size; r++) {
                    size_t len = piece(d, r, c, &start);
                    state_copy(full, start, len, (float *)all + off, v, 0);
                    off += len;
                }
            }
            free(all);
        }
    return full;
}

void train_dist_take_shard(TrainDist *d, const AdamW *full, AdamW *shard) {
    size_t n = d->lo[d->rank + 1] - d->lo[d->rank];
    float *tmp = xmalloc((n ? n : 1) * sizeof *tmp);
    for (int v = 0; v < 2; v++) {
        state_copy(full, d->lo[d->rank], n, tmp, v, 1);
        state_copy(shard, 0, n, tmp, v, 0);
    }
    free(tmp);
    shard->step = full->step;
}

size_t train_dist_opt_bytes(const AdamW *opt) {
    size_t n = 0;
    for (int i = 0; i < opt->nslots; i++) n += opt->slots[i].numel;
    return 2 * n * sizeof(float);
}
