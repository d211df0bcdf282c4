/* rng.h - counter-based random numbers (Philox4x32-10).
 *
 * Every random draw in aetrain is a pure function of (seed, purpose, a, b, c,
 * draw index): no hidden state advances across steps, so shuffles, weight
 * init, noise and dropout masks do not depend on the number of ranks, on
 * which rank draws them, or on whether the run was resumed. Typical keys:
 *   init     (seed, AE_RNG_INIT,    layer index, 0, 0)
 *   split    (seed, AE_RNG_SPLIT,   0, 0, 0)
 *   shuffle  (seed, AE_RNG_SHUFFLE, epoch, 0, 0)
 *   noise    (seed, AE_RNG_NOISE,   epoch, step, global sample index)   */
#ifndef AE_RNG_H
#define AE_RNG_H

#include <stddef.h>
#include <stdint.h>

enum ae_rng_purpose {
    AE_RNG_INIT = 1,
    AE_RNG_SPLIT = 2,
    AE_RNG_SHUFFLE = 3,
    AE_RNG_NOISE = 4,
    AE_RNG_DROPOUT = 5,
    AE_RNG_SAMPLE = 6, /* VAE reparameterization */
    AE_RNG_PROBE = 7,
    AE_RNG_TEST = 99,
};

typedef struct ae_rng {
    uint32_t key[2];
    uint32_t ctr[4]; /* a, b, c, block */
    uint32_t buf[4];
    int pos; /* next unused word of buf; 4 = empty */
    int has_spare;
    float spare; /* second Box-Muller value */
} ae_rng;

/* Position a stream at draw 0 of key (seed, purpose, a, b, c). */
void ae_rng_init(ae_rng *r, uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b, uint32_t c);

uint32_t ae_rng_u32(ae_rng *r);
/* Uniform in [0, 1), 24 random bits. */
float ae_rng_uniform(ae_rng *r);
/* Standard normal (Box-Muller). */
float ae_rng_normal(ae_rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint32_t ae_rng_below(ae_rng *r, uint32_t n);
/* perm[0..n) = a uniformly random permutation of 0..n-1 (Fisher-Yates). */
void ae_rng_permutation(ae_rng *r, uint32_t *perm, size_t n);

/* The raw Philox4x32-10 block function, exposed for its known-answer test. */
void ae_rng_philox(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]);

#endif
