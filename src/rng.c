/* rng.c - Philox4x32-10 (Salmon et al., SC'11) and draws built on it. */
#include "ae/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

void ae_rng_philox(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4])
{
    uint32_t k0 = key[0], k1 = key[1];
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void ae_rng_init(ae_rng *r, uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b, uint32_t c)
{
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32) ^ (purpose * 0x85EBCA6Bu);
    r->ctr[0] = a;
    r->ctr[1] = b;
    r->ctr[2] = c;
    r->ctr[3] = 0;
    r->pos = 4;
    r->has_spare = 0;
    r->spare = 0.0f;
}

uint32_t ae_rng_u32(ae_rng *r)
{
    if (r->pos >= 4) {
        ae_rng_philox(r->key, r->ctr, r->buf);
        r->ctr[3]++;
        r->pos = 0;
    }
    return r->buf[r->pos++];
}

float ae_rng_uniform(ae_rng *r)
{
    return (float)(ae_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

float ae_rng_normal(ae_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* u1 in (0, 1] so that log(u1) is finite */
    double u1 = ((double)(ae_rng_u32(r) >> 8) + 1.0) * (1.0 / 16777216.0);
    double u2 = (double)(ae_rng_u32(r) >> 8) * (1.0 / 16777216.0);
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586 * u2;
    r->spare = (float)(rad * sin(th));
    r->has_spare = 1;
    return (float)(rad * cos(th));
}

uint32_t ae_rng_below(ae_rng *r, uint32_t n)
{
    /* Lemire's nearly-divisionless method */
    uint64_t m = (uint64_t)ae_rng_u32(r) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (lo < t) {
            m = (uint64_t)ae_rng_u32(r) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void ae_rng_permutation(ae_rng *r, uint32_t *perm, size_t n)
{
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        uint32_t j = ae_rng_below(r, (uint32_t)i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
