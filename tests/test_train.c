/* test_train.c - CUnit suite "train": the layers and penalties that only act
 * in training - batch norm (bn), the noise layers (gauss, mask, saltpepper,
 * mult012, dropout), the VAE sample layer with its KL penalty, KL sparsity
 * and L1 activity - and the reconstruction loss reductions (mean, sum).
 *
 * Gradients: every case passes ae_gradcheck_model in training mode with one
 * fixed ctx (the noise and the VAE's eps are keyed by the ctx, so the same
 * ctx gives the same draw in every evaluation of the objective: checked
 * bitwise, and a check against another step's draw must fail). bn in
 * training normalizes with the local batch's statistics (ctx->reduce NULL).
 *
 * Ranks: a process-local simulation of two ranks (two slices of one batch,
 * the reduce callback adding the other slice's buffers, iterated to a fixed
 * point) must give the full batch's gradient for synchronized bn, KL
 * sparsity, the VAE and the noise layers; non-synchronized bn differs in its
 * gradient but not in the aux sums, so its running statistics agree.
 *
 * Numbers worked out by hand: bn's training output, the update hook
 * (momentum, unbiased variance), eval with the running statistics; the VAE's
 * eval output and closed-form KL; the KL sparsity penalty. Statistics of
 * many draws: dropout's rate and expected value, mask's fraction, ...
 *
 * Gradient accumulation: the passes of a step (ae_train_pass_range) cover
 * every sample of the batch once, in order, for every batch, rank count and
 * pass count; micro_batch gives the fewest passes that keep a rank's pass at
 * most micro_batch samples; synchronized bn divides by ctx->sync_count.
 * AE_GRADCHECK_VERBOSE=1 in the environment prints every check's numbers and
 * per-layer maxima. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/gradcheck.h"
#include "ae/layers.h"
#include "ae/model.h"
#include "ae/rng.h"
#include "ae/train.h"
#include "testutil.h"

#define ORIGIN "train.ini"
#define SEED 20240613u
#define MAX_BATCH 8
#define N_SAMPLES 4     /* batch statistics need a few samples */
#define BN_SAMPLES 5
#define BN_EPS 1e-5     /* bn's default epsilon */
/* Biases drawn in [-0.5, 0.5), bn scales in [0.5, 1.5): gamma = 1 would hide a missing factor. */
#define BIAS_SCALE 0.5f
#define INI_MAX 1024
/* Evidence bounds of a passing check (see test_layers.c). */
#define MAX_SKIP_FRACTION 0.1
#define MAX_FLOORED_FRACTION 0.5
/* Hand-computed forward values: a few float operations on numbers of order 1. */
#define FWD_TOL 2e-6
/* Two ranks against one process: the same sums in another order, through float. */
#define SIM_TOL 1e-5
/* A gradient that must differ (another draw, local statistics) differs by far more than this. */
#define DIFF_MIN 1e-3
/* Statistical checks of many draws: within this many standard errors (fixed seed: deterministic). */
#define N_SIGMA 3.0

/* ---- helpers ------------------------------------------------------------ */

static const tu_setup SETUP = {ORIGIN, MAX_BATCH, SEED, BIAS_SCALE};

/* Inputs in [-1, 1) and targets in [0, 1) for MAX_BATCH samples. */
static void make_data(const ae_model *m, float **x, float **t)
{
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 2, 0, 0);
    CU_ASSERT_FATAL(tu_make_data(m, MAX_BATCH, &r, x, t) == 0);
}

/* The model of ini for inputs of shape in, its parameters drawn (tu_init_params), and make_data's data. */
static tu_fixture prepare_at(unsigned line, const char *ini, ae_shape in)
{
    tu_fixture f;
    int rc = tu_fixture_make(&f, &SETUP, ini, in, 2, MAX_BATCH, NULL);
    TU_ASSERT_FIXTURE_AT(line, rc);
    return f;
}
#define PREPARE(ini, ...) prepare_at(__LINE__, (ini), (ae_shape){__VA_ARGS__})

/* The training ctx of the checks: seed, epoch, step and slice start all non-trivial. */
static ae_ctx train_ctx(int n)
{
    ae_ctx c = {.training = 1, .seed = SEED, .epoch = 2, .step = 7, .sample0 = 0, .batch = n};
    return c;
}

static double max_abs(const float *a, size_t n)
{
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)a[i]));
    return mx;
}

/* max |a - b| / max |b| (0 when both are all zero) */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0.0, s = max_abs(b, n);
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return s > 0.0 ? d / s : d;
}

/* Runs ae_gradcheck_model on m with ctx (n samples) and asserts that it passes on enough evidence. */
static void assert_grad_at(unsigned line, const char *what, ae_model *m, const float *x, const float *t,
                           int n, const ae_ctx *ctx)
{
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    o.ctx = ctx;
    o.seed = SEED;
    o.verbose = tu_verbose();
    if (o.verbose) fprintf(stderr, "\n");
    tu_gradcheck_verdict v;
    tu_gradcheck_model(&v, what, m, x, t, NULL, n, &o, MAX_SKIP_FRACTION, MAX_FLOORED_FRACTION);
    if (!(v.within && v.enough)) fprintf(stderr, "\n    %s\n", tu_gradcheck_passed_msg(&v));
    TU_ASSERT_GRADCHECK_PASSED_AT(line, &v);
}

/* Builds ini for inputs of shape in, checks dJ/dparams on n samples in training mode (train_ctx). */
static void check_grad_at(unsigned line, const char *what, const char *ini, ae_shape in, int n)
{
    tu_fixture f = prepare_at(line, ini, in);
    ae_ctx ctx = train_ctx(n);
    assert_grad_at(line, what, f.m, f.x, f.t, n, &ctx);
    tu_fixture_free(&f);
}
#define CHECK_GRAD(what, ini, n, ...) check_grad_at(__LINE__, (what), (ini), (ae_shape){__VA_ARGS__}, (n))

#define IN4 4, 1, 1

/* ---- two ranks in one process ------------------------------------------------- */

/* Each simulated rank records the local buffer of every reduce call of its pass and adds the peer's
 * recording of the same call. A call's local buffer depends only on earlier calls' reduced values, so
 * alternating the two passes reaches the fixed point (every call sees the true sum) after at most one
 * pass per call; then the passes compute exactly what two MPI ranks would. */
#define SIM_CALLS 16
#define SIM_LEN 64

typedef struct sim_rank {
    float rec[SIM_CALLS][SIM_LEN];
    size_t len[SIM_CALLS];
    int calls;  /* calls so far in this pass */
    int n_rec;  /* calls of the last completed pass */
    const struct sim_rank *peer;
    int bad;    /* too many calls, too long a buffer, or a length the peer did not have */
} sim_rank;

static ae_status sim_reduce(float *buf, size_t n, void *user)
{
    sim_rank *r = user;
    int k = r->calls++;
    if (k >= SIM_CALLS || n > SIM_LEN) {
        r->bad = 1;
        return AE_ERR_ARG;
    }
    memcpy(r->rec[k], buf, sizeof(float) * n);
    r->len[k] = n;
    const sim_rank *p = r->peer;
    if (k < p->n_rec) {
        if (p->len[k] != n) r->bad = 1;
        else
            for (size_t i = 0; i < n; i++) buf[i] += p->rec[k][i];
    }
    return AE_OK;
}

static int sim_same(const sim_rank *a, const sim_rank *b)
{
    if (a->n_rec != b->n_rec) return 0;
    for (int k = 0; k < a->n_rec; k++)
        if (a->len[k] != b->len[k] || memcmp(a->rec[k], b->rec[k], sizeof(float) * a->len[k]) != 0) return 0;
    return 1;
}

/* What a batch of N computes, in one process or summed over the simulated ranks. */
typedef struct run_result {
    float *g;      /* gradients (n_params) */
    float *aux;    /* aux (n_aux) */
    float *y;      /* outputs of all samples (N x out_size) */
    double j;      /* the objective from all samples' losses and penalties */
    int calls;     /* simulated ranks: reduce calls per pass */
    int converged; /* simulated ranks: the passes reached the fixed point */
} run_result;

/* Zeroed buffers of a run_result of m on N samples; 0, or -1 when out of memory. */
static int result_alloc(run_result *res, const ae_model *m, int N)
{
    res->g = calloc(m->n_params + 1, sizeof(float));
    res->aux = calloc(m->n_aux + 1, sizeof(float));
    res->y = calloc((size_t)N * m->out_size + 1, sizeof(float));
    return res->g && res->aux && res->y ? 0 : -1;
}

static void result_free(run_result *res)
{
    free(res->g);
    free(res->aux);
    free(res->y);
}

/* One rank's pass over samples [lo, lo + n) of a global batch of N: forward (adding its aux sums), loss +
 * backward. */
static void sim_pass(ae_model *m, sim_rank *r, const ae_ctx *base, const float *x, const float *t, int lo,
                     int n, int N, run_result *res, ae_loss_out *lo_out)
{
    r->calls = 0;
    ae_ctx ctx = *base;
    ctx.sample0 = lo;
    ctx.batch = N;
    ctx.reduce = sim_reduce;
    ctx.reduce_user = r;
    const float *xs = x + (size_t)lo * m->in_size;
    ae_model_forward(m, &ctx, xs, n, m->n_layers);
    ae_model_loss(m, &ctx, xs, t + (size_t)lo * m->out_size, NULL, n, ae_model_loss_scale(m, N), 1, lo_out);
    size_t w = m->out_size;
    memcpy(res->y + (size_t)lo * w, m->act[m->n_layers - 1], sizeof(float) * (size_t)n * w);
    r->n_rec = r->calls;
}

/* Ranks 0 and 1 take samples [0, k) and [k, N) (k may be 0: an empty slice, which still reduces);
 * slice 1 starts at sample0 = lo1 (k unless a test wants the wrong key). */
static run_result simulate(ae_model *m, const ae_ctx *base, const float *x, const float *t, int N, int k,
                           int lo1)
{
    run_result res = {0};
    sim_rank *r = calloc(4, sizeof *r);
    int ok = result_alloc(&res, m, N) == 0;
    CU_ASSERT_FATAL(r && ok);
    r[0].peer = &r[1];
    r[1].peer = &r[0];
    ae_loss_out l0, l1;
    for (int it = 0; it < SIM_CALLS + 2 && !res.converged; it++) {
        r[2] = r[0];
        r[3] = r[1];
        memset(m->grads, 0, sizeof(float) * (m->n_params + m->n_aux));
        sim_pass(m, &r[0], base, x, t, 0, k, N, &res, &l0);
        sim_pass(m, &r[1], base, x, t, lo1, N - k, N, &res, &l1);
        res.converged = it > 0 && sim_same(&r[0], &r[2]) && sim_same(&r[1], &r[3]);
    }
    CU_ASSERT(res.converged);
    CU_ASSERT(!r[0].bad && !r[1].bad);
    CU_ASSERT_EQUAL(r[0].n_rec, r[1].n_rec); /* both ranks make the same reduce calls */
    res.calls = r[0].n_rec;
    memcpy(res.g, m->grads, sizeof(float) * m->n_params);
    /* both passes added their sums into the one buffer, as the allreduce (or accumulation) sums them */
    memcpy(res.aux, m->grads + m->n_params, sizeof(float) * m->n_aux);
    res.j = (double)ae_model_loss_scale(m, N) * (l0.loss + l1.loss) + (l0.penalty + l1.penalty) / N;
    free(r);
    return res;
}

/* The full batch in one call (no reduce): gradient, objective, outputs and aux. */
static run_result full_batch(ae_model *m, const ae_ctx *base, const float *x, const float *t, int N)
{
    run_result f = {0};
    CU_ASSERT_FATAL(result_alloc(&f, m, N) == 0);
    ae_ctx ctx = *base;
    ctx.sample0 = 0;
    ctx.batch = N;
    ctx.reduce = NULL;
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_gradcheck_model_grad(m, &ctx, x, t, NULL, N, f.g, &f.j, &err), AE_OK);
    memcpy(f.aux, m->grads + m->n_params, sizeof(float) * m->n_aux);
    memcpy(f.y, m->act[m->n_layers - 1], sizeof(float) * (size_t)N * m->out_size);
    return f;
}

typedef struct sim_diffs {
    double g, y, j, aux;
    int calls;
} sim_diffs;

/* Simulates two ranks (split at k) on N samples of ini and returns the relative differences from the
 * full batch; asserts that the aux sums (bn's running statistics' input) always agree. */
static sim_diffs two_ranks_at(unsigned line, const char *what, const char *ini, ae_shape in, int N, int k)
{
    sim_diffs d = {0};
    tu_fixture fx = prepare_at(line, ini, in);
    ae_model *m = fx.m;
    TU_ASSERT_FATAL_AT(m->l2 == 0.0f, line, "no l2 in the simulated models");
    const float *x = fx.x, *t = fx.t;
    ae_ctx base = train_ctx(N);
    run_result f = full_batch(m, &base, x, t, N);
    run_result s = simulate(m, &base, x, t, N, k, k);
    d.g = rel_diff(s.g, f.g, m->n_params);
    d.y = rel_diff(s.y, f.y, (size_t)N * m->out_size);
    d.j = fabs(s.j - f.j) / fabs(f.j);
    d.aux = m->n_aux ? rel_diff(s.aux, f.aux, m->n_aux) : 0.0;
    d.calls = s.calls;
    if (tu_verbose())
        fprintf(stderr, "\n    two ranks %-22s split %d|%d: grad %.2e out %.2e J %.2e aux %.2e, %d reduces\n",
                what, k, N - k, d.g, d.y, d.j, d.aux, d.calls);
    char msg[TU_MSG_MAX];
    snprintf(msg, sizeof msg, "%s: two ranks' aux sums differ from the batch's by %.3g (tol %g)", what, d.aux,
             SIM_TOL);
    TU_ASSERT_AT(d.aux <= SIM_TOL, line, msg);
    result_free(&s);
    result_free(&f);
    tu_fixture_free(&fx);
    return d;
}

/* Asserts that two simulated ranks compute the full batch's outputs, objective and gradient. */
static void expect_two_ranks_equal_at(unsigned line, const char *what, const char *ini, ae_shape in, int N,
                                      int k, int want_calls)
{
    sim_diffs d = two_ranks_at(line, what, ini, in, N, k);
    char msg[TU_MSG_MAX];
    snprintf(msg, sizeof msg, "%s split %d|%d: grad %.3g, out %.3g, J %.3g from the full batch (tol %g)",
             what, k, N - k, d.g, d.y, d.j, SIM_TOL);
    int ok = d.g <= SIM_TOL && d.y <= SIM_TOL && d.j <= SIM_TOL;
    if (!ok) fprintf(stderr, "\n    %s\n", msg);
    TU_ASSERT_AT(ok, line, msg);
    snprintf(msg, sizeof msg, "%s: %d reduce calls per pass, want %d", what, d.calls, want_calls);
    TU_ASSERT_AT(d.calls == want_calls, line, msg);
}
#define EXPECT_TWO_RANKS_EQUAL(what, ini, N, k, calls, ...) \
    expect_two_ranks_equal_at(__LINE__, (what), (ini), (ae_shape){__VA_ARGS__}, (N), (k), (calls))

/* ---- bn: gradients ------------------------------------------------------------ */

/* 4 -> dense(5) -> bn(act) -> dense(3) -> 4; the din of bn feeds the dense before it. */
static void check_bn_dense(const char *act, int sync)
{
    char ini[INI_MAX], what[64];
    snprintf(ini, sizeof ini,
             "[model]\nencoder = dense(5), bn(act=%s, sync=%d), dense(3, tanh, name=code)\n"
             "decoder = dense(4)\n", act, sync);
    snprintf(what, sizeof what, "dense-bn(%s, sync=%d)", act, sync);
    CHECK_GRAD(what, ini, BN_SAMPLES, IN4);
}

static void test_train_bn_dense_relu_grad(void) { check_bn_dense("relu", 0); }
static void test_train_bn_dense_sigmoid_grad(void) { check_bn_dense("sigmoid", 0); }

/* 1x4x4 -> conv(3, 3) -> bn(act) -> conv(2, 3) -> bn(linear) -> conv(1, 3): per-channel statistics over
 * samples and pixels (the conv before bn without bias, as the configs have it). */
static void check_bn_conv(const char *act)
{
    char ini[INI_MAX], what[64];
    snprintf(ini, sizeof ini,
             "[model]\nencoder = conv(3, 3, bias=0), bn(act=%s), conv(2, 3, tanh), bn(name=code)\n"
             "decoder = conv(1, 3)\n", act);
    snprintf(what, sizeof what, "conv-bn(%s)", act);
    CHECK_GRAD(what, ini, BN_SAMPLES, 1, 4, 4);
}

static void test_train_bn_conv_relu_grad(void) { check_bn_conv("relu"); }
static void test_train_bn_conv_sigmoid_grad(void) { check_bn_conv("sigmoid"); }

/* bn as the hidden layers of an autoencoder, sync=1 without a reduce callback (= local statistics), and
 * as the output layer fused with bce (its pre-activation is the logits). */
static void test_train_bn_autoencoder_grad(void)
{
    CHECK_GRAD("bn autoencoder",
               "[model]\nencoder = dense(6, bias=0), bn(act=relu), dense(3, bias=0), bn(act=tanh, sync=1, "
               "name=code)\ndecoder = dense(6), bn(act=elu), dense(4, bias=0), bn(act=sigmoid)\n"
               "[loss]\nkind = bce\n", BN_SAMPLES, IN4);
    CHECK_GRAD("bn sync=1 no reduce",
               "[model]\nencoder = dense(5), bn(act=sigmoid, sync=1), dense(3, name=code)\n"
               "decoder = dense(4)\n", BN_SAMPLES, IN4);
}

/* What bn makes of the layer before it: shifting a channel by a constant changes nothing (the pre-bn
 * bias has zero gradient), nor does scaling its weights and bias (sum W dW + b db = 0 per channel, up to
 * the eps in the variance). Real numbers on the analytic gradient, not only the checker's agreement. */
static void test_train_bn_invariances(void)
{
    tu_fixture f = PREPARE("[model]\nencoder = dense(5), bn(act=relu), dense(3, tanh, name=code)\n"
                        "decoder = dense(4)\n", IN4);
    ae_model *m = f.m;
    ae_ctx ctx = train_ctx(BN_SAMPLES);
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(ae_gradcheck_model_grad(m, &ctx, f.x, f.t, NULL, BN_SAMPLES, NULL, NULL, &err),
                          AE_OK);
    const ae_layer *d = &m->layers[0];
    size_t in = d->in_size, u = (size_t)d->units;
    double gmax = max_abs(d->dW, in * u);
    CU_ASSERT(gmax > 1e-3);
    for (size_t c = 0; c < u; c++) {
        double dot = (double)d->b[c] * d->db[c], mag = fabs(dot);
        for (size_t i = 0; i < in; i++) {
            dot += (double)d->W[i * u + c] * d->dW[i * u + c];
            mag += fabs((double)d->W[i * u + c] * d->dW[i * u + c]);
        }
        if (fabs(d->db[c]) > 1e-5 * gmax || fabs(dot) > 1e-3 * mag)
            fprintf(stderr, "\n    channel %zu: db %.3g (max dW %.3g), sum W dW + b db %.3g of %.3g\n", c,
                    (double)d->db[c], gmax, dot, mag);
        CU_ASSERT(fabs(d->db[c]) <= 1e-5 * gmax);
        CU_ASSERT(fabs(dot) <= 1e-3 * mag);
    }
    tu_fixture_free(&f);
}

/* ---- bn: numbers ------------------------------------------------------------------ */

/* Two features (a bn layer on a 2x1x1 input), 4 samples, gamma = [2, -1], beta = [0.5, 0.25]:
 *   feature 0: 1, 2, 3, 6   mean 3, biased var 14/4 = 3.5, unbiased 14/3
 *   feature 1: -1, -1, 1, 1 mean 0, biased var 1,          unbiased 4/3
 * training: y = gamma (x - mean) / sqrt(var + 1e-5) + beta (values from Python, double);
 * one update with momentum 0.1 from running (0, 1):
 *   mean = 0.1 * [3, 0] = [0.3, 0], var = 0.9 + 0.1 * [14/3, 4/3] = [1.3666667, 1.0333333];
 * eval of x = [2, 3] and [-1, 0.5] with those: y = gamma (x - rmean) / sqrt(rvar + 1e-5) + beta. */
static const float BN_X[] = {1, -1, 2, -1, 3, 1, 6, 1};
static const float BN_GAMMA[] = {2.0f, -1.0f}, BN_BETA[] = {0.5f, 0.25f};
#define BN_N 4
static const double BN_TRAIN_Y[] = {-1.638086880891747, 1.2499950000374997,  -0.5690434404458735,
                                    1.2499950000374997, 0.5,                -0.7499950000374997,
                                    3.7071303213376203, -0.7499950000374997};
static const double BN_RMEAN[] = {0.3, 0.0}, BN_RVAR[] = {1.3666666666666667, 1.0333333333333334};
static const float BN_EVAL_X[] = {2.0f, 3.0f, -1.0f, 0.5f};
static const double BN_EVAL_Y[] = {3.408345697142553, -2.7012019810527503, -1.724029062520776,
                                   -0.24186699684212504};

static ae_model *bn_tiny(const char *args, ae_shape in)
{
    char ini[INI_MAX];
    snprintf(ini, sizeof ini, "[model]\nencoder = bn(%sname=code)\ndecoder = dense(%zu)\n", args,
             ae_shape_size(&in));
    ae_model *m = tu_build(&SETUP, ini, in);
    if (m) ae_model_init_params(m, SEED);
    return m;
}

static int near(double got, double want, double tol, const char *what, int i)
{
    int ok = fabs(got - want) <= tol * fmax(1.0, fabs(want));
    if (!ok) fprintf(stderr, "\n    %s[%d] = %.9g, want %.9g\n", what, i, got, want);
    return ok;
}

static void test_train_bn_train_values(void)
{
    ae_model *m = bn_tiny("", (ae_shape){2, 1, 1});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_layer *l = &m->layers[0];
    CU_ASSERT_EQUAL(l->n_params, 4);
    CU_ASSERT_EQUAL(l->n_state, 4);
    CU_ASSERT_EQUAL(l->n_aux, 4);
    /* init: gamma 1, beta 0, running mean 0, running var 1 */
    CU_ASSERT(l->W[0] == 1.0f && l->W[1] == 1.0f && l->b[0] == 0.0f && l->b[1] == 0.0f);
    CU_ASSERT(l->state[0] == 0.0f && l->state[1] == 0.0f && l->state[2] == 1.0f && l->state[3] == 1.0f);
    memcpy(l->W, BN_GAMMA, sizeof BN_GAMMA);
    memcpy(l->b, BN_BETA, sizeof BN_BETA);
    ae_ctx ctx = train_ctx(BN_N);
    const float *y = ae_model_forward(m, &ctx, BN_X, BN_N, 1);
    for (int i = 0; i < 2 * BN_N; i++) CU_ASSERT(near(y[i], BN_TRAIN_Y[i], FWD_TOL, "bn train y", i));
    /* the aux sums of x and x^2 per feature, for the step's allreduce */
    static const float aux[] = {12, 0, 50, 4};
    for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(l->aux[i], aux[i]);
    /* training does not touch the running statistics: the update hook does */
    CU_ASSERT(l->state[0] == 0.0f && l->state[2] == 1.0f);
    ae_model_free(m);
}

/* The update hook (after the allreduce): running = 0.9 running + 0.1 batch, the variance unbiased. Then
 * eval normalizes with the running statistics, whatever the batch. */
static void test_train_bn_update_and_eval_values(void)
{
    ae_model *m = bn_tiny("", (ae_shape){2, 1, 1});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_layer *l = &m->layers[0];
    memcpy(l->W, BN_GAMMA, sizeof BN_GAMMA);
    memcpy(l->b, BN_BETA, sizeof BN_BETA);
    ae_ctx ctx = train_ctx(BN_N);
    ae_model_forward(m, &ctx, BN_X, BN_N, 1);
    ae_model_update(m, &ctx);
    for (int c = 0; c < 2; c++) {
        CU_ASSERT(near(l->state[c], BN_RMEAN[c], FWD_TOL, "running mean", c));
        CU_ASSERT(near(l->state[2 + c], BN_RVAR[c], FWD_TOL, "running var", c));
    }
    ae_ctx ectx = {0};
    const float *y = ae_model_forward(m, &ectx, BN_EVAL_X, 2, 1);
    for (int i = 0; i < 4; i++) CU_ASSERT(near(y[i], BN_EVAL_Y[i], FWD_TOL, "bn eval y", i));
    /* one sample alone gives the same (no batch statistics in eval) */
    y = ae_model_forward(m, &ectx, BN_EVAL_X + 2, 1, 1);
    CU_ASSERT(near(y[0], BN_EVAL_Y[2], FWD_TOL, "bn eval y alone", 0));
    CU_ASSERT(near(y[1], BN_EVAL_Y[3], FWD_TOL, "bn eval y alone", 1));
    ae_model_free(m);
}

/* A conv input (1x2x2, 2 samples): statistics over samples and pixels, count 8.
 *   x = 1..8: mean 4.5, sum of squares about the mean 42, unbiased var 42/7 = 6
 *   momentum 0.1: mean 0.45, var 0.9 + 0.6 = 1.5; a second update with the same batch:
 *                 mean 0.9 * 0.45 + 0.45 = 0.855, var 0.9 * 1.5 + 0.6 = 1.95
 *   momentum 0.5: mean 2.25, var 0.5 + 3 = 3.5
 * The hook reads only the summed aux and ctx->batch. Forward ADDS its sums to the aux floats (the trainer
 * zeroes them once per step), so two passes of one sample each (two accumulation passes, or two ranks
 * whose aux the allreduce sums) give the same as one pass of both. */
static const float BN_CONV_X[] = {1, 2, 3, 4, 5, 6, 7, 8};

static void test_train_bn_update_conv_values(void)
{
    ae_model *m = bn_tiny("", (ae_shape){1, 2, 2});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_layer *l = &m->layers[0];
    ae_ctx ctx = train_ctx(2);
    ae_model_forward(m, &ctx, BN_CONV_X, 2, 1);
    CU_ASSERT_EQUAL(l->aux[0], 36.0f);
    CU_ASSERT_EQUAL(l->aux[1], 204.0f);
    ae_model_update(m, &ctx);
    CU_ASSERT(near(l->state[0], 0.45, FWD_TOL, "conv running mean", 0));
    CU_ASSERT(near(l->state[1], 1.5, FWD_TOL, "conv running var", 0));
    memset(m->grads + m->n_params, 0, sizeof(float) * m->n_aux); /* the next step */
    ae_model_forward(m, &ctx, BN_CONV_X, 2, 1);
    ae_model_update(m, &ctx);
    CU_ASSERT(near(l->state[0], 0.855, FWD_TOL, "conv running mean 2", 0));
    CU_ASSERT(near(l->state[1], 1.95, FWD_TOL, "conv running var 2", 0));
    ae_model_free(m);

    m = bn_tiny("momentum=0.5, ", (ae_shape){1, 2, 2});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    l = &m->layers[0];
    /* two passes: sample 0 (x = 1..4: sums 10, 30), then sample 1 (5..8: 26, 174) adds to them */
    ae_ctx c0 = train_ctx(2), c1 = train_ctx(2);
    c1.sample0 = 1;
    ae_model_forward(m, &c0, BN_CONV_X, 1, 1);
    CU_ASSERT_EQUAL(l->aux[0], 10.0f);
    CU_ASSERT_EQUAL(l->aux[1], 30.0f);
    ae_model_forward(m, &c1, BN_CONV_X + 4, 1, 1);
    CU_ASSERT_EQUAL(l->aux[0], 36.0f);
    CU_ASSERT_EQUAL(l->aux[1], 204.0f);
    ae_model_update(m, &c0);
    CU_ASSERT(near(l->state[0], 2.25, FWD_TOL, "momentum 0.5 mean", 0));
    CU_ASSERT(near(l->state[1], 3.5, FWD_TOL, "momentum 0.5 var", 0));
    ae_model_free(m);
}

/* The statistics come from float sums of x and x^2 (they ride in a float allreduce), so the variance
 * E[x^2] - E[x]^2 cancels: mean / std = 170 (x = 100 + U(-1, 1)) must still normalize to unit variance
 * within 1e-3. (The cancellation grows as (mean / std)^2: about 2% at 500, 20% at 1700.) */
#define OFFSET_X 100.0f

static void test_train_bn_large_offset(void)
{
    ae_model *m = bn_tiny("", (ae_shape){1, 1, 1});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    float x[MAX_BATCH];
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 4, 0, 0);
    for (int i = 0; i < MAX_BATCH; i++) x[i] = OFFSET_X + (2.0f * ae_rng_uniform(&r) - 1.0f);
    double mx = 0.0, vx = 0.0;
    for (int i = 0; i < MAX_BATCH; i++) mx += x[i] / (double)MAX_BATCH;
    for (int i = 0; i < MAX_BATCH; i++) vx += (x[i] - mx) * (x[i] - mx) / MAX_BATCH;
    ae_ctx ctx = train_ctx(MAX_BATCH);
    const float *y = ae_model_forward(m, &ctx, x, MAX_BATCH, 1);
    double my = 0.0, vy = 0.0;
    for (int i = 0; i < MAX_BATCH; i++) my += y[i] / (double)MAX_BATCH;
    for (int i = 0; i < MAX_BATCH; i++) vy += (y[i] - my) * (y[i] - my) / MAX_BATCH;
    double want = vx / (vx + BN_EPS);
    if (fabs(vy - want) > 1e-3 || fabs(my) > 1e-3)
        fprintf(stderr, "\n    bn at offset %g: output mean %.3g var %.6f, want 0, %.6f\n", OFFSET_X, my, vy,
                want);
    CU_ASSERT(fabs(my) <= 1e-3);
    CU_ASSERT(fabs(vy - want) <= 1e-3);
    ae_model_free(m);
}

/* ---- noise layers ------------------------------------------------------------------- */

#define NOISE_KINDS(X) X(gauss, "gauss(0.5)") X(mask, "mask(0.3)") X(saltpepper, "saltpepper(0.3)") \
    X(mult012, "mult012") X(dropout, "dropout(0.4)")

/* 4 -> dense(6, tanh) -> noise -> dense(3, tanh) -> 4: the noise's din feeds the dense before it. */
static void noise_ini(char *ini, size_t cap, const char *layer)
{
    snprintf(ini, cap, "[model]\nencoder = dense(6, tanh), %s, dense(3, tanh, name=code)\n"
             "decoder = dense(4)\n", layer);
}

/* The gradient check of a noise layer mid-network, and what makes it meaningful: the objective is
 * bitwise the same in every evaluation with the same ctx (same draw), it differs from the noise-free
 * (eval) objective (there is a draw), and a gradient taken at another step's draw fails the check. */
static void check_noise_grad(const char *kind, const char *layer)
{
    char ini[INI_MAX], what[64];
    noise_ini(ini, sizeof ini, layer);
    snprintf(what, sizeof what, "noise %s", kind);
    tu_fixture f = PREPARE(ini, IN4);
    ae_model *m = f.m;
    const float *x = f.x, *t = f.t;
    ae_ctx ctx = train_ctx(N_SAMPLES), ectx = {0}, other = ctx;
    other.step++;
    size_t len = (size_t)N_SAMPLES * m->layers[1].out_size;
    float *a1 = malloc(sizeof(float) * len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a1);
    double j1 = ae_gradcheck_objective(m, &ctx, x, t, NULL, N_SAMPLES);
    memcpy(a1, m->act[1], sizeof(float) * len);
    double j2 = ae_gradcheck_objective(m, &ctx, x, t, NULL, N_SAMPLES);
    CU_ASSERT_EQUAL(memcmp(a1, m->act[1], sizeof(float) * len), 0);
    CU_ASSERT(j1 == j2);
    double je = ae_gradcheck_objective(m, &ectx, x, t, NULL, N_SAMPLES);
    CU_ASSERT(memcmp(m->act[1], m->act[0], sizeof(float) * len) == 0); /* eval: identity */
    CU_ASSERT(je != j1);
    double jo = ae_gradcheck_objective(m, &other, x, t, NULL, N_SAMPLES);
    CU_ASSERT(memcmp(a1, m->act[1], sizeof(float) * len) != 0);
    CU_ASSERT(jo != j1);

    assert_grad_at(__LINE__, what, m, x, t, N_SAMPLES, &ctx);

    /* negative control: the analytic gradient of another step's draw against this step's objective */
    float *g = malloc(sizeof(float) * m->n_params);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_gradcheck_model_grad(m, &other, x, t, NULL, N_SAMPLES, g, NULL, &err), AE_OK);
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    o.ctx = &ctx;
    ae_gradcheck_result r;
    CU_ASSERT_EQUAL(ae_gradcheck_model_against(m, x, t, NULL, N_SAMPLES, g, &o, &r, &err), AE_OK);
    if (tu_verbose())
        fprintf(stderr, "\n    %s, gradient of another step's draw: max rel err %.3g, %zu failed\n", kind,
                r.max_rel_err, r.n_failed);
    CU_ASSERT(r.max_rel_err > 10 * AE_GRADCHECK_TOL && r.n_failed > 0);
    free(g);
    free(a1);
    tu_fixture_free(&f);
}

#define DEFINE_NOISE_GRAD(k, layer) \
    static void test_train_noise_##k##_grad(void) { check_noise_grad(#k, layer); }
NOISE_KINDS(DEFINE_NOISE_GRAD)
#undef DEFINE_NOISE_GRAD

/* A noise layer on the input (D features): forward n samples of x. */
#define NOISE_D 16
#define NOISE_N 4

static ae_model *noise_first(const char *layer, int d)
{
    char ini[INI_MAX];
    snprintf(ini, sizeof ini, "[model]\nencoder = %s\ndecoder = dense(%d)\n", layer, d);
    return tu_build(&SETUP, ini, (ae_shape){d, 1, 1});
}

static int rows_differ(const float *a, const float *b, size_t d)
{
    return memcmp(a, b, sizeof(float) * d) != 0;
}

/* Eval: the identity (output and din), even right after a training forward left a mask behind. Keys:
 * sample i of a call starting at sample0 = 0 equals sample 0 of a call starting at sample0 = i (what a
 * rank whose slice starts at i computes); another step, epoch, seed or sample index draws anew. */
static void check_noise_keys(const char *kind, const char *layer)
{
    ae_model *m = noise_first(layer, NOISE_D);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_layer *l = &m->layers[0];
    float x[NOISE_N * NOISE_D], y[NOISE_N * NOISE_D], dout[NOISE_N * NOISE_D], din[NOISE_N * NOISE_D];
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 3, 0, 0);
    tu_fill_uniform(&r, x, NOISE_N * NOISE_D, 0.2f, 0.9f); /* no element 0 or 1 */
    tu_fill_uniform(&r, dout, NOISE_N * NOISE_D, -1.0f, 1.0f);
    size_t d = NOISE_D, bytes = sizeof(float) * NOISE_N * NOISE_D;
    ae_ctx ctx = train_ctx(NOISE_N), ectx = {0};
    memcpy(y, ae_model_forward(m, &ctx, x, NOISE_N, 1), bytes);
    CU_ASSERT(memcmp(y, x, bytes) != 0);
    int all_rows = 1;
    for (int i = 0; i < NOISE_N; i++) all_rows &= rows_differ(y + i * d, x + i * d, d);
    CU_ASSERT(all_rows); /* every sample is corrupted somewhere */

    /* eval: identity forward and backward */
    CU_ASSERT_EQUAL(memcmp(ae_model_forward(m, &ectx, x, NOISE_N, 1), x, bytes), 0);
    ae_model_forward(m, &ctx, x, NOISE_N, 1); /* leaves this draw's mask in the workspace */
    l->kind->backward(l, &ectx, x, y, dout, din, NOISE_N);
    CU_ASSERT_EQUAL(memcmp(din, dout, bytes), 0);

    /* slice starts */
    for (int i = 0; i < NOISE_N; i++) {
        ae_ctx ci = ctx;
        ci.sample0 = i;
        const float *yi = ae_model_forward(m, &ci, x + i * d, 1, 1);
        if (rows_differ(yi, y + i * d, d))
            fprintf(stderr, "\n    %s: sample %d differs at sample0 = %d\n", kind, i, i);
        CU_ASSERT(!rows_differ(yi, y + i * d, d));
    }
    ae_ctx c2 = ctx;
    c2.sample0 = 2;
    const float *y2 = ae_model_forward(m, &c2, x + 2 * d, 2, 1);
    CU_ASSERT(!rows_differ(y2, y + 2 * d, 2 * d));
    /* another step, epoch, seed; another sample index for the same values */
    ae_ctx changed[4] = {ctx, ctx, ctx, ctx};
    changed[0].step++;
    changed[1].epoch++;
    changed[2].seed++;
    changed[3].sample0 = 1;
    const char *names[4] = {"step", "epoch", "seed", "sample index"};
    for (int k = 0; k < 4; k++) {
        const float *yk = ae_model_forward(m, &changed[k], x, k == 3 ? 1 : NOISE_N, 1);
        int all = 1;
        for (int i = 0; i < (k == 3 ? 1 : NOISE_N); i++) all &= rows_differ(yk + i * d, y + i * d, d);
        if (!all) fprintf(stderr, "\n    %s: another %s gave the same draw\n", kind, names[k]);
        CU_ASSERT(all);
    }
    ae_model_free(m);
}

#define DEFINE_NOISE_KEYS(k, layer) \
    static void test_train_noise_##k##_keys(void) { check_noise_keys(#k, layer); }
NOISE_KINDS(DEFINE_NOISE_KEYS)
#undef DEFINE_NOISE_KEYS

/* mask(rate, rescale=1): training draws exactly as mask(rate) (same key); in evaluation forward and
 * backward multiply by 1 - rate, the mask's expected value; rescale=2 is refused. */
static void test_train_noise_mask_rescale(void)
{
    ae_model *a = noise_first("mask(0.25)", NOISE_D), *b = noise_first("mask(0.25, rescale=1)", NOISE_D);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    float x[NOISE_N * NOISE_D], dout[NOISE_N * NOISE_D], din[NOISE_N * NOISE_D];
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 4, 0, 0);
    tu_fill_uniform(&r, x, NOISE_N * NOISE_D, 0.2f, 0.9f);
    tu_fill_uniform(&r, dout, NOISE_N * NOISE_D, -1.0f, 1.0f);
    size_t len = NOISE_N * NOISE_D, bytes = sizeof(float) * len;
    ae_ctx ctx = train_ctx(NOISE_N), ectx = {0};
    float ya[NOISE_N * NOISE_D];
    memcpy(ya, ae_model_forward(a, &ctx, x, NOISE_N, 1), bytes);
    CU_ASSERT_EQUAL(memcmp(ae_model_forward(b, &ctx, x, NOISE_N, 1), ya, bytes), 0);
    const float *ye = ae_model_forward(b, &ectx, x, NOISE_N, 1);
    int wrong = 0;
    for (size_t i = 0; i < len; i++) wrong += ye[i] != x[i] * 0.75f;
    CU_ASSERT_EQUAL(wrong, 0);
    ae_layer *l = &b->layers[0];
    l->kind->backward(l, &ectx, x, ye, dout, din, NOISE_N);
    wrong = 0;
    for (size_t i = 0; i < len; i++) wrong += din[i] != dout[i] * 0.75f;
    CU_ASSERT_EQUAL(wrong, 0);
    ae_model_free(a);
    ae_model_free(b);
    char ini[INI_MAX];
    snprintf(ini, sizeof ini, "[model]\nencoder = mask(0.25, rescale=2)\ndecoder = dense(%d)\n", NOISE_D);
    ae_model *bad = NULL;
    ae_error err;
    CU_ASSERT_NOT_EQUAL(tu_build_status(&SETUP, ini, (ae_shape){NOISE_D, 1, 1}, &bad, &err), AE_OK);
    CU_ASSERT_PTR_NULL(bad);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "rescale"));
}

/* Two noise layers of the same kind draw independently (the layer index is in the key). */
static void test_train_noise_layers_independent(void)
{
    ae_model *m = noise_first("gauss(1.0), gauss(1.0, name=code)", NOISE_D);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    float x[NOISE_D] = {0};
    ae_ctx ctx = train_ctx(1);
    ae_model_forward(m, &ctx, x, 1, 2);
    int same = 0;
    for (int j = 0; j < NOISE_D; j++) same += m->act[1][j] - m->act[0][j] == m->act[0][j];
    CU_ASSERT(same == 0);
    ae_model_free(m);
}

/* Statistics over many draws: x = X_CONST everywhere, STAT_STEPS steps of STAT_N samples x STAT_D. */
#define STAT_D 256
#define STAT_N 8
#define STAT_STEPS 40
#define X_CONST 0.7f

typedef struct draws {
    size_t n, zeros, ones, twos, others;
    double sum, sumsq; /* of y - x (gauss) or of y */
} draws;

/* Counts y == 0, y == x, y == 2x (or 1 for saltpepper) and the moments over all draws. */
static draws collect(const char *layer, int centred)
{
    draws c = {0};
    ae_model *m = noise_first(layer, STAT_D);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    float *x = malloc(sizeof(float) * STAT_N * STAT_D);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    for (size_t i = 0; i < STAT_N * STAT_D; i++) x[i] = X_CONST;
    for (int s = 0; s < STAT_STEPS; s++) {
        ae_ctx ctx = train_ctx(STAT_N);
        ctx.step = s;
        const float *y = ae_model_forward(m, &ctx, x, STAT_N, 1);
        for (size_t i = 0; i < STAT_N * STAT_D; i++) {
            double v = centred ? (double)y[i] - X_CONST : (double)y[i];
            c.n++;
            c.sum += v;
            c.sumsq += v * v;
            if (y[i] == 0.0f) c.zeros++;
            else if (y[i] == X_CONST) c.ones++;
            else if (y[i] == 2.0f * X_CONST || y[i] == 1.0f) c.twos++;
            else c.others++;
        }
    }
    free(x);
    ae_model_free(m);
    return c;
}

/* |got - want| within N_SIGMA standard errors se */
static int within(const char *what, double got, double want, double se)
{
    int ok = fabs(got - want) <= N_SIGMA * se;
    if (!ok || tu_verbose())
        fprintf(stderr, "\n    %s: %.6g, want %.6g +- %.3g (%.2f sigma)\n", what, got, want, N_SIGMA * se,
                fabs(got - want) / se);
    return ok;
}

/* dropout(p): a fraction p of zeros, the rest x / (1 - p): E[y] = x, sd(y) = x sqrt(p / (1 - p)). */
static void test_train_dropout_stats(void)
{
    const double p = 0.3;
    ae_model *m = noise_first("dropout(0.3)", 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    float scale = m->layers[0].rate; /* the rate as float, as the layer uses it */
    ae_model_free(m);
    float kept = X_CONST * (1.0f / (1.0f - scale));
    draws c = collect("dropout(0.3)", 0);
    double n = (double)c.n, mean = c.sum / n;
    CU_ASSERT(within("dropout zero fraction", (double)c.zeros / n, p, sqrt(p * (1 - p) / n)));
    CU_ASSERT(within("dropout mean", mean, X_CONST, X_CONST * sqrt(p / (1 - p) / n)));
    /* every kept value is exactly x / (1 - p) */
    ae_model *m2 = noise_first("dropout(0.3)", STAT_D);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m2);
    float x[STAT_D];
    for (int j = 0; j < STAT_D; j++) x[j] = X_CONST;
    ae_ctx ctx = train_ctx(1);
    const float *y = ae_model_forward(m2, &ctx, x, 1, 1);
    int exact = 1;
    for (int j = 0; j < STAT_D; j++) exact &= y[j] == 0.0f || y[j] == kept;
    CU_ASSERT(exact);
    CU_ASSERT(fabs((double)kept - X_CONST / (1 - p)) <= 1e-6);
    ae_model_free(m2);
}

/* mask(p): a fraction p zeroed, the rest kept as they are. */
static void test_train_mask_stats(void)
{
    const double p = 0.25;
    draws c = collect("mask(0.25)", 0);
    double n = (double)c.n;
    CU_ASSERT(within("mask zero fraction", (double)c.zeros / n, p, sqrt(p * (1 - p) / n)));
    CU_ASSERT_EQUAL(c.zeros + c.ones, c.n);
}

/* saltpepper(p): a fraction p replaced, half by 0 and half by 1. */
static void test_train_saltpepper_stats(void)
{
    const double p = 0.2;
    draws c = collect("saltpepper(0.2)", 0);
    double n = (double)c.n;
    CU_ASSERT(within("saltpepper 0 fraction", (double)c.zeros / n, p / 2, sqrt(p / 2 * (1 - p / 2) / n)));
    CU_ASSERT(within("saltpepper 1 fraction", (double)c.twos / n, p / 2, sqrt(p / 2 * (1 - p / 2) / n)));
    CU_ASSERT_EQUAL(c.zeros + c.ones + c.twos, c.n);
}

/* mult012: factors 0, 1, 2 with probability 1/3 each (E = 1: the expected value is kept). */
static void test_train_mult012_stats(void)
{
    draws c = collect("mult012", 0);
    double n = (double)c.n, q = 1.0 / 3.0, se = sqrt(q * (1 - q) / n);
    CU_ASSERT(within("mult012 x0 fraction", (double)c.zeros / n, q, se));
    CU_ASSERT(within("mult012 x1 fraction", (double)c.ones / n, q, se));
    CU_ASSERT(within("mult012 x2 fraction", (double)c.twos / n, q, se));
    CU_ASSERT_EQUAL(c.others, 0);
    CU_ASSERT(within("mult012 mean", c.sum / n, X_CONST, X_CONST * sqrt(2.0 / 3.0 / n)));
}

/* gauss(s): y - x has mean 0 and standard deviation s. */
static void test_train_gauss_stats(void)
{
    const double s = 0.5;
    draws c = collect("gauss(0.5)", 1);
    double n = (double)c.n, mean = c.sum / n, var = c.sumsq / n - mean * mean;
    CU_ASSERT(within("gauss noise mean", mean, 0.0, s / sqrt(n)));
    CU_ASSERT(within("gauss noise var / s^2", var / (s * s), 1.0, sqrt(2.0 / n)));
}

/* ---- VAE --------------------------------------------------------------------------- */

/* encoder dense(2Z) -> sample -> decoder, bce summed over the features, ctx.batch = n: the KL penalty's
 * gradient (weight 1 / batch) must match the objective's penalty / n. Also beta = 0.5, and with a
 * per-element mse mean (the KL stays per sample). */
static void test_train_vae_grad(void)
{
    CHECK_GRAD("vae bce sum",
               "[model]\nencoder = dense(6, tanh), dense(4, name=stats), sample(name=code)\n"
               "decoder = dense(5, tanh), dense(4, sigmoid)\n[loss]\nkind = bce\nreduction = sum\n",
               N_SAMPLES, IN4);
    CHECK_GRAD("vae beta 0.5",
               "[model]\nencoder = dense(6, tanh), dense(4, name=stats), sample(beta=0.5, name=code)\n"
               "decoder = dense(5, tanh), dense(4, sigmoid)\n[loss]\nkind = bce\nreduction = sum\n",
               N_SAMPLES, IN4);
    CHECK_GRAD("vae mse mean",
               "[model]\nencoder = dense(8, name=stats), sample(name=code)\n"
               "decoder = dense(5, tanh), dense(4)\n[loss]\nkind = mse\n", N_SAMPLES, IN4);
}

/* With the reconstruction terms zeroed out, the objective is KL / n alone: the same check on the KL
 * gradient by itself (a sample layer right on the input, a dense in front so that dmu, dlogvar reach
 * parameters), against the closed form at the unperturbed point. */
static void test_train_vae_kl_only_grad(void)
{
    tu_fixture f =
        PREPARE("[model]\nencoder = dense(4, name=stats), sample(name=code)\ndecoder = dense(4)\n", IN4);
    ae_model *m = f.m;
    float *x = f.x, *t = f.t;
    ae_layer *dec = &m->layers[2];
    memset(dec->W, 0, sizeof(float) * dec->in_size * (size_t)dec->units);
    /* targets = the decoder's constant output: zero data loss, zero data gradient */
    for (int i = 0; i < N_SAMPLES; i++) memcpy(t + (size_t)i * 4, dec->b, sizeof(float) * 4);
    ae_ctx ctx = train_ctx(N_SAMPLES);
    double j = ae_gradcheck_objective(m, &ctx, x, t, NULL, N_SAMPLES);
    double kl = 0.0;
    for (int i = 0; i < N_SAMPLES; i++)
        for (int k = 0; k < 2; k++) {
            double mu = m->act[0][i * 4 + k], lv = m->act[0][i * 4 + 2 + k];
            kl += -0.5 * (1 + lv - mu * mu - exp(lv));
        }
    CU_ASSERT(kl > 0.1);
    CU_ASSERT(fabs(j - kl / N_SAMPLES) <= 1e-6 * kl);
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    o.ctx = &ctx;
    tu_gradcheck_verdict v;
    tu_gradcheck_model(&v, "vae kl only", m, x, t, NULL, N_SAMPLES, &o, MAX_SKIP_FRACTION,
                       MAX_FLOORED_FRACTION);
    TU_ASSERT_AT(v.ran, __LINE__, v.ran_msg);
    TU_ASSERT_AT(v.within, __LINE__, v.within_msg);
    tu_fixture_free(&f);
}

/* sample on a 4-feature input (Z = 2): rows are (mu0, mu1, logvar0, logvar1).
 *   sample 0: mu = (0.5, -1), logvar = (0, ln 2)  KL terms 0.125, 0.6534264097200273
 *   sample 1: mu = (0, 2),    logvar = (-1, 1)    KL terms 0.18393972058572117, 2.3591409142295223
 * KL_j = -0.5 (1 + lv - mu^2 - exp(lv)); sum 3.321507044535271 (Python, double). */
static const float VAE_X[] = {0.5f, -1.0f, 0.0f, 0.69314718f, 0.0f, 2.0f, -1.0f, 1.0f};
#define VAE_KL 3.321507044535271
/* A sample layer on the input alone. */
#define VAE_ONLY "[model]\nencoder = sample(name=code)\ndecoder = dense(4)\n"

static void test_train_vae_eval_values(void)
{
    ae_model *m = tu_build(&SETUP, VAE_ONLY, (ae_shape){IN4});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->layers[0].out_size, 2);
    ae_ctx ectx = {0};
    const float *z = ae_model_forward(m, &ectx, VAE_X, 2, 1);
    CU_ASSERT(z[0] == 0.5f && z[1] == -1.0f && z[2] == 0.0f && z[3] == 2.0f); /* z = mu exactly */
    CU_ASSERT(near(m->layers[0].penalty, VAE_KL, 1e-6, "KL", 0));
    /* the penalty reaches the model's loss: reported over the samples, its gradient 1/batch per sample */
    float t[8] = {0};
    ae_loss_out lo;
    ae_model_forward(m, &ectx, VAE_X, 2, m->n_layers);
    ae_model_loss(m, &ectx, VAE_X, t, NULL, 2, 1.0f, 0, &lo);
    CU_ASSERT(near(lo.penalty, VAE_KL, 1e-6, "model penalty", 0));
    /* in training the KL is the same (it does not depend on eps), z is not mu */
    ae_ctx ctx = train_ctx(2);
    z = ae_model_forward(m, &ctx, VAE_X, 2, 1);
    CU_ASSERT(near(m->layers[0].penalty, VAE_KL, 1e-6, "KL training", 0));
    CU_ASSERT(z[0] != 0.5f && z[3] != 2.0f);
    ae_model_free(m);

    m = tu_build(&SETUP, "[model]\nencoder = sample(beta=0.25, name=code)\ndecoder = dense(4)\n",
                 (ae_shape){IN4});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_model_forward(m, &ectx, VAE_X, 2, 1);
    CU_ASSERT(near(m->layers[0].penalty, 0.25 * VAE_KL, 1e-6, "beta KL", 0));
    ae_model_free(m);
}

/* Reparameterization: z = mu + exp(logvar / 2) eps with eps keyed by (seed, layer, epoch, step, sample):
 * two different (mu, logvar) at the same key give the same eps; slice starts do not change it; eps over
 * many keys is standard normal. */
#define EPS_DRAWS 4000

static void test_train_vae_reparam(void)
{
    ae_model *m = tu_build(&SETUP, VAE_ONLY, (ae_shape){IN4});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_ctx ctx = train_ctx(2);
    ctx.sample0 = 5;
    float z0[2], z1[2];
    memcpy(z0, ae_model_forward(m, &ctx, VAE_X, 1, 1), sizeof z0);
    memcpy(z1, ae_model_forward(m, &ctx, VAE_X + 4, 1, 1), sizeof z1);
    for (int k = 0; k < 2; k++) {
        double e0 = (z0[k] - VAE_X[k]) / exp(0.5 * VAE_X[2 + k]);
        double e1 = (z1[k] - VAE_X[4 + k]) / exp(0.5 * VAE_X[6 + k]);
        CU_ASSERT(fabs(e0) > 1e-3);
        CU_ASSERT(fabs(e0 - e1) <= 1e-5 * fmax(1.0, fabs(e0)));
    }
    /* a call from sample0 = 4 over two samples: its second sample is the one above */
    ae_ctx c4 = ctx;
    c4.sample0 = 4;
    static const float x4[] = {9, 9, 9, 9, 0.5f, -1.0f, 0.0f, 0.69314718f};
    const float *z = ae_model_forward(m, &c4, x4, 2, 1);
    CU_ASSERT(z[2] == z0[0] && z[3] == z0[1]);
    /* eps ~ N(0, 1): mu = 0, logvar = 0 gives z = eps */
    static float x0[MAX_BATCH * 4];
    double s = 0, ss = 0;
    size_t n = 0;
    for (int step = 0; n < EPS_DRAWS; step++) {
        ae_ctx cs = train_ctx(MAX_BATCH);
        cs.step = step;
        z = ae_model_forward(m, &cs, x0, MAX_BATCH, 1);
        for (int i = 0; i < 2 * MAX_BATCH; i++, n++) {
            s += z[i];
            ss += (double)z[i] * z[i];
        }
    }
    double mean = s / (double)n, var = ss / (double)n - mean * mean;
    CU_ASSERT(within("vae eps mean", mean, 0.0, 1.0 / sqrt((double)n)));
    CU_ASSERT(within("vae eps var", var, 1.0, sqrt(2.0 / (double)n)));
    ae_model_free(m);
}

/* ---- KL sparsity and L1 --------------------------------------------------------------- */

static void test_train_kl_sparsity_grad(void)
{
    CHECK_GRAD("kl sparsity",
               "[model]\nencoder = dense(5, tanh), dense(3, sigmoid, name=code)\ndecoder = dense(4)\n"
               "[loss]\nkl_sparsity = 0.5\nkl_target = 0.1\n", N_SAMPLES, IN4);
    CHECK_GRAD("kl sparsity bce sum",
               "[model]\nencoder = dense(5, sigmoid, name=h), dense(3, tanh, name=code)\n"
               "decoder = dense(4, sigmoid)\n[loss]\nkind = bce\nreduction = sum\nkl_sparsity = 0.3\n"
               "kl_target = 0.2\nactivity_layer = h\n", N_SAMPLES, IN4);
}

static void test_train_l1_kl_grad(void)
{
    CHECK_GRAD("l1 + kl",
               "[model]\nencoder = dense(5, tanh), dense(3, sigmoid, name=code)\ndecoder = dense(4)\n"
               "[loss]\nl1_activity = 0.05\nkl_sparsity = 0.3\nkl_target = 0.05\n", N_SAMPLES, IN4);
    CHECK_GRAD("l1 + kl bce",
               "[model]\nencoder = dense(5, tanh), dense(3, sigmoid, name=code)\n"
               "decoder = dense(4, sigmoid)\n[loss]\nkind = bce\nl1_activity = 0.1\nkl_sparsity = 0.2\n",
               N_SAMPLES, IN4);
}

/* A code with the weights zeroed and biases logit(q): every sample's activation is q = (0.1, 0.5, 0.2).
 * KL(0.1 || q) = 0, 0.36806, 0.03669 (sum 0.40475422120324767); beta = 0.5 over n = 4 samples gives the
 * per-batch 0.20237711060162383, reported over the samples as 4x that; L1 0.1 adds 0.1 x 4 x 0.8. */
static void test_train_kl_sparsity_values(void)
{
    ae_model *m = tu_build(&SETUP, "[model]\nencoder = dense(3, sigmoid, name=code)\ndecoder = dense(4)\n"
                        "[loss]\nkl_sparsity = 0.5\nkl_target = 0.1\nl1_activity = 0.1\n", (ae_shape){IN4});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_model_init_params(m, SEED);
    ae_layer *c = &m->layers[0];
    memset(c->W, 0, sizeof(float) * 4 * 3);
    const double q[3] = {0.1, 0.5, 0.2};
    for (int j = 0; j < 3; j++) c->b[j] = (float)log(q[j] / (1 - q[j]));
    float *x, *t;
    make_data(m, &x, &t);
    ae_ctx ctx = train_ctx(4);
    ae_loss_out lo, lb;
    ae_model_forward(m, &ctx, x, 4, m->n_layers);
    ae_model_loss(m, &ctx, x, t, NULL, 4, ae_model_loss_scale(m, 4), 0, &lo);
    double want = 4 * 0.20237711060162383 + 0.1 * 4 * 0.8;
    CU_ASSERT(near(lo.penalty, want, 1e-5, "kl + l1 penalty", 0));
    memset(m->grads, 0, sizeof(float) * m->n_params);
    ae_model_loss(m, &ctx, x, t, NULL, 4, ae_model_loss_scale(m, 4), 1, &lb);
    CU_ASSERT(near(lb.penalty, want, 1e-5, "kl + l1 penalty (backward)", 0));
    free(x);
    free(t);
    ae_model_free(m);
}

/* ---- two ranks ----------------------------------------------------------------------- */

static const char *const SYNC_DENSE =
    "[model]\nencoder = dense(5, bias=0), bn(act=relu, sync=1), dense(3, tanh, name=code)\n"
    "decoder = dense(5, bias=0), bn(act=sigmoid, sync=1), dense(4)\n";
static const char *const SYNC_CONV =
    "[model]\nencoder = conv(3, 3, bias=0), bn(act=relu, sync=1), conv(2, 3, bias=0), "
    "bn(act=sigmoid, sync=1, name=code)\ndecoder = conv(1, 3, sigmoid)\n[loss]\nkind = bce\n";

/* Synchronized bn: per bn layer two reduces (forward statistics, backward sums), and the slices compute
 * the full batch's statistics, output and gradient, also when one slice is empty. */
static void test_train_two_ranks_bn_sync(void)
{
    EXPECT_TWO_RANKS_EQUAL("bn sync dense", SYNC_DENSE, 7, 3, 4, IN4);
    EXPECT_TWO_RANKS_EQUAL("bn sync dense", SYNC_DENSE, 7, 1, 4, IN4);
    EXPECT_TWO_RANKS_EQUAL("bn sync conv", SYNC_CONV, 5, 2, 4, 1, 4, 4);
    EXPECT_TWO_RANKS_EQUAL("bn sync conv empty", SYNC_CONV, 5, 0, 4, 1, 4, 4);
}

/* Without sync each rank normalizes with its own slice's statistics: the gradient differs from the full
 * batch's (asserted, so the simulation is known to tell), but the aux sums - hence the running statistics
 * the update hook folds in - are the global batch's. */
static void test_train_two_ranks_bn_local(void)
{
    const char *ini = "[model]\nencoder = dense(5, bias=0), bn(act=relu), dense(3, tanh, name=code)\n"
                      "decoder = dense(4)\n";
    sim_diffs d = two_ranks_at(__LINE__, "bn local", ini, (ae_shape){IN4}, 7, 3);
    CU_ASSERT(d.g > DIFF_MIN);
    CU_ASSERT(d.y > DIFF_MIN);
    CU_ASSERT_EQUAL(d.calls, 0);
    /* and the running statistics after the hook: two ranks' summed aux against one process */
    ae_model *a = tu_build(&SETUP, ini, (ae_shape){IN4}), *b = tu_build(&SETUP, ini, (ae_shape){IN4});
    CU_ASSERT_FATAL(a && b);
    tu_init_params(&SETUP, a, NULL);
    tu_init_params(&SETUP, b, NULL);
    float *x, *t;
    make_data(a, &x, &t);
    ae_ctx c = train_ctx(7), c0 = c, c1 = c;
    c1.sample0 = 3;
    ae_model_forward(a, &c, x, 7, a->n_layers);
    ae_model_update(a, &c);
    /* the second forward adds its sums to the first's (the aux floats start at zero) */
    CU_ASSERT_EQUAL_FATAL(b->n_aux, 10);
    ae_model_forward(b, &c0, x, 3, b->n_layers);
    ae_model_forward(b, &c1, x + 3 * 4, 4, b->n_layers);
    ae_model_update(b, &c);
    double ds = rel_diff(b->state, a->state, a->n_state);
    if (tu_verbose())
        fprintf(stderr, "\n    bn local running statistics: P=2 vs P=1 %.2e\n", ds);
    CU_ASSERT(ds <= SIM_TOL);
    CU_ASSERT(a->state[0] != 0.0f); /* the hook did move them */
    free(x);
    free(t);
    ae_model_free(a);
    ae_model_free(b);
}

/* KL sparsity: one reduce (the mean activations) in backward; the noise and the VAE's eps keyed by the
 * global sample index: no reduce at all, and still the full batch's gradient. */
static void test_train_two_ranks_penalties_noise(void)
{
    EXPECT_TWO_RANKS_EQUAL("kl sparsity",
                           "[model]\nencoder = dense(5, tanh), dense(3, sigmoid, name=code)\n"
                           "decoder = dense(4)\n[loss]\nkl_sparsity = 0.5\nkl_target = 0.1\n"
                           "l1_activity = 0.01\n", 7, 3, 1, IN4);
    EXPECT_TWO_RANKS_EQUAL("vae",
                           "[model]\nencoder = dense(6, tanh), dense(4), sample(name=code)\n"
                           "decoder = dense(5, tanh), dense(4, sigmoid)\n[loss]\nkind = bce\n"
                           "reduction = sum\n", 7, 4, 0, IN4);
    static const char *const noisy =
        "[model]\nencoder = gauss(0.3), dense(6, tanh), dropout(0.3), dense(3, tanh), mask(0.2), "
        "mult012(name=code)\ndecoder = saltpepper(0.2), dense(4)\n";
    EXPECT_TWO_RANKS_EQUAL("noise", noisy, 7, 2, 0, IN4);
    /* the same slices with the second one keyed from 0 (a rank ignoring sample0) must differ */
    tu_fixture fx = PREPARE(noisy, IN4);
    ae_ctx base = train_ctx(7);
    run_result f = full_batch(fx.m, &base, fx.x, fx.t, 7);
    run_result s = simulate(fx.m, &base, fx.x, fx.t, 7, 2, 0);
    CU_ASSERT(rel_diff(s.g, f.g, fx.m->n_params) > DIFF_MIN);
    result_free(&s);
    result_free(&f);
    tu_fixture_free(&fx);
}

/* ---- reductions ---------------------------------------------------------------------- */

#define RED_MSE "[model]\nencoder = dense(5, tanh), dense(3, tanh, name=code)\ndecoder = dense(4)\n" \
    "[loss]\nkind = mse\nreduction = "
#define RED_BCE "[model]\nencoder = dense(5, tanh), dense(3, tanh, name=code)\n" \
    "decoder = dense(4, sigmoid)\n" \
    "[loss]\nkind = bce\nreduction = "

static void test_train_reduction_grad(void)
{
    CHECK_GRAD("mse mean", RED_MSE "mean\n", N_SAMPLES, IN4);
    CHECK_GRAD("mse sum", RED_MSE "sum\n", N_SAMPLES, IN4);
    CHECK_GRAD("bce mean", RED_BCE "mean\n", N_SAMPLES, IN4);
    CHECK_GRAD("bce sum", RED_BCE "sum\n", N_SAMPLES, IN4);
    CHECK_GRAD("mse sum + l1", RED_MSE "sum\nl1_activity = 0.05\n", N_SAMPLES, IN4);
}

/* The same model and data under both reductions: the sum's objective and every gradient entry are
 * out_size times the mean's; the loss scales are 1 / n and 1 / (n out_size). */
static void check_sum_vs_mean(const char *base)
{
    char ini_m[INI_MAX], ini_s[INI_MAX];
    snprintf(ini_m, sizeof ini_m, "%smean\n", base);
    snprintf(ini_s, sizeof ini_s, "%ssum\n", base);
    ae_model *mm = tu_build(&SETUP, ini_m, (ae_shape){IN4}), *ms = tu_build(&SETUP, ini_s, (ae_shape){IN4});
    CU_ASSERT_FATAL(mm && ms);
    CU_ASSERT_EQUAL(mm->loss_sum, 0);
    CU_ASSERT_EQUAL(ms->loss_sum, 1);
    CU_ASSERT_EQUAL(ae_model_loss_scale(mm, N_SAMPLES), 1.0f / (N_SAMPLES * 4));
    CU_ASSERT_EQUAL(ae_model_loss_scale(ms, N_SAMPLES), 1.0f / N_SAMPLES);
    tu_init_params(&SETUP, mm, NULL);
    tu_init_params(&SETUP, ms, NULL);
    CU_ASSERT_EQUAL_FATAL(memcmp(mm->params, ms->params, sizeof(float) * mm->n_params), 0);
    float *x, *t, *gm = malloc(sizeof(float) * mm->n_params), *gs = malloc(sizeof(float) * ms->n_params);
    CU_ASSERT_FATAL(gm && gs);
    make_data(mm, &x, &t);
    ae_ctx ctx = train_ctx(N_SAMPLES);
    double jm, js;
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_gradcheck_model_grad(mm, &ctx, x, t, NULL, N_SAMPLES, gm, &jm, &err), AE_OK);
    CU_ASSERT_EQUAL(ae_gradcheck_model_grad(ms, &ctx, x, t, NULL, N_SAMPLES, gs, &js, &err), AE_OK);
    double w = (double)mm->out_size;
    CU_ASSERT(fabs(js - w * jm) <= 1e-6 * js);
    for (size_t i = 0; i < mm->n_params; i++) gm[i] *= (float)w;
    double d = rel_diff(gs, gm, mm->n_params);
    if (d > 1e-6) fprintf(stderr, "\n    sum vs %g x mean: gradients differ by %.3g\n", w, d);
    CU_ASSERT(d <= 1e-6);
    free(gm);
    free(gs);
    free(x);
    free(t);
    ae_model_free(mm);
    ae_model_free(ms);
}

static void test_train_reduction_sum_is_w_mean(void)
{
    check_sum_vs_mean(RED_MSE);
    check_sum_vs_mean(RED_BCE);
}

/* ---- gradient accumulation: passes and slices -------------------------------- */

#define MAX_RANKS 7
#define MAX_PASSES 7
#define MAX_NB 50
#define MAX_MICRO 60

/* For every nb <= MAX_NB, P <= MAX_RANKS, k <= MAX_PASSES: walking passes j then ranks r, the slices
 * [lo, hi) follow each other with no gap from 0 to nb (so each sample is computed once, by one rank in
 * one pass, and its global index lo + i keys its noise); each lies in its pass's global micro-batch
 * [g_lo, g_hi), which are the k parts of the batch in order; the largest slice is ae_train_pass_max, and
 * a last partial batch (nb < batch) stays within the full batch's. */
static void test_train_pass_partition(void)
{
    int bad = 0, cases = 0;
    for (int nb = 1; nb <= MAX_NB; nb++)
        for (int P = 1; P <= MAX_RANKS; P++)
            for (int k = 1; k <= MAX_PASSES; k++, cases++) {
                size_t next = 0, g_next = 0, biggest = 0;
                for (int j = 0; j < k; j++) {
                    ae_train_pass pr;
                    ae_train_pass_range((size_t)nb, k, P, j, 0, &pr);
                    bad += pr.g_lo != g_next || pr.g_hi < pr.g_lo;
                    g_next = pr.g_hi;
                    for (int r = 0; r < P; r++) {
                        ae_train_pass_range((size_t)nb, k, P, j, r, &pr);
                        bad += pr.lo != next || pr.hi < pr.lo || pr.lo < pr.g_lo || pr.hi > pr.g_hi;
                        next = pr.hi;
                        if (pr.hi - pr.lo > biggest) biggest = pr.hi - pr.lo;
                    }
                    bad += next != pr.g_hi; /* the ranks' slices fill the micro-batch */
                }
                bad += next != (size_t)nb || g_next != (size_t)nb;
                bad += biggest != (size_t)ae_train_pass_max(nb, k, P);
                for (int full = nb; full <= MAX_NB; full++) bad += (int)biggest > ae_train_pass_max(full, k, P);
                if (bad) {
                    fprintf(stderr, "\n    nb %d, P %d, k %d: slices do not partition the batch\n", nb, P, k);
                    CU_FAIL("pass partition");
                    return;
                }
            }
    CU_ASSERT_EQUAL(cases, MAX_NB * MAX_RANKS * MAX_PASSES);
    /* known values: 10 samples, 4 passes (2, 3, 2, 3), 3 ranks: pass 1 is [2, 5), rank 2 takes [4, 5) */
    ae_train_pass pr;
    ae_train_pass_range(10, 4, 3, 1, 2, &pr);
    CU_ASSERT(pr.g_lo == 2 && pr.g_hi == 5 && pr.lo == 4 && pr.hi == 5);
    CU_ASSERT_EQUAL(ae_train_pass_max(10, 4, 3), 1);
    CU_ASSERT_EQUAL(ae_train_pass_max(64, 2, 3), 11);
}

/* train.balance: for random weights (clamped), every n <= MAX_NB and P <= MAX_RANKS the slices follow
 * each other from 0 to n; each is within one sample of its weight's share n w_q / W, and at most
 * ae_train_balance_max of the equal split's largest; equal weights (any value) and NULL give
 * ae_train_split's slices. Known values: the clamp's floor, and a split of 300 samples. */
static void test_train_balance_split(void)
{
    uint64_t x = 88172645463325252ull; /* xorshift64 */
    int bad = 0;
    for (int n = 0; n <= MAX_NB; n++)
        for (int P = 1; P <= MAX_RANKS; P++)
            for (int t = 0; t < 8; t++) {
                int64_t w[MAX_RANKS];
                for (int q = 0; q < P; q++) {
                    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                    w[q] = t == 0 ? 7 : (int64_t)(x % (t < 4 ? 100 : 1000000000000ull)) - 5; /* some <= 0 */
                }
                ae_train_balance_clamp(w, P);
                int64_t W = 0;
                for (int q = 0; q < P; q++) W += w[q];
                size_t next = 0, most = (size_t)ae_train_balance_max((int)((n + P - 1) / P), P);
                for (int q = 0; q < P; q++) {
                    size_t lo, hi, elo, ehi;
                    ae_train_balance_split((size_t)n, P, w, q, &lo, &hi);
                    double share = (double)n * (double)w[q] / (double)W;
                    bad += lo != next || hi < lo || hi - lo > most || fabs((double)(hi - lo) - share) >= 1.0;
                    next = hi;
                    if (t == 0) {
                        ae_train_split((size_t)n, P, q, &elo, &ehi);
                        bad += lo != elo || hi != ehi;
                    }
                    ae_train_balance_split((size_t)n, P, NULL, q, &lo, &hi);
                    ae_train_split((size_t)n, P, q, &elo, &ehi);
                    bad += lo != elo || hi != ehi;
                }
                bad += next != (size_t)n;
                if (bad) {
                    fprintf(stderr, "\n    n %d, P %d, case %d: balanced slices wrong\n", n, P, t);
                    CU_FAIL("balanced split");
                    return;
                }
            }
    /* P = 2: the floor is ceil(1000 x 3 / 5) = 600; 300 samples: floor(300 x 1000 / 1600) = 187 for rank 0 */
    int64_t w2[2] = {1000, 100};
    ae_train_balance_clamp(w2, 2);
    CU_ASSERT(w2[0] == 1000 && w2[1] == 600);
    size_t lo, hi;
    ae_train_balance_split(300, 2, w2, 1, &lo, &hi);
    CU_ASSERT(lo == 187 && hi == 300);
    CU_ASSERT_EQUAL(ae_train_balance_max(150, 2), 188);
    /* P = 4: floor ceil(500 x 11 / 15) = 367; a weight <= 0 (no measurement) becomes the largest */
    int64_t w4[4] = {400, 100, 0, 500};
    ae_train_balance_clamp(w4, 4);
    CU_ASSERT(w4[0] == 400 && w4[1] == 367 && w4[2] == 500 && w4[3] == 500);
    CU_ASSERT_EQUAL(ae_train_balance_max(3, 1), 3);
    CU_ASSERT_EQUAL(ae_train_balance_max(1, 2), 2);
    /* the weighted passes: pass 1 of 2 of 10 samples is [5, 10); weights 3 : 1 give rank 0 [5, 8) */
    int64_t w31[2] = {3, 1};
    ae_train_pass pr;
    ae_train_pass_range_w(10, 2, 2, w31, 1, 0, &pr);
    CU_ASSERT(pr.g_lo == 5 && pr.g_hi == 10 && pr.lo == 5 && pr.hi == 8);
}

/* micro_batch m: the passes keep every rank's pass at most m samples, and are the fewest that do; without
 * it the passes are accum. */
static void test_train_passes_micro_batch(void)
{
    for (int batch = 1; batch <= MAX_NB; batch++)
        for (int P = 1; P <= MAX_RANKS; P++)
            for (int mb = 1; mb <= MAX_MICRO; mb++) {
                int k = ae_train_passes(batch, P, 1, mb);
                int fits = ae_train_pass_max(batch, k, P) <= mb;
                int fewest = k == 1 || ae_train_pass_max(batch, k - 1, P) > mb;
                if (!fits || !fewest || k < 1 || k > batch) {
                    fprintf(stderr, "\n    batch %d, P %d, micro_batch %d: %d passes\n", batch, P, mb, k);
                    CU_FAIL("micro_batch passes");
                    return;
                }
            }
    CU_ASSERT_EQUAL(ae_train_passes(256, 2, 1, 32), 4);
    CU_ASSERT_EQUAL(ae_train_passes(256, 3, 1, 32), 3); /* 86 per rank: passes of 29 and 28 */
    CU_ASSERT_EQUAL(ae_train_passes(256, 8, 1, 32), 1);
    CU_ASSERT_EQUAL(ae_train_passes(256, 3, 5, 0), 5);
    CU_ASSERT_EQUAL(ae_train_passes(256, 3, 1, 0), 1);
}

static ae_status reduce_alone(float *buf, size_t n, void *user)
{
    (void)buf;
    (void)n;
    (void)user;
    return AE_OK;
}

/* Synchronized bn divides its reduced sums by ctx->sync_count (the pass's global micro-batch), not by the
 * step's batch: one rank whose pass is the whole micro-batch of BN_N samples in a step of 2 BN_N gives
 * the local statistics' output; without sync_count it would divide by 2 BN_N. */
static void test_train_bn_sync_count(void)
{
    ae_model *m = bn_tiny("sync=1, ", (ae_shape){2, 1, 1});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    memcpy(m->layers[0].W, BN_GAMMA, sizeof BN_GAMMA);
    memcpy(m->layers[0].b, BN_BETA, sizeof BN_BETA);
    ae_ctx pass = train_ctx(2 * BN_N), whole = pass;
    pass.reduce = reduce_alone;
    pass.sync_count = BN_N;
    float y[2 * BN_N];
    memcpy(y, ae_model_forward(m, &pass, BN_X, BN_N, 1), sizeof y);
    for (int i = 0; i < 2 * BN_N; i++) CU_ASSERT(near(y[i], BN_TRAIN_Y[i], FWD_TOL, "bn sync_count y", i));
    whole.reduce = reduce_alone; /* sync_count 0: the batch's 2 BN_N */
    const float *yw = ae_model_forward(m, &whole, BN_X, BN_N, 1);
    CU_ASSERT(rel_diff(yw, y, 2 * BN_N) > DIFF_MIN);
    ae_model_free(m);
}

void ae_test_register_train(void)
{
    CU_pSuite s = CU_add_suite("train", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_train_bn_dense_relu_grad", test_train_bn_dense_relu_grad);
    CU_add_test(s, "test_train_bn_dense_sigmoid_grad", test_train_bn_dense_sigmoid_grad);
    CU_add_test(s, "test_train_bn_conv_relu_grad", test_train_bn_conv_relu_grad);
    CU_add_test(s, "test_train_bn_conv_sigmoid_grad", test_train_bn_conv_sigmoid_grad);
    CU_add_test(s, "test_train_bn_autoencoder_grad", test_train_bn_autoencoder_grad);
    CU_add_test(s, "test_train_bn_invariances", test_train_bn_invariances);
    CU_add_test(s, "test_train_bn_train_values", test_train_bn_train_values);
    CU_add_test(s, "test_train_bn_update_and_eval_values", test_train_bn_update_and_eval_values);
    CU_add_test(s, "test_train_bn_update_conv_values", test_train_bn_update_conv_values);
    CU_add_test(s, "test_train_bn_large_offset", test_train_bn_large_offset);
#define REGISTER_NOISE(k, layer)                                                \
    CU_add_test(s, "test_train_noise_" #k "_grad", test_train_noise_##k##_grad); \
    CU_add_test(s, "test_train_noise_" #k "_keys", test_train_noise_##k##_keys);
    NOISE_KINDS(REGISTER_NOISE)
#undef REGISTER_NOISE
    CU_add_test(s, "test_train_noise_layers_independent", test_train_noise_layers_independent);
    CU_add_test(s, "test_train_noise_mask_rescale", test_train_noise_mask_rescale);
    CU_add_test(s, "test_train_dropout_stats", test_train_dropout_stats);
    CU_add_test(s, "test_train_mask_stats", test_train_mask_stats);
    CU_add_test(s, "test_train_saltpepper_stats", test_train_saltpepper_stats);
    CU_add_test(s, "test_train_mult012_stats", test_train_mult012_stats);
    CU_add_test(s, "test_train_gauss_stats", test_train_gauss_stats);
    CU_add_test(s, "test_train_vae_grad", test_train_vae_grad);
    CU_add_test(s, "test_train_vae_kl_only_grad", test_train_vae_kl_only_grad);
    CU_add_test(s, "test_train_vae_eval_values", test_train_vae_eval_values);
    CU_add_test(s, "test_train_vae_reparam", test_train_vae_reparam);
    CU_add_test(s, "test_train_kl_sparsity_grad", test_train_kl_sparsity_grad);
    CU_add_test(s, "test_train_l1_kl_grad", test_train_l1_kl_grad);
    CU_add_test(s, "test_train_kl_sparsity_values", test_train_kl_sparsity_values);
    CU_add_test(s, "test_train_two_ranks_bn_sync", test_train_two_ranks_bn_sync);
    CU_add_test(s, "test_train_two_ranks_bn_local", test_train_two_ranks_bn_local);
    CU_add_test(s, "test_train_two_ranks_penalties_noise", test_train_two_ranks_penalties_noise);
    CU_add_test(s, "test_train_reduction_grad", test_train_reduction_grad);
    CU_add_test(s, "test_train_reduction_sum_is_w_mean", test_train_reduction_sum_is_w_mean);
    CU_add_test(s, "test_train_pass_partition", test_train_pass_partition);
    CU_add_test(s, "test_train_passes_micro_batch", test_train_passes_micro_batch);
    CU_add_test(s, "test_train_balance_split", test_train_balance_split);
    CU_add_test(s, "test_train_bn_sync_count", test_train_bn_sync_count);
}
