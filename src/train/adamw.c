#include "train/adamw.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#else /* the fuzz build links the train layer without OpenMP */
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif
#include <stdlib.h>
#include <string.h>

/* Fixed-size chunks summed in index order keep norms bit-identical however
 * many threads OpenMP uses: resumed runs must reproduce losses exactly. */
#define NORM_CHUNK 16384

int adamw_param_decays(const char *name) {
    size_t n = strlen(name);
    if (n >= 4 && !strcmp(name + n - 4, "bias")) return 0;
    if (strstr(name, "norm")) return 0;
    return 1;
}

AdamW *adamw_new(const ModelParam *params, int nparams, const AdamWConfig *cfg) {
    AdamW *opt = xcalloc(1, sizeof *opt);
    opt->cfg = *cfg;
    opt->slots = xcalloc(nparams > 0 ? (size_t)nparams : 1, sizeof(AdamWSlot));
    for (int i = 0; i < nparams; i++) {
        if (!params[i].grad) continue;
        AdamWSlot *s = &opt->slots[opt->nslots++];
        s->name = xstrdup(params[i].name);
        s->numel = params[i].numel;
        s->decay = adamw_param_decays(params[i].name);
        s->m = xcalloc(s->numel ? s->numel : 1, sizeof(float));
        s->v = xcalloc(s->numel ? s->numel : 1, sizeof(float));
    }
    return opt;
}

void adamw_free(AdamW *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->nslots; i++) {
        free(opt->slots[i].name);
        free(opt->slots[i].m);
        free(opt->slots[i].v);
    }
    free(opt->slots);
    free(opt);
}

/* The update of elements [0, n) of one tensor, elementwise like torch's
 * single-tensor AdamW (same float operations in the same order, so results do
 * not depend on how the elements are split). zero_grad also clears g, saving
 * model_zero_grad's separate pass over the gradient buffer. */
static inline void update_span(float *restrict p, float *restrict g, float *restrict m, float *restrict v, size_t n,
                               float decay_mul, float b1, float one_minus_b1, float b2, float one_minus_b2,
                               float bc2_sqrt, float eps, float neg_step_size, int zero_grad) {
#define ADAMW_BODY(CLEAR)                                                                                   \
    _Pragma("omp simd") for (size_t i = 0; i < n; i++) {                                                    \
        float gi = g[i];                                                                                    \
        float pi = p[i] * decay_mul;                                                                        \
        float mi = m[i] * b1 + one_minus_b1 * gi;                                                           \
        float vi = v[i] * b2 + one_minus_b2 * (gi * gi);                                                    \
        float denom = sqrtf(vi) / bc2_sqrt + eps;                                                           \
        p[i] = pi + neg_step_size * (mi / denom);                                                           \
        m[i] = mi;                                                                                          \
        v[i] = vi;                                                                                          \
        CLEAR;                                                                                              \
    }
    if (zero_grad) {
        ADAMW_BODY(g[i] = 0.0f)
    } else {
        ADAMW_BODY((void)0)
    }
#undef ADAMW_BODY
}

typedef struct {
    float *p, *g, *m, *v;
    size_t n;
    float decay_mul;
} UpdateJob;

/* Threads split the concatenation of all tensors into equal contiguous ranges:
 * one parallel region per step instead of one per tensor (a team start and a
 * barrier each, and hundreds of tensors), and no thread idles on small ones. */
#define ADAMW_MIN_PARALLEL 65536
#define ADAMW_SPAN 16384 /* elements per inner call: p, g, m, v of a span stay in L1/L2 */

static int adamw_update(AdamW *opt, ModelParam *params, int nparams, double lr, int zero_grad, OprmError *err) {
    int k = 0;
    size_t total = 0;
    for (int i = 0; i < nparams; i++) {
        if (!params[i].grad) continue;
        if (k >= opt->nslots || strcmp(opt->slots[k].name, params[i].name) || opt->slots[k].numel != params[i].numel)
            return oprm_fail(err, "optimizer: parameter %d '%s' does not match the optimizer state (%s)", i,
                             params[i].name, k < opt->nslots ? opt->slots[k].name : "no more tensors");
        total += params[i].numel;
        k++;
    }
    if (k != opt->nslots)
        return oprm_fail(err, "optimizer: %d trainable parameters, state holds %d", k, opt->nslots);

    opt->step++;
    const AdamWConfig *c = &opt->cfg;
    double t = (double)opt->step;
    double bc1 = 1.0 - pow(c->beta1, t);
    double bc2 = 1.0 - pow(c->beta2, t);
    const float neg_step_size = (float)(-(lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = (float)c->beta1, omb1 = (float)(1.0 - c->beta1), b2 = (float)c->beta2,
                omb2 = (float)(1.0 - c->beta2), eps = (float)c->eps;
    UpdateJob *jobs = xmalloc((size_t)(k ? k : 1) * sizeof *jobs);
    k = 0;
    for (int i = 0; i < nparams; i++) {
        if (!params[i].grad) continue;
        AdamWSlot *s = &opt->slots[k];
        jobs[k++] = (UpdateJob){params[i].data, params[i].grad, s->m, s->v, s->numel,
                                s->decay ? (float)(1.0 - lr * c->weight_decay) : 1.0f};
    }
    const int njobs = k;
#pragma omp parallel if (total > ADAMW_MIN_PARALLEL)
    {
        int nt = omp_get_num_threads(), tid = omp_get_thread_num();
        /* Range boundaries on multiples of 16 floats (64 bytes) so no two
         * threads share a cache line inside one tensor. */
        size_t lo = (total * (size_t)tid / (size_t)nt) & ~(size_t)15;
        size_t hi = tid == nt - 1 ? total : (total * (size_t)(tid + 1) / (size_t)nt) & ~(size_t)15;
        size_t base = 0;
        for (int j = 0; j < njobs && base < hi; j++) {
            const UpdateJob *u = &jobs[j];
            size_t a = lo > base ? lo - base : 0, b = hi - base < u->n ? hi - base : u->n;
            for (size_t s0 = a; s0 < b; s0 += ADAMW_SPAN) {
                size_t len = b - s0 < ADAMW_SPAN ? b - s0 : ADAMW_SPAN;
                update_span(u->p + s0, u->g + s0, u->m + s0, u->v + s0, len, u->decay_mul, b1, omb1, b2, omb2,
                            bc2_sqrt, eps, neg_step_size, zero_grad);
            }
            base += u->n;
        }
    }
    free(jobs);
    return 0;
}

int adamw_step(AdamW *opt, ModelParam *params, int nparams, double lr, OprmError *err) {
    return adamw_update(opt, params, nparams, lr, 0, err);
}

int adamw_step_zero_grad(AdamW *opt, ModelParam *params, int nparams, double lr, OprmError *err) {
    return adamw_update(opt, params, nparams, lr, 1, err);
}

/* Sum of squares of g[lo, hi) with eight independent sums: the adds pipeline
 * (and vectorise) instead of waiting on one another; still a fixed order. */
static double chunk_sum_squares(const float *g, size_t lo, size_t hi) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = lo;
    for (; i + 8 <= hi; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)g[i + k] * g[i + k];
    for (; i < hi; i++) acc[0] += (double)g[i] * g[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Every trainable tensor is cut into NORM_CHUNK pieces; all pieces of all
 * tensors go through ONE parallel loop (not a team per tensor), and the
 * partial sums are added afterwards per tensor in chunk order, then over
 * tensors in order: the same value for any thread count. */
double grad_global_norm(const ModelParam *params, int nparams) {
    return sqrt(grad_sum_squares(params, nparams));
}

double grad_sum_squares(const ModelParam *params, int nparams) {
    size_t nchunks = 0;
    for (int i = 0; i < nparams; i++)
        if (params[i].grad) nchunks += (params[i].numel + NORM_CHUNK - 1) / NORM_CHUNK;
    size_t *first = xmalloc((size_t)(nparams > 0 ? nparams : 1) * sizeof *first);
    const float **cg = xmalloc((nchunks ? nchunks : 1) * sizeof *cg);
    size_t *clo = xmalloc((nchunks ? nchunks : 1) * sizeof *clo), *chi = xmalloc((nchunks ? nchunks : 1) * sizeof *chi);
    double *part = xmalloc((nchunks ? nchunks : 1) * sizeof *part);
    size_t c = 0;
    for (int i = 0; i < nparams; i++) {
        first[i] = c;
        if (!params[i].grad) continue;
        for (size_t lo = 0; lo < params[i].numel; lo += NORM_CHUNK, c++) {
            cg[c] = params[i].grad;
            clo[c] = lo;
            chi[c] = lo + NORM_CHUNK < params[i].numel ? lo + NORM_CHUNK : params[i].numel;
        }
    }
#pragma omp parallel for schedule(static) if (nchunks > 4)
    for (size_t k = 0; k < nchunks; k++) part[k] = chunk_sum_squares(cg[k], clo[k], chi[k]);
    double total = 0;
    for (int i = 0; i < nparams; i++) {
        if (!params[i].grad) continue;
        size_t end = i + 1 < nparams ? first[i + 1] : nchunks;
        double t = 0;
        for (size_t k = first[i]; k < end; k++) t += part[k];
        total += t;
    }
    free(first);
    free(cg);
    free(clo);
    free(chi);
    free(part);
    return total;
}

/* Elementwise, so (like the AdamW update) one region over the concatenation. */
void grads_scale(ModelParam *params, int nparams, float scale) {
    size_t total = 0;
    for (int i = 0; i < nparams; i++)
        if (params[i].grad) total += params[i].numel;
#pragma omp parallel if (total > ADAMW_MIN_PARALLEL)
    {
        int nt = omp_get_num_threads(), tid = omp_get_thread_num();
        size_t lo = (total * (size_t)tid / (size_t)nt) & ~(size_t)15;
        size_t hi = tid == nt - 1 ? total : (total * (size_t)(tid + 1) / (size_t)nt) & ~(size_t)15;
        size_t base = 0;
        for (int i = 0; i < nparams && base < hi; i++) {
            float *restrict g = params[i].grad;
            if (!g) continue;
            size_t n = params[i].numel, a = lo > base ? lo - base : 0, b = hi - base < n ? hi - base : n;
#pragma omp simd
            for (size_t j = a; j < b; j++) g[j] *= scale;
            base += n;
        }
    }
}

double clip_grad_norm(ModelParam *params, int nparams, double max_norm) {
    double norm = grad_global_norm(params, nparams);
    if (max_norm <= 0 || !isfinite(norm)) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) grads_scale(params, nparams, (float)coef);
    return norm;
}
