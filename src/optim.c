/* optim.c - SGD (plain, momentum, Nesterov), RMSProp, Adam and Adadelta over
 * one flat parameter buffer, learning-rate schedules (warm-up, constant,
 * step, cosine) and global-norm gradient clipping. Formulas: see optim.h. */
#include "ae/optim.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The update loops walk the buffer in blocks of OPTIM_BLOCK floats plus one
 * tail. GCC's -O2 vectorizer (the "very cheap" cost model) only takes loops
 * whose trip count is a known multiple of the vector width, which a block of
 * constant length is. The sqrt-based optimizers also need -fno-math-errno
 * for their blocks to vectorize (otherwise sqrtf keeps an errno branch). */
#define OPTIM_BLOCK 64
/* Independent double accumulators of the norm: fixed lanes (index mod
 * NORM_LANES), so the sum is the same whatever the vector width or the
 * alignment of the buffer -- every rank gets the same bits. */
#define NORM_LANES 8
#define SCHED_PI 3.14159265358979323846
/* Relative slack in floor(epoch / step_epochs), so that float step_epochs
 * such as 0.1f (0.100000001...) still decay exactly on their boundaries. */
#define SCHED_FLOOR_SLACK 1e-6

#define OPTIM_INLINE static inline __attribute__((always_inline))
/* The update loops read their pointers out of a struct, which GCC will not
 * prove apart on its own; the caller guarantees it (see optim_pass). Clang
 * checks aliasing at run time instead. */
#if defined(__GNUC__) && !defined(__clang__)
#define OPTIM_NO_ALIAS _Pragma("GCC ivdep")
#else
#define OPTIM_NO_ALIAS
#endif

/* Everything one update pass needs, precomputed once per step. The
 * buffers p, g, s0, s1 must not overlap. */
typedef struct optim_pass {
    float *p;
    const float *g;
    float *s0; /* first state block (SGD v, RMSProp s, Adam m, Adadelta s) */
    float *s1; /* second state block (Adam v, Adadelta u) */
    float lr;  /* Adam: lr / (1 - beta1^t); clipping: the scale factor */
    float a;   /* decay of s0: mu, rho or beta1 */
    float one_minus_a;
    float b;   /* decay of s1: beta2 or rho */
    float one_minus_b;
    float eps;
    float inv_sqrt_bc2; /* Adam: 1 / sqrt(1 - beta2^t) */
    float *g_zero;      /* g again, writable, when each stepped block of it is then set to 0; else NULL */
} optim_pass;

typedef void (*optim_span_fn)(const optim_pass *k, size_t off, size_t len);

/* Runs span over [0, n): full blocks of constant length, then the tail. */
OPTIM_INLINE void run_blocked(optim_span_fn span, const optim_pass *k, size_t n)
{
    size_t i = 0;
    for (; i + OPTIM_BLOCK <= n; i += OPTIM_BLOCK) span(k, i, OPTIM_BLOCK);
    span(k, i, n - i);
}

#define EXP_BITS 0x7f800000u /* a float's exponent field: all ones in Inf and NaN */

/* The largest exponent field of g[0, len): EXP_BITS when one of them is Inf or NaN. An integer max,
 * which GCC vectorizes (a float reduction it may not reorder). */
OPTIM_INLINE uint32_t span_max_exp(const float *restrict g, size_t len)
{
    uint32_t mx = 0;
    for (size_t j = 0; j < len; j++) {
        uint32_t b;
        memcpy(&b, g + j, sizeof b);
        b &= EXP_BITS;
        mx = b > mx ? b : mx;
    }
    return mx;
}

/* run_blocked with the finite check of the gradient fused in: each block of k->g is checked just
 * before the update reads it again from L1, so the check costs no pass of its own over the
 * gradients. Returns 1 at the first block with an Inf or a NaN, which is not updated, nor any
 * after it; 0 when every block was. */
OPTIM_INLINE int run_blocked_checked(optim_span_fn span, const optim_pass *k, size_t n)
{
    size_t i = 0;
    for (; i + OPTIM_BLOCK <= n; i += OPTIM_BLOCK) {
        if (span_max_exp(k->g + i, OPTIM_BLOCK) == EXP_BITS) return 1;
        span(k, i, OPTIM_BLOCK);
        if (k->g_zero) memset(k->g_zero + i, 0, OPTIM_BLOCK * sizeof(float));
    }
    if (span_max_exp(k->g + i, n - i) == EXP_BITS) return 1;
    span(k, i, n - i);
    if (k->g_zero) memset(k->g_zero + i, 0, (n - i) * sizeof(float));
    return 0;
}

/* p -= lr * g */
OPTIM_INLINE void span_sgd(const optim_pass *k, size_t off, size_t len)
{
    float *restrict p = k->p + off;
    const float *restrict g = k->g + off;
    const float lr = k->lr;
    OPTIM_NO_ALIAS
    for (size_t j = 0; j < len; j++) p[j] -= lr * g[j];
}

/* v = mu*v + g; p -= lr * v */
OPTIM_INLINE void span_momentum(const optim_pass *k, size_t off, size_t len)
{
    float *restrict p = k->p + off;
    const float *restrict g = k->g + off;
    float *restrict v = k->s0 + off;
    const float lr = k->lr, mu = k->a;
    OPTIM_NO_ALIAS
    for (size_t j = 0; j < len; j++) {
        float vj = mu * v[j] + g[j];
        v[j] = vj;
        p[j] -= lr * vj;
    }
}

/* v = mu*v + g; p -= lr * (g + mu*v) */
OPTIM_INLINE void span_nesterov(const optim_pass *k, size_t off, size_t len)
{
    float *restrict p = k->p + off;
    const float *restrict g = k->g + off;
    float *restrict v = k->s0 + off;
    const float lr = k->lr, mu = k->a;
    OPTIM_NO_ALIAS
    for (size_t j = 0; j < len; j++) {
        float vj = mu * v[j] + g[j];
        v[j] = vj;
        p[j] -= lr * (g[j] + mu * vj);
    }
}

/* s = rho*s + (1-rho)*g^2; p -= lr * g / (sqrt(s) + eps) */
OPTIM_INLINE void span_rmsprop(const optim_pass *k, size_t off, size_t len)
{
    float *restrict p = k->p + off;
    const float *restrict g = k->g + off;
    float *restrict s = k->s0 + off;
    const float lr = k->lr, rho = k->a, rho1 = k->one_minus_a, eps = k->eps;
    OPTIM_NO_ALIAS
    for (size_t j = 0; j < len; j++) {
        float gj = g[j];
        float sj = rho * s[j] + rho1 * gj * gj;
        s[j] = sj;
        p[j] -= lr * gj / (sqrtf(sj) + eps);
    }
}

/* PyTorch's arrangement: p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps),
 * with k->lr already lr/bc1. */
OPTIM_INLINE void span_adam(const optim_pass *k, size_t off, size_t len)
{
    float *restrict p = k->p + off;
    const float *restrict g = k->g + off;
    float *restrict m = k->s0 + off;
    float *restrict v = k->s1 + off;
    const float step = k->lr, b1 = k->a, b1c = k->one_minus_a, b2 = k->b, b2c = k->one_minus_b;
    const float eps = k->eps, inv_sqrt_bc2 = k->inv_sqrt_bc2;
    OPTIM_NO_ALIAS
    for (size_t j = 0; j < len; j++) {
        float gj = g[j];
        float mj = b1 * m[j] + b1c * gj;
        float vj = b2 * v[j] + b2c * gj * gj;
        m[j] = mj;
        v[j] = vj;
        p[j] -= step * mj / (sqrtf(vj) * inv_sqrt_bc2 + eps);
    }
}

/* s = rho*s + (1-rho)*g^2; d = sqrt(u+eps)/sqrt(s+eps)*g;
 * u = rho*u + (1-rho)*d^2; p -= lr * d */
OPTIM_INLINE void span_adadelta(const optim_pass *k, size_t off, size_t len)
{
    float *restrict p = k->p + off;
    const float *restrict g = k->g + off;
    float *restrict s = k->s0 + off;
    float *restrict u = k->s1 + off;
    const float lr = k->lr, rho = k->a, rho1 = k->one_minus_a, eps = k->eps;
    OPTIM_NO_ALIAS
    for (size_t j = 0; j < len; j++) {
        float gj = g[j];
        float sj = rho * s[j] + rho1 * gj * gj;
        float dj = sqrtf(u[j] + eps) / sqrtf(sj + eps) * gj;
        s[j] = sj;
        u[j] = rho * u[j] + rho1 * dj * dj;
        p[j] -= lr * dj;
    }
}

/* g *= scale (scale passed in k->lr) */
OPTIM_INLINE void span_scale(const optim_pass *k, size_t off, size_t len)
{
    float *restrict g = k->p + off;
    const float scale = k->lr;
    OPTIM_NO_ALIAS
    for (size_t j = 0; j < len; j++) g[j] *= scale;
}

size_t ae_optim_state_floats(ae_opt_kind kind, size_t n)
{
    switch (kind) {
    case AE_OPT_SGD:     /* the momentum buffer; untouched when momentum == 0 */
    case AE_OPT_RMSPROP: return n;
    case AE_OPT_ADAM:
    case AE_OPT_ADADELTA: return 2 * n;
    }
    return 0;
}

int ae_optim_step(const ae_optim_conf *c, float lr, int64_t t, float *p, const float *g, float *state,
                  size_t n)
{
    return ae_optim_step_range(c, lr, t, p, g, state, n, 0, n);
}

/* The step of [off, off + n); g_zero: g, to be zeroed block by block as it is stepped, or NULL. */
static int step_range(const ae_optim_conf *c, float lr, int64_t t, float *p, const float *g, float *g_zero,
                      float *state, size_t n_all, size_t off, size_t n)
{
    optim_pass k = {.p = p + off,
                    .g = g + off,
                    .s0 = state ? state + off : NULL,
                    .s1 = state ? state + n_all + off : NULL,
                    .lr = lr,
                    .eps = c->eps,
                    .g_zero = g_zero ? g_zero + off : NULL};
    switch (c->kind) {
    case AE_OPT_SGD:
        k.a = c->momentum;
        if (c->momentum == 0.0f) return run_blocked_checked(span_sgd, &k, n);
        if (c->nesterov) return run_blocked_checked(span_nesterov, &k, n);
        return run_blocked_checked(span_momentum, &k, n);
    case AE_OPT_RMSPROP:
        k.a = c->rho;
        k.one_minus_a = 1.0f - c->rho;
        return run_blocked_checked(span_rmsprop, &k, n);
    case AE_OPT_ADAM: {
        /* Bias corrections in double, once; t < 1 is taken as the first step. */
        double tt = t < 1 ? 1.0 : (double)t;
        double bc1 = 1.0 - pow((double)c->beta1, tt);
        double bc2 = 1.0 - pow((double)c->beta2, tt);
        k.lr = (float)((double)lr / bc1);
        k.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        k.a = c->beta1;
        k.one_minus_a = 1.0f - c->beta1;
        k.b = c->beta2;
        k.one_minus_b = 1.0f - c->beta2;
        return run_blocked_checked(span_adam, &k, n);
    }
    case AE_OPT_ADADELTA:
        k.a = c->rho;
        k.one_minus_a = 1.0f - c->rho;
        return run_blocked_checked(span_adadelta, &k, n);
    }
    return 0;
}

int ae_optim_step_range(const ae_optim_conf *c, float lr, int64_t t, float *p, const float *g, float *state,
                        size_t n_all, size_t off, size_t n)
{
    return step_range(c, lr, t, p, g, NULL, state, n_all, off, n);
}

int ae_optim_step_range_zero(const ae_optim_conf *c, float lr, int64_t t, float *p, float *g, float *state,
                             size_t n_all, size_t off, size_t n)
{
    return step_range(c, lr, t, p, g, g, state, n_all, off, n);
}

double ae_optim_grad_norm(const float *g, size_t n)
{
    double acc[NORM_LANES] = {0};
    size_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (size_t j = 0; j < NORM_LANES; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    double sum = 0.0;
    for (; i < n; i++) sum += (double)g[i] * (double)g[i];
    for (size_t j = 0; j < NORM_LANES; j++) sum += acc[j];
    return sqrt(sum);
}

/* A non-finite norm leaves g as it is: the caller sees NaN/Inf in the
 * returned norm and reports it, rather than getting a buffer of NaNs. */
double ae_optim_clip(float *g, size_t n, double max_norm)
{
    double norm = ae_optim_grad_norm(g, n);
    if (max_norm > 0.0 && norm > max_norm && isfinite(norm)) {
        optim_pass k = {.p = g, .lr = (float)(max_norm / norm)};
        run_blocked(span_scale, &k, n);
    }
    return norm;
}

/* steps_per_epoch < 1 is taken as 1; warm-up steps are warmup_epochs *
 * steps_per_epoch rounded to nearest. The step decay counts epochs from step
 * 0 (not from the end of warm-up); step_epochs <= 0 means no decay. The
 * cosine runs over steps warmup_steps .. total_steps-1 and stays at min_lr
 * from the last step on (and at once when total_steps leaves <= 1 step). */
float ae_sched_lr(const ae_sched_conf *c, int64_t step, int64_t steps_per_epoch, int64_t total_steps)
{
    double base = c->base_lr;
    double spe = steps_per_epoch < 1 ? 1.0 : (double)steps_per_epoch;
    if (step < 0) step = 0;

    int64_t warm = c->warmup_epochs > 0.0f ? (int64_t)llround((double)c->warmup_epochs * spe) : 0;
    if (step < warm) return (float)(base * (double)(step + 1) / (double)warm);

    switch (c->kind) {
    case AE_SCHED_STEP: {
        double period = (double)c->step_epochs * spe; /* in steps */
        if (period <= 0.0) return (float)base;
        double k = floor((double)step / period * (1.0 + SCHED_FLOOR_SLACK));
        return (float)(base * pow((double)c->gamma, k));
    }
    case AE_SCHED_COSINE: {
        double min = c->min_lr;
        int64_t span = total_steps - warm; /* steps after warm-up */
        double frac = 1.0;
        if (span > 1) frac = fmin((double)(step - warm) / (double)(span - 1), 1.0);
        return (float)(min + (base - min) * 0.5 * (1.0 + cos(SCHED_PI * frac)));
    }
    case AE_SCHED_CONSTANT:
        break;
    }
    return (float)base;
}
