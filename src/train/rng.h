/* Seeded random numbers for training: xoshiro256** seeded by splitmix64.
 * The whole state is four 64-bit words, so a checkpoint can save it and a
 * resumed run continues the exact same stream. */
#ifndef OPRM_TRAIN_RNG_H
#define OPRM_TRAIN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

/* The state is the first four outputs of splitmix64 started at seed
 * (never all zero, which xoshiro forbids). */
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next_u64(Rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(Rng *r);
/* Uniform integer in [0, n), unbiased (rejection); n > 0. */
uint64_t rng_below(Rng *r, uint64_t n);
/* Standard normal (Box-Muller; consumes two uniforms, caches nothing so the
 * state stays the four words). */
double rng_normal(Rng *r);
/* Fisher-Yates shuffle of idx[0..n). */
void rng_shuffle_i64(Rng *r, int64_t *idx, size_t n);
/* idx[i] = i, then shuffled. */
void rng_permutation(Rng *r, int64_t *idx, size_t n);

/* One splitmix64 step (also useful to derive independent seeds). */
uint64_t splitmix64_next(uint64_t *x);

#endif
