/* test_rng.c - CUnit suite "rng": Philox4x32-10 against the known-answer
 * vectors of Random123 (tests/kat_vectors), the stream layout of rng.h, and
 * the draws built on it: uniform and normal moments, ae_rng_below without
 * bias, permutations. Statistical bounds are N_SIGMA standard errors; the
 * seeds are fixed, so every test is deterministic. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/rng.h"

#define SEED 12345u
#define N_SIGMA 6.0         /* a bound this many standard errors out: p < 1e-8 for a normal statistic */
#define N_DRAWS (1u << 20)
#define STREAM_LEN 1000
#define TWO24 16777216.0    /* ae_rng_uniform has 24 random bits */
#define NORMAL_Z95 1.959963984540054
#define NORMAL_P95 0.05     /* P(|z| > NORMAL_Z95) */
#define KURT_NORMAL 3.0     /* E z^4 */
#define VAR_Z1 1.0          /* Var(z^k) of a standard normal, k = 1..4 */
#define VAR_Z2 2.0
#define VAR_Z3 15.0
#define VAR_Z4 96.0

/* ---- Philox ------------------------------------------------------------- */

typedef struct kat {
    uint32_t ctr[4], key[2], out[4];
} kat;

/* Random123 v1.14 tests/kat_vectors, the three "philox4x32 10" lines (columns: ctr[4] key[2] -> out[4]). */
static const kat KATS[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u}, {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

static void test_rng_philox_known_answers(void)
{
    for (size_t k = 0; k < sizeof KATS / sizeof KATS[0]; k++) {
        uint32_t out[4];
        ae_rng_philox(KATS[k].key, KATS[k].ctr, out);
        for (int j = 0; j < 4; j++) {
            if (out[j] != KATS[k].out[j])
                fprintf(stderr, "\n    kat %zu word %d: %08x, want %08x", k, j, out[j], KATS[k].out[j]);
            CU_ASSERT_EQUAL(out[j], KATS[k].out[j]);
        }
    }
}

/* A stream is the Philox blocks of counter (a, b, c, 0), (a, b, c, 1), ... under its key, word by word. */
static void test_rng_stream_layout(void)
{
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_SHUFFLE, 3, 4, 5);
    uint32_t key[2] = {r.key[0], r.key[1]};
    for (uint32_t block = 0; block < 3; block++) {
        uint32_t ctr[4] = {3, 4, 5, block}, want[4];
        ae_rng_philox(key, ctr, want);
        for (int j = 0; j < 4; j++) CU_ASSERT_EQUAL(ae_rng_u32(&r), want[j]);
    }
}

/* Same key, same stream; any part of the key (seed low/high word, purpose, a, b, c) changes it. */
static void test_rng_same_key_same_stream(void)
{
    static const uint64_t seeds[] = {SEED, SEED, SEED + 1, SEED | (1ull << 32), SEED, SEED, SEED, SEED};
    static const uint32_t purposes[] = {AE_RNG_INIT, AE_RNG_INIT, AE_RNG_INIT, AE_RNG_INIT, AE_RNG_NOISE,
                                        AE_RNG_INIT, AE_RNG_INIT, AE_RNG_INIT};
    static const uint32_t abc[][3] = {{1, 2, 3}, {1, 2, 3}, {1, 2, 3}, {1, 2, 3},
                                      {1, 2, 3}, {9, 2, 3}, {1, 9, 3}, {1, 2, 9}};
    enum { N_KEYS = sizeof seeds / sizeof seeds[0] };
    static uint32_t s[N_KEYS][STREAM_LEN];
    for (int k = 0; k < N_KEYS; k++) {
        ae_rng r;
        ae_rng_init(&r, seeds[k], purposes[k], abc[k][0], abc[k][1], abc[k][2]);
        for (int i = 0; i < STREAM_LEN; i++) s[k][i] = ae_rng_u32(&r);
    }
    CU_ASSERT_EQUAL(memcmp(s[0], s[1], sizeof s[0]), 0);
    for (int k = 2; k < N_KEYS; k++) {
        int same = 0;
        for (int i = 0; i < STREAM_LEN; i++) same += s[0][i] == s[k][i];
        CU_ASSERT(same <= 1); /* 1000 words, 2^-32 each: a coincidence would be a surprise */
    }
    /* re-initializing restarts the stream, including the normal's cached second value */
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 0, 0, 0);
    float z0 = ae_rng_normal(&r);
    ae_rng_init(&r, SEED, AE_RNG_TEST, 0, 0, 0);
    CU_ASSERT_EQUAL(ae_rng_normal(&r), z0);
}

/* ---- uniform and normal ------------------------------------------------------ */

/* [0, 1), multiples of 2^-24; mean 1/2 and variance 1/12 within N_SIGMA standard errors
 * (sd of U: sqrt(1/12); sd of (U - 1/2)^2: sqrt(1/80 - 1/144)). */
static void test_rng_uniform_moments(void)
{
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 1, 0, 0);
    double sum = 0.0, sum2 = 0.0;
    int in_range = 1, on_grid = 1;
    for (uint32_t i = 0; i < N_DRAWS; i++) {
        float u = ae_rng_uniform(&r);
        in_range &= u >= 0.0f && u < 1.0f;
        double scaled = (double)u * TWO24;
        on_grid &= scaled == floor(scaled);
        sum += u;
        sum2 += ((double)u - 0.5) * ((double)u - 0.5);
    }
    CU_ASSERT(in_range);
    CU_ASSERT(on_grid);
    double n = N_DRAWS, mean = sum / n, var = sum2 / n;
    CU_ASSERT(fabs(mean - 0.5) <= N_SIGMA * sqrt(1.0 / 12.0 / n));
    CU_ASSERT(fabs(var - 1.0 / 12.0) <= N_SIGMA * sqrt((1.0 / 80.0 - 1.0 / 144.0) / n));
}

/* The raw moments E z^k = 0, 1, 0, 3, 5% beyond +-1.96, and no correlation between neighbours
 * (a Box-Muller pair that repeated its cosine would keep every moment). Standard errors
 * sqrt(Var / n) with Var(z^k) = E z^2k - (E z^k)^2 = 1, 2, 15, 96; p (1 - p) for the tail; 1 for z z'. */
static void test_rng_normal_moments(void)
{
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 2, 0, 0);
    double s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0, tail = 0.0, lag = 0.0, prev = 0.0;
    int finite = 1;
    for (uint32_t i = 0; i < N_DRAWS; i++) {
        double z = ae_rng_normal(&r);
        finite &= isfinite(z);
        lag += z * prev; /* consecutive draws, within and across Box-Muller pairs, are independent */
        prev = z;
        s1 += z;
        s2 += z * z;
        s3 += z * z * z;
        s4 += z * z * z * z;
        tail += fabs(z) > NORMAL_Z95;
    }
    CU_ASSERT(finite);
    double n = N_DRAWS;
    CU_ASSERT(fabs(s1 / n) <= N_SIGMA * sqrt(VAR_Z1 / n));
    CU_ASSERT(fabs(s2 / n - 1.0) <= N_SIGMA * sqrt(VAR_Z2 / n));
    CU_ASSERT(fabs(s3 / n) <= N_SIGMA * sqrt(VAR_Z3 / n));
    CU_ASSERT(fabs(s4 / n - KURT_NORMAL) <= N_SIGMA * sqrt(VAR_Z4 / n));
    CU_ASSERT(fabs(tail / n - NORMAL_P95) <= N_SIGMA * sqrt(NORMAL_P95 * (1.0 - NORMAL_P95) / n));
    CU_ASSERT(fabs(lag / n) <= N_SIGMA / sqrt(n)); /* E z z' = 0, Var(z z') = 1 */
}

/* ---- below and permutations ------------------------------------------------- */

/* Pearson's statistic of counts against equal expectations, and whether it is within N_SIGMA of its
 * chi-square(k - 1) mean (sd sqrt(2 (k - 1))). */
static int chi_square_ok(const double *count, int k, double total, double *stat)
{
    double e = total / k, x2 = 0.0;
    for (int i = 0; i < k; i++) x2 += (count[i] - e) * (count[i] - e) / e;
    *stat = x2;
    double df = k - 1;
    return x2 <= df + N_SIGMA * sqrt(2.0 * df);
}

#define BELOW_DRAWS 200000
#define BELOW_MAX_N 10

static void test_rng_below_small_n(void)
{
    static const uint32_t ns[] = {1, 2, 3, 5, 7, 10};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        ae_rng r;
        ae_rng_init(&r, SEED, AE_RNG_TEST, 3, (uint32_t)k, 0);
        double count[BELOW_MAX_N] = {0};
        int in_range = 1;
        for (int i = 0; i < BELOW_DRAWS; i++) {
            uint32_t v = ae_rng_below(&r, ns[k]);
            in_range &= v < ns[k];
            if (v < ns[k]) count[v]++;
        }
        CU_ASSERT(in_range);
        double x2;
        int ok = chi_square_ok(count, (int)ns[k], BELOW_DRAWS, &x2);
        if (!ok) fprintf(stderr, "\n    below(%u): chi-square %.1f", ns[k], x2);
        CU_ASSERT(ok);
    }
}

/* n = 3 * 2^30 makes the classic biases large: u32 % n puts half the mass on [0, 2^30) (so the top two
 * bits of the result are not uniform over {0, 1, 2}), and multiply-shift without rejection,
 * floor(3 u / 4), lands on multiples of 3 half of the time. Unbiased, both are uniform over 3 values. */
#define BIG_N 0xC0000000u
#define BIG_DRAWS 30000
#define BIG_SHIFT 30

static void test_rng_below_no_bias_large_n(void)
{
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 4, 0, 0);
    double top[3] = {0}, mod3[3] = {0};
    int in_range = 1;
    for (int i = 0; i < BIG_DRAWS; i++) {
        uint32_t v = ae_rng_below(&r, BIG_N);
        in_range &= v < BIG_N;
        if (v >= BIG_N) continue;
        top[v >> BIG_SHIFT]++;
        mod3[v % 3]++;
    }
    CU_ASSERT(in_range);
    double x2_top, x2_mod;
    CU_ASSERT(chi_square_ok(top, 3, BIG_DRAWS, &x2_top));
    CU_ASSERT(chi_square_ok(mod3, 3, BIG_DRAWS, &x2_mod));
    if (getenv("AE_GRADCHECK_VERBOSE")) fprintf(stderr, "\n    chi-square %.2f, %.2f", x2_top, x2_mod);
}

#define PERM_N 1000

static void make_perm(uint64_t seed, uint32_t epoch, uint32_t *perm, size_t n)
{
    ae_rng r;
    ae_rng_init(&r, seed, AE_RNG_SHUFFLE, epoch, 0, 0);
    ae_rng_permutation(&r, perm, n);
}

static void test_rng_permutation(void)
{
    static uint32_t a[PERM_N], b[PERM_N], c[PERM_N];
    static unsigned char seen[PERM_N];
    make_perm(SEED, 0, a, PERM_N);
    for (size_t i = 0; i < PERM_N; i++) {
        CU_ASSERT_FATAL(a[i] < PERM_N);
        seen[a[i]]++;
    }
    int each_once = 1, fixed = 0;
    for (size_t i = 0; i < PERM_N; i++) {
        each_once &= seen[i] == 1;
        fixed += a[i] == i;
    }
    CU_ASSERT(each_once);
    CU_ASSERT(fixed < 10); /* a shuffled deck has ~1 fixed point; an unshuffled one has 1000 */
    make_perm(SEED, 0, b, PERM_N);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    make_perm(SEED + 1, 0, b, PERM_N);
    make_perm(SEED, 1, c, PERM_N);
    int same_b = 0, same_c = 0;
    for (size_t i = 0; i < PERM_N; i++) {
        same_b += a[i] == b[i];
        same_c += a[i] == c[i];
    }
    CU_ASSERT(same_b < 10); /* another seed, another permutation */
    CU_ASSERT(same_c < 10); /* another epoch, too */
    make_perm(SEED, 0, b, 1);
    CU_ASSERT_EQUAL(b[0], 0);
}

/* All 6 orders of 3 items equally likely (a Fisher-Yates off by one - Sattolo's variant, or j drawn from
 * [0, n) every time - skews or misses some). */
#define PERM3_DRAWS 60000

static void test_rng_permutation_uniform(void)
{
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 5, 0, 0);
    double count[6] = {0};
    for (int i = 0; i < PERM3_DRAWS; i++) {
        uint32_t p[3];
        ae_rng_permutation(&r, p, 3);
        int code = (int)(p[0] * 2 + (p[1] > p[2])); /* the rank of the permutation among the 6 */
        count[code]++;
    }
    double x2;
    int ok = chi_square_ok(count, 6, PERM3_DRAWS, &x2);
    if (!ok) fprintf(stderr, "\n    permutations of 3: chi-square %.1f", x2);
    CU_ASSERT(ok);
}

void ae_test_register_rng(void)
{
    CU_pSuite s = CU_add_suite("rng", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_rng_philox_known_answers", test_rng_philox_known_answers);
    CU_add_test(s, "test_rng_stream_layout", test_rng_stream_layout);
    CU_add_test(s, "test_rng_same_key_same_stream", test_rng_same_key_same_stream);
    CU_add_test(s, "test_rng_uniform_moments", test_rng_uniform_moments);
    CU_add_test(s, "test_rng_normal_moments", test_rng_normal_moments);
    CU_add_test(s, "test_rng_below_small_n", test_rng_below_small_n);
    CU_add_test(s, "test_rng_below_no_bias_large_n", test_rng_below_no_bias_large_n);
    CU_add_test(s, "test_rng_permutation", test_rng_permutation);
    CU_add_test(s, "test_rng_permutation_uniform", test_rng_permutation_uniform);
}
