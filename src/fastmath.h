/* fastmath.h - exp and log that GCC vectorizes (libm's expf / logf calls
 * do not vectorize without -ffast-math), for the elementwise passes of
 * activations and losses. Cephes-style range reduction and polynomials:
 * relative error within 2 ulp over the float range; exp saturates to 0 and
 * +inf-free FLT_MAX-ish values outside [-87.3, 88.7]. Private to src/. */
#ifndef AE_FASTMATH_H
#define AE_FASTMATH_H

#include <stdint.h>
#include <string.h>

#define AE_EXP_HI 88.3762626647949f
#define AE_EXP_LO -87.3365478515625f
#define AE_LOG2E 1.44269504088896341f
#define AE_LN2_HI 0.693359375f
#define AE_LN2_LO -2.12194440e-4f
#define AE_ROUND_MAGIC 12582912.0f

static inline float ae_fast_exp(float x0)
{
    /* NaN is kept out of the integer conversion (undefined behaviour) and returned as it came */
    float x = x0 == x0 ? x0 : 0.0f;
    x = x > AE_EXP_HI ? AE_EXP_HI : x;
    x = x < AE_EXP_LO ? AE_EXP_LO : x;
    /* round x / ln 2 to the nearest integer with the 1.5 * 2^23 trick (no branch, no libm) */
    float t = (x * AE_LOG2E + AE_ROUND_MAGIC) - AE_ROUND_MAGIC;
    x = x - t * AE_LN2_HI - t * AE_LN2_LO;
    float z = x * x;
    float y = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x +
               1.6666665459e-1f) * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    uint32_t e = (uint32_t)((int32_t)t + 127) << 23;
    float p;
    memcpy(&p, &e, sizeof p);
    return x0 == x0 ? y * p : x0;
}

/* Natural log of x > 0 (normal floats). */
static inline float ae_fast_log(float x)
{
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int32_t e = ((bits >> 23) & 0xff) - 126;
    bits = (bits & 0x807fffff) | 0x3f000000; /* mantissa in [0.5, 1) */
    float m;
    memcpy(&m, &bits, sizeof m);
    /* m in [sqrt(1/2), sqrt(2)) */
    int small = m < 0.707106781186547524f;
    e -= small;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = ((((((((7.0376836292e-2f * m - 1.1514610310e-1f) * m + 1.1676998740e-1f) * m - 1.2420140846e-1f) * m +
                   1.4249322787e-1f) * m - 1.6668057665e-1f) * m + 2.0000714765e-1f) * m - 2.4999993993e-1f) * m +
               3.3333331174e-1f) * m * z;
    float fe = (float)e;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return m + y + 0.693359375f * fe;
}

/* 1 / (1 + exp(-x)) */
static inline float ae_fast_sigmoid(float x) { return 1.0f / (1.0f + ae_fast_exp(-x)); }

#endif
