/* test_conv.c - CUnit suite "conv": the image layer kinds of src/conv.c (conv,
 * deconv, maxpool, upsample, reshape). Gradients pass ae_gradcheck two ways:
 * one layer on its own (parameters and input together, through a fixed
 * linear functional of the output or through a fused sigmoid + bce), and
 * whole models; forward numbers of tiny layers against values worked out by
 * hand; conv (forward, dW, din) against naive direct loops on random data
 * and deconv as its adjoint; shape rules (TensorFlow 'same', Keras transposed
 * sizes, PyTorch ceil mode), init fans and the setup errors.
 * AE_GRADCHECK_VERBOSE=1 prints every check's numbers. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/config.h"
#include "ae/gradcheck.h"
#include "ae/layers.h"
#include "ae/loss.h"
#include "ae/model.h"
#include "ae/rng.h"
#include "testutil.h"

#define ORIGIN "conv.ini"
#define SEED 20240612u
#define N_SAMPLES 3 /* a few samples so that dW sums over the batch */
#define MAX_BATCH 4
#define BIAS_SCALE 0.5f /* biases are drawn in [-0.5, 0.5): init leaves them at 0 */
#define INI_MAX 1024
/* At most this fraction of the coordinates may sit within a step of a relu/elu kink. */
#define MAX_SKIP_FRACTION 0.25
/* Forward values: sums of at most 9 float products of small integers, exact or within an ulp. */
#define FWD_TOL 1e-6
/* Layer against the naive loops: sums of up to 100 float products of order 1 in another order. */
#define REF_TOL 1e-5
/* Model checks sample at most this many coordinates per layer (the dense layers of the test heads
 * are large; every conv-kind layer here has fewer parameters, so all of its are checked). */
#define MODEL_MAX_PER_LAYER 200
/* Max-pool inputs are distinct, evenly spread over [-1, 1] with gaps of POOL_SPREAD / size; the
 * steps are made POOL_STEP_MARGIN times smaller than a gap, so that no step changes which input is a
 * window's maximum (the max is linear between such changes, so a small step costs no accuracy). */
#define POOL_SPREAD 2.0f
#define POOL_STEP_MARGIN 4.0
/* Models with max-pooling: ae_gradcheck detects relu/elu kinks, not a change of a window's argmax, so
 * their steps stay this small relative to the parameters (Richardson keeps the truncation error far
 * below tol; the noise floor covers the rounding). */
#define POOL_MODEL_REL_STEP 1e-3
#define WRONG_FACTOR 1.05f /* the deliberately wrong derivative is off by 5% */

/* ---- helpers ------------------------------------------------------------ */

#define S(c, h, w) ((ae_shape){(c), (h), (w)})

static const tu_setup SETUP = {ORIGIN, MAX_BATCH, SEED, BIAS_SCALE};

/* A model whose first layer is the one under test; the decoder only makes it a valid autoencoder. */
static ae_model *build_layer(const char *layer, ae_shape in)
{
    char ini[INI_MAX];
    snprintf(ini, sizeof ini, "[model]\nencoder = %s\ndecoder = flatten, dense(%zu)\n", layer,
             ae_shape_size(&in));
    return tu_build(&SETUP, ini, in);
}

/* Runs one layer kind's setup on the first layer of "encoder = <layer>" for input in. Returns the
 * status; *l is the set-up layer, err its message. */
static ae_status setup_one(const char *layer, ae_shape in, ae_layer *l, ae_error *err)
{
    char ini[INI_MAX];
    snprintf(ini, sizeof ini, "[model]\nencoder = %s\n", layer);
    ae_spec *s = calloc(1, sizeof *s);
    if (!s) return AE_ERR_NOMEM;
    ae_status st = ae_config_parse_string(ini, ORIGIN, s, err);
    memset(l, 0, sizeof *l);
    if (!st) {
        l->kind = ae_layers_find(s->encoder[0].kind);
        l->in = in;
        l->in_size = ae_shape_size(&in);
        st = l->kind ? l->kind->setup(l, &s->encoder[0], err) : AE_ERR_CONFIG;
    }
    free(s);
    return st;
}

/* ---- one layer on its own ------------------------------------------------------ */

/* J(params, x) = sum r . out (a fixed random functional of the layer's output), or, with bce, the
 * sum of bce(sigmoid(z), r) from the pre-activation z that the layer keeps in l->z, its backward
 * taking d/dz directly (l->fused_out) - exactly what the model does with a fused output layer. */
typedef struct layer_probe {
    ae_model *m;
    ae_layer *l;
    int n, bce, wrong;
    float *out, *dout, *din, *z, *r;
} layer_probe;

static double probe_eval(void *ud, const float *v, float *grad)
{
    layer_probe *p = ud;
    ae_layer *l = p->l;
    size_t np = l->n_params, len = (size_t)p->n * l->out_size;
    if (np) memcpy(p->m->params + l->p_off, v, sizeof(float) * np);
    const float *x = v + np;
    ae_ctx ctx = {.training = 1, .seed = SEED};
    l->z = p->bce ? p->z : NULL;
    l->fused_out = p->bce;
    l->kind->forward(l, &ctx, x, p->out, p->n);
    double f = 0.0;
    if (p->bce) {
        f = ae_loss_bce_logits(p->z, p->r, (size_t)p->n, l->out_size, 1.0f, grad ? p->dout : NULL);
    } else {
        for (size_t i = 0; i < len; i++) f += (double)p->r[i] * p->out[i];
        if (grad) memcpy(p->dout, p->r, sizeof(float) * len);
    }
    if (!grad) return f;
    memset(p->m->grads + l->p_off, 0, sizeof(float) * np);
    l->kind->backward(l, &ctx, x, p->out, p->dout, p->din, p->n);
    memcpy(grad, p->m->grads + l->p_off, sizeof(float) * np);
    memcpy(grad + np, p->din, sizeof(float) * (size_t)p->n * l->in_size);
    if (p->wrong) grad[np / 2] *= WRONG_FACTOR;
    return f;
}

/* Random input in [-1, 1], or for max-pool a random permutation of evenly spread values per sample. */
static void probe_input(ae_rng *r, float *x, size_t in_size, int n, int spread)
{
    if (!spread) {
        tu_fill_uniform(r, x, (size_t)n * in_size, -1.0f, 1.0f);
        return;
    }
    uint32_t *perm = malloc(sizeof *perm * in_size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(perm);
    for (int s = 0; s < n; s++) {
        ae_rng_permutation(r, perm, in_size);
        for (size_t i = 0; i < in_size; i++)
            x[(size_t)s * in_size + i] = POOL_SPREAD * ((float)perm[i] + 0.5f) / (float)in_size - 1.0f;
    }
    free(perm);
}

/* Checks d J / d(params, input) of the layer "layer" on input shape in; returns the largest relative
 * error (or INFINITY when the model cannot be built). wrong != 0 corrupts one derivative and expects
 * the check to FAIL. */
static double probe_layer_at(unsigned line, const char *layer, ae_shape in, int bce, int wrong)
{
    ae_model *m = build_layer(layer, in);
    TU_ASSERT_AT(m != NULL, line, "model builds");
    if (!m) return INFINITY;
    tu_init_params(&SETUP, m, NULL);
    layer_probe p = {m, &m->layers[0], N_SAMPLES, bce, wrong, NULL, NULL, NULL, NULL, NULL};
    ae_layer *l = p.l;
    size_t out_len = (size_t)p.n * l->out_size, in_len = (size_t)p.n * l->in_size, len = l->n_params + in_len;
    p.out = malloc(sizeof(float) * out_len);
    p.dout = malloc(sizeof(float) * out_len);
    p.z = malloc(sizeof(float) * out_len);
    p.r = malloc(sizeof(float) * out_len);
    p.din = malloc(sizeof(float) * in_len);
    float *v = malloc(sizeof(float) * len);
    CU_ASSERT_FATAL(p.out && p.dout && p.z && p.r && p.din && v);
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 2, 0, 0);
    if (l->n_params) memcpy(v, m->params + l->p_off, sizeof(float) * l->n_params);
    int pool = strcmp(l->kind->name, "maxpool") == 0;
    probe_input(&r, v + l->n_params, l->in_size, p.n, pool);
    tu_fill_uniform(&r, p.r, out_len, bce ? 0.0f : -1.0f, 1.0f);
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    if (pool)
        o.rel_step =
            fmin(o.rel_step, POOL_SPREAD / (float)l->in_size / (POOL_STEP_MARGIN * fmax(1.0, o.min_mag)));
    ae_gradcheck_result res;
    ae_error err = {0};
    ae_status st = ae_gradcheck_func(probe_eval, &p, v, len, &o, &res, &err);
    char what[INI_MAX];
    snprintf(what, sizeof what, "%s on %dx%dx%d%s", layer, in.c, in.h, in.w, bce ? " (bce)" : "");
    if (wrong) {
        TU_ASSERT_AT(st == AE_OK && res.n_failed > 0, line, "a wrong derivative fails the check");
    } else {
        tu_gradcheck_verdict verdict;
        tu_gradcheck_judge(&verdict, what, st, &err, &res, len, MAX_SKIP_FRACTION, -1.0);
        TU_ASSERT_GRADCHECK_AT(line, &verdict);
        if (bce) /* the layer's output is the sigmoid of what it kept in z */
            for (size_t i = 0; i < out_len; i++)
                CU_ASSERT(fabsf(p.out[i] - 1.0f / (1.0f + expf(-p.z[i]))) <= FWD_TOL);
    }
    /* the first layer of a model gets din == NULL: only the parameter gradients */
    ae_ctx ctx = {.training = 1};
    l->kind->forward(l, &ctx, v + l->n_params, p.out, p.n);
    l->kind->backward(l, &ctx, v + l->n_params, p.out, p.dout, NULL, p.n);
    l->z = NULL;
    free(p.out);
    free(p.dout);
    free(p.z);
    free(p.r);
    free(p.din);
    free(v);
    ae_model_free(m);
    return res.max_rel_err;
}
#define PROBE(layer, ...) probe_layer_at(__LINE__, (layer), (ae_shape){__VA_ARGS__}, 0, 0)
#define PROBE_BCE(layer, ...) probe_layer_at(__LINE__, (layer), (ae_shape){__VA_ARGS__}, 1, 0)

/* ---- whole models -------------------------------------------------------------- */

/* ae_gradcheck_model of ini (mse unless it says otherwise) on input shape in; returns the number of
 * parameters (0 if the model cannot be built). */
static size_t check_model_at(unsigned line, const char *what, const char *ini, ae_shape in)
{
    tu_fixture f;
    int rc = tu_fixture_make(&f, &SETUP, ini, in, 3, N_SAMPLES, NULL);
    TU_ASSERT_AT(rc != TU_NO_MODEL, line, "model builds");
    if (rc == TU_NO_MODEL) return 0;
    TU_ASSERT_FATAL_AT(rc != TU_NO_DATA, line, "data allocated");
    ae_gradcheck_opts o;
    ae_gradcheck_opts_default(&o);
    o.max_per_layer = MODEL_MAX_PER_LAYER;
    o.seed = SEED;
    for (int i = 0; i < f.m->n_layers; i++)
        if (strcmp(f.m->layers[i].kind->name, "maxpool") == 0) o.rel_step = POOL_MODEL_REL_STEP;
    tu_gradcheck_verdict v;
    tu_gradcheck_model(&v, what, f.m, f.x, f.t, NULL, N_SAMPLES, &o, MAX_SKIP_FRACTION, -1.0);
    TU_ASSERT_GRADCHECK_AT(line, &v);
    size_t np = f.m->n_params;
    tu_fixture_free(&f);
    return np;
}
#define CHECK_MODEL(what, ini, ...) check_model_at(__LINE__, (what), (ini), (ae_shape){__VA_ARGS__})

/* ---- gradients: conv ------------------------------------------------------------- */

/* Odd and even sizes, square and not, odd and even kernels (TF puts the odd padding pixel at the
 * bottom / right), a kernel larger than the input under 'same'. */
static void test_conv_grad_same_stride1(void)
{
    PROBE("conv(3, 3, tanh)", 2, 5, 5);
    PROBE("conv(3, 3, tanh, pad=same)", 2, 6, 6);
    PROBE("conv(2, 2, tanh)", 2, 5, 6);
    PROBE("conv(2, 4, tanh)", 1, 6, 5);
    PROBE("conv(2, 5, tanh)", 2, 3, 4);
}

static void test_conv_grad_same_stride2(void)
{
    PROBE("conv(3, 3, tanh, stride=2)", 2, 5, 5);
    PROBE("conv(3, 3, tanh, stride=2)", 2, 6, 6);
    PROBE("conv(2, 2, tanh, stride=2)", 2, 7, 6);
    PROBE("conv(2, 4, tanh, stride=2)", 1, 6, 7);
    PROBE("conv(2, 1, tanh, stride=2)", 3, 5, 4);
    PROBE("conv(2, 3, tanh, stride=3)", 2, 7, 8);
}

static void test_conv_grad_valid(void)
{
    PROBE("conv(3, 3, tanh, pad=valid)", 2, 5, 5);
    PROBE("conv(3, 3, tanh, pad=valid)", 2, 6, 6);
    PROBE("conv(3, 3, tanh, stride=2, pad=valid)", 2, 7, 7);
    PROBE("conv(3, 3, tanh, stride=2, pad=valid)", 2, 8, 6);
    PROBE("conv(2, 2, tanh, stride=2, pad=valid)", 2, 5, 5);
    PROBE("conv(2, 4, tanh, pad=valid)", 1, 4, 6);
}

static void test_conv_grad_no_bias(void)
{
    PROBE("conv(3, 3, tanh, bias=0)", 2, 5, 5);
    PROBE("conv(3, 3, tanh, stride=2, pad=valid, bias=0)", 2, 6, 6);
}

/* Every activation at the conv's output: linear, sigmoid, tanh and softmax (over the whole sample, as
 * the act layer) on the layer alone; then each in a model, on the hidden conv and the output deconv
 * (relu and elu have kinks, which only the model check detects). Softmax is checked on one of the two
 * layers at a time: softmax after softmax leaves the first layer's gradients near 1e-6, down at the
 * rounding noise of J, where the check measures float noise rather than the layer. */
static void test_conv_grad_acts(void)
{
    PROBE("conv(3, 3)", 2, 5, 5);
    PROBE("conv(3, 3, sigmoid, stride=2)", 2, 6, 6);
    PROBE("conv(3, 3, act=tanh, pad=valid)", 2, 5, 6);
    PROBE("conv(3, 3, softmax)", 2, 4, 4);
    static const char *const acts[][2] = {{"linear", "linear"}, {"sigmoid", "sigmoid"}, {"tanh", "tanh"},
                                          {"relu", "relu"},     {"elu", "elu"},         {"softmax", "tanh"},
                                          {"tanh", "softmax"}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        char ini[INI_MAX], what[64];
        snprintf(
            ini, sizeof ini,
            "[model]\nencoder = conv(3, 3, %s, stride=2, name=code)\ndecoder = deconv(2, 3, %s, stride=2)\n",
            acts[i][0], acts[i][1]);
        snprintf(what, sizeof what, "conv(%s) + deconv(%s)", acts[i][0], acts[i][1]);
        size_t np = CHECK_MODEL(what, ini, 2, 6, 6);
        CU_ASSERT_EQUAL(np, (3 * 2 * 9 + 3) + (3 * 2 * 9 + 2));
    }
}

/* A sigmoid conv or deconv output under bce from the logits: z kept by forward, d/dz given to backward;
 * on the layer alone, then as the output layer of models (the loss fused by the model). */
static void test_conv_grad_fused_bce(void)
{
    PROBE_BCE("conv(3, 3, sigmoid)", 2, 5, 5);
    PROBE_BCE("conv(1, 3, sigmoid, stride=2, pad=valid)", 2, 7, 6);
    PROBE_BCE("deconv(2, 3, sigmoid, stride=2)", 3, 3, 3);
    size_t np = CHECK_MODEL("conv + conv(sigmoid), bce",
                            "[model]\nencoder = conv(3, 3, tanh, stride=2, name=code)\n"
                            "decoder = upsample(2), conv(2, 3, sigmoid)\n[loss]\nkind = bce\n",
                            2, 6, 6);
    CU_ASSERT_EQUAL(np, (3 * 18 + 3) + (2 * 27 + 2));
    np = CHECK_MODEL("conv + deconv(sigmoid), bce",
                     "[model]\nencoder = conv(3, 3, elu, stride=2, name=code)\n"
                     "decoder = deconv(1, 3, sigmoid, stride=2)\n[loss]\nkind = bce\n",
                     1, 6, 6);
    CU_ASSERT_EQUAL(np, (3 * 9 + 3) + (3 * 9 + 1));
}

/* The checker catches a derivative that is 5% off (the probe is not vacuous). */
static void test_conv_grad_detects_error(void)
{
    probe_layer_at(__LINE__, "conv(3, 3, tanh)", (ae_shape){2, 5, 5}, 0, 1);
    probe_layer_at(__LINE__, "deconv(2, 3, tanh, stride=2)", (ae_shape){2, 3, 3}, 0, 1);
}

/* ---- gradients: deconv, maxpool, upsample, reshape ------------------------------------ */

static void test_conv_grad_deconv(void)
{
    PROBE("deconv(3, 3, tanh)", 2, 4, 4);
    PROBE("deconv(3, 3, tanh)", 2, 3, 5);
    PROBE("deconv(3, 3, tanh, stride=2)", 2, 3, 3);
    PROBE("deconv(3, 2, tanh, stride=2)", 2, 4, 3);
    PROBE("deconv(2, 4, tanh, stride=2)", 2, 3, 3);
    PROBE("deconv(2, 1, tanh, stride=2)", 2, 3, 3); /* k < stride: outputs no kernel reaches */
    PROBE("deconv(3, 3, tanh, pad=valid)", 2, 3, 4);
    PROBE("deconv(3, 3, tanh, stride=2, pad=valid)", 2, 3, 3);
    PROBE("deconv(2, 2, tanh, stride=2, pad=valid, bias=0)", 2, 4, 4);
}

static void test_conv_grad_maxpool(void)
{
    PROBE("maxpool(2)", 2, 5, 5);            /* floor: the last row and column are dropped */
    PROBE("maxpool(2, ceil=true)", 2, 5, 5); /* ceil: clipped last windows */
    PROBE("maxpool(3, stride=2)", 2, 7, 7);  /* overlapping windows */
    PROBE("maxpool(3, 2, ceil=1)", 2, 6, 7); /* overlapping and clipped */
    PROBE("maxpool(2, stride=3)", 2, 7, 7);  /* gaps between windows */
    PROBE("maxpool(2, stride=3, ceil=true)", 2, 7, 8);
    size_t np = CHECK_MODEL("conv + maxpool",
                            "[model]\nencoder = conv(3, 3, tanh), maxpool(2, ceil=1, name=code)\n"
                            "decoder = flatten, dense(50)\n",
                            2, 5, 5);
    CU_ASSERT_EQUAL(np, (3 * 18 + 3) + (27 * 50 + 50));
    np = CHECK_MODEL("conv + maxpool(3, 2)",
                     "[model]\nencoder = conv(2, 3, tanh), maxpool(3, 2), "
                     "conv(2, 2, tanh, name=code)\ndecoder = flatten, dense(49)\n",
                     1, 7, 7);
    CU_ASSERT_EQUAL(np, (2 * 9 + 2) + (2 * 8 + 2) + (18 * 49 + 49));
}

static void test_conv_grad_upsample(void)
{
    PROBE("upsample(2)", 2, 3, 4);
    PROBE("upsample(3)", 1, 2, 3);
    PROBE("upsample(1)", 2, 2, 2);
    size_t np = CHECK_MODEL("conv + upsample + conv",
                            "[model]\nencoder = conv(2, 3, tanh, stride=2, name=code)\n"
                            "decoder = upsample(2), conv(1, 3)\n",
                            1, 6, 6);
    CU_ASSERT_EQUAL(np, (2 * 9 + 2) + (18 + 1));
}

/* reshape's din carries the gradient to the dense layer before it. */
static void test_conv_grad_reshape(void)
{
    PROBE("reshape(3, 2, 2)", 12, 1, 1);
    PROBE("reshape(1, 3, 4)", 2, 2, 3);
    size_t np =
        CHECK_MODEL("dense + reshape + conv",
                    "[model]\nencoder = flatten, dense(18, tanh), reshape(2, 3, 3), conv(2, 2, tanh), "
                    "flatten, dense(4, tanh, name=code)\ndecoder = dense(18, tanh), reshape(2, 3, 3), "
                    "deconv(1, 3, tanh, stride=2)\n",
                    1, 6, 6);
    CU_ASSERT_EQUAL(np, (36 * 18 + 18) + (2 * 8 + 2) + (18 * 4 + 4) + (4 * 18 + 18) + (2 * 9 + 1));
}

/* ---- whole conv autoencoders ------------------------------------------------------------ */

static void test_conv_model_autoencoder_grad(void)
{
    const char *ini =
        "[model]\nencoder = conv(3, 3, tanh), maxpool(2), conv(2, 3, tanh, stride=2, name=code)\n"
        "decoder = deconv(3, 3, tanh, stride=2), upsample(2), conv(1, 3, sigmoid)\n";
    size_t np = CHECK_MODEL("conv autoencoder", ini, 1, 8, 8);
    CU_ASSERT_EQUAL(np, (3 * 9 + 3) + (2 * 27 + 2) + (2 * 27 + 3) + (3 * 9 + 1));
    ini = "[model]\nencoder = conv(4, 3, relu, stride=2, bias=0), conv(4, 3, elu), maxpool(2, ceil=1),\n"
          "  flatten, dense(6, tanh, name=code)\n"
          "decoder = dense(16, elu), reshape(4, 2, 2), deconv(2, 3, relu, stride=2, pad=valid),\n"
          "  upsample(2), conv(1, 5, sigmoid, pad=valid)\n";
    np = CHECK_MODEL("conv autoencoder (relu, elu, valid)", ini, 1, 6, 6);
    CU_ASSERT_EQUAL(np, (4 * 9) + (4 * 36 + 4) + (16 * 6 + 6) + (6 * 16 + 16) + (4 * 18 + 2) + (2 * 25 + 1));
}

/* conv works through the local batch in chunks that fit a core's cache: a layer big enough for
 * chunks of 2 samples (3 x 32 x 32 -> 64 filters: ~373 KB of columns and rows a sample) gives, for a
 * batch of 3 (chunks 2 + 1), the outputs, input gradients and summed weight / bias gradients of the
 * samples run one at a time. */
#define CHUNK_N 3
#define CHUNK_TOL 1e-5
static void test_conv_chunks_match_samples(void)
{
    ae_shape in = S(3, 32, 32);
    ae_model *m = build_layer("conv(64, 3, relu)", in);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 11, 0, 0);
    tu_init_params(&SETUP, m, &r);
    ae_layer *l = &m->layers[0];
    size_t is = l->in_size, os = l->out_size, np = l->n_params;
    CU_ASSERT_EQUAL_FATAL(os, (size_t)64 * 32 * 32);
    float *x = malloc(sizeof(float) * CHUNK_N * is), *dout = malloc(sizeof(float) * CHUNK_N * os);
    float *y = malloc(sizeof(float) * CHUNK_N * os), *y1 = malloc(sizeof(float) * os);
    float *din = malloc(sizeof(float) * CHUNK_N * is), *din1 = malloc(sizeof(float) * is);
    float *dw = malloc(sizeof(float) * np), *d = malloc(sizeof(float) * CHUNK_N * os);
    CU_ASSERT_FATAL(x && dout && y && y1 && din && din1 && dw && d);
    tu_fill_uniform(&r, x, CHUNK_N * is, -1.0f, 1.0f);
    tu_fill_uniform(&r, dout, CHUNK_N * os, -1.0f, 1.0f);
    ae_ctx ctx = {0};
    ctx.training = 1;
    l->kind->forward(l, &ctx, x, y, CHUNK_N);
    memset(l->dW, 0, sizeof(float) * np); /* dW then db: one block of the gradient buffer */
    memcpy(d, dout, sizeof(float) * CHUNK_N * os);
    l->kind->backward(l, &ctx, x, y, d, din, CHUNK_N);
    memcpy(dw, l->dW, sizeof(float) * np);
    memset(l->dW, 0, sizeof(float) * np);
    double worst_y = 0, worst_din = 0, scale_y = 0, scale_din = 0;
    for (int i = 0; i < CHUNK_N; i++) {
        l->kind->forward(l, &ctx, x + i * is, y1, 1);
        for (size_t k = 0; k < os; k++) {
            worst_y = fmax(worst_y, fabs((double)y1[k] - y[i * os + k]));
            scale_y = fmax(scale_y, fabs((double)y1[k]));
        }
        memcpy(d, dout + i * os, sizeof(float) * os);
        l->kind->backward(l, &ctx, x + i * is, y1, d, din1, 1);
        for (size_t k = 0; k < is; k++) {
            worst_din = fmax(worst_din, fabs((double)din1[k] - din[i * is + k]));
            scale_din = fmax(scale_din, fabs((double)din1[k]));
        }
    }
    double worst_w = 0, scale_w = 0;
    for (size_t k = 0; k < np; k++) {
        worst_w = fmax(worst_w, fabs((double)dw[k] - l->dW[k]));
        scale_w = fmax(scale_w, fabs((double)dw[k]));
    }
    CU_ASSERT(scale_y > 0.1 && scale_din > 0.1 && scale_w > 1.0); /* real values were compared */
    CU_ASSERT(worst_y <= CHUNK_TOL * scale_y);
    CU_ASSERT(worst_din <= CHUNK_TOL * scale_din);
    CU_ASSERT(worst_w <= CHUNK_TOL * scale_w);
    if (worst_y > CHUNK_TOL * scale_y || worst_din > CHUNK_TOL * scale_din || worst_w > CHUNK_TOL * scale_w)
        fprintf(stderr, "conv chunks: |dy| %.3g of %.3g, |din| %.3g of %.3g, |dW| %.3g of %.3g\n", worst_y,
                scale_y, worst_din, scale_din, worst_w, scale_w);
    free(x), free(dout), free(y), free(y1), free(din), free(din1), free(dw), free(d);
    ae_model_free(m);
}

/* ---- forward numbers ---------------------------------------------------------------------- */

static void check_values_at(unsigned line, const char *what, const float *got, const double *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int ok = fabs((double)got[i] - want[i]) <= FWD_TOL * fmax(1.0, fabs(want[i]));
        char msg[TU_MSG_MAX];
        snprintf(msg, sizeof msg, "%s[%zu] = %.9g, want %.9g", what, i, (double)got[i], want[i]);
        TU_ASSERT_AT(ok, line, msg);
    }
}
#define CHECK_VALUES(what, got, want)                                                                        \
    check_values_at(__LINE__, (what), (got), (want), sizeof(want) / sizeof(*(want)))

/* The 1x3x3 input 1..9 of the tiny forward checks. */
static const float X3[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* The model of one layer spec, its layer 0 given weights and biases (NULL: none) and run forward on x
 * (one sample) into m->act[0]. */
static ae_model *run_tiny(const char *layer, ae_shape in, const float *x, const float *w, size_t nw,
                          const float *b)
{
    ae_model *m = build_layer(layer, in);
    if (!m) return NULL;
    ae_layer *l = &m->layers[0];
    if (w) memcpy(l->W, w, sizeof(float) * nw);
    if (b) memcpy(l->b, b, sizeof(float) * (size_t)l->units);
    ae_ctx ctx = {0};
    l->kind->forward(l, &ctx, x, m->act[0], 1);
    return m;
}

/* Asserts that run_tiny builds the layer and that its n outputs are want. */
static void check_tiny_at(unsigned line, const char *what, const char *layer, ae_shape in, const float *x,
                          const float *w, size_t nw, const float *b, const double *want, size_t n)
{
    ae_model *m = run_tiny(layer, in, x, w, nw, b);
    TU_ASSERT_FATAL_AT(m != NULL, line, "model builds");
    check_values_at(line, what, m->act[0], want, n);
    ae_model_free(m);
}
#define CHECK_TINY(what, layer, in, x, w, nw, b, want)                             \
    check_tiny_at(__LINE__, (what), (layer), (in), (x), (w), (nw), (b), (want), \
                  sizeof(want) / sizeof(*(want)))

/* conv(2, 2, pad=valid) on x = [[1,2,3],[4,5,6],[7,8,9]], weights (filters x c*k*k, row-major):
 *   filter 0 = [[1, 0], [0, -1]], b = 0.5:   x[i][j] - x[i+1][j+1] + 0.5 = -4 + 0.5 everywhere
 *   filter 1 = [[0.5, 1], [-1, 2]], b = -1:  (0,0) 0.5 + 2 - 4 + 10 - 1 = 7.5,
 *                                            (0,1) 1 + 3 - 5 + 12 - 1 = 10,
 *                                            (1,0) 2 + 5 - 7 + 16 - 1 = 15,
 *                                            (1,1) 2.5 + 6 - 8 + 18 - 1 = 17.5
 * and with relu the first filter is all 0. */
static void test_conv_forward_values(void)
{
    static const float w[] = {1, 0, 0, -1, 0.5f, 1, -1, 2};
    static const float b[] = {0.5f, -1.0f};
    static const double lin[] = {-3.5, -3.5, -3.5, -3.5, 7.5, 10, 15, 17.5};
    static const double relu[] = {0, 0, 0, 0, 7.5, 10, 15, 17.5};
    ae_model *m = run_tiny("conv(2, 2, pad=valid)", S(1, 3, 3), X3, w, 8, b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->layers[0].out.c, 2);
    CU_ASSERT_EQUAL(m->layers[0].out.h, 2);
    CU_ASSERT_EQUAL(m->layers[0].out.w, 2);
    CHECK_VALUES("conv valid", m->act[0], lin);
    ae_model_free(m);
    CHECK_TINY("conv valid relu", "conv(2, 2, relu, pad=valid)", S(1, 3, 3), X3, w, 8, b, relu);
}

/* conv(1, 2, bias=0), 'same', W = [[1, 2], [3, 4]] on the same x: TF pads the odd pixel at the bottom
 * and right, so y[i][j] = x[i][j] + 2 x[i][j+1] + 3 x[i+1][j] + 4 x[i+1][j+1] with zeros past the edge:
 *   [[1+4+12+20, 2+6+15+24, 3+18], [4+10+21+32, 5+12+24+36, 6+27], [7+16, 8+18, 9]]
 * With stride 2 (out 2x2, total padding 1, again at the bottom / right) it is y[0][0], y[0][2], y[2][0],
 * y[2][2] of that. */
static void test_conv_forward_same_values(void)
{
    static const float w[] = {1, 2, 3, 4};
    static const double s1[] = {37, 47, 21, 67, 77, 33, 23, 26, 9};
    static const double s2[] = {37, 21, 23, 9};
    ae_model *m = run_tiny("conv(1, 2, bias=0)", S(1, 3, 3), X3, w, 4, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->layers[0].pad_top, 0);
    CHECK_VALUES("conv same", m->act[0], s1);
    ae_model_free(m);
    CHECK_TINY("conv same stride 2", "conv(1, 2, stride=2, bias=0)", S(1, 3, 3), X3, w, 4, NULL, s2);
}

/* maxpool(2, ceil) on a 5x5 input: 3x3 windows with the last row / column of windows clipped to one
 * input row / column; floor mode drops them. maxpool(3, stride 2): the 8 at (2, 1) wins two windows,
 * so its input gradient is the sum of both. */
static const float POOL_X[] = {1, 3, 2, 0, 5, 4, 0, 1, 7, 2, 2, 8, 3, 3, 1, 0, 1, 6, 2, 9, 5, 2, 1, 4, 3};

static void test_conv_maxpool_values(void)
{
    static const double ceil_out[] = {4, 7, 5, 8, 6, 9, 5, 4, 3};
    static const double floor_out[] = {4, 7, 8, 6};
    static const double over_out[] = {8, 7, 8, 9};
    /* d/dx of the sum of the outputs: 1 where a window takes its maximum, 2 for the shared one */
    static const double over_din[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0,
                                      0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0};
    float dout[9], din[25];
    CHECK_TINY("maxpool ceil", "maxpool(2, ceil=true)", S(1, 5, 5), POOL_X, NULL, 0, NULL, ceil_out);
    CHECK_TINY("maxpool floor", "maxpool(2)", S(1, 5, 5), POOL_X, NULL, 0, NULL, floor_out);
    ae_model *m = run_tiny("maxpool(3, stride=2)", S(1, 5, 5), POOL_X, NULL, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CHECK_VALUES("maxpool 3/2", m->act[0], over_out);
    for (int i = 0; i < 4; i++) dout[i] = 1.0f;
    ae_ctx ctx = {0};
    m->layers[0].kind->backward(&m->layers[0], &ctx, POOL_X, m->act[0], dout, din, 1);
    CHECK_VALUES("maxpool 3/2 din", din, over_din);
    ae_model_free(m);
}

/* upsample(2) of [[1, 2], [3, 4]] (two channels, the second negated); its backward sums each 2x2
 * block of dout = 0..31. */
static void test_conv_upsample_values(void)
{
    static const float x[] = {1, 2, 3, 4, -1, -2, -3, -4};
    static const double want[] = {1,  1,  2,  2,  1,  1,  2,  2,  3,  3,  4,  4,  3,  3,  4,  4,
                                  -1, -1, -2, -2, -1, -1, -2, -2, -3, -3, -4, -4, -3, -3, -4, -4};
    static const double din_want[] = {0 + 1 + 4 + 5,     2 + 3 + 6 + 7,     8 + 9 + 12 + 13,
                                      10 + 11 + 14 + 15, 16 + 17 + 20 + 21, 18 + 19 + 22 + 23,
                                      24 + 25 + 28 + 29, 26 + 27 + 30 + 31};
    float dout[32], din[8];
    ae_model *m = run_tiny("upsample(2)", S(2, 2, 2), x, NULL, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CHECK_VALUES("upsample", m->act[0], want);
    for (int i = 0; i < 32; i++) dout[i] = (float)i;
    ae_ctx ctx = {0};
    m->layers[0].kind->backward(&m->layers[0], &ctx, x, m->act[0], dout, din, 1);
    CHECK_VALUES("upsample din", din, din_want);
    ae_model_free(m);
}

/* deconv of x = [[1, 2], [3, 4]], one filter, no bias:
 *   out[oy][ox] += x[iy][ix] K[oy - s iy + p][ox - s ix + p]
 *   K = [[1, 2], [3, 4]], stride 2, valid: each input stamps x K, side by side (4x4)
 *   the same K, stride 1, valid: the stamps overlap (3x3): e.g. centre 1*4 + 2*3 + 3*2 + 4*1 = 20
 *   K = ones(3x3), stride 2, same: out 4x4, total padding k - s = 1 at the bottom / right (p = 0):
 *   out row / column 0 and 1 take input 0, 2 takes inputs 0 and 1, 3 takes input 1. */
static void test_conv_deconv_values(void)
{
    static const float x[] = {1, 2, 3, 4};
    static const float k2[] = {1, 2, 3, 4};
    static const float ones[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    static const double s2[] = {1, 2, 2, 4, 3, 4, 6, 8, 3, 6, 4, 8, 9, 12, 12, 16};
    static const double s1[] = {1, 4, 4, 6, 20, 16, 9, 24, 16};
    static const double same[] = {1, 1, 3, 2, 1, 1, 3, 2, 4, 4, 10, 6, 3, 3, 7, 4};
    CHECK_TINY("deconv stride 2 valid", "deconv(1, 2, stride=2, pad=valid, bias=0)", S(1, 2, 2), x, k2, 4,
               NULL, s2);
    CHECK_TINY("deconv stride 1 valid", "deconv(1, 2, pad=valid, bias=0)", S(1, 2, 2), x, k2, 4, NULL, s1);
    CHECK_TINY("deconv stride 2 same", "deconv(1, 3, stride=2, bias=0)", S(1, 2, 2), x, ones, 9, NULL, same);
}

/* ---- against naive loops ------------------------------------------------------------------ */

typedef struct geom_case {
    int c, h, w, f, k, s, valid;
} geom_case;

static const geom_case REF_CASES[] = {
    {3, 7, 7, 4, 3, 1, 0},   {3, 8, 6, 5, 3, 2, 0}, {2, 9, 9, 3, 5, 2, 1},
    {1, 6, 7, 2, 2, 1, 0},   {4, 5, 5, 6, 1, 1, 1}, {2, 10, 10, 3, 4, 3, 0},
    {3, 12, 11, 8, 3, 2, 1}, {2, 2, 3, 3, 4, 1, 0}, {2, 6, 6, 2, 3, 3, 1},
};
#define N_REF_CASES (sizeof REF_CASES / sizeof REF_CASES[0])

/* TF geometry from the formulas, independent of the layer: out size and top/left padding of one axis. */
static void tf_axis(int in, int k, int s, int valid, int *out, int *pad)
{
    if (valid) {
        *out = (in - k) / s + 1;
        *pad = 0;
    } else {
        *out = (in + s - 1) / s;
        int total = (*out - 1) * s + k - in;
        *pad = total > 0 ? total / 2 : 0;
    }
}

/* y[n][f][oy][ox] = b[f] + sum_{c, ki, kj} W[f][c][ki][kj] x[n][c][oy s - pt + ki][ox s - pl + kj], in
 * double, seven nested loops; and its adjoints dW = sum dy x, dx = sum dy W. */
static void naive_conv(const geom_case *g, int n, const float *x, const float *w, const float *b, int oh,
                       int ow, int pt, int pl, const float *dy, double *y, double *dw, double *dx)
{
    int kk = g->k * g->k, ck = g->c * kk;
    for (int smp = 0; smp < n; smp++)
        for (int f = 0; f < g->f; f++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    size_t o = (((size_t)smp * g->f + f) * oh + oy) * ow + ox;
                    double acc = b[f];
                    for (int c = 0; c < g->c; c++)
                        for (int ki = 0; ki < g->k; ki++)
                            for (int kj = 0; kj < g->k; kj++) {
                                int iy = oy * g->s - pt + ki, ix = ox * g->s - pl + kj;
                                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                                size_t i = (((size_t)smp * g->c + c) * g->h + iy) * g->w + ix;
                                size_t wi = (size_t)f * ck + (size_t)c * kk + (size_t)ki * g->k + kj;
                                acc += (double)w[wi] * x[i];
                                dw[wi] += (double)dy[o] * x[i];
                                dx[i] += (double)dy[o] * w[wi];
                            }
                    y[o] = acc;
                }
}

static double max_abs_diff(const float *a, const double *b, size_t n)
{
    double d = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* conv forward, dW and din against the naive loops for several geometries, on random data, with
 * each algorithm (im2col + sgemm, direct loops). */
static void test_conv_reference_direct(void)
{
    static const char *const algos[] = {"im2col", "direct"};
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 4, 0, 0);
    for (size_t ai = 0; ai < 2 * N_REF_CASES; ai++) {
        size_t ci = ai % N_REF_CASES;
        const geom_case *g = &REF_CASES[ci];
        char layer[128];
        snprintf(layer, sizeof layer, "conv(%d, %d, stride=%d, pad=%s, algo=%s)", g->f, g->k, g->s,
                 g->valid ? "valid" : "same", algos[ai / N_REF_CASES]);
        ae_shape in = {g->c, g->h, g->w};
        ae_model *m = build_layer(layer, in);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        tu_init_params(&SETUP, m, NULL);
        ae_layer *l = &m->layers[0];
        int oh, ow, pt, pl;
        tf_axis(g->h, g->k, g->s, g->valid, &oh, &pt);
        tf_axis(g->w, g->k, g->s, g->valid, &ow, &pl);
        CU_ASSERT(l->out.c == g->f && l->out.h == oh && l->out.w == ow);
        size_t nx = (size_t)N_SAMPLES * l->in_size, ny = (size_t)N_SAMPLES * l->out_size;
        size_t nw = (size_t)g->f * g->c * g->k * g->k;
        float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny),
              *dy = malloc(sizeof(float) * ny);
        float *dx = malloc(sizeof(float) * nx), *dy_copy = malloc(sizeof(float) * ny);
        double *ry = calloc(ny, sizeof(double)), *rdw = calloc(nw, sizeof(double)),
               *rdx = calloc(nx, sizeof(double));
        CU_ASSERT_FATAL(x && y && dy && dx && dy_copy && ry && rdw && rdx);
        tu_fill_uniform(&r, x, nx, -1.0f, 1.0f);
        tu_fill_uniform(&r, dy, ny, -1.0f, 1.0f);
        memcpy(dy_copy, dy, sizeof(float) * ny);
        naive_conv(g, N_SAMPLES, x, l->W, l->b, oh, ow, pt, pl, dy, ry, rdw, rdx);
        ae_ctx ctx = {0};
        l->kind->forward(l, &ctx, x, y, N_SAMPLES);
        memset(m->grads, 0, sizeof(float) * m->n_params);
        l->kind->backward(l, &ctx, x, y, dy_copy, dx, N_SAMPLES);
        double ey = max_abs_diff(y, ry, ny), ew = max_abs_diff(l->dW, rdw, nw),
               ex = max_abs_diff(dx, rdx, nx);
        if (tu_verbose() || ey > REF_TOL || ew > REF_TOL || ex > REF_TOL)
            fprintf(stderr, "\n    %s on %dx%dx%d: max |diff| y %.2e dW %.2e dx %.2e", layer, g->c, g->h,
                    g->w, ey, ew, ex);
        CU_ASSERT(ey <= REF_TOL);
        CU_ASSERT(ew <= REF_TOL);
        CU_ASSERT(ex <= REF_TOL);
        free(x);
        free(y);
        free(dy);
        free(dx);
        free(dy_copy);
        free(ry);
        free(rdw);
        free(rdx);
        ae_model_free(m);
    }
}

/* deconv is the adjoint of conv: with the same weight array (conv: filters x c k k; deconv from those
 * filters back to c channels: in_c x out_c k k, the same layout), <conv(x), y> = <x, deconv(y)> when the
 * deconv's output has the conv's input size. Checked without bias and with a linear activation. */
static void test_conv_deconv_adjoint(void)
{
    ae_rng r;
    ae_rng_init(&r, SEED, AE_RNG_TEST, 5, 0, 0);
    for (size_t ci = 0; ci < N_REF_CASES; ci++) {
        const geom_case *g = &REF_CASES[ci];
        int oh, ow, pt, pl;
        tf_axis(g->h, g->k, g->s, g->valid, &oh, &pt);
        tf_axis(g->w, g->k, g->s, g->valid, &ow, &pl);
        int back_h = g->valid ? (oh - 1) * g->s + g->k : oh * g->s,
            back_w = g->valid ? (ow - 1) * g->s + g->k : ow * g->s;
        if (back_h != g->h || back_w != g->w) continue; /* the transpose would give another size */
        char cl[128], dl[128];
        snprintf(cl, sizeof cl, "conv(%d, %d, stride=%d, pad=%s, bias=0)", g->f, g->k, g->s,
                 g->valid ? "valid" : "same");
        snprintf(dl, sizeof dl, "deconv(%d, %d, stride=%d, pad=%s, bias=0)", g->c, g->k, g->s,
                 g->valid ? "valid" : "same");
        ae_model *mc = build_layer(cl, (ae_shape){g->c, g->h, g->w});
        ae_model *md = build_layer(dl, (ae_shape){g->f, oh, ow});
        CU_ASSERT_PTR_NOT_NULL_FATAL(mc);
        CU_ASSERT_PTR_NOT_NULL_FATAL(md);
        ae_layer *lc = &mc->layers[0], *ld = &md->layers[0];
        CU_ASSERT_EQUAL_FATAL(lc->n_params, ld->n_params);
        CU_ASSERT(ld->out.c == g->c && ld->out.h == g->h && ld->out.w == g->w);
        tu_init_params(&SETUP, mc, NULL);
        memcpy(ld->W, lc->W, sizeof(float) * lc->n_params);
        size_t nx = (size_t)N_SAMPLES * lc->in_size, ny = (size_t)N_SAMPLES * lc->out_size;
        float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
        float *cx = malloc(sizeof(float) * ny), *dy = malloc(sizeof(float) * nx);
        CU_ASSERT_FATAL(x && y && cx && dy);
        tu_fill_uniform(&r, x, nx, -1.0f, 1.0f);
        tu_fill_uniform(&r, y, ny, -1.0f, 1.0f);
        ae_ctx ctx = {0};
        lc->kind->forward(lc, &ctx, x, cx, N_SAMPLES);
        ld->kind->forward(ld, &ctx, y, dy, N_SAMPLES);
        double a = 0.0, b = 0.0;
        for (size_t i = 0; i < ny; i++) a += (double)cx[i] * y[i];
        for (size_t i = 0; i < nx; i++) b += (double)x[i] * dy[i];
        if (tu_verbose()) fprintf(stderr, "\n    %s / %s: <conv x, y> %.9g <x, deconv y> %.9g", cl, dl, a, b);
        CU_ASSERT(fabs(a - b) <= REF_TOL * fmax(1.0, fabs(a)));
        free(x);
        free(y);
        free(cx);
        free(dy);
        ae_model_free(mc);
        ae_model_free(md);
    }
}

/* ---- shapes -------------------------------------------------------------------------------- */

static void check_shape_at(unsigned line, const char *layer, ae_shape in, ae_shape want, size_t params)
{
    ae_layer l;
    ae_error err = {0};
    ae_status st = setup_one(layer, in, &l, &err);
    char msg[TU_MSG_MAX];
    snprintf(msg, sizeof msg,
             "%s on %dx%dx%d -> %dx%dx%d with %zu params (got status %d '%s', %dx%dx%d, %zu)", layer, in.c,
             in.h, in.w, want.c, want.h, want.w, params, (int)st, err.msg, l.out.c, l.out.h, l.out.w,
             l.n_params);
    int ok = st == AE_OK && l.out.c == want.c && l.out.h == want.h && l.out.w == want.w &&
             l.out_size == ae_shape_size(&want) && l.n_params == params;
    TU_ASSERT_AT(ok, line, msg);
}
#define CHECK_SHAPE(layer, in, want, params) check_shape_at(__LINE__, (layer), (in), (want), (params))

static void test_conv_shapes(void)
{
    CHECK_SHAPE("conv(4, 3)", S(1, 28, 28), S(4, 28, 28), 4 * 9 + 4);    /* same keeps the size */
    CHECK_SHAPE("conv(4, 3, stride=2)", S(1, 28, 28), S(4, 14, 14), 40); /* ceil(28 / 2) */
    CHECK_SHAPE("conv(4, 3, stride=2)", S(1, 7, 7), S(4, 4, 4), 40);     /* ceil(7 / 2) */
    CHECK_SHAPE("conv(4, 3, pad=valid)", S(1, 16, 16), S(4, 14, 14), 40);
    CHECK_SHAPE("conv(4, 3, stride=2, pad=valid)", S(2, 7, 8), S(4, 3, 3), 4 * 18 + 4);
    CHECK_SHAPE("conv(4, 5, bias=0)", S(3, 2, 2), S(4, 2, 2), 4 * 75); /* k > input under same */
    CHECK_SHAPE("conv(4, 1)", S(10, 1, 1), S(4, 1, 1), 44);            /* a flat vector */
    CHECK_SHAPE("maxpool(2)", S(3, 28, 28), S(3, 14, 14), 0);
    CHECK_SHAPE("maxpool(2)", S(3, 7, 7), S(3, 3, 3), 0);
    CHECK_SHAPE("maxpool(2, ceil=true)", S(3, 7, 7), S(3, 4, 4), 0);
    CHECK_SHAPE("maxpool(3, stride=2)", S(1, 7, 7), S(1, 3, 3), 0);
    CHECK_SHAPE("maxpool(3, stride=2, ceil=1)", S(1, 6, 6), S(1, 3, 3), 0);
    CHECK_SHAPE("maxpool(1, stride=4, ceil=1)", S(1, 4, 5), S(1, 1, 2), 0); /* a window must start inside */
    CHECK_SHAPE("upsample(2)", S(8, 4, 4), S(8, 8, 8), 0);
    CHECK_SHAPE("upsample(3)", S(2, 1, 2), S(2, 3, 6), 0);
    CHECK_SHAPE("deconv(4, 3, stride=2)", S(2, 7, 7), S(4, 14, 14), 2 * 4 * 9 + 4); /* same: in * stride */
    CHECK_SHAPE("deconv(4, 3, stride=2, pad=valid)", S(2, 7, 7), S(4, 15, 15), 76); /* (in - 1) s + k */
    CHECK_SHAPE("deconv(4, 3, pad=valid)", S(2, 7, 6), S(4, 9, 8), 76);
    CHECK_SHAPE("deconv(1, 2, stride=3)", S(2, 2, 2), S(1, 6, 6), 2 * 4 + 1);
    CHECK_SHAPE("reshape(1, 28, 28)", S(784, 1, 1), S(1, 28, 28), 0);
    CHECK_SHAPE("reshape(c=4, h=2, w=2)", S(2, 2, 4), S(4, 2, 2), 0);
    ae_layer l;
    ae_error err = {0};
    CU_ASSERT_EQUAL(setup_one("conv(4, 4, stride=2)", (ae_shape){1, 7, 6}, &l, &err), AE_OK);
    /* total padding (4 - 1) 2 + 4 - 7 = 3 rows: 1 on top, 2 below; (3 - 1) 2 + 4 - 6 = 2 columns: 1 left */
    CU_ASSERT_EQUAL(l.pad_top, 1);
    CU_ASSERT_EQUAL(l.pad_left, 1);
    CU_ASSERT_EQUAL(l.flops, 2.0 * 4 * 16 * 4 * 3);
    CU_ASSERT_EQUAL(setup_one("deconv(4, 5, stride=2)", (ae_shape){3, 4, 4}, &l, &err), AE_OK);
    CU_ASSERT_EQUAL(l.pad_top, 1); /* k - s = 3: 1 before, 2 after */
    CU_ASSERT_EQUAL(l.flops, 2.0 * 3 * 4 * 25 * 16);
}

/* The Keras convolutional autoencoder (blog.keras.io, "Building autoencoders in Keras"), with 'same'
 * max-pooling as ceil mode: 28 -> 14 -> 7 -> 4, then 4 -> 8 -> 16, a valid 3x3 conv 16 -> 14, and 28. */
static void test_conv_keras_autoencoder(void)
{
    const char *ini =
        "[model]\n"
        "encoder = conv(16, 3, relu), maxpool(2, ceil=true), conv(8, 3, relu), maxpool(2, ceil=true),\n"
        "  conv(8, 3, relu), maxpool(2, ceil=true, name=code)\n"
        "decoder = conv(8, 3, relu), upsample(2), conv(8, 3, relu), upsample(2),\n"
        "  conv(16, 3, relu, pad=valid), upsample(2), conv(1, 3, sigmoid)\n"
        "[loss]\nkind = bce\n";
    static const ae_shape want[] = {{16, 28, 28}, {16, 14, 14}, {8, 14, 14}, {8, 7, 7}, {8, 7, 7},
                                    {8, 4, 4},    {8, 4, 4},    {8, 8, 8},   {8, 8, 8}, {8, 16, 16},
                                    {16, 14, 14}, {16, 28, 28}, {1, 28, 28}};
    static const size_t params[] = {160, 0, 1160, 0, 584, 0, 584, 0, 584, 0, 1168, 0, 145};
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){1, 28, 28});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL_FATAL(m->n_layers, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < m->n_layers; i++) {
        const ae_layer *l = &m->layers[i];
        CU_ASSERT(l->out.c == want[i].c && l->out.h == want[i].h && l->out.w == want[i].w);
        CU_ASSERT_EQUAL(l->n_params, params[i]);
    }
    CU_ASSERT_EQUAL(m->n_params, 4385);
    CU_ASSERT_EQUAL(m->fused, 1); /* bce from the logits of the sigmoid conv */
    CU_ASSERT_EQUAL(m->code_size, 8 * 4 * 4);
    /* flops of the first conv: 2 x 16 filters x 9 x 784 positions */
    CU_ASSERT_EQUAL(m->layers[0].flops, 2.0 * 16 * 9 * 784);
    ae_model_free(m);
}

/* Keras fans: conv kernel (k, k, c, filters): fan_in = c k^2; deconv kernel (k, k, filters, c): fan_in =
 * filters k^2. he_normal's variance 2 / fan_in, measured over 16 x 32 x 9 = 4608 weights each (a
 * standard error of 2% of the variance): 16 x 9 for both layers below, where the other fan (32 x 9)
 * would halve it. */
#define INIT_VAR_TOL 0.1
#define INIT_FAN_IN (16.0 * 9.0)
static void test_conv_init_fans(void)
{
    const char *ini =
        "[model]\ninit = he_normal\nencoder = conv(32, 3, name=code)\ndecoder = deconv(16, 3)\n";
    ae_model *m = tu_build(&SETUP, ini, (ae_shape){16, 5, 5});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_model_init_params(m, SEED);
    for (int i = 0; i < 2; i++) {
        const ae_layer *l = &m->layers[i];
        size_t nw = l->n_params - (size_t)l->units;
        double var = 0.0, fan_in = INIT_FAN_IN;
        for (size_t j = 0; j < nw; j++) var += (double)l->W[j] * l->W[j];
        var /= (double)nw;
        CU_ASSERT(fabs(var / (2.0 / fan_in) - 1.0) <= INIT_VAR_TOL);
        for (int j = 0; j < l->units; j++) CU_ASSERT_EQUAL(l->b[j], 0.0f);
    }
    ae_model_free(m);
    /* glorot_uniform: limit sqrt(6 / (fan_in + fan_out)) = sqrt(6 / (2 * 9 + 4 * 9)) */
    m = tu_build(&SETUP, "[model]\nencoder = conv(4, 3, name=code)\ndecoder = conv(2, 3)\n",
                 (ae_shape){2, 4, 4});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_model_init_params(m, SEED);
    double limit = sqrt(6.0 / (2 * 9 + 4 * 9)), mx = 0.0;
    for (int j = 0; j < 4 * 18; j++) mx = fmax(mx, fabs((double)m->layers[0].W[j]));
    CU_ASSERT(mx <= limit && mx >= 0.9 * limit);
    ae_model_free(m);
    /* torch: weights and biases U(+-1/sqrt(fan_in)), fan_in = 16 x 9 for both kinds (as above): the
     * variance 1 / (3 fan_in), the biases inside the limit and not 0 */
    m = tu_build(&SETUP, "[model]\ninit = torch\nencoder = conv(32, 3, name=code)\ndecoder = deconv(16, 3)\n",
                 (ae_shape){16, 5, 5});
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    ae_model_init_params(m, SEED);
    limit = 1.0 / sqrt(INIT_FAN_IN);
    for (int i = 0; i < 2; i++) {
        const ae_layer *l = &m->layers[i];
        size_t nw = l->n_params - (size_t)l->filters;
        double var = 0.0, bmax = 0.0;
        for (size_t j = 0; j < nw; j++) var += (double)l->W[j] * l->W[j];
        var /= (double)nw;
        CU_ASSERT(fabs(var / (limit * limit / 3.0) - 1.0) <= INIT_VAR_TOL);
        for (int j = 0; j < l->filters; j++) bmax = fmax(bmax, fabs((double)l->b[j]));
        CU_ASSERT(bmax <= limit && bmax >= 0.5 * limit);
    }
    ae_model_free(m);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void check_error_at(unsigned line, const char *layer, ae_shape in, const char *want)
{
    ae_layer l;
    ae_error err = {0};
    ae_status st = setup_one(layer, in, &l, &err);
    char msg[TU_MSG_MAX];
    snprintf(msg, sizeof msg, "%s on %dx%dx%d: error '%s' names " ORIGIN ":2 and says '%s'", layer, in.c,
             in.h, in.w, err.msg, want);
    int ok = st != AE_OK && strstr(err.msg, ORIGIN ":2") && strstr(err.msg, want);
    TU_ASSERT_AT(ok, line, msg);
}
#define CHECK_ERROR(layer, in, want) check_error_at(__LINE__, (layer), (in), (want))

static void test_conv_errors(void)
{
    CHECK_ERROR("conv(4, 5, pad=valid)", S(1, 3, 3), "kernel 5 larger than the 3x3 input");
    CHECK_ERROR("conv(4, 3, pad=full)", S(1, 3, 3), "pad must be same or valid");
    CHECK_ERROR("deconv(4, 3, pad=full)", S(1, 3, 3), "pad must be same or valid");
    CHECK_ERROR("conv(4)", S(1, 3, 3), "missing argument 'ksize'");
    CHECK_ERROR("conv(ksize=3)", S(1, 3, 3), "missing argument 'filters'");
    CHECK_ERROR("conv(0, 3)", S(1, 3, 3), "filters = '0'");
    CHECK_ERROR("conv(4, 3, stride=0)", S(1, 3, 3), "stride = '0'");
    CHECK_ERROR("conv(4, 3, relu, 1)", S(1, 3, 3), "at most 3 positional");
    CHECK_ERROR("conv(4, 3, dilation=2)", S(1, 3, 3), "unknown argument 'dilation'");
    CHECK_ERROR("conv(4, 3, act=swish)", S(1, 3, 3), "unknown activation 'swish'");
    CHECK_ERROR("conv(4, 3, init=xavier)", S(1, 3, 3), "unknown init 'xavier'");
    CHECK_ERROR("conv(4, 3, bias=2)", S(1, 3, 3), "bias = '2'");
    CHECK_ERROR("conv(4, 3, algo=fft)", S(1, 3, 3), "algo must be auto, im2col or direct, not 'fft'");
    CHECK_ERROR("deconv(4, 3, algo=direct)", S(1, 3, 3), "unknown argument 'algo'");
    CHECK_ERROR("maxpool(5)", S(2, 3, 4), "pool size 5 larger than the 3x4 input");
    CHECK_ERROR("maxpool(2, ceil=maybe)", S(2, 4, 4), "ceil = 'maybe' must be true or false");
    CHECK_ERROR("maxpool()", S(2, 4, 4), "missing argument 'size'");
    CHECK_ERROR("maxpool(2, stride=0)", S(2, 4, 4), "stride = '0'");
    CHECK_ERROR("upsample", S(2, 4, 4), "missing argument 'factor'");
    CHECK_ERROR("upsample(0)", S(2, 4, 4), "factor = '0'");
    CHECK_ERROR("reshape(2, 3, 4)", S(2, 3, 3), "reshape(2, 3, 4) has 24 values, the 2x3x3 input has 18");
    CHECK_ERROR("reshape(2, 9)", S(2, 3, 3), "missing argument 'w'");
    /* through the model: the message names the layer's line */
    ae_error err = {0};
    ae_model *m;
    tu_build_status(&SETUP, "[model]\nencoder = conv(4, 3, name=code)\ndecoder = conv(1, 7, pad=valid)\n",
                    (ae_shape){1, 5, 5}, &m, &err);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, ORIGIN ":3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "kernel 7 larger than the 5x5 input"));
    ae_model_free(m);
}

void ae_test_register_conv(void)
{
    CU_pSuite s = CU_add_suite("conv", NULL, NULL);
    if (!s) return;
    CU_add_test(s, "test_conv_grad_same_stride1", test_conv_grad_same_stride1);
    CU_add_test(s, "test_conv_grad_same_stride2", test_conv_grad_same_stride2);
    CU_add_test(s, "test_conv_grad_valid", test_conv_grad_valid);
    CU_add_test(s, "test_conv_grad_no_bias", test_conv_grad_no_bias);
    CU_add_test(s, "test_conv_grad_acts", test_conv_grad_acts);
    CU_add_test(s, "test_conv_grad_fused_bce", test_conv_grad_fused_bce);
    CU_add_test(s, "test_conv_grad_detects_error", test_conv_grad_detects_error);
    CU_add_test(s, "test_conv_grad_deconv", test_conv_grad_deconv);
    CU_add_test(s, "test_conv_grad_maxpool", test_conv_grad_maxpool);
    CU_add_test(s, "test_conv_grad_upsample", test_conv_grad_upsample);
    CU_add_test(s, "test_conv_grad_reshape", test_conv_grad_reshape);
    CU_add_test(s, "test_conv_model_autoencoder_grad", test_conv_model_autoencoder_grad);
    CU_add_test(s, "test_conv_forward_values", test_conv_forward_values);
    CU_add_test(s, "test_conv_forward_same_values", test_conv_forward_same_values);
    CU_add_test(s, "test_conv_maxpool_values", test_conv_maxpool_values);
    CU_add_test(s, "test_conv_upsample_values", test_conv_upsample_values);
    CU_add_test(s, "test_conv_deconv_values", test_conv_deconv_values);
    CU_add_test(s, "test_conv_reference_direct", test_conv_reference_direct);
    CU_add_test(s, "test_conv_deconv_adjoint", test_conv_deconv_adjoint);
    CU_add_test(s, "test_conv_shapes", test_conv_shapes);
    CU_add_test(s, "test_conv_keras_autoencoder", test_conv_keras_autoencoder);
    CU_add_test(s, "test_conv_init_fans", test_conv_init_fans);
    CU_add_test(s, "test_conv_errors", test_conv_errors);
    CU_add_test(s, "test_conv_chunks_match_samples", test_conv_chunks_match_samples);
}
