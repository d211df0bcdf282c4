/* fastmath.h - exp that GCC vectorizes (libm's expf / logf calls
 * do not vectorize without -ffast-math), for the elementwise passes of
 * activations and losses. Cephes-style range reduction and polynomials:
 * relative error within 2 ulp over the float range; exp saturates to 0 and
 * +inf-free FLT_MAX-ish values outside [-87.3, 88.7]. Private to src/. */
#ifndef AE_FASTMATH_H
#define AE_FASTMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AE_EXP_HI 88.3762626647949f
#define AE_EXP_LO -87.3365478515625f
#define AE_LOG2E 1.44269504088896341f
#define AE_LN2_HI 0.693359375f
#define AE_LN2_LO -2.12194440e-4f
#define AE_ROUND_MAGIC 12582912.0f
/* exp(f) = 1 + f + f^2 (P5 + P4 f + ... + P0 f^5) on the reduced range: one polynomial for the scalar
 * and the 16-lane exp */
#define AE_EXP_P0 1.9875691500e-4f
#define AE_EXP_P1 1.3981999507e-3f
#define AE_EXP_P2 8.3334519073e-3f
#define AE_EXP_P3 4.1665795894e-2f
#define AE_EXP_P4 1.6666665459e-1f
#define AE_EXP_P5 5.0000001201e-1f

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
    float y = ((((AE_EXP_P0 * x + AE_EXP_P1) * x + AE_EXP_P2) * x + AE_EXP_P3) * x + AE_EXP_P4) * x + AE_EXP_P5;
    y = y * z + x + 1.0f;
    uint32_t e = (uint32_t)((int32_t)t + 127) << 23;
    float p;
    memcpy(&p, &e, sizeof p);
    return x0 == x0 ? y * p : x0;
}

/* 1 / (1 + exp(-x)) */
static inline float ae_fast_sigmoid(float x) { return 1.0f / (1.0f + ae_fast_exp(-x)); }

#if defined(__AVX512F__)
/* 16 lanes at once with AVX-512 (builds for CPUs without it use the scalar functions above, which GCC
 * vectorizes): the same range reduction and polynomial as ae_fast_exp with vscalefps for the 2^n
 * (NaN passes through: vmaxps / vminps return their second operand when one is NaN), and 1 / d as
 * vrcp14ps refined by one Newton step (relative error ~1e-7, a division's latency saved). */
#include <immintrin.h>
#define AE_HAVE_V16 1

static inline __m512 ae_exp16(__m512 x)
{
    x = _mm512_min_ps(_mm512_set1_ps(AE_EXP_HI), _mm512_max_ps(_mm512_set1_ps(AE_EXP_LO), x));
    __m512 t = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(AE_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(t, _mm512_set1_ps(AE_LN2_HI), x);
    f = _mm512_fnmadd_ps(t, _mm512_set1_ps(AE_LN2_LO), f);
    __m512 y = _mm512_fmadd_ps(_mm512_set1_ps(AE_EXP_P0), f, _mm512_set1_ps(AE_EXP_P1));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(AE_EXP_P2));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(AE_EXP_P3));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(AE_EXP_P4));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(AE_EXP_P5));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(f, f), _mm512_add_ps(f, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, t);
}

static inline __m512 ae_rcp16(__m512 d)
{
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}
#endif

#if !defined(AE_HAVE_V16) && defined(__AVX2__) && defined(__FMA__)
/* 8 lanes at once with AVX2 + FMA (Haswell and later, AMD Zen), where GCC's vectorization of the
 * scalar functions spills its constants and running sums to the stack (the BCE of 256 x 784 logits
 * measured 2x faster on Zen 3): the same range reduction, polynomial and 2^t as ae_fast_exp (NaN
 * passes through: vmaxps / vminps return their second operand when one is NaN); 1 / d by a true
 * division, which at 8 lanes costs no more than vrcpps and its Newton step here and is exact. */
#include <immintrin.h>
#define AE_HAVE_V8 1

static inline __m256 ae_exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_set1_ps(AE_EXP_HI), _mm256_max_ps(_mm256_set1_ps(AE_EXP_LO), x));
    __m256 t = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(AE_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_fnmadd_ps(t, _mm256_set1_ps(AE_LN2_HI), x);
    f = _mm256_fnmadd_ps(t, _mm256_set1_ps(AE_LN2_LO), f);
    __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(AE_EXP_P0), f, _mm256_set1_ps(AE_EXP_P1));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(AE_EXP_P2));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(AE_EXP_P3));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(AE_EXP_P4));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(AE_EXP_P5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(f, f), _mm256_add_ps(f, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(t), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline __m256 ae_rcp8(__m256 d) { return _mm256_div_ps(_mm256_set1_ps(1.0f), d); }
#endif

/* x = sigmoid(x), in place. The vector paths run the last partial register through the same code on a
 * zero-padded copy: every element's sigmoid comes from the same instructions wherever it falls in x. */
static inline void ae_fast_sigmoid_n(float *x, size_t len)
{
    size_t i = 0;
#ifdef AE_HAVE_V16
    const __m512 one = _mm512_set1_ps(1.0f);
    float pad[16];
    for (; i < len; i += 16) {
        float *p = x + i;
        if (len - i < 16) {
            memset(pad, 0, sizeof pad);
            memcpy(pad, x + i, (len - i) * sizeof(float));
            p = pad;
        }
        __m512 e = ae_exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_loadu_ps(p)));
        _mm512_storeu_ps(p, ae_rcp16(_mm512_add_ps(one, e)));
        if (p == pad) memcpy(x + i, pad, (len - i) * sizeof(float));
    }
#elif defined(AE_HAVE_V8)
    const __m256 one = _mm256_set1_ps(1.0f);
    float pad[8];
    for (; i < len; i += 8) {
        float *p = x + i;
        if (len - i < 8) {
            memset(pad, 0, sizeof pad);
            memcpy(pad, x + i, (len - i) * sizeof(float));
            p = pad;
        }
        __m256 e = ae_exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_loadu_ps(p)));
        _mm256_storeu_ps(p, ae_rcp8(_mm256_add_ps(one, e)));
        if (p == pad) memcpy(x + i, pad, (len - i) * sizeof(float));
    }
#endif
    for (; i < len; i++) x[i] = ae_fast_sigmoid(x[i]);
}

#endif
