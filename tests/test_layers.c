/* test_layers.c - CUnit suite "layers": every activation through a dense and
 * through a standalone act layer, dense without bias, tied dense and flatten
 * pass the finite-difference check of ae_gradcheck; forward numbers of a tiny
 * dense layer against values worked out by hand; the four init schemes
 * against their formulas, and init determinism per seed.
 * AE_GRADCHECK_VERBOSE=1 in the environment prints every check's numbers. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/gradcheck.h"
#include "ae/model.h"
#include "ae/rng.h"
#include "testutil.h"

#define ORIGIN "layers.ini"
#define SEED 20240611u
#define N_SAMPLES 3       /* a few samples so that dW sums over rows */
#define MAX_BATCH 8
#define BIAS_SCALE 0.5f   /* biases are drawn in [-0.5, 0.5): init leaves them at 0 */
#define INI_MAX 512
/* At most this fraction of the coordinates may be skipped at a relu/elu kink, or judged on the noise
 * floor alone (gradients too small for a float forward pass to resolve to tol); more would mean the
 * check passes on too little evidence. */
#define MAX_SKIP_FRACTION 0.1
#define MAX_FLOORED_FRACTION 0.5
/* Forward values are sums of 3 float products of order 1: a few ulps, far below this. */
#define FWD_TOL 1e-6

/* ---- helpers ------------------------------------------------------------ */

static const tu_setup SETUP = {ORIGIN, MAX_BATCH, SEED, BIAS_SCALE};

/* The model of ini for inputs of shape in with its parameters drawn (biases at random, so that bias
 * gradients and kinks are not all alike), and random inputs in [-1, 1) and targets in [0, 1) for
 * N_SAMPLES samples; two fatal asserts. */
static tu_fixture prepare_at(unsigned line, const char *ini, ae_shape in)
{
    tu_fixture f;
    int rc = tu_fixture_make(&f, &SETUP, ini, in, 2, N_SAMPLES, NULL);
    TU_ASSERT_FIXTURE_AT(line, rc);
    return f;
}

/* Builds the model of ini (mse loss unless ini says otherwise) for inputs of shape in and asserts that
 * ae_gradcheck finds every checked coordinate of dJ/dparams within AE_GRADCHECK_TOL, on enough evidence:
 * few coordinates skipped at kinks or judged on the noise floor alone. Returns the number of parameters. */
static size_t check_grad_at(unsigned line, const char *what, const char *ini, ae_shape in)
{
    tu_fixture f = prepare_at(line, ini, in);
    tu_gradcheck_verdict v;
    tu_gradcheck_model(&v, what, f.m, f.x, f.t, NULL, N_SAMPLES, NULL, MAX_SKIP_FRACTION,
                       MAX_FLOORED_FRACTION);
    TU_ASSERT_GRADCHECK_AT(line, &v);
    size_t np = f.m->n_params;
    tu_fixture_free(&f);
    return np;
}
#define CHECK_GRAD(what, ini, ...) check_grad_at(__LINE__, (what), (ini), (ae_shape){__VA_ARGS__})

#define IN4 4, 1, 1
#define ACTS(X) X(linear) X(sigmoid) X(tanh) X(relu) X(elu) X(softmax)

/* ---- gradients: activations --------------------------------------------- */

/* 4 -> 5 -> 3 -> 4 with the activation on the first and the last layer: its backward in the middle
 * (feeding the din of the next dense), at the output (mse, not fused), and the dense din itself; or, with
 * standalone, the same through act layers after linear dense layers (din of act feeds dW before it). */
static void check_act(const char *act, int standalone)
{
    char ini[INI_MAX], what[64];
    if (standalone)
        snprintf(ini, sizeof ini, "[model]\nencoder = dense(5), act(%s), dense(3, name=code)\n"
                 "decoder = dense(4), act(%s)\n[loss]\nkind = mse\n", act, act);
    else
        snprintf(ini, sizeof ini, "[model]\nencoder = dense(5, %s), dense(3, tanh, name=code)\n"
                 "decoder = dense(4, %s)\n[loss]\nkind = mse\n", act, act);
    snprintf(what, sizeof what, standalone ? "act(%s)" : "dense(%s)", act);
    size_t np = CHECK_GRAD(what, ini, IN4);
    CU_ASSERT_EQUAL(np, (4 * 5 + 5) + (5 * 3 + 3) + (3 * 4 + 4));
}

#define DEFINE_ACT_TESTS(a)                                       \
    static void test_layers_dense_##a(void) { check_act(#a, 0); } \
    static void test_layers_act_##a(void) { check_act(#a, 1); }
ACTS(DEFINE_ACT_TESTS)
#undef DEFINE_ACT_TESTS

/* ---- gradients: dense variants, tied, flatten ------------------------------ */

static void test_layers_dense_no_bias(void)
{
    const char *ini = "[model]\nencoder = dense(5, tanh, bias=0), dense(3, sigmoid, bias=0, name=code)\n"
                      "decoder = dense(4, bias=0)\n";
    size_t np = CHECK_GRAD("dense(bias=0)", ini, IN4);
    CU_ASSERT_EQUAL(np, 4 * 5 + 5 * 3 + 3 * 4);
    /* one layer with and one without bias in the same model: the views must not overlap */
    ini = "[model]\nencoder = dense(5, tanh, bias=0), dense(3, tanh, name=code)\n"
          "decoder = dense(4, bias=0)\n";
    np = CHECK_GRAD("dense(bias mixed)", ini, IN4);
    CU_ASSERT_EQUAL(np, 4 * 5 + (5 * 3 + 3) + 3 * 4);
}

/* The decoder reuses the encoder weights transposed: each shared weight gets gradient from both uses
 * (a missing use would put the analytic value off the central difference, which sees both). */
static void test_layers_tied(void)
{
    const char *ini = "[model]\nencoder = dense(5, tanh), dense(3, tanh, name=code)\n"
                      "decoder = dense(5, tanh, tied=code), dense(4, sigmoid, tied=enc1)\n";
    size_t np = CHECK_GRAD("tied", ini, IN4);
    CU_ASSERT_EQUAL(np, (4 * 5 + 5) + (5 * 3 + 3) + 5 + 4); /* tied layers own only their biases */
    ini = "[model]\nencoder = dense(5, elu, name=code)\ndecoder = dense(4, tied=code, bias=0)\n";
    np = CHECK_GRAD("tied(bias=0)", ini, IN4);
    CU_ASSERT_EQUAL(np, 4 * 5 + 5);
}

/* 2x2x3 input: flatten first (no input gradient needed), then again between dense layers, where its din
 * carries the gradient to the dense before it. */
static void test_layers_flatten(void)
{
    const char *ini = "[model]\nencoder = flatten, dense(6, tanh), flatten, dense(3, tanh, name=code)\n"
                      "decoder = dense(12)\n";
    size_t np = CHECK_GRAD("flatten", ini, 2, 2, 3);
    CU_ASSERT_EQUAL(np, (12 * 6 + 6) + (6 * 3 + 3) + (3 * 12 + 12));
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){2, 2, 3});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->layers[0].out.c, 12);
    CU_ASSERT_EQUAL(m->layers[0].out.h, 1);
    CU_ASSERT_EQUAL(m->layers[0].out.w, 1);
    CU_ASSERT_EQUAL(m->layers[0].n_params, 0);
    CU_ASSERT_EQUAL(m->layers[2].out_size, 6);
    ae_model_free(m);
}

/* A relu unit whose weights and bias are all 0 sits exactly on its kink for every sample: any step of
 * its bias or weights crosses it, so the checker must skip exactly those in_size + 1 coordinates (and
 * still check the rest), not report the one-sided slope as a mismatch. */
static void test_layers_relu_kink_skipped(void)
{
    const char *ini = "[model]\nencoder = dense(5, relu), dense(3, tanh, name=code)\ndecoder = dense(4)\n";
    tu_fixture f = prepare_at(__LINE__, ini, (ae_shape){IN4});
    ae_model *m = f.m;
    ae_layer *l = &m->layers[0];
    for (size_t i = 0; i < l->in_size; i++) l->W[i * (size_t)l->units] = 0.0f; /* W (in x units): column 0 */
    l->b[0] = 0.0f;
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    ae_gradcheck_result res;
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_gradcheck_model(m, f.x, f.t, NULL, N_SAMPLES, &o, &res, &err), AE_OK);
    CU_ASSERT_EQUAL(res.n_skipped, l->in_size + 1);
    CU_ASSERT_EQUAL(res.n_checked, m->n_params - (l->in_size + 1));
    CU_ASSERT(res.max_rel_err <= AE_GRADCHECK_TOL);
    tu_fixture_free(&f);
}

/* ---- forward numbers -------------------------------------------------------- */

/* A 3 -> 2 dense layer, W (in x units, row-major) and b set by hand:
 *   W = [[0.5, -1], [2, 0.25], [-1.5, 1]], b = [0.1, -0.2]
 *   x0 = [1, 2, 3]:     z = [0.5 + 4 - 4.5 + 0.1, -1 + 0.5 + 3 - 0.2]   = [0.1, 2.3]
 *   x1 = [-1, 0.5, 2]:  z = [-0.5 + 1 - 3 + 0.1, 1 + 0.125 + 2 - 0.2]   = [-2.4, 2.925]
 * then the activation (values from Python's math module, double). */
static const float FWD_W[] = {0.5f, -1.0f, 2.0f, 0.25f, -1.5f, 1.0f};
static const float FWD_B[] = {0.1f, -0.2f};
static const float FWD_X[] = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f, 2.0f};
#define FWD_N 2
#define FWD_OUT (FWD_N * 2)

static ae_model *tiny_dense(const char *act)
{
    char ini[INI_MAX];
    snprintf(ini, sizeof ini, "[model]\nencoder = dense(2, %s, name=code)\ndecoder = dense(3, tied=code)\n",
             act);
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){3, 1, 1});
    if (!m) return NULL;
    memcpy(m->layers[0].W, FWD_W, sizeof FWD_W);
    memcpy(m->layers[0].b, FWD_B, sizeof FWD_B);
    return m;
}

static void check_forward(const char *act, const double *want)
{
    ae_model *m = tiny_dense(act);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_ctx ctx = {0};
    const float *y = ae_model_forward(m, &ctx, FWD_X, FWD_N, 1);
    for (int i = 0; i < FWD_OUT; i++) {
        int ok = fabs((double)y[i] - want[i]) <= FWD_TOL * fmax(1.0, fabs(want[i]));
        if (!ok) fprintf(stderr, "\n    %s: out[%d] = %.9g, want %.9g", act, i, (double)y[i], want[i]);
        CU_ASSERT(ok);
    }
    ae_model_free(m);
}

static void test_layers_dense_forward_values(void)
{
    static const double lin[FWD_OUT] = {0.1, 2.3, -2.4, 2.925};
    static const double relu[FWD_OUT] = {0.1, 2.3, 0.0, 2.925};
    static const double sig[FWD_OUT] = {0.52497918747894, 0.9088770389851438, 0.08317269649392238,
                                        0.9490685297470565};
    static const double tanh_[FWD_OUT] = {0.09966799462495582, 0.9800963962661914, -0.9836748576936802,
                                          0.9942567416885992};
    static const double elu[FWD_OUT] = {0.1, 2.3, -0.9092820467105875, 2.925};
    static const double smax[FWD_OUT] = {0.09975048911968518, 0.9002495108803148, 0.004844764997639803,
                                         0.9951552350023601};
    check_forward("linear", lin);
    check_forward("relu", relu);
    check_forward("sigmoid", sig);
    check_forward("tanh", tanh_);
    check_forward("elu", elu);
    check_forward("softmax", smax);
}

/* The sigmoid over 1000 values in [-40, 40] with +-0, +-88.5, +-100 and a NaN (whole 16-lane registers
 * and a padded tail with AVX-512, 8-lane ones with AVX2): within 2e-7 of 1 / (1 + e^-x) in double, and
 * the NaN kept. */
static void test_layers_sigmoid_wide(void)
{
    enum { N = 1000 };
    static float x[N], x0[N];
    const float special[] = {0.0f, -0.0f, 88.5f, -88.5f, 100.0f, -100.0f};
    for (int i = 0; i < N; i++) x0[i] = x[i] = i < 6 ? special[i] : -40.0f + 80.0f * (float)i / (float)(N - 1);
    x0[17] = x[17] = NAN;
    ae_act_forward(AE_ACT_SIGMOID, x, 4, N / 4);
    double worst = 0.0;
    for (int i = 0; i < N; i++)
        if (i != 17) worst = fmax(worst, fabs(x[i] - 1.0 / (1.0 + exp(-(double)x0[i]))));
    CU_ASSERT(worst <= 2e-7);
    CU_ASSERT(isnan(x[17]));
}

/* Each element's sigmoid is bitwise the same wherever it falls: alone (a partial register), among 29
 * (whole registers and a tail) and in whole registers of 64: the slices of P ranks cut a batch at
 * other places than one rank does, and a sample's activations must not depend on that. */
static void test_layers_sigmoid_position(void)
{
    enum { N = 29 };
    float v[N], all[N], big[64], one[1];
    for (int i = 0; i < N; i++) v[i] = all[i] = -12.0f + 0.83f * (float)i + 1e-3f * (float)(i * i);
    ae_act_forward(AE_ACT_SIGMOID, all, 1, N);
    int same = 1;
    for (int i = 0; i < N; i++) {
        one[0] = v[i];
        ae_act_forward(AE_ACT_SIGMOID, one, 1, 1);
        for (int j = 0; j < 64; j++) big[j] = v[i];
        ae_act_forward(AE_ACT_SIGMOID, big, 4, 16);
        same &= memcmp(&one[0], &all[i], sizeof(float)) == 0 && memcmp(&big[37], &all[i], sizeof(float)) == 0;
    }
    CU_ASSERT(same);
}

/* The tied decoder computes out_j = sum_k h_k W[j][k] + b_j from the linear code h above, with
 * b = [0.05, -0.1, 0.2]:  h = [0.1, 2.3]   -> [0.05 - 2.3 + 0.05, 0.2 + 0.575 - 0.1, -0.15 + 2.3 + 0.2]
 *                                            = [-2.2, 0.675, 2.35]
 *                         h = [-2.4, 2.925] -> [-4.075, -4.16875, 6.725] */
static void test_layers_tied_forward_values(void)
{
    static const float bd[] = {0.05f, -0.1f, 0.2f};
    static const double want[] = {-2.2, 0.675, 2.35, -4.075, -4.16875, 6.725};
    ae_model *m = tiny_dense("linear");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NULL(m->layers[1].W);
    CU_ASSERT_PTR_EQUAL(m->layers[1].tied, &m->layers[0]);
    memcpy(m->layers[1].b, bd, sizeof bd);
    ae_ctx ctx = {0};
    const float *y = ae_model_forward(m, &ctx, FWD_X, FWD_N, m->n_layers);
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++)
        CU_ASSERT(fabs((double)y[i] - want[i]) <= FWD_TOL * fmax(1.0, fabs(want[i])));
    ae_model_free(m);
}

/* ---- init ----------------------------------------------------------------------- */

#define INIT_IN 784
#define INIT_CODE 256
/* Sample moments of N draws are off by about one standard error; 5 of them is a one-in-a-million miss
 * (and the seed is fixed, so the test is deterministic anyway). */
#define N_SE 5.0
#define KURT_UNIFORM 1.8 /* E[w^4] / E[w^2]^2 of a uniform ... */
#define KURT_NORMAL 3.0  /* ... and of a normal distribution */
#define EDGE_FRAC 0.999  /* the largest of 2e5 uniform draws comes this close to the limit */
#define LIMIT_SLACK 1e-6 /* the limit is rounded to float before scaling */
#define BIAS_EDGE_FRAC 0.9 /* the largest |b| of 256 draws: P(all 256 below 0.9 limit) = 0.9^256 < 1e-11 */

typedef struct moments {
    double mean, var, kurt, maxabs;
} moments;

static moments sample_moments(const float *w, size_t n)
{
    moments m = {0};
    for (size_t i = 0; i < n; i++) m.mean += w[i];
    m.mean /= (double)n;
    double m4 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = w[i] - m.mean, d2 = d * d;
        m.var += d2;
        m4 += d2 * d2;
        m.maxabs = fmax(m.maxabs, fabs((double)w[i]));
    }
    m.var /= (double)n;
    m.kurt = m4 / (double)n / (m.var * m.var);
    return m;
}

/* One dense layer's weights against the scheme: standard deviation sqrt(2 / (fan_in + fan_out)) for
 * glorot, sqrt(2 / fan_in) for he and sqrt(1 / (3 fan_in)) for torch; the uniform forms draw from
 * [-limit, limit) with limit = sqrt(3) std (sqrt(6 / (fan_in + fan_out)), sqrt(6 / fan_in),
 * 1 / sqrt(fan_in)). Biases start at 0, except torch's: uniform in the weights' limits. */
static void check_init_layer(const ae_layer *l, ae_init scheme)
{
    double fan_in = (double)l->in_size, fan_out = (double)l->units;
    int normal = scheme == AE_INIT_GLOROT_NORMAL || scheme == AE_INIT_HE_NORMAL;
    int he = scheme == AE_INIT_HE_UNIFORM || scheme == AE_INIT_HE_NORMAL;
    double std = scheme == AE_INIT_TORCH ? sqrt(1.0 / (3.0 * fan_in))
                 : he                    ? sqrt(2.0 / fan_in)
                                         : sqrt(2.0 / (fan_in + fan_out));
    size_t n = l->in_size * (size_t)l->units;
    moments s = sample_moments(l->W, n);
    double kurt = normal ? KURT_NORMAL : KURT_UNIFORM;
    double se_mean = std / sqrt((double)n);
    double se_var_rel = sqrt((kurt - 1.0) / (double)n); /* sd of the sample variance / variance */
    double se_kurt = sqrt(24.0 / (double)n);            /* (normal theory; smaller for the uniform) */
    int ok_mean = fabs(s.mean) <= N_SE * se_mean;
    int ok_var = fabs(s.var / (std * std) - 1.0) <= N_SE * se_var_rel;
    int ok_kurt = fabs(s.kurt - kurt) <= N_SE * se_kurt;
    int ok_range = 1;
    double limit = sqrt(3.0) * std;
    if (!normal) ok_range = s.maxabs <= limit * (1.0 + LIMIT_SLACK) && s.maxabs >= EDGE_FRAC * limit;
    if (!(ok_mean && ok_var && ok_kurt && ok_range))
        fprintf(stderr, "\n    %s (%s): mean %.3g var %.6g (want %.6g) kurt %.3f (want %.1f) max %.6g",
                l->name, ae_init_name(l->init), s.mean, s.var, std * std, s.kurt, kurt, s.maxabs);
    CU_ASSERT(ok_mean);
    CU_ASSERT(ok_var);
    CU_ASSERT(ok_kurt);
    CU_ASSERT(ok_range);
    if (scheme != AE_INIT_TORCH) {
        for (int j = 0; j < l->units; j++) CU_ASSERT_EQUAL(l->b[j], 0.0f);
        return;
    }
    moments b = sample_moments(l->b, (size_t)l->units);
    CU_ASSERT(fabs(b.mean) <= N_SE * std / sqrt((double)l->units));
    CU_ASSERT(b.maxabs <= limit * (1.0 + LIMIT_SLACK) && b.maxabs >= BIAS_EDGE_FRAC * limit);
}

/* 784 -> 256 -> 784 with the scheme from [model] init: both layers, so that fan_in and fan_out are not
 * mixed up (he and torch use fan_in: 784 for the encoder, 256 for the decoder). */
static void check_init(ae_init scheme)
{
    char ini[INI_MAX];
    snprintf(ini, sizeof ini, "[model]\ninit = %s\nencoder = dense(%d, name=code)\ndecoder = dense(%d)\n",
             ae_init_name(scheme), INIT_CODE, INIT_IN);
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){INIT_IN, 1, 1});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_model_init_params(m, SEED);
    CU_ASSERT_EQUAL(m->layers[0].init, scheme);
    check_init_layer(&m->layers[0], scheme);
    check_init_layer(&m->layers[1], scheme);
    ae_model_free(m);
}

static void test_layers_init_glorot_uniform(void) { check_init(AE_INIT_GLOROT_UNIFORM); }
static void test_layers_init_glorot_normal(void) { check_init(AE_INIT_GLOROT_NORMAL); }
static void test_layers_init_he_uniform(void) { check_init(AE_INIT_HE_UNIFORM); }
static void test_layers_init_he_normal(void) { check_init(AE_INIT_HE_NORMAL); }
static void test_layers_init_torch(void) { check_init(AE_INIT_TORCH); }

/* init = on a layer overrides [model] init for that layer only. */
static void test_layers_init_per_layer(void)
{
    char ini[INI_MAX];
    snprintf(ini, sizeof ini,
             "[model]\ninit = glorot_uniform\nencoder = dense(%d, init=he_normal, name=code)\n"
             "decoder = dense(%d)\n", INIT_CODE, INIT_IN);
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){INIT_IN, 1, 1});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_model_init_params(m, SEED);
    check_init_layer(&m->layers[0], AE_INIT_HE_NORMAL);
    check_init_layer(&m->layers[1], AE_INIT_GLOROT_UNIFORM);
    ae_model_free(m);
}

/* Same seed: bit-identical weights; another seed: (almost) every weight differs. */
static void test_layers_init_seed(void)
{
    const char *ini = "[model]\nencoder = dense(64, relu, name=code)\ndecoder = dense(100, sigmoid)\n";
    ae_model *a = tu_build(&SETUP, ini, (ae_shape){100, 1, 1});
    ae_model *b = tu_build(&SETUP, ini, (ae_shape){100, 1, 1});
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    ae_model_init_params(a, SEED);
    ae_model_init_params(b, SEED);
    CU_ASSERT_EQUAL(memcmp(a->params, b->params, sizeof(float) * a->n_params), 0);
    ae_model_init_params(b, SEED + 1);
    size_t same = 0, nw = a->layers[0].in_size * (size_t)a->layers[0].units;
    for (size_t i = 0; i < nw; i++) same += a->layers[0].W[i] == b->layers[0].W[i];
    CU_ASSERT(same < nw / 100);
    /* layers draw from their own streams: the decoder does not repeat the encoder's numbers */
    CU_ASSERT_NOT_EQUAL(a->layers[0].W[0] / a->layers[0].W[1], a->layers[1].W[0] / a->layers[1].W[1]);
    ae_model_free(a);
    ae_model_free(b);
}

void ae_test_register_layers(void)
{
    CU_pSuite s = CU_add_suite("layers", NULL, NULL);
    if (!s) return;
#define REGISTER_ACT_TESTS(a)                                             \
    CU_add_test(s, "test_layers_dense_" #a, test_layers_dense_##a);     \
    CU_add_test(s, "test_layers_act_" #a, test_layers_act_##a);
    ACTS(REGISTER_ACT_TESTS)
#undef REGISTER_ACT_TESTS
    CU_add_test(s, "test_layers_dense_no_bias", test_layers_dense_no_bias);
    CU_add_test(s, "test_layers_tied", test_layers_tied);
    CU_add_test(s, "test_layers_flatten", test_layers_flatten);
    CU_add_test(s, "test_layers_relu_kink_skipped", test_layers_relu_kink_skipped);
    CU_add_test(s, "test_layers_dense_forward_values", test_layers_dense_forward_values);
    CU_add_test(s, "test_layers_sigmoid_wide", test_layers_sigmoid_wide);
    CU_add_test(s, "test_layers_sigmoid_position", test_layers_sigmoid_position);
    CU_add_test(s, "test_layers_tied_forward_values", test_layers_tied_forward_values);
    CU_add_test(s, "test_layers_init_glorot_uniform", test_layers_init_glorot_uniform);
    CU_add_test(s, "test_layers_init_torch", test_layers_init_torch);
    CU_add_test(s, "test_layers_init_glorot_normal", test_layers_init_glorot_normal);
    CU_add_test(s, "test_layers_init_he_uniform", test_layers_init_he_uniform);
    CU_add_test(s, "test_layers_init_he_normal", test_layers_init_he_normal);
    CU_add_test(s, "test_layers_init_per_layer", test_layers_init_per_layer);
    CU_add_test(s, "test_layers_init_seed", test_layers_init_seed);
}
