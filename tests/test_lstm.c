/* test_lstm.c - CUnit suite "lstm": the recurrent kinds (lstm with seq = 0 and 1, repeat, tdense with
 * every activation) and a whole seq2seq autoencoder pass the finite-difference check of ae_gradcheck;
 * the lstm's backward against central differences of a double-precision reference lstm; forward numbers
 * of a tiny lstm against values worked out by hand; batching, shapes, init and the argument checks.
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

#define ORIGIN "lstm.ini"
#define SEED 20240917u
#define N_SAMPLES 3 /* several samples: the batched sgemms must keep them apart */
#define MAX_BATCH 8
#define BIAS_SCALE 0.5f /* biases are drawn in [-0.5, 0.5): init leaves most at 0 */
#define INI_MAX 512
#define MAX_SKIP_FRACTION 0.25 /* at most this many coordinates may straddle a relu/elu kink */
/* A short sequence: T = 4 steps of F = 3 features, shape (1, T, F). */
#define SEQ_T 4
#define SEQ_F 3
#define IN_SEQ 1, SEQ_T, SEQ_F
#define N_GATES 4
/* Forward values are a few float roundings of order-1 terms: a few ulps, far below this. */
#define FWD_TOL 1e-6
/* One sample alone and inside a batch run different sgemm shapes: the sums may round differently. */
#define BATCH_TOL 1e-6
#define ORTHO_TOL 1e-5 /* Q Q^T = I to float precision */
#define GLOROT_SLACK 1e-6

/* ---- helpers ------------------------------------------------------------ */

static const tu_setup SETUP = {ORIGIN, MAX_BATCH, SEED, BIAS_SCALE};

/* Builds the model of ini for inputs of shape in, with random biases, and asserts that ae_gradcheck finds
 * every coordinate of dJ/dparams within AE_GRADCHECK_TOL. Inputs in [-1, 1], targets in [0, 1] (valid for
 * bce too). Returns the number of parameters (0 if the model could not be built). */
static size_t check_grad_at(unsigned line, const char *what, const char *ini, ae_shape in)
{
    tu_fixture f;
    int rc = tu_fixture_make(&f, &SETUP, ini, in, 2, N_SAMPLES, NULL);
    TU_ASSERT_AT(rc != TU_NO_MODEL, line, "model builds");
    if (rc == TU_NO_MODEL) return 0;
    TU_ASSERT_FATAL_AT(rc != TU_NO_DATA, line, "data allocated");
    tu_gradcheck_verdict v;
    tu_gradcheck_model(&v, what, f.m, f.x, f.t, NULL, N_SAMPLES, NULL, MAX_SKIP_FRACTION, -1.0);
    TU_ASSERT_GRADCHECK_AT(line, &v);
    size_t np = f.m->n_params;
    tu_fixture_free(&f);
    return np;
}
#define CHECK_GRAD(what, ini, ...) check_grad_at(__LINE__, (what), (ini), (ae_shape){__VA_ARGS__})

/* Parameters of an lstm: Wx (F x 4H), Wh (H x 4H), b (4H). */
static size_t lstm_params(size_t F, size_t H) { return (F + H) * N_GATES * H + N_GATES * H; }
/* Parameters of a dense or tdense layer with bias. */
static size_t dense_params(size_t in, size_t units) { return in * units + units; }

/* ---- gradients ------------------------------------------------------------ */

/* seq = 0: the last hidden state. Two stacked lstms, so that the second one's din (the gradient of
 * every step of the first one's output) feeds the first one's weights. */
static void test_lstm_grad_last(void)
{
    const char *ini = "[model]\nencoder = lstm(4, seq=1), lstm(5, name=code)\ndecoder = dense(12)\n";
    size_t np = CHECK_GRAD("lstm(seq=0)", ini, IN_SEQ);
    CU_ASSERT_EQUAL(np, lstm_params(SEQ_F, 4) + lstm_params(4, 5) + dense_params(5, SEQ_T * SEQ_F));
}

/* seq = 1: every step's hidden state is an output, so dh_t is the output gradient plus the recurrence;
 * in the decoder the lstm's din reaches the tdense code layer. */
static void test_lstm_grad_seq(void)
{
    const char *ini = "[model]\nencoder = lstm(4, seq=1), tdense(2, tanh, name=code)\n"
                      "decoder = lstm(3, seq=1), tdense(3)\n";
    size_t np = CHECK_GRAD("lstm(seq=1)", ini, IN_SEQ);
    CU_ASSERT_EQUAL(np,
                    lstm_params(SEQ_F, 4) + dense_params(4, 2) + lstm_params(2, 3) + dense_params(3, SEQ_F));
}

/* One step (a flat input is a sequence of length 1): no recurrence, Wh gets no gradient. */
static void test_lstm_grad_one_step(void)
{
    const char *ini = "[model]\nencoder = dense(4, tanh), lstm(5, name=code)\ndecoder = dense(6)\n";
    size_t np = CHECK_GRAD("lstm(T=1)", ini, 6, 1, 1);
    CU_ASSERT_EQUAL(np, dense_params(6, 4) + lstm_params(4, 5) + dense_params(5, 6));
}

/* repeat's backward sums the steps into the code; tdense after it sees T identical rows. */
static void test_lstm_grad_repeat(void)
{
    const char *ini = "[model]\nencoder = dense(4, tanh, name=code)\ndecoder = repeat(4), tdense(3, tanh)\n";
    size_t np = CHECK_GRAD("repeat", ini, IN_SEQ);
    CU_ASSERT_EQUAL(np, dense_params(SEQ_T * SEQ_F, 4) + dense_params(4, SEQ_F));
}

/* tdense with the activation on every layer: at the output (mse, not fused), in the middle (its din
 * feeding the tdense before) and first. */
static void check_tdense_act(const char *act)
{
    char ini[INI_MAX], what[64];
    snprintf(ini, sizeof ini,
             "[model]\nencoder = tdense(5, %s), tdense(2, %s, name=code)\ndecoder = tdense(3, %s)\n", act,
             act, act);
    snprintf(what, sizeof what, "tdense(%s)", act);
    size_t np = CHECK_GRAD(what, ini, IN_SEQ);
    CU_ASSERT_EQUAL(np, dense_params(SEQ_F, 5) + dense_params(5, 2) + dense_params(2, SEQ_F));
}

#define ACTS(X) X(linear) X(sigmoid) X(tanh) X(relu) X(elu) X(softmax)
#define DEFINE_TDENSE_TEST(a) \
    static void test_lstm_grad_tdense_##a(void) { check_tdense_act(#a); }
ACTS(DEFINE_TDENSE_TEST)
#undef DEFINE_TDENSE_TEST

static void test_lstm_grad_tdense_no_bias(void)
{
    const char *ini = "[model]\nencoder = tdense(5, tanh, bias=0, name=code)\ndecoder = tdense(3, bias=0)\n";
    size_t np = CHECK_GRAD("tdense(bias=0)", ini, IN_SEQ);
    CU_ASSERT_EQUAL(np, SEQ_F * 5 + 5 * SEQ_F);
}

/* The whole seq2seq autoencoder of configs/mnist_lstm.ini at a small size, with bce: the last tdense
 * hands the loss its logits (l->z) and takes d/dz directly (fused_out). */
static void test_lstm_grad_seq2seq_bce(void)
{
    const char *ini = "[model]\nencoder = lstm(5), dense(3, name=code)\n"
                      "decoder = repeat(4), lstm(5, seq=1), tdense(3, sigmoid)\n[loss]\nkind = bce\n";
    size_t np = CHECK_GRAD("seq2seq(bce)", ini, IN_SEQ);
    CU_ASSERT_EQUAL(np,
                    lstm_params(SEQ_F, 5) + dense_params(5, 3) + lstm_params(3, 5) + dense_params(5, SEQ_F));
}

/* The same with mse (the config's loss): the sigmoid's backward runs in tdense. */
static void test_lstm_grad_seq2seq_mse(void)
{
    const char *ini = "[model]\nencoder = lstm(5), dense(3, name=code)\n"
                      "decoder = repeat(4), lstm(5, seq=1), tdense(3, sigmoid)\n[loss]\nkind = mse\n";
    CHECK_GRAD("seq2seq(mse)", ini, IN_SEQ);
}

/* ---- forward numbers ----------------------------------------------------------- */

/* T = 2, F = 1, H = 1; gates in the order i, f, g, o:
 *   Wx = [0.5, -0.25, 1, 0.75], Wh = [-0.5, 0.25, 0.5, -1], b = [0.1, 1, -0.2, 0.3]
 * sample x = [1, -2]:
 *   t = 0: a = x Wx + b = [0.6, 0.75, 0.8, 1.05]; i = s(0.6) = 0.645656, f = s(0.75), g = tanh(0.8) =
 *          0.664037, o = s(1.05) = 0.740775; c0 = i g = 0.428740; h0 = o tanh(c0) = 0.299471
 *   t = 1: a = -2 Wx + h0 Wh + b = [-1.049736, 1.574868, -2.050264, -1.499471]; i = 0.259276,
 *          f = 0.828476, g = -0.967412, o = 0.182504; c1 = f c0 + i g = 0.104374; h1 = o tanh(c1)
 * sample x = [0.5, 0.25]: a0 = [0.35, 0.875, 0.3, 0.675], a1 = [0.168927, 0.965536, 0.106073, 0.375355]
 * (s = logistic sigmoid; the h values below are from Python's math module, in double). */
static const float FWD_WX[] = {0.5f, -0.25f, 1.0f, 0.75f};
static const float FWD_WH[] = {-0.5f, 0.25f, 0.5f, -1.0f};
static const float FWD_B[] = {0.1f, 1.0f, -0.2f, 0.3f};
static const float FWD_X[] = {1.0f, -2.0f, 0.5f, 0.25f};
#define FWD_N 2
#define FWD_T 2
static const double FWD_H[FWD_N * FWD_T] = {0.299471124802595, 0.018979845853386742, 0.11214530551045986,
                                            0.10616235832957673};

static ae_model *tiny_lstm(int seq)
{
    const char *ini = seq ? "[model]\nencoder = lstm(1, seq=1, name=code)\ndecoder = tdense(1)\n"
                          : "[model]\nencoder = lstm(1, name=code)\ndecoder = dense(2)\n";
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){1, FWD_T, 1});
    if (!m) return NULL;
    ae_layer *l = &m->layers[0];
    memcpy(l->W, FWD_WX, sizeof FWD_WX);
    memcpy(l->W + N_GATES, FWD_WH, sizeof FWD_WH);
    memcpy(l->b, FWD_B, sizeof FWD_B);
    return m;
}

static int near(double got, double want, double tol)
{
    return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

static void test_lstm_forward_values(void)
{
    for (int seq = 0; seq <= 1; seq++) {
        ae_model *m = tiny_lstm(seq);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_PTR_EQUAL(m->layers[0].b, m->layers[0].W + 2 * N_GATES); /* one view: Wx, Wh, b */
        ae_ctx ctx = {0};
        const float *y = ae_model_forward(m, &ctx, FWD_X, FWD_N, 1);
        for (int s = 0; s < FWD_N; s++) {
            for (int t = seq ? 0 : FWD_T - 1; t < FWD_T; t++) {
                float got = seq ? y[s * FWD_T + t] : y[s];
                double want = FWD_H[s * FWD_T + t];
                if (!near(got, want, FWD_TOL))
                    fprintf(stderr, "\n    seq=%d sample %d step %d: h = %.9g, want %.9g", seq, s, t, got,
                            want);
                CU_ASSERT(near(got, want, FWD_TOL));
            }
        }
        ae_model_free(m);
    }
}

/* repeat copies the code to every step; tdense is the same dense map on every step. */
static void test_lstm_repeat_tdense_values(void)
{
    const char *ini = "[model]\nencoder = dense(2, name=code)\ndecoder = repeat(3), tdense(4, relu)\n";
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){1, 3, 4});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_init_params(&SETUP, m, NULL);
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 3, 0, 0);
    float x[FWD_N * 12];
    tu_fill_uniform(&r, x, FWD_N * 12, -1.0f, 1.0f);
    ae_ctx ctx = {0};
    const float *y = ae_model_forward(m, &ctx, x, FWD_N, m->n_layers);
    const float *code = m->act[0], *rep = m->act[1];
    const ae_layer *td = &m->layers[2];
    for (int s = 0; s < FWD_N; s++) {
        for (int t = 0; t < 3; t++) {
            for (int j = 0; j < 2; j++) CU_ASSERT_EQUAL(rep[(s * 3 + t) * 2 + j], code[s * 2 + j]);
            for (int u = 0; u < 4; u++) {
                double z = td->b[u];
                for (int j = 0; j < 2; j++) z += (double)code[s * 2 + j] * td->W[j * 4 + u];
                CU_ASSERT(near(y[(s * 3 + t) * 4 + u], z > 0.0 ? z : 0.0, FWD_TOL));
            }
        }
    }
    ae_model_free(m);
}

/* A sample's output does not depend on the other samples of the batch (the strided per-step sgemms
 * pick the right rows). */
static void test_lstm_batch_rows(void)
{
    const char *ini = "[model]\nencoder = lstm(6, seq=1), lstm(5, name=code)\n"
                      "decoder = repeat(4), lstm(4, seq=1), tdense(3, sigmoid)\n";
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){IN_SEQ});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_init_params(&SETUP, m, NULL);
    size_t in = m->in_size, out = m->out_size;
    float x[MAX_BATCH * SEQ_T * SEQ_F], y[MAX_BATCH * SEQ_T * SEQ_F];
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 4, 0, 0);
    tu_fill_uniform(&r, x, MAX_BATCH * in, -1.0f, 1.0f);
    ae_ctx ctx = {0};
    memcpy(y, ae_model_forward(m, &ctx, x, MAX_BATCH, m->n_layers), sizeof(float) * MAX_BATCH * out);
    for (int s = 0; s < MAX_BATCH; s++) {
        const float *ys = ae_model_forward(m, &ctx, x + s * in, 1, m->n_layers);
        for (size_t k = 0; k < out; k++) CU_ASSERT(near(ys[k], y[s * out + k], BATCH_TOL));
    }
    ae_model_free(m);
}

/* ---- backward against a double-precision reference --------------------------------- */

/* ae_gradcheck differentiates the float objective, whose rounding noise puts a floor under the small
 * gradients of the recurrent weights. Here the layer's own backward (float) is compared with central
 * differences of an independent double-precision lstm, for L = sum(w * out) with random w (the dout):
 * the differences are exact to ~1e-9, so what remains is the float rounding of the backward itself. */
#define REF_T 5
#define REF_F 3
#define REF_H 4
#define REF_G (N_GATES * REF_H)
#define REF_NP ((REF_F + REF_H) * REF_G + REF_G)
#define REF_STEP 1e-4 /* central difference in double: truncation ~1e-8, rounding ~1e-12 */
/* Float backward: sums of ~T*n products of order-1 terms, relative rounding ~1e-6 of the largest
 * gradient; a wrong term or factor is off by far more. */
#define REF_TOL 1e-5

static double dsig(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The lstm of src/lstm.c written out per sample, in double: p = [Wx (F x 4H), Wh (H x 4H), b (4H)],
 * gates i, f, g, o. Returns sum over outputs of w * out (out: last h, or every h when seq). */
static double ref_lstm_loss(const double *p, const double *x, const double *w, int n, int seq)
{
    const double *Wx = p, *Wh = p + REF_F * REF_G, *b = p + (REF_F + REF_H) * REF_G;
    double loss = 0.0;
    for (int s = 0; s < n; s++) {
        double h[REF_H] = {0}, c[REF_H] = {0}, a[REF_G];
        for (int t = 0; t < REF_T; t++) {
            const double *xt = x + (s * REF_T + t) * REF_F;
            for (int k = 0; k < REF_G; k++) {
                a[k] = b[k];
                for (int f = 0; f < REF_F; f++) a[k] += xt[f] * Wx[f * REF_G + k];
                for (int j = 0; j < REF_H; j++) a[k] += h[j] * Wh[j * REF_G + k];
            }
            for (int j = 0; j < REF_H; j++) {
                double i = dsig(a[j]), f = dsig(a[REF_H + j]), g = tanh(a[2 * REF_H + j]);
                double o = dsig(a[3 * REF_H + j]);
                c[j] = f * c[j] + i * g;
                h[j] = o * tanh(c[j]);
                if (seq) loss += w[(s * REF_T + t) * REF_H + j] * h[j];
            }
        }
        if (!seq)
            for (int j = 0; j < REF_H; j++) loss += w[s * REF_H + j] * h[j];
    }
    return loss;
}

/* Central difference of the reference loss along v[i]. */
static double ref_diff(double *v, int i, const double *p, const double *x, const double *w, int n, int seq)
{
    double v0 = v[i];
    v[i] = v0 + REF_STEP;
    double lp = ref_lstm_loss(p, x, w, n, seq);
    v[i] = v0 - REF_STEP;
    double lm = ref_lstm_loss(p, x, w, n, seq);
    v[i] = v0;
    return (lp - lm) / (2.0 * REF_STEP);
}

/* Max over i of |got[i] - want[i]| / max |want|. */
static double scaled_err(const float *got, const double *want, int len)
{
    double mx = 0.0, err = 0.0;
    for (int i = 0; i < len; i++) mx = fmax(mx, fabs(want[i]));
    for (int i = 0; i < len; i++) err = fmax(err, fabs(got[i] - want[i]));
    return mx > 0.0 ? err / mx : err;
}

static void check_against_ref(int seq)
{
    const char *ini = seq ? "[model]\nencoder = lstm(4, seq=1, name=code)\ndecoder = tdense(3)\n"
                          : "[model]\nencoder = lstm(4, name=code)\ndecoder = dense(15)\n";
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){1, REF_T, REF_F});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_layer *l = &m->layers[0];
    CU_ASSERT_EQUAL_FATAL(l->n_params, REF_NP);
    enum { N = N_SAMPLES, NX = N * REF_T * REF_F, NW = N * REF_T * REF_H };
    int nout = (int)(N * l->out_size);
    double p[REF_NP], x[NX], w[NW];
    float xf[NX], dout[NW], din[NX];
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 5, (uint32_t)seq, 0);
    for (int i = 0; i < REF_NP; i++) p[i] = l->W[i] = 1.6f * ae_rng_uniform(&r) - 0.8f;
    for (int i = 0; i < NX; i++) x[i] = xf[i] = 2.0f * ae_rng_uniform(&r) - 1.0f;
    for (int i = 0; i < nout; i++) w[i] = dout[i] = 2.0f * ae_rng_uniform(&r) - 1.0f;
    ae_ctx ctx = {.training = 1};
    memset(m->grads, 0, sizeof(float) * m->n_params);
    l->kind->forward(l, &ctx, xf, m->act[0], N);
    l->kind->backward(l, &ctx, xf, m->act[0], dout, din, N);
    double gp[REF_NP], gx[NX];
    for (int i = 0; i < REF_NP; i++) gp[i] = ref_diff(p, i, p, x, w, N, seq);
    for (int i = 0; i < NX; i++) gx[i] = ref_diff(x, i, p, x, w, N, seq);
    /* the parts separately: each has its own scale */
    double e_wx = scaled_err(l->dW, gp, REF_F * REF_G);
    double e_wh = scaled_err(l->dW + REF_F * REF_G, gp + REF_F * REF_G, REF_H * REF_G);
    double e_b = scaled_err(l->db, gp + (REF_F + REF_H) * REF_G, REF_G);
    double e_x = scaled_err(din, gx, NX);
    if (tu_verbose())
        fprintf(stderr, "\n    lstm(seq=%d) vs double: dWx %.2e dWh %.2e db %.2e din %.2e (of the max)", seq,
                e_wx, e_wh, e_b, e_x);
    CU_ASSERT(e_wx <= REF_TOL);
    CU_ASSERT(e_wh <= REF_TOL);
    CU_ASSERT(e_b <= REF_TOL);
    CU_ASSERT(e_x <= REF_TOL);
    /* backward accumulates: a second call adds the same gradient again */
    float first = l->dW[REF_F * REF_G];
    l->kind->forward(l, &ctx, xf, m->act[0], N);
    for (int i = 0; i < nout; i++) dout[i] = (float)w[i];
    l->kind->backward(l, &ctx, xf, m->act[0], dout, NULL, N);
    CU_ASSERT(near(l->dW[REF_F * REF_G], 2.0 * first, FWD_TOL));
    ae_model_free(m);
}

static void test_lstm_backward_vs_double_last(void) { check_against_ref(0); }
static void test_lstm_backward_vs_double_seq(void) { check_against_ref(1); }

/* ---- shapes, init, arguments ------------------------------------------------------- */

/* The model of configs/mnist_lstm.ini on 28 x 28 images. */
static void test_lstm_shapes(void)
{
    const char *ini = "[model]\nencoder = lstm(128), dense(64, name=code)\n"
                      "decoder = repeat(28), lstm(128, seq=1), tdense(28, sigmoid)\n";
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){1, 28, 28});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    static const ae_shape want[] = {{1, 1, 128}, {64, 1, 1}, {1, 28, 64}, {1, 28, 128}, {1, 28, 28}};
    static const size_t want_params[] = {(28 + 128) * 512 + 512, 128 * 64 + 64, 0, (64 + 128) * 512 + 512,
                                         128 * 28 + 28};
    CU_ASSERT_EQUAL_FATAL(m->n_layers, 5);
    for (int i = 0; i < 5; i++) {
        const ae_layer *l = &m->layers[i];
        CU_ASSERT(l->out.c == want[i].c && l->out.h == want[i].h && l->out.w == want[i].w);
        CU_ASSERT_EQUAL(l->out_size, ae_shape_size(&want[i]));
        CU_ASSERT_EQUAL(l->n_params, want_params[i]);
    }
    CU_ASSERT_EQUAL(m->code_size, 64);
    CU_ASSERT_EQUAL(m->out_size, m->in_size);
    /* kept for backward: gates (T x 4H), cell and tanh(cell) (T x H), hidden states unless seq = 1 */
    CU_ASSERT_EQUAL(m->layers[0].ws_per_sample, 28 * (512 + 3 * 128));
    CU_ASSERT_EQUAL(m->layers[3].ws_per_sample, 28 * (512 + 2 * 128));
    ae_model_free(m);
}

/* Input weights glorot_uniform (fans F and 4H), each gate's recurrent block orthogonal, biases 0 but the
 * forget gate's 1. */
static void test_lstm_init(void)
{
    enum { F = 7, H = 6, G = N_GATES * H };
    ae_model *m =
        tu_build(&SETUP, "[model]\nencoder = lstm(6, name=code)\ndecoder = dense(21)\n", (ae_shape){1, 3, F});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_model_init_params(m, SEED);
    const ae_layer *l = &m->layers[0];
    double limit = sqrt(6.0 / (F + G)), maxabs = 0.0;
    for (int i = 0; i < F * G; i++) maxabs = fmax(maxabs, fabs(l->W[i]));
    CU_ASSERT(maxabs <= limit * (1.0 + GLOROT_SLACK));
    CU_ASSERT(maxabs >= limit / 2); /* 168 draws: not all in the inner half */
    const float *Wh = l->W + F * G;
    for (int k = 0; k < N_GATES; k++) {
        for (int r = 0; r < H; r++) {
            for (int q = 0; q < H; q++) {
                double dot = 0.0;
                for (int c = 0; c < H; c++) dot += (double)Wh[r * G + k * H + c] * Wh[q * G + k * H + c];
                CU_ASSERT(fabs(dot - (r == q)) <= ORTHO_TOL);
            }
        }
    }
    for (int j = 0; j < G; j++) CU_ASSERT_EQUAL(l->b[j], j / H == 1 ? 1.0f : 0.0f);
    ae_model_free(m);
}

/* Bad arguments and shapes fail at build time with the spec's file:line and the kind in the message. */
static void check_rejected(const char *layers, ae_shape in, const char *needle)
{
    char ini[INI_MAX];
    snprintf(ini, sizeof ini, "[model]\nencoder = %s\ndecoder = tdense(3)\n", layers);
    ae_error err = {0};
    ae_model *m;
    tu_build_status(&SETUP, ini, in, &m, &err);
    CU_ASSERT_PTR_NULL(m);
    ae_model_free(m);
    int ok = strstr(err.msg, ORIGIN ":2") != NULL && strstr(err.msg, needle) != NULL;
    if (!ok) fprintf(stderr, "\n    '%s': message '%s' lacks '%s' or the origin", layers, err.msg, needle);
    CU_ASSERT(ok);
}

static void test_lstm_bad_args(void)
{
    ae_shape seq = {IN_SEQ};
    check_rejected("lstm(0)", seq, "hidden");
    check_rejected("lstm()", seq, "missing argument 'hidden'");
    check_rejected("lstm(4, seq=2)", seq, "seq");
    check_rejected("lstm(4, act=relu)", seq, "unknown argument 'act'");
    check_rejected("lstm(4, 1, 2)", seq, "at most 2 positional");
    check_rejected("lstm(4, init=ortho)", seq, "unknown init 'ortho'");
    check_rejected("lstm(4)", (ae_shape){2, 3, 4}, "needs a sequence input");
    check_rejected("repeat(0)", seq, "steps");
    check_rejected("repeat()", seq, "missing argument 'steps'");
    check_rejected("tdense(0)", seq, "units");
    check_rejected("tdense(3, swish)", seq, "unknown activation 'swish'");
    check_rejected("tdense(3, tied=enc1)", seq, "unknown argument 'tied'");
    check_rejected("tdense(3)", (ae_shape){3, 2, 2}, "tdense needs a sequence input");
}

void ae_test_register_lstm(void)
{
    CU_pSuite s = CU_add_suite("lstm", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_lstm_grad_last", test_lstm_grad_last);
    CU_add_test(s, "test_lstm_grad_seq", test_lstm_grad_seq);
    CU_add_test(s, "test_lstm_grad_one_step", test_lstm_grad_one_step);
    CU_add_test(s, "test_lstm_grad_repeat", test_lstm_grad_repeat);
#define REGISTER_TDENSE_TEST(a) CU_add_test(s, "test_lstm_grad_tdense_" #a, test_lstm_grad_tdense_##a);
    ACTS(REGISTER_TDENSE_TEST)
#undef REGISTER_TDENSE_TEST
    CU_add_test(s, "test_lstm_grad_tdense_no_bias", test_lstm_grad_tdense_no_bias);
    CU_add_test(s, "test_lstm_grad_seq2seq_bce", test_lstm_grad_seq2seq_bce);
    CU_add_test(s, "test_lstm_grad_seq2seq_mse", test_lstm_grad_seq2seq_mse);
    CU_add_test(s, "test_lstm_forward_values", test_lstm_forward_values);
    CU_add_test(s, "test_lstm_repeat_tdense_values", test_lstm_repeat_tdense_values);
    CU_add_test(s, "test_lstm_batch_rows", test_lstm_batch_rows);
    CU_add_test(s, "test_lstm_backward_vs_double_last", test_lstm_backward_vs_double_last);
    CU_add_test(s, "test_lstm_backward_vs_double_seq", test_lstm_backward_vs_double_seq);
    CU_add_test(s, "test_lstm_shapes", test_lstm_shapes);
    CU_add_test(s, "test_lstm_init", test_lstm_init);
    CU_add_test(s, "test_lstm_bad_args", test_lstm_bad_args);
}
