/* loss.c - MSE, BCE (from logits, or clamped), softmax cross-entropy, L1
 * activity and L2 weight penalties. Sums accumulate in double. */
#include "ae/loss.h"

#include "fastmath.h"

#include <math.h>
#include <string.h>

/* 8 floats as one GCC vector (an AVX2 register, two SSE ones) */
typedef float ae_v8f __attribute__((vector_size(32)));

double ae_loss_mse(const float *y, const float *t, size_t n, size_t w, float scale, float *d)
{
    /* as the BCE below: blocks of 16 lanes of running float sums (one double sum serialized the
     * pass on the add's latency), each block's sums added in double; the gradient is elementwise */
    enum { LANES = 16, BLOCK = 512 };
    double s = 0.0;
    size_t len = n * w;
    const float g = 2.0f * scale;
    for (size_t i0 = 0; i0 < len; i0 += BLOCK) {
        size_t m = len - i0 < BLOCK ? len - i0 : BLOCK, i = 0;
        ae_v8f acc[2] = {{0}, {0}}; /* lanes j and j + 8 */
        for (; i + LANES <= m; i += LANES)
            for (int h = 0; h < 2; h++) {
                ae_v8f vy, vt;
                memcpy(&vy, y + i0 + i + 8 * h, sizeof vy);
                memcpy(&vt, t + i0 + i + 8 * h, sizeof vt);
                ae_v8f e = vy - vt;
                acc[h] += e * e;
                if (d) {
                    ae_v8f ge = g * e;
                    memcpy(d + i0 + i + 8 * h, &ge, sizeof ge);
                }
            }
        for (; i < m; i++) {
            float e = y[i0 + i] - t[i0 + i];
            s += (double)e * e;
            if (d) d[i0 + i] = g * e;
        }
        for (int j = 0; j < LANES; j++) s += acc[j / 8][j % 8];
    }
    return s;
}

/* log(1 + e) for e in [0, 1]: e q(e), q a degree-8 Chebyshev fit of log1p(e) / e (relative error
 * within 2.5e-7 in float; no range reduction, as e = exp(-|z|) is already in [0, 1]). */
#define LOG1P_Q8 5.126102362e-03f
#define LOG1P_Q7 -2.907406539e-02f
#define LOG1P_Q6 7.751608640e-02f
#define LOG1P_Q5 -1.360224783e-01f
#define LOG1P_Q4 1.907688081e-01f
#define LOG1P_Q3 -2.483539879e-01f
#define LOG1P_Q2 3.331812024e-01f
#define LOG1P_Q1 -4.999944568e-01f
#define LOG1P_Q0 9.999999404e-01f

static inline float log1p_unit(float e)
{
    float q = ((((((((LOG1P_Q8 * e + LOG1P_Q7) * e + LOG1P_Q6) * e + LOG1P_Q5) * e + LOG1P_Q4) * e + LOG1P_Q3) * e +
                 LOG1P_Q2) * e + LOG1P_Q1) * e + LOG1P_Q0);
    return e * q;
}

/* One element of the BCE from logits: returns the loss max(z, 0) - z t + log(1 + exp(-|z|)) and
 * sets *d = scale (sigmoid(z) - t). e = exp(-|z|) serves both: sigmoid(z) = r or e r with
 * r = 1 / (1 + e). */
static inline float bce_logit(float z, float t, float scale, float *d)
{
    float e = ae_fast_exp(-fabsf(z));
    float r = 1.0f / (1.0f + e);
    float sig = z >= 0.0f ? r : e * r;
    *d = scale * (sig - t);
    return (z > 0.0f ? z : 0.0f) - z * t + log1p_unit(e);
}

#ifdef AE_HAVE_V16
/* bce_logit on 16 lanes: returns the lanes' losses; *dv = the gradient (when dv is not NULL) */
static inline __m512 bce_logit16(__m512 vz, __m512 vt, __m512 scale, __m512 *dv)
{
    const __m512 zero = _mm512_setzero_ps();
    __m512 e = ae_exp16(_mm512_or_ps(vz, _mm512_set1_ps(-0.0f))); /* exp(-|z|) */
    if (dv) {
        __m512 r = ae_rcp16(_mm512_add_ps(e, _mm512_set1_ps(1.0f)));
        __m512 sig = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(vz, zero, _CMP_GE_OQ), _mm512_mul_ps(e, r), r);
        *dv = _mm512_mul_ps(scale, _mm512_sub_ps(sig, vt));
    }
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(LOG1P_Q8), e, _mm512_set1_ps(LOG1P_Q7));
    q = _mm512_fmadd_ps(q, e, _mm512_set1_ps(LOG1P_Q6));
    q = _mm512_fmadd_ps(q, e, _mm512_set1_ps(LOG1P_Q5));
    q = _mm512_fmadd_ps(q, e, _mm512_set1_ps(LOG1P_Q4));
    q = _mm512_fmadd_ps(q, e, _mm512_set1_ps(LOG1P_Q3));
    q = _mm512_fmadd_ps(q, e, _mm512_set1_ps(LOG1P_Q2));
    q = _mm512_fmadd_ps(q, e, _mm512_set1_ps(LOG1P_Q1));
    q = _mm512_fmadd_ps(q, e, _mm512_set1_ps(LOG1P_Q0));
    /* max(z, 0) - z t + e q(e); NaN in z reaches the loss (vmaxps' second operand) */
    __m512 l = _mm512_fnmadd_ps(vz, vt, _mm512_max_ps(zero, vz));
    return _mm512_fmadd_ps(e, q, l);
}
#endif

#ifdef AE_HAVE_V8
/* bce_logit on 8 lanes with AVX2: the same formulas as bce_logit16, 1 / (1 + e) by a division */
static inline __m256 bce_logit8(__m256 vz, __m256 vt, __m256 scale, __m256 *dv)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 e = ae_exp8(_mm256_or_ps(vz, _mm256_set1_ps(-0.0f))); /* exp(-|z|) */
    if (dv) {
        __m256 r = ae_rcp8(_mm256_add_ps(e, _mm256_set1_ps(1.0f)));
        __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, r), r, _mm256_cmp_ps(vz, zero, _CMP_GE_OQ));
        *dv = _mm256_mul_ps(scale, _mm256_sub_ps(sig, vt));
    }
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(LOG1P_Q8), e, _mm256_set1_ps(LOG1P_Q7));
    q = _mm256_fmadd_ps(q, e, _mm256_set1_ps(LOG1P_Q6));
    q = _mm256_fmadd_ps(q, e, _mm256_set1_ps(LOG1P_Q5));
    q = _mm256_fmadd_ps(q, e, _mm256_set1_ps(LOG1P_Q4));
    q = _mm256_fmadd_ps(q, e, _mm256_set1_ps(LOG1P_Q3));
    q = _mm256_fmadd_ps(q, e, _mm256_set1_ps(LOG1P_Q2));
    q = _mm256_fmadd_ps(q, e, _mm256_set1_ps(LOG1P_Q1));
    q = _mm256_fmadd_ps(q, e, _mm256_set1_ps(LOG1P_Q0));
    /* max(z, 0) - z t + e q(e); NaN in z reaches the loss (vmaxps' second operand) */
    __m256 l = _mm256_fnmadd_ps(vz, vt, _mm256_max_ps(zero, vz));
    return _mm256_fmadd_ps(e, q, l);
}
#endif

#if defined(AE_HAVE_V16) || defined(AE_HAVE_V8)
/* LANES elements (16) at z, t, d (d NULL: no gradient) into the lanes' running sums acc */
static inline void bce_lanes(const float *z, const float *t, float scale, float *d, float *acc)
{
#ifdef AE_HAVE_V16
    __m512 dv, l = bce_logit16(_mm512_loadu_ps(z), _mm512_loadu_ps(t), _mm512_set1_ps(scale), d ? &dv : NULL);
    if (d) _mm512_storeu_ps(d, dv);
    _mm512_storeu_ps(acc, _mm512_add_ps(_mm512_loadu_ps(acc), l));
#else
    for (int h = 0; h < 2; h++) {
        __m256 dv, l = bce_logit8(_mm256_loadu_ps(z + 8 * h), _mm256_loadu_ps(t + 8 * h), _mm256_set1_ps(scale),
                                  d ? &dv : NULL);
        if (d) _mm256_storeu_ps(d + 8 * h, dv);
        _mm256_storeu_ps(acc + 8 * h, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * h), l));
    }
#endif
}
#endif

double ae_loss_bce_logits(const float *z, const float *t, size_t n, size_t w, float scale, float *d)
{
    /* one pass, in blocks of LANES running float sums (one running sum would serialize the pass),
     * each block's sums added in double; with AVX-512 the lanes are one register (bce_logit16: the
     * same formulas, its 1 / (1 + e) by vrcp14ps and a Newton step), with AVX2 two registers of 8
     * (bce_logit8), else a loop GCC vectorizes. The vector paths run a block's last partial group of
     * LANES through the same code on a zero-padded copy, so every element's loss and gradient come
     * from the same instructions wherever it falls in the batch (P ranks' slices cut it elsewhere). */
    enum { LANES = 16, BLOCK = 512 };
    double s = 0.0;
    size_t len = n * w;
    float dummy[LANES];
    for (size_t i0 = 0; i0 < len; i0 += BLOCK) {
        size_t m = len - i0 < BLOCK ? len - i0 : BLOCK, i = 0;
        const float *zb = z + i0, *tb = t + i0; /* no restrict: d may be z */
        float *db = d ? d + i0 : NULL;
        float acc[LANES] = {0};
#ifdef AE_HAVE_V16
        __m512 vacc = _mm512_setzero_ps(), vscale = _mm512_set1_ps(scale);
        for (; i + LANES <= m; i += LANES) {
            __m512 dv, l = bce_logit16(_mm512_loadu_ps(zb + i), _mm512_loadu_ps(tb + i), vscale, db ? &dv : NULL);
            if (db) _mm512_storeu_ps(db + i, dv);
            vacc = _mm512_add_ps(vacc, l);
        }
        _mm512_storeu_ps(acc, vacc);
#elif defined(AE_HAVE_V8)
        /* the 16 lanes as two registers: lanes j and j + 8 are acc[j] and acc[j + 8] as in the loop below */
        __m256 va = _mm256_setzero_ps(), vb = _mm256_setzero_ps(), vscale = _mm256_set1_ps(scale);
        for (; i + LANES <= m; i += LANES) {
            __m256 da, dbv, la = bce_logit8(_mm256_loadu_ps(zb + i), _mm256_loadu_ps(tb + i), vscale, db ? &da : NULL);
            __m256 lb = bce_logit8(_mm256_loadu_ps(zb + i + 8), _mm256_loadu_ps(tb + i + 8), vscale, db ? &dbv : NULL);
            if (db) {
                _mm256_storeu_ps(db + i, da);
                _mm256_storeu_ps(db + i + 8, dbv);
            }
            va = _mm256_add_ps(va, la);
            vb = _mm256_add_ps(vb, lb);
        }
        _mm256_storeu_ps(acc, va);
        _mm256_storeu_ps(acc + 8, vb);
#else
        if (db)
            for (; i + LANES <= m; i += LANES)
                for (int j = 0; j < LANES; j++) acc[j] += bce_logit(zb[i + j], tb[i + j], scale, &db[i + j]);
        else
            for (; i + LANES <= m; i += LANES)
                for (int j = 0; j < LANES; j++) acc[j] += bce_logit(zb[i + j], tb[i + j], scale, &dummy[j]);
#endif
#if defined(AE_HAVE_V16) || defined(AE_HAVE_V8)
        if (i < m) {
            float zp[LANES] = {0}, tp[LANES] = {0}, dp[LANES], lp[LANES] = {0};
            size_t r = m - i;
            memcpy(zp, zb + i, r * sizeof(float));
            memcpy(tp, tb + i, r * sizeof(float));
            bce_lanes(zp, tp, scale, db ? dp : NULL, lp);
            if (db) memcpy(db + i, dp, r * sizeof(float));
            for (size_t j = 0; j < r; j++) s += lp[j];
            i = m;
        }
#endif
        for (; i < m; i++) s += bce_logit(zb[i], tb[i], scale, db ? &db[i] : &dummy[0]);
        for (int j = 0; j < LANES; j++) s += acc[j];
    }
    return s;
}

double ae_loss_bce(const float *y, const float *t, size_t n, size_t w, float scale, float *d)
{
    double s = 0.0;
    size_t len = n * w;
    for (size_t i = 0; i < len; i++) {
        float p = fminf(fmaxf(y[i], AE_BCE_EPS), 1.0f - AE_BCE_EPS);
        s -= (double)t[i] * log(p) + (1.0 - (double)t[i]) * log1p(-(double)p);
        if (d) {
            int clamped = y[i] <= AE_BCE_EPS || y[i] >= 1.0f - AE_BCE_EPS;
            d[i] = clamped ? 0.0f : scale * (p - t[i]) / (p * (1.0f - p));
        }
    }
    return s;
}

double ae_loss_ce_logits(const float *z, const uint8_t *labels, size_t n, size_t w, float scale, float *d,
                         size_t *correct)
{
    double s = 0.0;
    for (size_t r = 0; r < n; r++) {
        const float *zr = z + r * w;
        size_t am = 0;
        float mx = zr[0];
        for (size_t j = 1; j < w; j++)
            if (zr[j] > mx) { mx = zr[j]; am = j; }
        double se = 0.0;
        for (size_t j = 0; j < w; j++) se += exp((double)(zr[j] - mx));
        double lse = (double)mx + log(se);
        size_t lab = labels[r] < w ? labels[r] : 0;
        s += lse - zr[lab];
        if (correct && am == lab) (*correct)++;
        if (d) {
            float *dr = d + r * w;
            for (size_t j = 0; j < w; j++) dr[j] = scale * (float)exp((double)zr[j] - lse);
            dr[lab] -= scale;
        }
    }
    return s;
}

double ae_loss_l1(const float *a, size_t len, float lambda, float scale, float *d)
{
    double s = 0.0;
    float g = scale * lambda;
    for (size_t i = 0; i < len; i++) {
        s += fabsf(a[i]);
        if (d) d[i] += a[i] > 0.0f ? g : (a[i] < 0.0f ? -g : 0.0f);
    }
    return lambda * s;
}

double ae_loss_l2(const float *wt, size_t len, float lambda, float *g)
{
    double s = 0.0;
    for (size_t i = 0; i < len; i++) {
        s += (double)wt[i] * wt[i];
        if (g) g[i] += lambda * wt[i];
    }
    return 0.5 * lambda * s;
}

double ae_loss_kl_sparsity(const float *q, size_t w, float rho, float beta, size_t n, float scale, float *d)
{
    double s = 0.0;
    for (size_t j = 0; j < w; j++) {
        double qj = fmin(fmax((double)q[j], AE_KL_EPS), 1.0 - AE_KL_EPS);
        s += rho * log(rho / qj) + (1.0 - rho) * log((1.0 - rho) / (1.0 - qj));
        if (d) {
            float g = scale * beta * (float)(-rho / qj + (1.0 - rho) / (1.0 - qj));
            for (size_t i = 0; i < n; i++) d[i * w + j] += g;
        }
    }
    return beta * s;
}

void ae_loss_l2_grad(const float *restrict wt, size_t len, float lambda, float *restrict g)
{
    for (size_t i = 0; i < len; i++) g[i] += lambda * wt[i];
}
