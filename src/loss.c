/* loss.c - MSE, BCE (from logits, or clamped), softmax cross-entropy, L1
 * activity and L2 weight penalties. Sums accumulate in double. */
#include "ae/loss.h"

#include "fastmath.h"

#include <math.h>

double ae_loss_mse(const float *y, const float *t, size_t n, size_t w, float scale, float *d)
{
    double s = 0.0;
    size_t len = n * w;
    for (size_t i = 0; i < len; i++) {
        float e = y[i] - t[i];
        s += (double)e * e;
        if (d) d[i] = 2.0f * scale * e;
    }
    return s;
}

/* Sum of x[0..m) in double, in SUM_LANES running sums (one dependent add chain would wait on every
 * add's latency; the lanes vectorize). */
#define SUM_LANES 4
static double sum_double_lanes(const float *x, size_t m)
{
    double acc[SUM_LANES] = {0};
    size_t i = 0;
    for (; i + SUM_LANES <= m; i += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++) acc[j] += (double)x[i + j];
    double s = 0.0;
    for (; i < m; i++) s += (double)x[i];
    for (int j = 0; j < SUM_LANES; j++) s += acc[j];
    return s;
}

double ae_loss_bce_logits(const float *z, const float *t, size_t n, size_t w, float scale, float *d)
{
    double s = 0.0;
    size_t len = n * w;
    /* in blocks, so that the float passes vectorize; the sum stays in double */
    enum { BLOCK = 256 };
    float buf[BLOCK];
    for (size_t i0 = 0; i0 < len; i0 += BLOCK) {
        size_t m = len - i0 < BLOCK ? len - i0 : BLOCK;
        const float *restrict zb = z + i0, *restrict tb = t + i0;
        /* e = exp(-|z|) once: the loss takes log(1 + e), the gradient sigmoid(z) = r or e r with
         * r = 1 / (1 + e) (no second exp); two passes, as GCC does not if-convert exp and log in one
         * loop body */
        for (size_t i = 0; i < m; i++) buf[i] = ae_fast_exp(-fabsf(zb[i]));
        if (d) {
            float *restrict db = d + i0;
            for (size_t i = 0; i < m; i++) {
                float r = 1.0f / (1.0f + buf[i]);
                float sig = zb[i] >= 0.0f ? r : buf[i] * r;
                db[i] = scale * (sig - tb[i]);
            }
        }
        for (size_t i = 0; i < m; i++)
            buf[i] = (zb[i] > 0.0f ? zb[i] : 0.0f) - zb[i] * tb[i] + ae_fast_log(1.0f + buf[i]);
        s += sum_double_lanes(buf, m);
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
