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

#endif
