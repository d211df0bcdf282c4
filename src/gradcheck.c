/* gradcheck.c - central-difference gradient checks of a model's objective or
 * of any scalar function of a float array (see gradcheck.h). One core loop
 * serves both: pick the coordinates, perturb each in place, compare. */
#include "ae/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/rng.h"

/* Richardson extrapolation of central differences D(h) = f' + c h^2 + O(h^4):
 * (4 D(h/2) - D(h)) / 3 = f' + O(h^4). */
#define RICH_NUM 4.0
#define RICH_DEN 3.0
#define RICH_HALF 0.5

void ae_gradcheck_opts_default(ae_gradcheck_opts *o)
{
    memset(o, 0, sizeof *o);
    o->tol = AE_GRADCHECK_TOL;
    o->rel_step = AE_GRADCHECK_REL_STEP;
    o->min_mag = AE_GRADCHECK_MIN_MAG;
    o->floor_rel = AE_GRADCHECK_FLOOR_REL;
    o->richardson = 1;
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
    float *p;          /* perturbed in place */
    const float *grad; /* analytic, same indexing as p */
    eval_fn eval;
    void *ud;
    const ae_gradcheck_opts *o;
} checker;

/* Central difference along p[i] with step h, divided by the steps actually
 * taken in float (p[i] +- h rounds), so that rounding of the step itself
 * does not bias the quotient. Restores p[i] bit for bit. */
static double central(const checker *c, size_t i, double h, int *kink)
{
    float p0 = c->p[i];
    c->p[i] = (float)((double)p0 + h);
    double xp = c->p[i], fp = c->eval(c->ud, kink);
    c->p[i] = (float)((double)p0 - h);
    double xm = c->p[i], fm = c->eval(c->ud, kink);
    c->p[i] = p0;
    return (fp - fm) / (xp - xm);
}

static double numeric(const checker *c, size_t i, int *kink)
{
    const ae_gradcheck_opts *o = c->o;
    double h = o->rel_step * fmax(fabs((double)c->p[i]), o->min_mag);
    double d1 = central(c, i, h, kink);
    if (!o->richardson) return d1;
    double d2 = central(c, i, h * RICH_HALF, kink);
    return (RICH_NUM * d2 - d1) / RICH_DEN;
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

/* Relative error of one coordinate. The floor: the numerical derivative
 * carries an ABSOLUTE error, not a relative one - the float forward pass
 * rounds J at about 1e-7 of the magnitude of its terms, and the quotient
 * divides that by h ~ 1e-3. A coordinate whose true gradient is tiny (a
 * weight feeding a nearly saturated unit) therefore has a numerical
 * derivative that is mostly rounding, and |a - n| / |a| would flag it for no
 * fault of the analytic code. Measuring errors below floor_rel (1e-2) of the
 * largest gradient on the absolute scale of floor instead keeps the check
 * blind only to errors smaller than 1e-3 x 1e-2 = 1e-5 of the largest
 * gradient, which is below what the float forward pass can resolve, while a
 * wrong formula (a missing term, a factor, a transposed index) shows up on the
 * large coordinates as well. */
static double rel_err(double a, double num, double floor)
{
    if (!isfinite(a) || !isfinite(num)) return INFINITY;
    double den = fmax(fmax(fabs(a), fabs(num)), floor);
    double diff = fabs(a - num);
    return den > 0.0 ? diff / den : 0.0;
}

static ae_status run_check(const checker *c, const group *g, int ng, ae_gradcheck_result *r, ae_error *err)
{
    const ae_gradcheck_opts *o = c->o;
    size_t n_idx = 0;
    size_t *idx = select_coords(g, ng, o, &n_idx, err);
    if (!idx) return AE_ERR_NOMEM;
    double gmax = 0.0;
    for (size_t k = 0; k < n_idx; k++) gmax = fmax(gmax, fabs((double)c->grad[idx[k]]));
    r->floor = o->floor_rel * gmax;
    int gk = 0;
    double gworst = 0.0;
    size_t gchecked = 0, gskipped = 0;
    for (size_t k = 0; k <= n_idx; k++) {
        /* close the group(s) ending before idx[k] */
        while (gk < ng && (k == n_idx || idx[k] >= g[gk].off + g[gk].count)) {
            if (o->verbose && g[gk].count)
                fprintf(stderr, "gradcheck: %-10s max rel err %.3e over %zu coordinates (%zu skipped at kinks)\n",
                        g[gk].name, gworst, gchecked, gskipped);
            gk++;
            gworst = 0.0;
            gchecked = gskipped = 0;
        }
        if (k == n_idx) break;
        size_t i = idx[k];
        int kink = 0;
        double num = numeric(c, i, &kink);
        if (kink) {
            r->n_skipped++;
            gskipped++;
            continue;
        }
        double a = c->grad[i];
        double e = rel_err(a, num, r->floor);
        r->n_checked++;
        gchecked++;
        gworst = fmax(gworst, e);
        if (e > o->tol) {
            r->n_failed++;
            if (o->verbose)
                fprintf(stderr, "gradcheck: %s [%zu]: analytic %.9g numeric %.9g rel err %.3e\n", g[gk].name, i,
                        a, num, e);
        }
        if (r->n_checked == 1 || e > r->max_rel_err) {
            r->max_rel_err = e;
            r->worst_index = i;
            r->worst_layer = g[gk].layer;
            snprintf(r->worst_name, sizeof r->worst_name, "%s", g[gk].name);
            r->worst_analytic = a;
            r->worst_numeric = num;
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

/* ---- models ---------------------------------------------------------------- */

float ae_gradcheck_scale(const ae_model *m, int n)
{
    double per = m->loss == AE_LOSS_CE ? 1.0 : (double)m->out_size;
    return (float)(1.0 / ((double)n * per));
}

double ae_gradcheck_objective(ae_model *m, const ae_ctx *ctx, const float *x, const float *target,
                              const uint8_t *labels, int n)
{
    float scale = ae_gradcheck_scale(m, n);
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
    ae_ctx ctx = {.training = 1, .seed = o ? o->seed : 0};
    return ctx;
}

ae_status ae_gradcheck_model_grad(ae_model *m, const ae_ctx *ctx, const float *x, const float *target,
                                  const uint8_t *labels, int n, float *grad, double *objective, ae_error *err)
{
    ae_status st = check_n(m, n, err);
    if (st) return st;
    ae_ctx dctx = default_ctx(NULL);
    if (!ctx) ctx = &dctx;
    float scale = ae_gradcheck_scale(m, n);
    memset(m->grads, 0, sizeof(float) * m->n_params);
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
    return a == AE_ACT_RELU || a == AE_ACT_ELU || i == m->l1_layer;
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
                                     int n, const float *grad, const ae_gradcheck_opts *o, ae_gradcheck_result *r,
                                     ae_error *err)
{
    result_clear(r);
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
        checker c = {m->params, g, model_eval, &u, o};
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
    float *g = ae_alloc_floats(len, err);
    if (!g) return AE_ERR_NOMEM;
    r->objective = f(ud, x, g);
    ae_status st;
    if (!isfinite(r->objective)) {
        st = ae_error_set(err, AE_ERR_NUMERIC, "gradcheck: f = %g at the given point", r->objective);
    } else {
        func_ud u = {f, ud, x};
        group grp = {0, len, -1, ""};
        checker c = {x, g, func_eval, &u, o};
        st = run_check(&c, &grp, 1, r, err);
    }
    free(g);
    return st;
}
