/* test_model.c - CUnit suite "model": building a model from a spec (every
 * error names the layer's file:line), the architecture hash and parameter
 * count, and the objective the model differentiates: losses fused with the
 * last layer's logits (bce + sigmoid, ce + softmax), the L1 activity penalty
 * on a hidden layer and the L2 weight penalty, all through ae_gradcheck; and
 * the checker itself must catch a wrong gradient.
 * AE_GRADCHECK_VERBOSE=1 in the environment prints every check's numbers. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/gradcheck.h"
#include "ae/loss.h"
#include "ae/model.h"
#include "ae/rng.h"
#include "testutil.h"

#define ORIGIN "model.ini"
#define SEED 424242u
#define N_SAMPLES 3
#define MAX_BATCH 8
#define N_CLASSES 4
#define BIAS_SCALE 0.5f
#define INI_MAX 512
#define IN4 4, 1, 1
#define IN6 6, 1, 1
/* See test_layers.c: evidence bounds of a passing check. */
#define MAX_SKIP_FRACTION 0.1
#define MAX_FLOORED_FRACTION 0.5
/* The fused losses against the same loss computed from the outputs, in float: a few ulps of each term. */
#define LOSS_TOL 1e-5
/* Two identical backward passes summed in float: exact doubling up to an ulp or so. */
#define ACC_TOL 1e-6

/* ---- helpers ------------------------------------------------------------ */

static const tu_setup SETUP = {ORIGIN, MAX_BATCH, SEED, BIAS_SCALE};

/* The model of ini with init (seed SEED) plus random biases, and MAX_BATCH samples for it drawn on from
 * the same stream: inputs in [-1, 1), targets in [0, 1), labels in [0, out). */
typedef struct batch {
    tu_fixture f;
    uint8_t labels[MAX_BATCH];
} batch;

static batch prepare_at(unsigned line, const char *ini, ae_shape in)
{
    batch b;
    ae_rng r;
    int rc = tu_fixture_make(&b.f, &SETUP, ini, in, 1, MAX_BATCH, &r);
    TU_ASSERT_FIXTURE_AT(line, rc);
    for (int i = 0; i < MAX_BATCH; i++) b.labels[i] = (uint8_t)ae_rng_below(&r, (uint32_t)b.f.m->out_size);
    return b;
}
#define PREPARE(ini, ...) prepare_at(__LINE__, (ini), (ae_shape){__VA_ARGS__})

/* Builds ini, checks dJ/dparams with the default options and asserts every checked coordinate within
 * AE_GRADCHECK_TOL, on enough evidence (see MAX_*_FRACTION). */
static void check_grad_at(unsigned line, const char *what, const char *ini, ae_shape in)
{
    batch b = prepare_at(line, ini, in);
    tu_gradcheck_verdict v;
    tu_gradcheck_model(&v, what, b.f.m, b.f.x, b.f.t, b.labels, N_SAMPLES, NULL, MAX_SKIP_FRACTION,
                       MAX_FLOORED_FRACTION);
    TU_ASSERT_GRADCHECK_PASSED_AT(line, &v);
    tu_fixture_free(&b.f);
}
#define CHECK_GRAD(what, ini, ...) check_grad_at(__LINE__, (what), (ini), (ae_shape){__VA_ARGS__})

/* Expects building ini for 6 inputs to fail with code and a message containing both needles. */
static void expect_error_at(unsigned line, const char *ini, ae_status code, const char *n1, const char *n2)
{
    ae_model *m;
    ae_error err = {0};
    ae_status st = tu_build_status(&SETUP, ini, (ae_shape){IN6}, &m, &err);
    int ok = st == code && m == NULL && strstr(err.msg, n1) && strstr(err.msg, n2);
    if (!ok) fprintf(stderr, "\n    status %d, message '%s'; want %d, '%s', '%s'", st, err.msg, code, n1, n2);
    TU_ASSERT_AT(ok, line, "model error names file:line and the problem");
    ae_model_free(m);
}
#define EXPECT_ERROR(ini, code, n1, n2) expect_error_at(__LINE__, (ini), (code), (n1), (n2))
#define ENC8 "[model]\nencoder = dense(8)\n" /* line 2 */

/* ---- creation errors ----------------------------------------------------------- */

static void test_model_error_output_size(void)
{
    EXPECT_ERROR(ENC8 "decoder = dense(5)\n", AE_ERR_SHAPE, ORIGIN ":3",
                 "the decoder's output has 5 values, the input has 6");
}

static void test_model_error_bce_needs_sigmoid(void)
{
    EXPECT_ERROR(ENC8 "decoder = dense(6, relu)\n[loss]\nkind = bce\n", AE_ERR_CONFIG, ORIGIN ":3",
                 "loss bce needs a sigmoid output layer (the last layer is dense with act relu)");
    EXPECT_ERROR(ENC8 "decoder = dense(6, sigmoid), flatten\n[loss]\nkind = bce\n", AE_ERR_CONFIG,
                 ORIGIN ":3", "loss bce needs a sigmoid output layer");
}

static void test_model_error_ce_needs_softmax(void)
{
    EXPECT_ERROR("[model]\ntype = classifier\nencoder = dense(8)\nhead = dense(10, relu)\n"
                 "[loss]\nkind = ce\n", AE_ERR_CONFIG, ORIGIN ":4", "loss ce needs a softmax output layer");
}

/* The kind on a continuation line is reported at that line. */
static void test_model_error_unknown_kind(void)
{
    EXPECT_ERROR("[model]\nencoder = dense(8),\n    magic(3)\ndecoder = dense(6)\n", AE_ERR_CONFIG,
                 ORIGIN ":3", "unknown layer kind 'magic'");
}

static void test_model_error_layer_args(void)
{
    EXPECT_ERROR("[model]\nencoder = dense(0)\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "units = '0' is not an integer");
    EXPECT_ERROR(ENC8 "decoder = dense(six)\n", AE_ERR_CONFIG, ORIGIN ":3",
                 "units = 'six' is not an integer");
    EXPECT_ERROR("[model]\nencoder = dense()\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "missing argument 'units'");
    EXPECT_ERROR("[model]\nencoder = dense(8, act=swish)\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "unknown activation 'swish'");
    EXPECT_ERROR("[model]\nencoder = dense(8, foo=1)\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "unknown argument 'foo'");
    EXPECT_ERROR("[model]\nencoder = dense(8, relu, 3)\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "at most 2 positional arguments");
    EXPECT_ERROR("[model]\nencoder = dense(8, init=zeros)\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "unknown init 'zeros'");
    EXPECT_ERROR("[model]\nencoder = dense(8), act()\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "act: missing the activation");
    EXPECT_ERROR("[model]\nencoder = flatten(2), dense(8)\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "flatten takes at most 0 positional");
    EXPECT_ERROR("[model]\nencoder = dense(8, name=x), dense(4, name=x)\ndecoder = dense(6)\n", AE_ERR_CONFIG,
                 ORIGIN ":2", "layer name 'x' is used twice");
}

static void test_model_error_tie_missing(void)
{
    EXPECT_ERROR("[model]\nencoder = dense(8, name=code)\ndecoder = dense(6, tied=nope)\n", AE_ERR_CONFIG,
                 ORIGIN ":3", "tied = 'nope' names no earlier untied dense layer");
    /* a layer that is not dense, and one that comes later, are no tie targets either */
    EXPECT_ERROR("[model]\nencoder = dense(8), act(relu, name=a)\ndecoder = dense(6, tied=a)\n",
                 AE_ERR_CONFIG, ORIGIN ":3", "tied = 'a' names no earlier untied dense layer");
    EXPECT_ERROR("[model]\nencoder = dense(8, tied=dec1)\ndecoder = dense(6)\n", AE_ERR_CONFIG, ORIGIN ":2",
                 "tied = 'dec1' names no earlier untied dense layer");
}

/* code's weight is 6 x 8; a decoder layer 8 -> 4 would need 4 x 8. */
static void test_model_error_tie_shape(void)
{
    EXPECT_ERROR("[model]\nencoder = dense(8, name=code)\ndecoder = dense(4, tied=code), dense(6)\n",
                 AE_ERR_SHAPE, ORIGIN ":3", "cannot tie to 'code': its weight is 6x8, this layer needs 4x8");
}

/* Not a layer's error: it names the config, without a line. */
static void test_model_error_activity_layer(void)
{
    EXPECT_ERROR(ENC8 "decoder = dense(6)\n[loss]\nl1_activity = 0.1\nactivity_layer = nope\n", AE_ERR_CONFIG,
                 ORIGIN, "[loss] activity_layer: no hidden layer named 'nope'");
    EXPECT_ERROR(ENC8 "decoder = dense(6)\n[loss]\nl1_activity = 0.1\nactivity_layer = dec1\n", AE_ERR_CONFIG,
                 ORIGIN, "no hidden layer named 'dec1'");
}

/* ---- hash and size ------------------------------------------------------------------ */

static uint64_t hash_of(const char *ini)
{
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){IN6});
    uint64_t h = m ? m->arch_hash : 0;
    CU_ASSERT_PTR_NOT_NULL(m);
    ae_model_free(m);
    return h;
}

static void test_model_arch_hash(void)
{
    const char *base = "[model]\nencoder = dense(8, relu, name=code)\ndecoder = dense(6, sigmoid)\n";
    uint64_t h = hash_of(base);
    CU_ASSERT_NOT_EQUAL(h, 0);
    CU_ASSERT_EQUAL(hash_of(base), h);
    /* the same architecture written differently (keys, comments, other sections) */
    CU_ASSERT_EQUAL(hash_of("; same\n[model]\nencoder = dense(units=8, act=relu, name=code)\n\n"
                            "decoder = dense(6, act=sigmoid)\n[optim]\nlr = 0.5\n"),
                    h);
    static const char *const changed[] = {
        "[model]\nencoder = dense(9, relu, name=code)\ndecoder = dense(6, sigmoid)\n",  /* width */
        "[model]\nencoder = dense(8, tanh, name=code)\ndecoder = dense(6, sigmoid)\n",  /* activation */
        "[model]\nencoder = dense(8, relu, name=code)\ndecoder = dense(6, linear)\n",   /* output act */
        "[model]\nencoder = dense(8, relu, name=code, bias=0)\ndecoder = dense(6, sigmoid)\n", /* bias */
        "[model]\nencoder = dense(8, relu, name=code)\ndecoder = dense(6, sigmoid, tied=code)\n", /* tie */
        "[model]\nencoder = dense(8, relu, name=code), act(tanh)\ndecoder = dense(6, sigmoid)\n", /* layer */
    };
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        uint64_t hc = hash_of(changed[i]);
        if (hc == h) fprintf(stderr, "\n    same hash for '%s'", changed[i]);
        CU_ASSERT_NOT_EQUAL(hc, h);
    }
}

/* 784-32-784: (784 x 32 + 32) + (32 x 784 + 784) = 50992, laid out contiguously. */
#define MNIST_IN 784
#define MNIST_PARAMS 50992u

static void test_model_param_count(void)
{
    ae_model *m = tu_build(&SETUP, "[model]\nencoder = dense(32, relu)\ndecoder = dense(784, sigmoid)\n",
                           (ae_shape){1, 28, 28});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->n_params, MNIST_PARAMS);
    CU_ASSERT_EQUAL(m->in_size, MNIST_IN);
    CU_ASSERT_EQUAL(m->code_size, 32);
    CU_ASSERT_EQUAL(m->layers[0].p_off, 0);
    CU_ASSERT_EQUAL(m->layers[1].p_off, MNIST_IN * 32 + 32);
    CU_ASSERT_PTR_EQUAL(m->layers[0].b, m->params + MNIST_IN * 32);
    CU_ASSERT_PTR_EQUAL(m->layers[1].dW, m->grads + MNIST_IN * 32 + 32);
    CU_ASSERT_EQUAL(ae_model_find_layer(m, "code"), 0);
    CU_ASSERT_EQUAL(ae_model_find_layer(m, "dec1"), 1);
    CU_ASSERT_EQUAL(ae_model_find_layer(m, "nope"), -1);
    ae_model_free(m);
}

/* ---- the objective: fused losses and penalties ------------------------------------- */

static void test_model_bce_fused_grad(void)
{
    CHECK_GRAD("bce dense(sigmoid)",
               "[model]\nencoder = dense(5, tanh), dense(3, relu, name=code)\ndecoder = dense(4, sigmoid)\n"
               "[loss]\nkind = bce\n", IN4);
    CHECK_GRAD("bce act(sigmoid)",
               "[model]\nencoder = dense(5, elu, name=code)\ndecoder = dense(4), act(sigmoid)\n"
               "[loss]\nkind = bce\n", IN4);
    CHECK_GRAD("bce tied",
               "[model]\nencoder = dense(3, tanh, name=code)\ndecoder = dense(4, sigmoid, tied=code)\n"
               "[loss]\nkind = bce\n", IN4);
}

static void test_model_ce_fused_grad(void)
{
    CHECK_GRAD("ce dense(softmax)",
               "[model]\ntype = classifier\nencoder = dense(5, tanh), dense(3, sigmoid)\n"
               "head = dense(4, softmax)\n[loss]\nkind = ce\n", IN6);
    CHECK_GRAD("ce act(softmax)",
               "[model]\ntype = classifier\nencoder = dense(5, relu)\nhead = dense(4), act(softmax)\n"
               "[loss]\nkind = ce\n", IN6);
}

/* The L1 penalty on a hidden layer, large enough to matter against the data loss (a wrong 1/n or a
 * missing factor out_size would show); on a linear code its |a| has kinks, which the checker steps
 * around. Also with bce (per-element scale 1/(n w), penalty per sample 1/n) and on a named layer. */
static void test_model_l1_activity_grad(void)
{
    CHECK_GRAD("l1 on linear code",
               "[model]\nencoder = dense(5, tanh), dense(3, name=code)\ndecoder = dense(4)\n"
               "[loss]\nl1_activity = 0.05\n", IN4);
    CHECK_GRAD("l1 bce",
               "[model]\nencoder = dense(5, sigmoid), dense(3, tanh, name=code)\n"
               "decoder = dense(4, sigmoid)\n[loss]\nkind = bce\nl1_activity = 0.05\n", IN4);
    CHECK_GRAD("l1 named layer",
               "[model]\nencoder = dense(5, relu, name=h1), dense(3, name=code)\ndecoder = dense(4)\n"
               "[loss]\nl1_activity = 0.02\nactivity_layer = h1\n", IN4);
    CHECK_GRAD("l1 ce",
               "[model]\ntype = classifier\nencoder = dense(5, tanh)\nhead = dense(4, softmax)\n"
               "[loss]\nkind = ce\nl1_activity = 0.05\nactivity_layer = enc1\n", IN6);
}

static void test_model_l2_grad(void)
{
    CHECK_GRAD("l2 mse",
               "[model]\nencoder = dense(5, tanh), dense(3, name=code)\ndecoder = dense(4)\n"
               "[loss]\nl2 = 0.1\n", IN4);
    CHECK_GRAD("l2 tied + l1",
               "[model]\nencoder = dense(3, tanh, name=code)\ndecoder = dense(4, sigmoid, tied=code)\n"
               "[loss]\nkind = bce\nl2 = 0.1\nl1_activity = 0.01\n", IN4);
}

/* L2 by hand: l2/2 sum W^2 over weights (not biases; a tied weight once), gradient l2 W on the weights. */
static void test_model_l2_values(void)
{
    ae_model *m = tu_build(&SETUP, "[model]\nencoder = dense(2, name=code)\ndecoder = dense(3, tied=code)\n"
                           "[loss]\nl2 = 0.5\n", (ae_shape){3, 1, 1});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL_FATAL(m->n_params, 3 * 2 + 2 + 3);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = (float)(i + 1); /* W = 1..6, biases 7..11 */
    memset(m->grads, 0, sizeof(float) * m->n_params);
    double pen = ae_model_add_l2(m);
    CU_ASSERT_DOUBLE_EQUAL(pen, 0.25 * (1 + 4 + 9 + 16 + 25 + 36), 1e-9);
    for (size_t i = 0; i < 6; i++) CU_ASSERT_DOUBLE_EQUAL(m->grads[i], 0.5 * (double)(i + 1), 1e-9);
    for (size_t i = 6; i < m->n_params; i++) CU_ASSERT_EQUAL(m->grads[i], 0.0f);
    ae_model_free(m);
}

/* The penalty the model reports is l1 * sum |a| over the layer, with and without backward; and the
 * fused losses equal the same losses computed from the outputs (z_last is this forward's logits). */
static void test_model_loss_values(void)
{
    batch b = PREPARE("[model]\nencoder = dense(5, tanh, name=code)\ndecoder = dense(4, sigmoid)\n"
                      "[loss]\nkind = bce\nl1_activity = 0.25\n", IN4);
    ae_model *m = b.f.m;
    ae_ctx ctx = {0};
    const float *y = ae_model_forward(m, &ctx, b.f.x, N_SAMPLES, m->n_layers);
    double l1 = 0.0;
    for (size_t i = 0; i < N_SAMPLES * m->code_size; i++) l1 += fabs((double)m->act[0][i]);
    double bce = ae_loss_bce(y, b.f.t, N_SAMPLES, m->out_size, 1.0f, NULL);
    ae_loss_out lo, lb;
    ae_model_loss(m, &ctx, b.f.x, b.f.t, NULL, N_SAMPLES, 1.0f, 0, &lo);
    ae_model_loss(m, &ctx, b.f.x, b.f.t, NULL, N_SAMPLES, 1.0f, 1, &lb);
    CU_ASSERT_DOUBLE_EQUAL(lo.penalty, 0.25 * l1, LOSS_TOL * l1);
    CU_ASSERT_DOUBLE_EQUAL(lb.penalty, lo.penalty, LOSS_TOL * l1);
    CU_ASSERT_DOUBLE_EQUAL(lo.loss, bce, LOSS_TOL * bce);
    CU_ASSERT_DOUBLE_EQUAL(lb.loss, lo.loss, 0.0);
    tu_fixture_free(&b.f);

    b = PREPARE("[model]\ntype = classifier\nencoder = dense(5, tanh)\nhead = dense(4, softmax)\n"
                "[loss]\nkind = ce\n", IN6);
    m = b.f.m;
    y = ae_model_forward(m, &ctx, b.f.x, N_SAMPLES, m->n_layers);
    double ce = 0.0;
    size_t correct = 0;
    for (int i = 0; i < N_SAMPLES; i++) {
        const float *row = y + (size_t)i * N_CLASSES;
        ce -= log((double)row[b.labels[i]]);
        int am = 0;
        for (int j = 1; j < N_CLASSES; j++) am = row[j] > row[am] ? j : am;
        correct += am == b.labels[i];
    }
    ae_model_loss(m, &ctx, b.f.x, NULL, b.labels, N_SAMPLES, 1.0f, 0, &lo);
    CU_ASSERT_DOUBLE_EQUAL(lo.loss, ce, LOSS_TOL * ce);
    CU_ASSERT_EQUAL(lo.correct, correct);
    tu_fixture_free(&b.f);
}

/* Backward accumulates into m->grads (the trainer zeroes them once per step): a second pass without
 * zeroing doubles every gradient, including a tied weight's, which two layers write. */
static void test_model_backward_accumulates(void)
{
    batch b = PREPARE("[model]\nencoder = dense(5, tanh), dense(3, name=code)\n"
                      "decoder = dense(5, tanh, tied=code), dense(4, sigmoid, tied=enc1)\n"
                      "[loss]\nkind = bce\n", IN4);
    ae_model *m = b.f.m;
    float *g = malloc(sizeof(float) * m->n_params);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_gradcheck_model_grad(m, NULL, b.f.x, b.f.t, NULL, N_SAMPLES, g, NULL, &err), AE_OK);
    ae_ctx ctx = {.training = 1};
    ae_loss_out lo;
    ae_model_forward(m, &ctx, b.f.x, N_SAMPLES, m->n_layers);
    ae_model_loss(m, &ctx, b.f.x, b.f.t, NULL, N_SAMPLES, ae_model_loss_scale(m, N_SAMPLES), 1, &lo);
    int doubled = 1;
    for (size_t i = 0; i < m->n_params; i++)
        doubled &= fabsf(m->grads[i] - 2.0f * g[i]) <= ACC_TOL * fabsf(g[i]);
    CU_ASSERT(doubled);
    free(g);
    tu_fixture_free(&b.f);
}

/* A training step's forward (ctx.logits_only: the fused output layer writes only its logits and skips
 * its activation) gives bitwise the loss and gradients of a full forward, for every kind that can
 * feed a fused loss; the full forward's output is still sigmoid(logits). */
static void logits_only_same_at(unsigned line, const char *ini, ae_shape in)
{
    batch b = prepare_at(line, ini, in);
    ae_model *m = b.f.m;
    float *g[2] = {malloc(sizeof(float) * m->n_params), malloc(sizeof(float) * m->n_params)};
    CU_ASSERT_FATAL(g[0] && g[1]);
    double obj[2];
    ae_error err = {0};
    for (int lo = 0; lo < 2; lo++) {
        ae_ctx ctx = {.training = 1, .seed = SEED, .logits_only = lo};
        CU_ASSERT_EQUAL(ae_gradcheck_model_grad(m, &ctx, b.f.x, b.f.t, b.labels, N_SAMPLES, g[lo], &obj[lo], &err),
                        AE_OK);
        if (!lo) { /* the full forward's output is the activation of the kept logits (a forward again:
                    * the BCE's backward wrote its gradient over the logits) */
            const float *y = ae_model_forward(m, &ctx, b.f.x, N_SAMPLES, m->n_layers);
            size_t len = (size_t)N_SAMPLES * m->out_size, bad = 0;
            for (size_t i = 0; i < len && m->loss == AE_LOSS_BCE; i++)
                bad += fabsf(y[i] - 1.0f / (1.0f + expf(-m->z_last[i]))) > 1e-6f;
            TU_ASSERT_AT(bad == 0, line, "output = sigmoid(z)");
        }
    }
    TU_ASSERT_AT(obj[0] == obj[1] && obj[0] > 0.0, line, "same objective");
    TU_ASSERT_AT(memcmp(g[0], g[1], sizeof(float) * m->n_params) == 0, line, "same gradient bits");
    free(g[0]);
    free(g[1]);
    tu_fixture_free(&b.f);
}
#define LOGITS_ONLY_SAME(ini, ...) logits_only_same_at(__LINE__, (ini), (ae_shape){__VA_ARGS__})

static void test_model_logits_only_same(void)
{
    LOGITS_ONLY_SAME("[model]\nencoder = dense(5, tanh)\ndecoder = dense(4, sigmoid)\n[loss]\nkind = bce\n", IN4);
    LOGITS_ONLY_SAME("[model]\nencoder = dense(3, tanh, name=code)\ndecoder = dense(4, sigmoid, tied=code)\n"
                     "[loss]\nkind = bce\n", IN4);
    LOGITS_ONLY_SAME("[model]\nencoder = dense(5, elu)\ndecoder = dense(4), act(sigmoid)\n[loss]\nkind = bce\n",
                     IN4);
    LOGITS_ONLY_SAME("[model]\nencoder = dense(5, relu)\ndecoder = dense(4, bias=0), bn(act=sigmoid)\n"
                     "[loss]\nkind = bce\n", IN4);
    LOGITS_ONLY_SAME("[model]\nencoder = conv(2, 3, tanh)\ndecoder = conv(1, 3, sigmoid, pad=same)\n"
                     "[loss]\nkind = bce\n", 1, 5, 5);
    LOGITS_ONLY_SAME("[model]\nencoder = conv(2, 3, tanh)\ndecoder = deconv(1, 3, sigmoid)\n[loss]\nkind = bce\n",
                     1, 5, 5);
    LOGITS_ONLY_SAME("[model]\ntype = classifier\nencoder = dense(5, tanh)\nhead = dense(4, softmax)\n"
                     "[loss]\nkind = ce\n", IN6);
}

/* ---- the checker ----------------------------------------------------------------------- */

#define WRONG_EXTRA 0.1f   /* one analytic entry made 10% too large */
#define WRONG_SCALE 1.01f  /* or one layer's whole dW 1% too large */

static const char *const CHECKER_INI =
    "[model]\nencoder = dense(5, tanh), dense(3, sigmoid, name=code)\ndecoder = dense(4)\n";

/* The checker must fail a wrong gradient, and name where: one entry off by 10%, and a whole weight
 * gradient scaled by 1.01 (the kind of slip a missing 1/n or an extra sample would make). */
static void test_model_wrong_gradient_fails(void)
{
    batch b = PREPARE(CHECKER_INI, IN4);
    ae_model *m = b.f.m;
    float *g = malloc(sizeof(float) * m->n_params);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    ae_error err = {0};
    CU_ASSERT_EQUAL_FATAL(ae_gradcheck_model_grad(m, NULL, b.f.x, b.f.t, NULL, N_SAMPLES, g, NULL, &err),
                          AE_OK);
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    ae_gradcheck_result r;
    /* unchanged, it passes */
    CU_ASSERT_EQUAL(ae_gradcheck_model_against(m, b.f.x, b.f.t, NULL, N_SAMPLES, g, &o, &r, &err), AE_OK);
    CU_ASSERT(r.max_rel_err <= AE_GRADCHECK_TOL);
    /* the largest weight gradient of the code layer, 10% off */
    const ae_layer *code = &m->layers[1];
    size_t nw = code->in_size * (size_t)code->units, worst = code->p_off;
    for (size_t i = code->p_off; i < code->p_off + nw; i++) worst = fabsf(g[i]) > fabsf(g[worst]) ? i : worst;
    float keep = g[worst];
    g[worst] *= 1.0f + WRONG_EXTRA;
    CU_ASSERT_EQUAL(ae_gradcheck_model_against(m, b.f.x, b.f.t, NULL, N_SAMPLES, g, &o, &r, &err), AE_OK);
    CU_ASSERT(r.max_rel_err > AE_GRADCHECK_TOL);
    CU_ASSERT(fabs(r.max_rel_err - WRONG_EXTRA / (1.0 + WRONG_EXTRA)) < 1e-3);
    CU_ASSERT_EQUAL(r.n_failed, 1);
    CU_ASSERT_EQUAL(r.worst_index, worst);
    CU_ASSERT_EQUAL(r.worst_layer, 1);
    CU_ASSERT_STRING_EQUAL(r.worst_name, "code");
    g[worst] = keep;
    /* the decoder's whole dW, 1% too large */
    const ae_layer *dec = &m->layers[2];
    nw = dec->in_size * (size_t)dec->units;
    for (size_t i = dec->p_off; i < dec->p_off + nw; i++) g[i] *= WRONG_SCALE;
    CU_ASSERT_EQUAL(ae_gradcheck_model_against(m, b.f.x, b.f.t, NULL, N_SAMPLES, g, &o, &r, &err), AE_OK);
    CU_ASSERT(r.max_rel_err > 5 * AE_GRADCHECK_TOL);
    CU_ASSERT(r.n_failed > nw / 2);
    CU_ASSERT_STRING_EQUAL(r.worst_name, "dec1");
    if (tu_verbose())
        fprintf(stderr, "\n    dW x 1.01: max rel err %.2e, %zu of %zu fail", r.max_rel_err, r.n_failed, nw);
    free(g);
    tu_fixture_free(&b.f);
}

/* Parameters come back bit for bit; m->grads holds the analytic gradient afterwards. */
static void test_model_gradcheck_restores(void)
{
    batch b = PREPARE(CHECKER_INI, IN4);
    ae_model *m = b.f.m;
    float *p = malloc(sizeof(float) * m->n_params), *g = malloc(sizeof(float) * m->n_params);
    CU_ASSERT_FATAL(p && g);
    memcpy(p, m->params, sizeof(float) * m->n_params);
    ae_error err = {0};
    ae_gradcheck_model_grad(m, NULL, b.f.x, b.f.t, NULL, N_SAMPLES, g, NULL, &err);
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    ae_gradcheck_result r;
    CU_ASSERT_EQUAL(ae_gradcheck_model(m, b.f.x, b.f.t, NULL, N_SAMPLES, &o, &r, &err), AE_OK);
    CU_ASSERT_EQUAL(memcmp(p, m->params, sizeof(float) * m->n_params), 0);
    CU_ASSERT_EQUAL(memcmp(g, m->grads, sizeof(float) * m->n_params), 0);
    CU_ASSERT_EQUAL(r.n_checked, m->n_params);
    free(p);
    free(g);
    tu_fixture_free(&b.f);
}

/* A big model: a random subset of max_per_layer coordinates per layer (784-32-784, bce). */
#define SUBSET 40
#define BIG_N 2

static void test_model_gradcheck_subset(void)
{
    batch b = PREPARE("[model]\nencoder = dense(32, tanh)\ndecoder = dense(784, sigmoid)\n"
                      "[loss]\nkind = bce\n", 1, 28, 28);
    ae_model *m = b.f.m;
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    o.max_per_layer = SUBSET;
    ae_gradcheck_result r;
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_gradcheck_model(m, b.f.x, b.f.t, NULL, BIG_N, &o, &r, &err), AE_OK);
    CU_ASSERT_EQUAL(r.n_checked + r.n_skipped, 2 * SUBSET);
    CU_ASSERT(r.max_rel_err <= AE_GRADCHECK_TOL);
    tu_gradcheck_report("784-32-784 subset", &r);
    tu_fixture_free(&b.f);
}

static void test_model_gradcheck_errors(void)
{
    batch b = PREPARE(CHECKER_INI, IN4);
    ae_model *m = b.f.m;
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    ae_gradcheck_result r;
    ae_error err = {0};
    CU_ASSERT_EQUAL(ae_gradcheck_model(m, b.f.x, b.f.t, NULL, MAX_BATCH + 1, &o, &r, &err), AE_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "n = 9 samples"));
    CU_ASSERT_EQUAL(ae_gradcheck_model(m, b.f.x, b.f.t, NULL, 0, &o, &r, &err), AE_ERR_ARG);
    b.f.x[0] = NAN;
    CU_ASSERT_EQUAL(ae_gradcheck_model(m, b.f.x, b.f.t, NULL, N_SAMPLES, &o, &r, &err), AE_ERR_NUMERIC);
    tu_fixture_free(&b.f);
}

void ae_test_register_model(void)
{
    CU_pSuite s = CU_add_suite("model", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_model_error_output_size", test_model_error_output_size);
    CU_add_test(s, "test_model_error_bce_needs_sigmoid", test_model_error_bce_needs_sigmoid);
    CU_add_test(s, "test_model_error_ce_needs_softmax", test_model_error_ce_needs_softmax);
    CU_add_test(s, "test_model_error_unknown_kind", test_model_error_unknown_kind);
    CU_add_test(s, "test_model_error_layer_args", test_model_error_layer_args);
    CU_add_test(s, "test_model_error_tie_missing", test_model_error_tie_missing);
    CU_add_test(s, "test_model_error_tie_shape", test_model_error_tie_shape);
    CU_add_test(s, "test_model_error_activity_layer", test_model_error_activity_layer);
    CU_add_test(s, "test_model_arch_hash", test_model_arch_hash);
    CU_add_test(s, "test_model_param_count", test_model_param_count);
    CU_add_test(s, "test_model_bce_fused_grad", test_model_bce_fused_grad);
    CU_add_test(s, "test_model_ce_fused_grad", test_model_ce_fused_grad);
    CU_add_test(s, "test_model_l1_activity_grad", test_model_l1_activity_grad);
    CU_add_test(s, "test_model_l2_grad", test_model_l2_grad);
    CU_add_test(s, "test_model_l2_values", test_model_l2_values);
    CU_add_test(s, "test_model_loss_values", test_model_loss_values);
    CU_add_test(s, "test_model_backward_accumulates", test_model_backward_accumulates);
    CU_add_test(s, "test_model_logits_only_same", test_model_logits_only_same);
    CU_add_test(s, "test_model_wrong_gradient_fails", test_model_wrong_gradient_fails);
    CU_add_test(s, "test_model_gradcheck_restores", test_model_gradcheck_restores);
    CU_add_test(s, "test_model_gradcheck_subset", test_model_gradcheck_subset);
    CU_add_test(s, "test_model_gradcheck_errors", test_model_gradcheck_errors);
}
