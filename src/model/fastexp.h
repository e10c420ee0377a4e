/* A vectorisable expf for the engine's elementwise loops (softmax, SiLU).
 *
 * libm's expf is a call per element through the PLT, which keeps every loop
 * around it scalar (GCC maps expf to libmvec's vector variants only under
 * -ffast-math). This one is plain branch-free float arithmetic, so a loop
 * calling it under `#pragma omp simd` compiles to AVX-512/AVX2 code.
 *
 * Method (Cephes expf): exp(x) = 2^n * exp(r), n = round(x / ln2),
 * r = x - n*ln2 in [-ln2/2, ln2/2] (ln2 split in two so n*ln2_hi is exact),
 * exp(r) by a degree-7 polynomial; 2^n built in the exponent bits.
 * Measured against exp() in double over [-87, 88]: relative error below
 * 2.5e-7 (about 2 ulp; tests/test_fastexp.c checks it).
 * Inputs are clamped to [-87.3, 88] so 2^n stays a normal float: results
 * below ~1.2e-38 come out as ~1.2e-38 instead of 0 or a denormal, above
 * exp(88) ~ 1.65e38 as exp(88) instead of growing to inf (harmless where it is
 * used: softmax terms next to a maximum of 1, sigmoid of huge arguments). +-inf are clamped too; NaN stays NaN. No integer conversion of
 * a float (undefined for NaN): the rounding uses the 1.5*2^23 trick and the
 * exponent is assembled in unsigned arithmetic. */
#ifndef OPRM_MODEL_FASTEXP_H
#define OPRM_MODEL_FASTEXP_H

#include <stdint.h>
#include <string.h>

static inline float fast_expf(float x) {
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x; /* keeps n <= 127 */
    float nf = x * 1.44269504088896341f + round_magic;
    uint32_t nbits;
    memcpy(&nbits, &nf, sizeof nbits);
    float n = nf - round_magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* nbits - bits(round_magic) = n in two's complement; + 127, into the exponent field */
    uint32_t sbits = (nbits - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    return p * scale;
}

#endif
