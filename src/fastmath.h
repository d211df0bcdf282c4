/* fastmath.h - exp that GCC vectorizes (libm's expf / logf calls
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

/* 1 / (1 + exp(-x)) */
static inline float ae_fast_sigmoid(float x) { return 1.0f / (1.0f + ae_fast_exp(-x)); }

#endif
