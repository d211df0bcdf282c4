/* gradcheck.c - central-difference gradient checks of a model's objective or
 * of any scalar function of a float array (see gradcheck.h). One core loop
 * serves both: pick the coordinates, perturb each in place, compare. */
#include "ae/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/rng.h"

/* Richardson extrapolation of central differences: D(h) = f' + c1 h^2 + c2 h^4 + ..., so each level
 * of the table, (4^j R(h/2) - R(h)) / (4^j - 1), removes the next even power of h. */
#define RICH_MAX_LEVELS 4
#define RICH_RATIO 4.0 /* halving h divides the h^2 term by 4 */
#define KINK_RETRIES 9   /* a step that straddles a kink is retried at h/2, h/4, ... h/512 ... */
#define KINK_SHRINK 2.0  /* ... (no smaller than needed: noise grows as 1/h) before it is skipped */
#define DITHER_REL 1e-6      /* relative size of the noise-measuring dither: ~10 ulps */
#define DITHER_ROUNDINGS 4.0 /* (J(p+d) + J(p-d)) - (J(p+d') + J(p-d')): four independent roundings */

void ae_gradcheck_opts_default(ae_gradcheck_opts *o)
{
    memset(o, 0, sizeof *o);
    o->tol = AE_GRADCHECK_TOL;
    o->rel_step = AE_GRADCHECK_REL_STEP;
    o->min_mag = AE_GRADCHECK_MIN_MAG;
    o->levels = AE_GRADCHECK_LEVELS;
    o->noise_sigmas = AE_GRADCHECK_NOISE_SIGMAS;
    o->n_dither = AE_GRADCHECK_DITHERS;
}

static const ae_gradcheck_opts *defaults(ae_gradcheck_opts *o)
{
    ae_gradcheck_opts_default(o);
    return o;
}

/* ---- the core ------------------------------------------------------------ */

/* Evaluates the objective at the current point; sets *kink when a kinked
 * quantity (relu/elu input, |a| of the L1 penalty) changed sign since the
 * unperturbed point. */
typedef double (*eval_fn)(void *ud, int *kink);

typedef struct group {
    size_t off, count; /* a contiguous range of the perturbed array */
    int layer;         /* -1 when not a layer */
    const char *name;
} group;

typedef struct checker {
    float *p;          /* perturbed in place (len floats) */
    size_t len;
    const float *grad; /* analytic, same indexing as p */
    eval_fn eval;
    void *ud;
    const ae_gradcheck_opts *o;
    int levels;        /* o->levels clamped to [1, RICH_MAX_LEVELS] */
    double weight[RICH_MAX_LEVELS]; /* the Richardson result is sum_k weight[k] D(h / 2^k) */
    double noise;      /* sd of the rounding error of one evaluation of J */
} checker;

/* The Richardson table is linear in the central differences D_k = D(h / 2^k): run it on unit vectors
 * to get the weights (levels 2: -1/3, 4/3; levels 3: 1/45, -20/45, 64/45), which give the noise of the
 * result from the noise of each D_k. */
static void richardson_weights(int levels, double *w)
{
    double prev[RICH_MAX_LEVELS][RICH_MAX_LEVELS], cur[RICH_MAX_LEVELS][RICH_MAX_LEVELS];
    memset(prev, 0, sizeof prev);
    for (int k = 0; k < levels; k++) {
        memset(cur, 0, sizeof cur);
        cur[0][k] = 1.0;
        double f = 1.0;
        for (int j = 1; j <= k; j++) {
            f *= RICH_RATIO;
            for (int q = 0; q < levels; q++) cur[j][q] = (f * cur[j - 1][q] - prev[j - 1][q]) / (f - 1.0);
        }
        memcpy(prev, cur, sizeof cur);
    }
    for (int q = 0; q < levels; q++) w[q] = prev[levels - 1][q];
}

/* Central difference along p[i] with step h, divided by the step actually
 * taken in float (p[i] +- h rounds), so that rounding of the step itself
 * does not bias the quotient. Restores p[i] bit for bit. */
static double central(const checker *c, size_t i, double h, double *width, int *kink)
{
    float p0 = c->p[i];
    c->p[i] = (float)((double)p0 + h);
    double xp = c->p[i], fp = c->eval(c->ud, kink);
    c->p[i] = (float)((double)p0 - h);
    double xm = c->p[i], fm = c->eval(c->ud, kink);
    c->p[i] = p0;
    *width = xp - xm;
    return (fp - fm) / *width;
}

/* dJ/dp[i] by Richardson-extrapolated central differences from h down to h / 2^(levels-1); *sd = its
 * standard deviation from the rounding noise of J (two evaluations per difference, independent
 * roundings). */
static double numeric(const checker *c, size_t i, double h, double *sd, int *kink)
{
    double prev[RICH_MAX_LEVELS] = {0}, cur[RICH_MAX_LEVELS] = {0}, var = 0.0;
    for (int k = 0; k < c->levels; k++, h *= 0.5) {
        double width;
        cur[0] = central(c, i, h, &width, kink);
        double dsd = c->weight[k] * sqrt(2.0) * c->noise / width;
        var += dsd * dsd;
        double f = 1.0;
        for (int j = 1; j <= k; j++) {
            f *= RICH_RATIO;
            cur[j] = (f * cur[j - 1] - prev[j - 1]) / (f - 1.0);
        }
        memcpy(prev, cur, sizeof cur);
    }
    *sd = sqrt(var);
    return prev[c->levels - 1];
}

/* J at p + sign * delta, delta[i] = DITHER_REL * max(|p[i]|, min_mag) * (+-1 from rng). */
static double dithered(checker *c, const float *save, uint32_t key, double sign)
{
    ae_rng rng;
    ae_rng_init(&rng, c->o->seed, AE_RNG_TEST, 0, 1, key);
    for (size_t i = 0; i < c->len; i++) {
        double d = DITHER_REL * fmax(fabs((double)save[i]), c->o->min_mag);
        c->p[i] = (float)((double)save[i] + ((ae_rng_u32(&rng) & 1u) ? sign * d : -sign * d));
    }
    int kink = 0;
    return c->eval(c->ud, &kink);
}

/* The rounding noise of J, measured. Move every coordinate of p by about DITHER_REL of itself (some ten
 * float ulps: enough to reshuffle every rounding of the forward pass, which is what J(p + h) and
 * J(p - h) also see) in a random direction delta, both ways: J(p + delta) + J(p - delta) cancels the
 * first-order change exactly and leaves delta' H delta ~ 1e-12 |H|, far below the rounding. The
 * difference of two such sums is then four independent roundings: var = 4 sd^2. Perturbing all
 * coordinates at once reshuffles every rounding, an upper bound for perturbing one. (A one-ulp dither
 * is not enough: rounding is piecewise constant, and most results round the same way again.) */
static ae_status measure_noise(checker *c, ae_error *err)
{
    c->noise = 0.0;
    int pairs = c->o->n_dither / 2;
    if (pairs < 1 || c->len == 0) return AE_OK;
    float *save = ae_malloc(c->len * sizeof *save, err);
    if (!save) return AE_ERR_NOMEM;
    memcpy(save, c->p, c->len * sizeof *save);
    double ss = 0.0;
    for (int k = 0; k < pairs; k++) {
        uint32_t a = 2u * (uint32_t)k, b = a + 1u;
        double sa = dithered(c, save, a, 1.0) + dithered(c, save, a, -1.0);
        double sb = dithered(c, save, b, 1.0) + dithered(c, save, b, -1.0);
        ss += (sa - sb) * (sa - sb);
    }
    memcpy(c->p, save, c->len * sizeof *save);
    free(save);
    c->noise = sqrt(ss / (DITHER_ROUNDINGS * pairs));
    return AE_OK;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* The coordinates to check: all of each group, or a random subset of at
 * most max_per_layer (a partial Fisher-Yates shuffle), in ascending order. */
static size_t *select_coords(const group *g, int ng, const ae_gradcheck_opts *o, size_t *count, ae_error *err)
{
    size_t total = 0;
    for (int k = 0; k < ng; k++)
        total += o->max_per_layer && g[k].count > o->max_per_layer ? o->max_per_layer : g[k].count;
    size_t *idx = ae_malloc((total ? total : 1) * sizeof *idx, err);
    if (!idx) return NULL;
    size_t pos = 0;
    for (int k = 0; k < ng; k++) {
        size_t cnt = g[k].count;
        if (!o->max_per_layer || cnt <= o->max_per_layer) {
            for (size_t j = 0; j < cnt; j++) idx[pos++] = g[k].off + j;
            continue;
        }
        size_t *all = ae_malloc(cnt * sizeof *all, err);
        if (!all) {
            free(idx);
            return NULL;
        }
        for (size_t j = 0; j < cnt; j++) all[j] = j;
        ae_rng rng;
        ae_rng_init(&rng, o->seed, AE_RNG_TEST, (uint32_t)k, 0, 0);
        for (size_t j = 0; j < o->max_per_layer; j++) {
            size_t s = j + ae_rng_below(&rng, (uint32_t)(cnt - j));
            size_t t = all[j];
            all[j] = all[s];
            all[s] = t;
        }
        qsort(all, o->max_per_layer, sizeof *all, cmp_size);
        for (size_t j = 0; j < o->max_per_layer; j++) idx[pos++] = g[k].off + all[j];
        free(all);
    }
    *count = total;
    return idx;
}

/* Relative error of one coordinate, |a - n| / max(|a|, |n|, floor). The floor: the forward pass runs
 * in float, so J carries a rounding error of about 1e-7 of its terms (measure_noise), and the central
 * difference divides it by the step: the numerical derivative has an ABSOLUTE uncertainty sd that no
 * choice of step removes (a larger step trades it for truncation error). For a coordinate whose
 * gradient is small against J - a weight behind a saturated unit, a sum that nearly cancels -
 * |a - n| / |a| would then measure the rounding of J, not the analytic code. With
 * floor = noise_sigmas * sd / tol, a coordinate passes when |a - n| <= max(tol |a|, tol |n|,
 * noise_sigmas * sd): within tol relative, or within noise_sigmas standard deviations of what float
 * evaluation can resolve. Where the gradient is large against sd (the usual case: see the floors
 * the tests print) the floor is below |a| and the test is purely relative, so a wrong factor, a
 * missing term or a transposed index still fails. */
static double rel_err(double a, double num, double floor)
{
    if (!isfinite(a) || !isfinite(num)) return INFINITY;
    double den = fmax(fmax(fabs(a), fabs(num)), floor);
    double diff = fabs(a - num);
    return den > 0.0 ? diff / den : 0.0;
}

static ae_status run_check(checker *c, const group *g, int ng, ae_gradcheck_result *r, ae_error *err)
{
    const ae_gradcheck_opts *o = c->o;
    c->levels = o->levels < 1 ? 1 : o->levels > RICH_MAX_LEVELS ? RICH_MAX_LEVELS : o->levels;
    richardson_weights(c->levels, c->weight);
    ae_status st = measure_noise(c, err);
    if (st) return st;
    r->noise = c->noise;
    size_t n_idx = 0;
    size_t *idx = select_coords(g, ng, o, &n_idx, err);
    if (!idx) return AE_ERR_NOMEM;
    int gk = 0;
    double gworst = 0.0;
    size_t gchecked = 0, gskipped = 0;
    for (size_t k = 0; k <= n_idx; k++) {
        /* close the group(s) ending before idx[k] */
        while (gk < ng && (k == n_idx || idx[k] >= g[gk].off + g[gk].count)) {
            if (o->verbose && g[gk].count)
                fprintf(stderr, "gradcheck: %-10s max rel err %.3e over %zu coordinates (%zu skipped)\n",
                        g[gk].name, gworst, gchecked, gskipped);
            gk++;
            gworst = 0.0;
            gchecked = gskipped = 0;
        }
        if (k == n_idx) break;
        size_t i = idx[k];
        int kink = 1;
        double sd = 0.0, num = 0.0;
        double h = o->rel_step * fmax(fabs((double)c->p[i]), o->min_mag);
        /* near a kink, retry with smaller steps: the floor follows the larger noise */
        for (int t = 0; t <= KINK_RETRIES && kink; t++, h /= KINK_SHRINK) {
            kink = 0;
            num = numeric(c, i, h, &sd, &kink);
            if (t == 1) r->n_shrunk++;
        }
        if (kink) {
            r->n_skipped++;
            gskipped++;
            continue;
        }
        double a = c->grad[i];
        double floor = o->tol > 0.0 ? o->noise_sigmas * sd / o->tol : 0.0;
        double e = rel_err(a, num, floor);
        r->n_checked++;
        gchecked++;
        gworst = fmax(gworst, e);
        if (floor > fmax(fabs(a), fabs(num)) && a != num) r->n_floored++; /* exact agreement is evidence */
        if (e > o->tol) {
            r->n_failed++;
            if (o->verbose)
                fprintf(stderr, "gradcheck: %s [%zu]: analytic %.9g numeric %.9g (sd %.3g) rel err %.3e\n",
                        g[gk].name, i, a, num, sd, e);
        }
        if (r->n_checked == 1 || e > r->max_rel_err) {
            r->max_rel_err = e;
            r->worst_index = i;
            r->worst_layer = g[gk].layer;
            snprintf(r->worst_name, sizeof r->worst_name, "%s", g[gk].name);
            r->worst_analytic = a;
            r->worst_numeric = num;
            r->floor = floor;
        }
    }
    free(idx);
    return AE_OK;
}

static void result_clear(ae_gradcheck_result *r)
{
    memset(r, 0, sizeof *r);
    r->worst_layer = -1;
}

void ae_gradcheck_format(const ae_gradcheck_result *r, char *buf, size_t n)
{
    snprintf(buf, n,
             "max rel err %.2e at %s[%zu] (analytic %.6g, numeric %.6g, floor %.2g), %zu checked, "
             "%zu skipped, %zu floored, noise sd %.2g",
             r->max_rel_err, r->worst_name, r->worst_index, r->worst_analytic, r->worst_numeric, r->floor,
             r->n_checked, r->n_skipped, r->n_floored, r->noise);
}

/* ---- models ---------------------------------------------------------------- */

double ae_gradcheck_objective(ae_model *m, const ae_ctx *ctx, const float *x, const float *target,
                              const uint8_t *labels, int n)
{
    float scale = ae_model_loss_scale(m, n);
    ae_model_forward(m, ctx, x, n, m->n_layers);
    ae_loss_out lo;
    ae_model_loss(m, ctx, x, target, labels, n, scale, 0, &lo);
    return (double)scale * lo.loss + lo.penalty / n + ae_model_add_l2(m);
}

static ae_status check_n(const ae_model *m, int n, ae_error *err)
{
    if (n < 1 || n > m->max_batch)
        return ae_error_set(err, AE_ERR_ARG, "gradcheck: n = %d samples, the model takes 1 to %d", n,
                            m->max_batch);
    return AE_OK;
}

static ae_ctx default_ctx(const ae_gradcheck_opts *o)
{
    /* as a training step does it: a fused output layer writes only its logits */
    ae_ctx ctx = {.training = 1, .seed = o ? o->seed : 0, .logits_only = 1};
    return ctx;
}

ae_status ae_gradcheck_model_grad(ae_model *m, const ae_ctx *ctx, const float *x, const float *target,
                                  const uint8_t *labels, int n, float *grad, double *objective, ae_error *err)
{
    ae_status st = check_n(m, n, err);
    if (st) return st;
    ae_ctx dctx = default_ctx(NULL);
    if (!ctx) ctx = &dctx;
    float scale = ae_model_loss_scale(m, n);
    /* the aux floats too: forward adds the batch's sums into them */
    memset(m->grads, 0, sizeof(float) * (m->n_params + m->n_aux));
    ae_model_forward(m, ctx, x, n, m->n_layers);
    ae_loss_out lo;
    ae_model_loss(m, ctx, x, target, labels, n, scale, 1, &lo);
    double l2 = ae_model_add_l2(m);
    if (grad) memcpy(grad, m->grads, sizeof(float) * m->n_params);
    if (objective) *objective = (double)scale * lo.loss + lo.penalty / n + l2;
    return AE_OK;
}

/* The layers whose outputs cross a kink of J when they change sign: relu and
 * elu (y > 0 exactly when z > 0) and the layer under the L1 penalty |a|. */
static int kinked(const ae_model *m, int i)
{
    ae_act a = m->layers[i].act;
    return a == AE_ACT_RELU || a == AE_ACT_ELU || (i == m->l1_layer && m->l1 > 0.0f);
}

typedef struct model_ud {
    ae_model *m;
    const ae_ctx *ctx;
    const float *x, *target;
    const uint8_t *labels;
    int n;
    signed char *signs; /* signs of the kinked layers' outputs at the unperturbed point */
    int record;         /* 1: write signs instead of comparing */
} model_ud;

static signed char sgn(float v) { return (signed char)((v > 0.0f) - (v < 0.0f)); }

static double model_eval(void *ud, int *kink)
{
    model_ud *u = ud;
    double j = ae_gradcheck_objective(u->m, u->ctx, u->x, u->target, u->labels, u->n);
    size_t pos = 0;
    for (int i = 0; i < u->m->n_layers; i++) {
        if (!kinked(u->m, i)) continue;
        size_t len = (size_t)u->n * u->m->layers[i].out_size;
        const float *a = u->m->act[i];
        for (size_t k = 0; k < len; k++, pos++) {
            if (u->record) u->signs[pos] = sgn(a[k]);
            else if (u->signs[pos] != sgn(a[k])) *kink = 1;
        }
    }
    return j;
}

ae_status ae_gradcheck_model_against(ae_model *m, const float *x, const float *target, const uint8_t *labels,
                                     int n, const float *grad, const ae_gradcheck_opts *o,
                                     ae_gradcheck_result *r, ae_error *err)
{
    result_clear(r);
    ae_gradcheck_opts dflt;
    if (!o) o = defaults(&dflt);
    ae_status st = check_n(m, n, err);
    if (st) return st;
    ae_ctx dctx = default_ctx(o);
    model_ud u = {m, o->ctx ? o->ctx : &dctx, x, target, labels, n, NULL, 1};
    size_t n_signs = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (kinked(m, i)) n_signs += (size_t)n * m->layers[i].out_size;
    /* a private copy: evaluating J adds the L2 gradient into m->grads, which may be grad */
    float *g = ae_alloc_floats(m->n_params, err);
    group *groups = ae_calloc((size_t)m->n_layers, sizeof *groups, err);
    u.signs = g && groups ? ae_malloc(n_signs ? n_signs : 1, err) : NULL;
    if (!u.signs) {
        free(g);
        free(groups);
        return AE_ERR_NOMEM;
    }
    memcpy(g, grad, sizeof(float) * m->n_params);
    int dummy = 0;
    r->objective = model_eval(&u, &dummy);
    u.record = 0;
    if (!isfinite(r->objective)) {
        st = ae_error_set(err, AE_ERR_NUMERIC, "gradcheck: the objective is %g at the given parameters",
                          r->objective);
    } else {
        int ng = 0;
        for (int i = 0; i < m->n_layers; i++) {
            const ae_layer *l = &m->layers[i];
            if (l->n_params) groups[ng++] = (group){l->p_off, l->n_params, i, l->name};
        }
        checker c = {.p = m->params, .len = m->n_params, .grad = g, .eval = model_eval, .ud = &u, .o = o};
        st = run_check(&c, groups, ng, r, err);
    }
    memcpy(m->grads, g, sizeof(float) * m->n_params);
    free(u.signs);
    free(groups);
    free(g);
    return st;
}

ae_status ae_gradcheck_model(ae_model *m, const float *x, const float *target, const uint8_t *labels, int n,
                             const ae_gradcheck_opts *o, ae_gradcheck_result *r, ae_error *err)
{
    result_clear(r);
    ae_gradcheck_opts dflt;
    if (!o) o = defaults(&dflt);
    ae_ctx dctx = default_ctx(o);
    const ae_ctx *ctx = o->ctx ? o->ctx : &dctx;
    ae_status st = ae_gradcheck_model_grad(m, ctx, x, target, labels, n, NULL, NULL, err);
    if (st) return st;
    /* m->grads holds the gradient; _against copies it before evaluating J */
    return ae_gradcheck_model_against(m, x, target, labels, n, m->grads, o, r, err);
}

/* ---- functions --------------------------------------------------------------- */

typedef struct func_ud {
    ae_gradcheck_fn f;
    void *ud;
    const float *x;
} func_ud;

static double func_eval(void *ud, int *kink)
{
    (void)kink;
    func_ud *u = ud;
    return u->f(u->ud, u->x, NULL);
}

ae_status ae_gradcheck_func(ae_gradcheck_fn f, void *ud, float *x, size_t len, const ae_gradcheck_opts *o,
                            ae_gradcheck_result *r, ae_error *err)
{
    result_clear(r);
    ae_gradcheck_opts dflt;
    if (!o) o = defaults(&dflt);
    float *g = ae_alloc_floats(len, err);
    if (!g) return AE_ERR_NOMEM;
    r->objective = f(ud, x, g);
    ae_status st;
    if (!isfinite(r->objective)) {
        st = ae_error_set(err, AE_ERR_NUMERIC, "gradcheck: f = %g at the given point", r->objective);
    } else {
        func_ud u = {f, ud, x};
        group grp = {0, len, -1, ""};
        checker c = {.p = x, .len = len, .grad = g, .eval = func_eval, .ud = &u, .o = o};
        st = run_check(&c, &grp, 1, r, err);
    }
    free(g);
    return st;
}
