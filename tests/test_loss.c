/* test_loss.c - CUnit suite "loss": each loss and penalty of loss.h against
 * values worked out by hand, and its d/d(input) against central differences
 * (ae_gradcheck_func); a derivative with a deliberate mistake must fail that
 * check. The losses fused into a model (bce and ce from the logits, L1 on a
 * hidden layer, L2 on the weights) are checked through models in test_model.c. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/gradcheck.h"
#include "ae/loss.h"
#include "ae/rng.h"
#include "testutil.h"

#define SEED 7u
#define N_ROWS 4
#define WIDTH 5
#define LEN (N_ROWS * WIDTH)
/* Hand values are exact in double; the losses round each element's term in float (~1e-7 relative). */
#define VAL_TOL 1e-6
/* Inputs of penalties with a kink at 0 stay this far from it, well beyond the largest step
 * (AE_GRADCHECK_REL_STEP x |a| <= 0.02 here). */
#define KINK_MARGIN 0.1f
/* Steps relative to the input down to this magnitude: bce's log y has a pole at 0, so an output of 0.1
 * must not get the model default step of 0.1. */
#define LOSS_MIN_MAG 0.05
#define BCE_Y_LO 0.1f
#define BCE_Y_HI 0.6f
#define WRONG_FACTOR 1.05f /* the deliberately wrong derivative entry is off by 5% */
#define WRONG_INDEX 7

/* ---- helpers ----------------------------------------------------------- */

static void check_close_at(unsigned line, double got, double want, const char *what)
{
    char msg[160];
    int ok = fabs(got - want) <= VAL_TOL * fmax(1.0, fabs(want));
    snprintf(msg, sizeof msg, "%s = %.9g, want %.9g", what, got, want);
    TU_ASSERT_AT(ok, line, msg);
}
#define CHECK_CLOSE(got, want) check_close_at(__LINE__, (double)(got), (want), #got)

/* Starts r on test stream `stream` of SEED and draws x (LEN values) uniform in [lo, hi), then, unless t is
 * NULL, the targets t in [0, 1). */
static void draw(ae_rng *r, uint32_t stream, float *x, float lo, float hi, float *t)
{
    ae_rng_init(r, SEED, AE_RNG_TEST, stream, 0, 0);
    tu_fill_uniform(r, x, LEN, lo, hi);
    if (t) tu_fill_uniform(r, t, LEN, 0.0f, 1.0f);
}

/* Values in +-[KINK_MARGIN, hi): away from a kink at 0. */
static void fill_away_from_zero(ae_rng *r, float *x, size_t n, float hi)
{
    for (size_t i = 0; i < n; i++) {
        float v = KINK_MARGIN + (hi - KINK_MARGIN) * ae_rng_uniform(r);
        x[i] = ae_rng_uniform(r) < 0.5f ? -v : v;
    }
}

/* What a loss is evaluated against, and with which scale (the gradient is scale * d(sum)). */
typedef struct loss_case {
    const float *t;
    const uint8_t *labels;
    float scale, lambda;
    int wrong; /* corrupt grad[WRONG_INDEX] by WRONG_FACTOR */
} loss_case;

/* f = scale * loss(x); the losses write scale * d(loss)/dx = df/dx. */
static double f_mse(void *ud, const float *x, float *g)
{
    const loss_case *c = ud;
    double s = c->scale * ae_loss_mse(x, c->t, N_ROWS, WIDTH, c->scale, g);
    if (g && c->wrong) g[WRONG_INDEX] *= WRONG_FACTOR;
    return s;
}

static double f_bce_logits(void *ud, const float *x, float *g)
{
    const loss_case *c = ud;
    return c->scale * ae_loss_bce_logits(x, c->t, N_ROWS, WIDTH, c->scale, g);
}

static double f_bce(void *ud, const float *x, float *g)
{
    const loss_case *c = ud;
    return c->scale * ae_loss_bce(x, c->t, N_ROWS, WIDTH, c->scale, g);
}

static double f_ce_logits(void *ud, const float *x, float *g)
{
    const loss_case *c = ud;
    return c->scale * ae_loss_ce_logits(x, c->labels, N_ROWS, WIDTH, c->scale, g, NULL);
}

/* The L1 penalty accumulates into d: start from 0. */
static double f_l1(void *ud, const float *x, float *g)
{
    const loss_case *c = ud;
    if (g) memset(g, 0, sizeof(float) * LEN);
    return c->scale * ae_loss_l1(x, LEN, c->lambda, c->scale, g);
}

static double f_l2(void *ud, const float *x, float *g)
{
    const loss_case *c = ud;
    if (g) memset(g, 0, sizeof(float) * LEN);
    return ae_loss_l2(x, LEN, c->lambda, g);
}

/* Runs ae_gradcheck_func on f at x (steps relative down to LOSS_MIN_MAG) and judges it into *v: with no
 * kink detection, every coordinate must be checked. */
static ae_gradcheck_result run_check(const char *what, ae_gradcheck_fn f, loss_case *c, float *x,
                                     tu_gradcheck_verdict *v)
{
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    o.min_mag = LOSS_MIN_MAG;
    ae_gradcheck_result r;
    ae_error err = {0};
    ae_status st = ae_gradcheck_func(f, c, x, LEN, &o, &r, &err);
    tu_gradcheck_judge(v, what, st, &err, &r, LEN, 0.0, -1.0);
    return r;
}

/* Asserts that the check ran, that every coordinate of f's gradient at x is within AE_GRADCHECK_TOL of
 * the central difference, and that x comes back unchanged. */
static void check_grad_at(unsigned line, const char *what, ae_gradcheck_fn f, loss_case *c, float *x)
{
    float before[LEN];
    memcpy(before, x, sizeof before);
    tu_gradcheck_verdict v;
    run_check(what, f, c, x, &v);
    TU_ASSERT_GRADCHECK_PASSED_AT(line, &v);
    TU_ASSERT_AT(memcmp(before, x, sizeof before) == 0, line, "x restored");
}
#define CHECK_GRAD(f, c, x) check_grad_at(__LINE__, #f, (f), (c), (x))

/* ---- values ------------------------------------------------------------------- */

/* y = (0.5, 1, -1), t = (0, 1, 1): sum (y - t)^2 = 0.25 + 0 + 4 = 4.25; scale 0.5: d = 2 * 0.5 * (y - t). */
static void test_loss_mse_values(void)
{
    const float y[] = {0.5f, 1.0f, -1.0f}, t[] = {0.0f, 1.0f, 1.0f};
    float d[3];
    CHECK_CLOSE(ae_loss_mse(y, t, 1, 3, 0.5f, d), 4.25);
    CHECK_CLOSE(d[0], 0.5);
    CHECK_CLOSE(d[1], 0.0);
    CHECK_CLOSE(d[2], -2.0);
    CHECK_CLOSE(ae_loss_mse(y, t, 3, 1, 1.0f, NULL), 4.25); /* n x w is what counts */
}

/* 1037 outputs (two blocks of 512 summed in 16-lane registers, whole registers and a tail of 13):
 * the loss within 1e-6 relative of the double sum, with and without the gradient, and every gradient
 * exactly 2 scale (y - t) in float; a NaN in a register makes the loss NaN. */
static void test_loss_mse_wide(void)
{
    enum { N = 1037 };
    static float y[N], t[N], d[N];
    for (int i = 0; i < N; i++) {
        y[i] = (float)((i * 73) % 1000) / 250.0f - 2.0f;
        t[i] = (float)((i * 37) % 256) / 255.0f;
    }
    const float scale = 0.125f;
    double ref = 0.0;
    for (int i = 0; i < N; i++) ref += ((double)y[i] - t[i]) * ((double)y[i] - t[i]);
    double l = ae_loss_mse(y, t, 17, N / 17, scale, d);
    CU_ASSERT(fabs(l - ref) <= 1e-6 * ref);
    CU_ASSERT(fabs(ae_loss_mse(y, t, 17, N / 17, scale, NULL) - ref) <= 1e-6 * ref);
    int exact = 1;
    for (int i = 0; i < N; i++) exact &= d[i] == 2.0f * scale * (y[i] - t[i]);
    CU_ASSERT(exact);
    y[700] = NAN;
    CU_ASSERT(isnan(ae_loss_mse(y, t, 17, N / 17, scale, NULL)));
    CU_ASSERT(isnan(ae_loss_mse(y, t, 17, N / 17, scale, d)));
    CU_ASSERT(isnan(d[700]));
}

/* Each logit's gradient is bitwise the same wherever it falls (alone, among 29: registers and a
 * tail, and in whole registers of 64), and so is the loss of one element alone and in the tail. */
static void test_loss_bce_logits_position(void)
{
    enum { N = 29 };
    float z[N], t[N], d[N], z1[1], t1[1], d1[1], zb[64], tb[64], dbig[64];
    for (int i = 0; i < N; i++) {
        z[i] = -9.0f + 0.61f * (float)i + 1e-3f * (float)(i * i);
        t[i] = (float)((i * 37) % 256) / 255.0f;
    }
    ae_loss_bce_logits(z, t, 1, N, 0.5f, d);
    int same = 1;
    for (int i = 0; i < N; i++) {
        z1[0] = z[i];
        t1[0] = t[i];
        double l1 = ae_loss_bce_logits(z1, t1, 1, 1, 0.5f, d1);
        for (int j = 0; j < 64; j++) {
            zb[j] = z[i];
            tb[j] = t[i];
        }
        double lb = ae_loss_bce_logits(zb, tb, 4, 16, 0.5f, dbig);
        same &= memcmp(&d1[0], &d[i], sizeof(float)) == 0 && memcmp(&dbig[41], &d[i], sizeof(float)) == 0;
        CU_ASSERT(fabs(lb - 64.0 * l1) <= 1e-6 * fabs(lb));
    }
    CU_ASSERT(same);
}

/* z = (0, 2, -3), t = (0.5, 1, 0): max(z,0) - z t + log(1 + e^-|z|) =
 *   ln 2 = 0.6931471805599453,  2 - 2 + log1p(e^-2) = 0.1269280110429725,  log1p(e^-3) = 0.04858735157374206
 * d = sigmoid(z) - t = (0, 0.8807970779778823 - 1, 0.04742587317756678). Large |z| stays finite. */
static void test_loss_bce_logits_values(void)
{
    const float z[] = {0.0f, 2.0f, -3.0f}, t[] = {0.5f, 1.0f, 0.0f};
    float d[3];
    CHECK_CLOSE(ae_loss_bce_logits(z, t, 1, 3, 1.0f, d),
                0.6931471805599453 + 0.1269280110429725 + 0.04858735157374206);
    CHECK_CLOSE(d[0], 0.0);
    CHECK_CLOSE(d[1], 0.8807970779778823 - 1.0);
    CHECK_CLOSE(d[2], 0.04742587317756678);
    const float big[] = {100.0f, -100.0f, 100.0f}, tb[] = {0.0f, 0.0f, 1.0f};
    double l = ae_loss_bce_logits(big, tb, 1, 3, 1.0f, d);
    CHECK_CLOSE(l, 100.0); /* only the confidently wrong first element costs */
    CHECK_CLOSE(d[0], 1.0);
    CHECK_CLOSE(d[1], 0.0);
    CHECK_CLOSE(d[2], 0.0);
}

/* 1000 logits over [-30, 30], with 0, -0, +-88.5 and +-100, and targets over [0, 1]: the loss
 * within 1e-6 relative and every gradient within 1e-7 x scale of the double formulas (with AVX-512,
 * 62 whole 16-lane registers and a scalar tail of 8; with AVX2 pairs of 8-lane ones); a NaN logit in a
 * register makes the loss NaN. */
static void test_loss_bce_logits_wide(void)
{
    enum { N = 1000 };
    static float z[N], t[N], d[N];
    const float special[] = {0.0f, -0.0f, 88.5f, -88.5f, 100.0f, -100.0f};
    for (int i = 0; i < N; i++) {
        z[i] = i < 6 ? special[i] : -30.0f + 60.0f * (float)i / (float)(N - 1);
        t[i] = (float)((i * 37) % 256) / 255.0f;
    }
    const float scale = 0.25f;
    double ref = 0.0, worst = 0.0;
    for (int i = 0; i < N; i++) ref += fmax(z[i], 0.0) - (double)z[i] * t[i] + log1p(exp(-fabs((double)z[i])));
    double l = ae_loss_bce_logits(z, t, 10, N / 10, scale, d);
    CU_ASSERT(fabs(l - ref) <= 1e-6 * ref);
    for (int i = 0; i < N; i++) {
        double g = scale * (1.0 / (1.0 + exp(-(double)z[i])) - t[i]);
        worst = fmax(worst, fabs(d[i] - g));
    }
    CU_ASSERT(worst <= 1e-7 * scale);
    z[21] = NAN;
    CU_ASSERT(isnan(ae_loss_bce_logits(z, t, 10, N / 10, scale, d)));
    CU_ASSERT(isnan(d[21]));
    CU_ASSERT(isnan(ae_loss_bce_logits(z, t, 10, N / 10, scale, NULL)));
}

/* y = (0.25, 0.8, 0, 1.5), t = (1, 0, 1, 0): -ln 0.25 = 1.3862943611198906, -ln 0.2 = 1.6094379124341003;
 * y = 0 is clamped to 1e-7: -ln 1e-7 = 16.11809565095832; y = 1.5 to 1 - 1e-7 with t = 0: the same.
 * d = (p - t) / (p (1 - p)): -0.75 / 0.1875 = -4, 0.8 / 0.16 = 5; 0 where clamped. */
static void test_loss_bce_clamped_values(void)
{
    const float y[] = {0.25f, 0.8f, 0.0f, 1.5f}, t[] = {1.0f, 0.0f, 1.0f, 0.0f};
    float d[4];
    double l = ae_loss_bce(y, t, 1, 4, 1.0f, d);
    double p0 = (double)AE_BCE_EPS, p1 = (double)(1.0f - AE_BCE_EPS); /* the clamp bounds, in float */
    CHECK_CLOSE(l, 1.3862943611198906 + 1.6094379124341003 - log(p0) - log1p(-p1));
    CU_ASSERT(fabs(-log(p0) - 16.11809565095832) < 1e-5);
    CHECK_CLOSE(d[0], -4.0);
    CHECK_CLOSE(d[1], 5.0);
    CU_ASSERT_EQUAL(d[2], 0.0f);
    CU_ASSERT_EQUAL(d[3], 0.0f);
    CU_ASSERT(isfinite(l));
}

/* Rows (1, 2, 3) label 2 and (3, 1, 0) label 1:
 *   logsumexp(1,2,3) = 3.40760596444438, loss 0.40760596444438;  softmax = (0.0900, 0.2447, 0.6652)
 *   logsumexp(3,1,0) = 3.1698460195562856, loss 2.1698460195562856 (argmax 0: wrong)
 * d = scale * (softmax - onehot). */
static void test_loss_ce_logits_values(void)
{
    const float z[] = {1.0f, 2.0f, 3.0f, 3.0f, 1.0f, 0.0f};
    const uint8_t lab[] = {2, 1};
    float d[6];
    size_t correct = 0;
    CHECK_CLOSE(ae_loss_ce_logits(z, lab, 2, 3, 0.5f, d, &correct), 0.40760596444438 + 2.1698460195562856);
    CU_ASSERT_EQUAL(correct, 1);
    CHECK_CLOSE(d[0], 0.5 * 0.09003057317038046);
    CHECK_CLOSE(d[1], 0.5 * 0.24472847105479767);
    CHECK_CLOSE(d[2], 0.5 * (0.6652409557748219 - 1.0));
    CHECK_CLOSE(d[4], 0.5 * (exp(1.0 - 3.1698460195562856) - 1.0));
    double row = 0.0;
    for (int j = 0; j < 3; j++) row += d[3 + j];
    CHECK_CLOSE(row, 0.0); /* softmax minus one-hot sums to 0 */
}

/* a = (0.5, -2, 0), lambda 0.1: 0.1 * 2.5 = 0.25; d += scale lambda sign(a), onto what d held. */
static void test_loss_l1_values(void)
{
    const float a[] = {0.5f, -2.0f, 0.0f};
    float d[3] = {1.0f, 1.0f, 1.0f};
    CHECK_CLOSE(ae_loss_l1(a, 3, 0.1f, 2.0f, d), 0.25);
    CHECK_CLOSE(d[0], 1.0 + 0.2);
    CHECK_CLOSE(d[1], 1.0 - 0.2);
    CHECK_CLOSE(d[2], 1.0);
}

/* w = (1, -2, 3), lambda 0.5: 0.25 * 14 = 3.5; g += lambda w. */
static void test_loss_l2_values(void)
{
    const float w[] = {1.0f, -2.0f, 3.0f};
    float g[3] = {1.0f, 0.0f, -1.0f};
    CHECK_CLOSE(ae_loss_l2(w, 3, 0.5f, g), 3.5);
    CHECK_CLOSE(g[0], 1.5);
    CHECK_CLOSE(g[1], -1.0);
    CHECK_CLOSE(g[2], 0.5);
    CHECK_CLOSE(ae_loss_l2(w, 3, 0.5f, NULL), 3.5);
}

/* ---- gradients ------------------------------------------------------------------- */

static void test_loss_mse_grad(void)
{
    ae_rng r;
    float y[LEN], t[LEN];
    draw(&r, 1, y, -1.0f, 2.0f, t);
    loss_case c = {.t = t, .scale = 1.0f / LEN};
    CHECK_GRAD(f_mse, &c, y);
}

/* Logits up to +-8 (saturated sigmoids: the stable form must still give sigmoid(z) - t) and soft targets. */
static void test_loss_bce_logits_grad(void)
{
    ae_rng r;
    float z[LEN], t[LEN];
    draw(&r, 2, z, -8.0f, 8.0f, t);
    t[0] = 0.0f;
    t[1] = 1.0f;
    loss_case c = {.t = t, .scale = 1.0f / LEN};
    CHECK_GRAD(f_bce_logits, &c, z);
}

/* Outputs inside (0.1, 0.6) - the steps (0.2 |y|) stay clear of the clamp and of the poles of log y and
 * log(1 - y) - and, clamped, outside [0, 1] by more than a step: there the loss is flat and the
 * gradient must be 0 too. */
static void test_loss_bce_clamped_grad(void)
{
    ae_rng r;
    float y[LEN], t[LEN];
    draw(&r, 3, y, BCE_Y_LO, BCE_Y_HI, t);
    y[0] = -0.5f;
    y[1] = 1.5f;
    loss_case c = {.t = t, .scale = 1.0f / LEN};
    CHECK_GRAD(f_bce, &c, y);
}

static void test_loss_ce_logits_grad(void)
{
    ae_rng r;
    float z[LEN];
    uint8_t lab[N_ROWS];
    draw(&r, 4, z, -4.0f, 4.0f, NULL);
    for (int i = 0; i < N_ROWS; i++) lab[i] = (uint8_t)ae_rng_below(&r, WIDTH);
    loss_case c = {.labels = lab, .scale = 1.0f / N_ROWS};
    CHECK_GRAD(f_ce_logits, &c, z);
}

static void test_loss_l1_grad(void)
{
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 5, 0, 0);
    float a[LEN];
    fill_away_from_zero(&r, a, LEN, 2.0f);
    loss_case c = {.scale = 1.0f / N_ROWS, .lambda = 0.3f};
    CHECK_GRAD(f_l1, &c, a);
}

static void test_loss_l2_grad(void)
{
    ae_rng r;
    float w[LEN];
    draw(&r, 6, w, -1.0f, 1.0f, NULL);
    loss_case c = {.lambda = 0.01f};
    CHECK_GRAD(f_l2, &c, w);
}

/* The checker must be able to fail: one derivative entry off by 5% is reported, at its index. */
static void test_loss_wrong_gradient_fails(void)
{
    ae_rng r;
    float y[LEN], t[LEN];
    draw(&r, 1, y, -1.0f, 2.0f, t);
    t[WRONG_INDEX] = y[WRONG_INDEX] - 1.0f; /* make the corrupted entry large: |d| = 2 scale */
    loss_case c = {.t = t, .scale = 1.0f / LEN, .wrong = 1};
    tu_gradcheck_verdict v;
    ae_gradcheck_result res = run_check("mse (wrong on purpose)", f_mse, &c, y, &v);
    TU_ASSERT_AT(v.ran, __LINE__, v.ran_msg);
    CU_ASSERT(res.max_rel_err > AE_GRADCHECK_TOL);
    CU_ASSERT(fabs(res.max_rel_err - (WRONG_FACTOR - 1.0) / WRONG_FACTOR) < 1e-3);
    CU_ASSERT_EQUAL(res.worst_index, WRONG_INDEX);
    CU_ASSERT_EQUAL(res.n_failed, 1);
    CU_ASSERT_EQUAL(res.worst_layer, -1);
}

void ae_test_register_loss(void)
{
    CU_pSuite s = CU_add_suite("loss", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_loss_mse_values", test_loss_mse_values);
    CU_add_test(s, "test_loss_mse_wide", test_loss_mse_wide);
    CU_add_test(s, "test_loss_bce_logits_values", test_loss_bce_logits_values);
    CU_add_test(s, "test_loss_bce_logits_position", test_loss_bce_logits_position);
    CU_add_test(s, "test_loss_bce_logits_wide", test_loss_bce_logits_wide);
    CU_add_test(s, "test_loss_bce_clamped_values", test_loss_bce_clamped_values);
    CU_add_test(s, "test_loss_ce_logits_values", test_loss_ce_logits_values);
    CU_add_test(s, "test_loss_l1_values", test_loss_l1_values);
    CU_add_test(s, "test_loss_l2_values", test_loss_l2_values);
    CU_add_test(s, "test_loss_mse_grad", test_loss_mse_grad);
    CU_add_test(s, "test_loss_bce_logits_grad", test_loss_bce_logits_grad);
    CU_add_test(s, "test_loss_bce_clamped_grad", test_loss_bce_clamped_grad);
    CU_add_test(s, "test_loss_ce_logits_grad", test_loss_ce_logits_grad);
    CU_add_test(s, "test_loss_l1_grad", test_loss_l1_grad);
    CU_add_test(s, "test_loss_l2_grad", test_loss_l2_grad);
    CU_add_test(s, "test_loss_wrong_gradient_fails", test_loss_wrong_gradient_fails);
}
