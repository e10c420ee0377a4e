/* Scalar math shared by the CUDA kernels and the host (compiled by nvcc as
 * __host__ __device__, by cc as plain static inline): the host tests check
 * them against the CPU engine, the kernels use the same code. */
#ifndef OPRM_ENGINE_DEVMATH_H
#define OPRM_ENGINE_DEVMATH_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define OPRM_HD __host__ __device__ __forceinline__
#else
#define OPRM_HD static inline
#endif

/* bfloat16 bits <-> float: round to nearest even, NaN stays a (quiet) NaN. */
OPRM_HD float dm_bf16_to_f32(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
OPRM_HD uint16_t dm_f32_to_bf16(float f) {
    union {
        float f;
        uint32_t u;
    } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}

/* Rotary inverse frequency of pair i (of head_dim/2), HF rotate-half layout,
 * with Llama-3 scaling when factor > 0 (low frequencies slowed by factor, high
 * kept, a smooth blend between). Double precision: the angle pos * f is taken
 * in double on both host and device. */
OPRM_HD double dm_rope_inv_freq(int i, int head_dim, double theta, double factor, double low_freq_factor,
                                double high_freq_factor, int original_max_pos) {
    double f = 1.0 / pow(theta, (2.0 * i) / head_dim);
    if (factor > 0) {
        double wavelen = 2 * 3.14159265358979323846 / f;
        double low_wavelen = original_max_pos / low_freq_factor, high_wavelen = original_max_pos / high_freq_factor;
        if (wavelen > low_wavelen) {
            f = f / factor;
        } else if (wavelen >= high_wavelen) {
            double smooth = (original_max_pos / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            f = (1 - smooth) * f / factor + smooth * f;
        }
    }
    return f;
}

/* SiLU(g) * u in fp32. */
OPRM_HD float dm_swiglu(float g, float u) {
    return g / (1.0f + expf(-g)) * u;
}

/* One step of the online softmax: running max *m and sum *l absorb a block
 * whose max is bm and whose sum of exp(s - bm) is bl. Returns the factor the
 * running accumulator must be scaled by. -INFINITY marks "nothing yet". */
OPRM_HD float dm_online_softmax_merge(float *m, float *l, float bm, float bl) {
    if (bm == -INFINITY) return 1.0f;
    float mn = *m > bm ? *m : bm;
    float ca = *m == -INFINITY ? 0.0f : expf(*m - mn), cb = expf(bm - mn);
    *l = *l * ca + bl * cb;
    *m = mn;
    return ca;
}

/* SwiGLU backward: from da = dL/da with a = silu(g) * u, the gradients of g
 * and u (the CPU's swiglu_backward formula). */
OPRM_HD void dm_swiglu_backward(float g, float u, float da, float *dg, float *du) {
    float sg = 1.0f / (1.0f + expf(-g));
    *du = da * g * sg;
    *dg = da * u * sg * (1.0f + g * (1.0f - sg));
}

/* The RoPE rotation of the pair (a, b) by an angle with cosine c and sine s;
 * sign -1 rotates back, which is also the backward (the rotation is
 * orthogonal). */
OPRM_HD void dm_rope_rotate(float *a, float *b, float c, float s, float sign) {
    float x = *a, y = *b, sn = sign * s;
    *a = x * c - y * sn;
    *b = y * c + x * sn;
}

/* One AdamW element, torch.optim.AdamW as src/train/adamw.h states it: the
 * constants are those src/train/adamw.c derives per step (in double, then
 * rounded to float), the element arithmetic the same float operations in the
 * same order, so device and host agree bit for bit where the compilers do not
 * contract differently (nvcc is built with --fmad=false for this file: see
 * adamw.cu). */
typedef struct {
    float b1, omb1, b2, omb2, bc2_sqrt, eps, neg_step_size;
} DmAdamW;
OPRM_HD DmAdamW dm_adamw_consts(double lr, double beta1, double beta2, double eps, long long step) {
    DmAdamW k;
    double t = (double)step, bc1 = 1.0 - pow(beta1, t), bc2 = 1.0 - pow(beta2, t);
    k.neg_step_size = (float)(-(lr / bc1));
    k.bc2_sqrt = (float)sqrt(bc2);
    k.b1 = (float)beta1;
    k.omb1 = (float)(1.0 - beta1);
    k.b2 = (float)beta2;
    k.omb2 = (float)(1.0 - beta2);
    k.eps = (float)eps;
    return k;
}
/* decay_mul: (float)(1 - lr * weight_decay) where decay applies, else 1. */
OPRM_HD void dm_adamw_update(float *p, float *m, float *v, float g, float decay_mul, const DmAdamW *k) {
    float pi = *p * decay_mul;
    float mi = *m * k->b1 + k->omb1 * g;
    float vi = *v * k->b2 + k->omb2 * (g * g);
    float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;
    *p = pi + k->neg_step_size * (mi / denom);
    *m = mi;
    *v = vi;
}

/* RMSNorm backward of one row given the row's mean(dy * w * xhat) (dot / D):
 * dx_j = rstd * (dy_j w_j - xhat_j * mean). */
OPRM_HD float dm_rmsnorm_dx(float dy, float w, float x, float rstd, float mean) {
    return rstd * (dy * w - x * rstd * mean);
}

#endif
