/* lstm.c - recurrent layer kinds over sequences stored row-major (steps x
 * features) per sample, shape (1, T, F); an image (1, 28, 28) is 28 steps of
 * 28 features. lstm (batched forward and full BPTT on OpenBLAS sgemm), repeat
 * (one vector to every step) and tdense (a dense layer on every step). */
#include "layer_kinds.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The four gates are column blocks of Wx (F x 4H), Wh (H x 4H) and b (4H), in this order. */
#define N_GATES 4
#define GATE_I 0              /* input gate, sigmoid */
#define GATE_F 1              /* forget gate, sigmoid */
#define GATE_G 2              /* candidate cell, tanh */
#define GATE_O 3              /* output gate, sigmoid */
#define FORGET_BIAS_INIT 1.0f /* Gers et al. 2000, Jozefowicz et al. 2015: keep the cell by default */
#define ORTHO_PASSES 2        /* Gram-Schmidt twice: orthogonal to float precision ("twice is enough") */
#define MAX_HIDDEN (1 << 20)  /* 4 x hidden must fit an int (sgemm dimensions) */
#define MAX_UNITS (1 << 24)
#define MAX_STEPS (1 << 20)
#define MAX_BATCH_ROWS (1 << 12) /* sgemm strides are n*T*4H ints: leave room for batches this large */

/* ---- shared helpers ----------------------------------------------------------- */

/* The sequence view of an input shape: (1, T, F) is T steps of F features; a flat vector (D, 1, 1) is
 * one step of D features. Anything else (several channels) must be reshaped first. */
static ae_status seq_dims(const ae_layer *l, const ae_layer_spec *ls, int *T, int *F, ae_error *err)
{
    const ae_shape *s = &l->in;
    if (s->c == 1) {
        *T = s->h;
        *F = s->w;
    } else if (s->h == 1 && s->w == 1) {
        *T = 1;
        *F = s->c;
    } else {
        return ae_error_set(err, AE_ERR_SHAPE,
                            "%s: %s needs a sequence input (1 x steps x features) or a flat vector, "
                            "got %dx%dx%d (reshape it first)",
                            ls->origin, ls->kind, s->c, s->h, s->w);
    }
    return AE_OK;
}

/* Steps of the input, as seq_dims decided at setup. */
static int in_steps(const ae_layer *l) { return l->in.c == 1 ? l->in.h : 1; }

/* Optional init = key (default: the [model] init the model put in l->init). */
static ae_status arg_init(const ae_layer_spec *ls, ae_init *out, ae_error *err)
{
    const char *v = ae_layer_spec_arg(ls, -1, "init");
    if (!v) return AE_OK;
    int i = ae_init_parse(v);
    if (i < 0)
        return ae_error_set(err, AE_ERR_CONFIG,
                            "%s: %s: unknown init '%s' (allowed: " AE_INIT_NAMES ")", ls->origin, ls->kind, v);
    *out = (ae_init)i;
    return AE_OK;
}

/* tdense is a dense layer over n*T rows of F features, and the lstm's input weights are initialised as
 * a dense F -> 4H weight: both run the dense kind itself on a view of the layer with in_size = F and
 * out_size = units (same W, b, dW, db, z, fused_out, act), so the two share one implementation. */
static ae_layer dense_view(const ae_layer *l, int F, int units, int use_bias)
{
    ae_layer v = *l;
    v.in = (ae_shape){F, 1, 1};
    v.in_size = (size_t)F;
    v.out = (ae_shape){units, 1, 1};
    v.out_size = (size_t)units;
    v.units = units;
    v.use_bias = use_bias;
    v.tie_name[0] = '\0';
    v.tied = NULL;
    return v;
}

static const ae_layer_kind *dense_kind(void) { return ae_layers_find("dense"); }

/* ---- lstm ------------------------------------------------------------------------ */

typedef struct lstm_dims {
    int T, F, H, G; /* steps, input features, hidden units, 4 * hidden */
} lstm_dims;

static lstm_dims lstm_dims_of(const ae_layer *l)
{
    lstm_dims d;
    d.T = in_steps(l);
    d.F = (int)(l->in_size / (size_t)d.T);
    d.G = l->units;
    d.H = d.G / N_GATES;
    return d;
}

/* The per-call workspace, kept from forward to backward, laid out by array over the call's n samples
 * (rows s*T + t): gates (n*T x 4H, the activated i, f, g, o), cell (n*T x H), tanh of the cell
 * (n*T x H) and, when seq = 0, the hidden states (n*T x H; with seq = 1 they are the output). */
typedef struct lstm_ws {
    float *gates, *cell, *tcell, *hid;
} lstm_ws;

static lstm_ws lstm_ws_of(const ae_layer *l, const lstm_dims *d, int n)
{
    size_t rows = (size_t)n * d->T;
    lstm_ws w;
    w.gates = l->ws;
    w.cell = w.gates + rows * d->G;
    w.tcell = w.cell + rows * d->H;
    w.hid = l->flag ? NULL : w.tcell + rows * d->H;
    return w;
}

static const char *const lstm_keys[] = {"hidden", "seq", "init", "name", NULL};

static ae_status lstm_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    int T = 0, F = 0, H, seq;
    if ((st = ae_layer_check_args(ls, 2, lstm_keys, err))) return st;
    if ((st = ae_layer_arg_int(ls, 0, "hidden", -1, 1, MAX_HIDDEN, &H, err))) return st;
    if ((st = ae_layer_arg_int(ls, 1, "seq", 0, 0, 1, &seq, err))) return st;
    if ((st = arg_init(ls, &l->init, err))) return st;
    if ((st = seq_dims(l, ls, &T, &F, err))) return st;
    size_t G = (size_t)N_GATES * H, steps = (size_t)T;
    if (steps * (G + F) > (size_t)INT_MAX / MAX_BATCH_ROWS)
        return ae_error_set(err, AE_ERR_SHAPE,
                            "%s: lstm: %d steps x (%d features + 4 x %d hidden) is too large", ls->origin, T,
                            F, H);
    l->units = (int)G;
    l->use_bias = 1;
    l->flag = seq;
    l->out = seq ? (ae_shape){1, T, H} : (ae_shape){1, 1, H};
    l->out_size = ae_shape_size(&l->out);
    l->n_params = ((size_t)F + H) * G + G;
    l->ws_per_sample = steps * (G + 2 * (size_t)H) + (seq ? 0 : steps * H);
    l->ws_fixed = (size_t)H; /* zeros: the cell before the first step */
    /* backward: dA (T x 4H), the shifted hidden states (T x H), dh and dc (H each) */
    l->scratch_per_sample = steps * (G + H) + 2 * (size_t)H;
    l->flops = 2.0 * (double)T * (double)G * ((double)F + H);
    return AE_OK;
}

/* Input weights as a dense F -> 4H layer (the init scheme of l->init, glorot_uniform by default: fans
 * F and 4H, as Keras), each gate's recurrent block Wh[:, gate] an orthogonal H x H matrix (modified
 * Gram-Schmidt on Gaussian rows: a uniformly random rotation), biases 0 except the forget gate's 1. */
static void lstm_init(ae_layer *l, ae_rng *rng)
{
    lstm_dims d = lstm_dims_of(l);
    ae_layer v = dense_view(l, d.F, d.G, 0);
    dense_kind()->init(&v, rng);
    float *Wh = l->W + (size_t)d.F * d.G;
    for (int k = 0; k < N_GATES; k++) {
        float *q = Wh + (size_t)k * d.H; /* row r of the block: q + r * G */
        for (int r = 0; r < d.H; r++)
            for (int c = 0; c < d.H; c++) q[(size_t)r * d.G + c] = ae_rng_normal(rng);
        for (int r = 0; r < d.H; r++) {
            float *qr = q + (size_t)r * d.G;
            for (int pass = 0; pass < ORTHO_PASSES; pass++) {
                for (int p = 0; p < r; p++) {
                    const float *qp = q + (size_t)p * d.G;
                    double dot = 0.0;
                    for (int c = 0; c < d.H; c++) dot += (double)qr[c] * qp[c];
                    for (int c = 0; c < d.H; c++) qr[c] = (float)(qr[c] - dot * qp[c]);
                }
            }
            double nrm = 0.0;
            for (int c = 0; c < d.H; c++) nrm += (double)qr[c] * qr[c];
            double inv = nrm > 0.0 ? 1.0 / sqrt(nrm) : 0.0;
            for (int c = 0; c < d.H; c++) qr[c] = (float)(qr[c] * inv);
        }
    }
    memset(l->b, 0, sizeof(float) * (size_t)d.G);
    for (int j = 0; j < d.H; j++) l->b[GATE_F * d.H + j] = FORGET_BIAS_INIT;
}

/* Elementwise loops run in spans of VEC_BLOCK values and then the rest: GCC's -O2 vectorizes only loops
 * whose trip count it knows (a span), and only with restrict pointers (one per gate block). */
#define VEC_BLOCK 16

/* tanh as a rational minimax approximation (Eigen's float tanh: odd numerator of degree 13 over even
 * denominator of degree 6, clamped where tanh rounds to +-1), within 3e-7 of tanh. Unlike libm's tanhf
 * and expf it vectorizes; those calls took most of the forward time. */
#define TANH_CLAMP 7.90531110763549805f
#define TANH_P13 -2.76076847742355e-16f
#define TANH_P11 2.00018790482477e-13f
#define TANH_P9 -8.60467152213735e-11f
#define TANH_P7 5.12229709037114e-08f
#define TANH_P5 1.48572235717979e-05f
#define TANH_P3 6.37261928875436e-04f
#define TANH_P1 4.89352455891786e-03f
#define TANH_Q6 1.19825839466702e-06f
#define TANH_Q4 1.18534705686654e-04f
#define TANH_Q2 2.26843463243900e-03f
#define TANH_Q0 4.89352518554385e-03f

static inline float tanh_fast(float x)
{
    float v = x < -TANH_CLAMP ? -TANH_CLAMP : x; /* ternaries, not fminf: they vectorize */
    v = v > TANH_CLAMP ? TANH_CLAMP : v;
    float v2 = v * v;
    float p =
        ((((((TANH_P13 * v2 + TANH_P11) * v2 + TANH_P9) * v2 + TANH_P7) * v2 + TANH_P5) * v2 + TANH_P3) * v2 +
         TANH_P1);
    float q = ((TANH_Q6 * v2 + TANH_Q4) * v2 + TANH_Q2) * v2 + TANH_Q0;
    return v * p / q;
}

/* sigmoid(x) = (1 + tanh(x / 2)) / 2, within 2e-7 (it saturates to 0 and 1 beyond |x| ~ 16, where a
 * gate is shut or open anyway). */
static inline float sigmoid_fast(float x) { return 0.5f + 0.5f * tanh_fast(0.5f * x); }

static inline void sigmoid_span(float *restrict x, int n)
{
    for (int k = 0; k < n; k++) x[k] = sigmoid_fast(x[k]);
}

static inline void tanh_span(float *restrict x, int n)
{
    for (int k = 0; k < n; k++) x[k] = tanh_fast(x[k]);
}

static inline void add_span(float *restrict x, const float *restrict y, int n)
{
    for (int k = 0; k < n; k++) x[k] += y[k];
}

static void sigmoid_inplace(float *x, int n)
{
    int k = 0;
    for (; k + VEC_BLOCK <= n; k += VEC_BLOCK) sigmoid_span(x + k, VEC_BLOCK);
    sigmoid_span(x + k, n - k);
}

static void tanh_inplace(float *x, int n)
{
    int k = 0;
    for (; k + VEC_BLOCK <= n; k += VEC_BLOCK) tanh_span(x + k, VEC_BLOCK);
    tanh_span(x + k, n - k);
}

static void add_inplace(float *x, const float *y, int n)
{
    int k = 0;
    for (; k + VEC_BLOCK <= n; k += VEC_BLOCK) add_span(x + k, y + k, VEC_BLOCK);
    add_span(x + k, y + k, n - k);
}

/* c = f * cp + i * g,  h = o * tanh(c) */
static inline void cell_span(const float *restrict ig, const float *restrict fg, const float *restrict gg,
                             const float *restrict og, const float *restrict cp, float *restrict c,
                             float *restrict tc, float *restrict h, int n)
{
    for (int j = 0; j < n; j++) {
        c[j] = fg[j] * cp[j] + ig[j] * gg[j];
        tc[j] = tanh_fast(c[j]);
        h[j] = og[j] * tc[j];
    }
}

/* One sample at one step: a (4H) holds x Wx + h Wh and becomes the activated gates i, f, g, o; then the
 * cell c and hidden state h from the previous cell cp (a row of zeros at the first step). */
static void lstm_cell_forward(float *a, const float *b, const float *cp, float *c, float *tc, float *h, int H)
{
    add_inplace(a, b, N_GATES * H);
    sigmoid_inplace(a + GATE_I * H, H);
    sigmoid_inplace(a + GATE_F * H, H);
    tanh_inplace(a + GATE_G * H, H);
    sigmoid_inplace(a + GATE_O * H, H);
#define CELL_SPAN(k, n)                                                                               \
    cell_span(a + GATE_I * H + (k), a + GATE_F * H + (k), a + GATE_G * H + (k), a + GATE_O * H + (k), \
              cp + (k), c + (k), tc + (k), h + (k), (n))
    int k = 0;
    for (; k + VEC_BLOCK <= H; k += VEC_BLOCK) CELL_SPAN(k, VEC_BLOCK);
    CELL_SPAN(k, H - k);
#undef CELL_SPAN
}

/* All steps' input projections in one sgemm [n*T x F] . [F x 4H], then per step the recurrent
 * projection [n x H] . [H x 4H] added in place (rows of step t are T rows apart). */
static void lstm_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    (void)ctx;
    if (n <= 0) return;
    lstm_dims d = lstm_dims_of(l);
    lstm_ws w = lstm_ws_of(l, &d, n);
    float *hid = l->flag ? out : w.hid;
    const float *Wx = l->W, *Wh = l->W + (size_t)d.F * d.G;
    int rows = n * d.T, ldg = d.T * d.G, ldh = d.T * d.H;
    memset(l->ws_fix, 0, sizeof(float) * (size_t)d.H); /* c_{-1} */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d.G, d.F, 1.0f, in, d.F, Wx, d.G, 0.0f,
                w.gates, d.G);
    for (int t = 0; t < d.T; t++) {
        if (t > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d.G, d.H, 1.0f,
                        hid + (size_t)(t - 1) * d.H, ldh, Wh, d.G, 1.0f, w.gates + (size_t)t * d.G, ldg);
        for (int s = 0; s < n; s++) {
            size_t row = (size_t)s * d.T + t;
            float *c = w.cell + row * d.H;
            lstm_cell_forward(w.gates + row * d.G, l->b, t > 0 ? c - d.H : l->ws_fix, c, w.tcell + row * d.H,
                              hid + row * d.H, d.H);
        }
    }
    if (!l->flag)
        for (int s = 0; s < n; s++)
            memcpy(out + (size_t)s * d.H, hid + ((size_t)s * d.T + d.T - 1) * d.H, sizeof(float) * d.H);
}

/* Through h = o * tanh(c): dc += dh * o * (1 - tanh(c)^2), and the output gate's pre-activation. */
static inline void back_out_span(const float *restrict og, const float *restrict tc, const float *restrict dh,
                                 float *restrict dc, float *restrict dao, int n)
{
    for (int j = 0; j < n; j++) {
        dc[j] += dh[j] * og[j] * (1.0f - tc[j] * tc[j]);
        dao[j] = dh[j] * tc[j] * og[j] * (1.0f - og[j]);
    }
}

/* Through c = f * cp + i * g: the i, f, g pre-activations, and dc becomes the gradient of cp. */
static inline void back_cell_span(const float *restrict ig, const float *restrict fg,
                                  const float *restrict gg, const float *restrict cp, float *restrict dc,
                                  float *restrict dai, float *restrict daf, float *restrict dag, int n)
{
    for (int j = 0; j < n; j++) {
        dai[j] = dc[j] * gg[j] * ig[j] * (1.0f - ig[j]);
        daf[j] = dc[j] * cp[j] * fg[j] * (1.0f - fg[j]);
        dag[j] = dc[j] * ig[j] * (1.0f - gg[j] * gg[j]);
        dc[j] *= fg[j];
    }
}

/* One sample at one step backwards: from dh (gradient of h_t) and dc (of c_t, from step t + 1) the
 * gates' pre-activation gradients da (4H); dc becomes the gradient of c_{t-1}. a: the activated gates,
 * cp: the previous cell (zeros at the first step). */
static void lstm_cell_backward(const float *a, const float *tc, const float *cp, const float *dh, float *dc,
                               float *da, int H)
{
#define OUT_SPAN(k, n) \
    back_out_span(a + GATE_O * H + (k), tc + (k), dh + (k), dc + (k), da + GATE_O * H + (k), (n))
#define CELL_SPAN(k, n)                                                                                  \
    back_cell_span(a + GATE_I * H + (k), a + GATE_F * H + (k), a + GATE_G * H + (k), cp + (k), dc + (k), \
                   da + GATE_I * H + (k), da + GATE_F * H + (k), da + GATE_G * H + (k), (n))
    int k = 0;
    for (; k + VEC_BLOCK <= H; k += VEC_BLOCK) OUT_SPAN(k, VEC_BLOCK);
    OUT_SPAN(k, H - k);
    for (k = 0; k + VEC_BLOCK <= H; k += VEC_BLOCK) CELL_SPAN(k, VEC_BLOCK);
    CELL_SPAN(k, H - k);
#undef OUT_SPAN
#undef CELL_SPAN
}

/* Backpropagation through all T steps. The recurrence runs one [n x 4H] . [4H x H] sgemm per step;
 * the parameter gradients and din are then three big sgemms over all n*T rows. */
static void lstm_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                          float *din, int n)
{
    (void)ctx;
    if (n <= 0) return;
    lstm_dims d = lstm_dims_of(l);
    lstm_ws w = lstm_ws_of(l, &d, n);
    const float *hid = l->flag ? out : w.hid;
    const float *Wx = l->W, *Wh = l->W + (size_t)d.F * d.G;
    float *dWx = l->dW, *dWh = l->dW + (size_t)d.F * d.G;
    int rows = n * d.T, ldg = d.T * d.G;
    float *dA = l->scratch, *hprev = dA + (size_t)rows * d.G;
    float *dh_last = hprev + (size_t)rows * d.H, *dc = dh_last + (size_t)n * d.H;
    memset(dc, 0, sizeof(float) * (size_t)n * d.H);
    /* dh_t: with seq = 1 the output gradient rows of step t, to which the recurrent term is added in
     * place; with seq = 0 one n x H buffer, the output gradient at the last step, then the recurrence */
    int ldh = l->flag ? d.T * d.H : d.H;
    if (!l->flag) memcpy(dh_last, dout, sizeof(float) * (size_t)n * d.H);
    for (int t = d.T - 1; t >= 0; t--) {
        float *dh = l->flag ? dout + (size_t)t * d.H : dh_last;
        for (int s = 0; s < n; s++) {
            size_t row = (size_t)s * d.T + t;
            lstm_cell_backward(w.gates + row * d.G, w.tcell + row * d.H,
                               t > 0 ? w.cell + (row - 1) * d.H : l->ws_fix, dh + (size_t)s * ldh,
                               dc + (size_t)s * d.H, dA + row * d.G, d.H);
        }
        if (t > 0) /* dh_{t-1} (+)= dA_t . Wh^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d.H, d.G, 1.0f, dA + (size_t)t * d.G, ldg,
                        Wh, d.G, l->flag ? 1.0f : 0.0f, l->flag ? dh - d.H : dh_last, ldh);
    }
    for (int r = 0; r < rows; r++) add_inplace(l->db, dA + (size_t)r * d.G, d.G);
    /* dWx += X^T dA;  dWh += Hprev^T dA with Hprev row (s, t) = h_{t-1} (0 at t = 0) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d.F, d.G, rows, 1.0f, in, d.F, dA, d.G, 1.0f, dWx,
                d.G);
    if (d.T > 1) {
        for (int s = 0; s < n; s++) {
            float *hp = hprev + (size_t)s * d.T * d.H;
            memset(hp, 0, sizeof(float) * (size_t)d.H);
            memcpy(hp + d.H, hid + (size_t)s * d.T * d.H, sizeof(float) * (size_t)(d.T - 1) * d.H);
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d.H, d.G, rows, 1.0f, hprev, d.H, dA, d.G, 1.0f,
                    dWh, d.G);
    }
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, d.F, d.G, 1.0f, dA, d.G, Wx, d.G, 0.0f,
                    din, d.F);
}

/* ---- repeat ------------------------------------------------------------------------ */

static const char *const repeat_keys[] = {"steps", "name", NULL};

static ae_status repeat_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    int T;
    if ((st = ae_layer_check_args(ls, 1, repeat_keys, err))) return st;
    if ((st = ae_layer_arg_int(ls, 0, "steps", -1, 1, MAX_STEPS, &T, err))) return st;
    if (l->in_size > (size_t)MAX_UNITS)
        return ae_error_set(err, AE_ERR_SHAPE, "%s: repeat: the input has %zu values, at most %d allowed",
                            ls->origin, l->in_size, MAX_UNITS);
    l->out = (ae_shape){1, T, (int)l->in_size};
    l->out_size = ae_shape_size(&l->out);
    return AE_OK;
}

static void repeat_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    (void)ctx;
    size_t D = l->in_size, T = (size_t)l->out.h;
    for (int s = 0; s < n; s++)
        for (size_t t = 0; t < T; t++)
            memcpy(out + ((size_t)s * T + t) * D, in + (size_t)s * D, sizeof(float) * D);
}

static void repeat_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                            float *din, int n)
{
    (void)ctx, (void)in, (void)out;
    if (!din) return;
    size_t D = l->in_size, T = (size_t)l->out.h;
    for (int s = 0; s < n; s++) {
        float *ds = din + (size_t)s * D;
        const float *dsrc = dout + (size_t)s * T * D;
        memcpy(ds, dsrc, sizeof(float) * D);
        for (size_t t = 1; t < T; t++)
            for (size_t j = 0; j < D; j++) ds[j] += dsrc[t * D + j];
    }
}

/* ---- tdense -------------------------------------------------------------------------- */

static const char *const tdense_keys[] = {"units", "act", "init", "bias", "name", NULL};

static ae_status tdense_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    int T = 0, F = 0;
    if ((st = ae_layer_check_args(ls, 2, tdense_keys, err))) return st;
    if ((st = ae_layer_arg_int(ls, 0, "units", -1, 1, MAX_UNITS, &l->units, err))) return st;
    if ((st = ae_layer_arg_act(ls, 1, AE_ACT_LINEAR, &l->act, err))) return st;
    if ((st = ae_layer_arg_int(ls, -1, "bias", 1, 0, 1, &l->use_bias, err))) return st;
    if ((st = arg_init(ls, &l->init, err))) return st;
    if ((st = seq_dims(l, ls, &T, &F, err))) return st;
    l->out = (ae_shape){1, T, l->units};
    l->out_size = ae_shape_size(&l->out);
    l->n_params = (size_t)F * l->units + (l->use_bias ? (size_t)l->units : 0);
    l->flops = 2.0 * (double)T * F * l->units;
    return AE_OK;
}

static ae_layer tdense_view(const ae_layer *l)
{
    return dense_view(l, (int)(l->in_size / (size_t)in_steps(l)), l->units, l->use_bias);
}

static void tdense_init(ae_layer *l, ae_rng *rng)
{
    ae_layer v = tdense_view(l);
    dense_kind()->init(&v, rng);
}

/* One sgemm over all n*T rows; bias, activation and l->z (n*T x units = n x out_size) as dense. */
static void tdense_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    ae_layer v = tdense_view(l);
    dense_kind()->forward(&v, ctx, in, out, n * in_steps(l));
}

static void tdense_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                            float *din, int n)
{
    ae_layer v = tdense_view(l);
    dense_kind()->backward(&v, ctx, in, out, dout, din, n * in_steps(l));
}

/* ---- kinds ------------------------------------------------------------------------------ */

const ae_layer_kind ae_kind_lstm = {"lstm", lstm_setup, lstm_init, lstm_forward, lstm_backward, NULL};
const ae_layer_kind ae_kind_repeat = {"repeat", repeat_setup, NULL, repeat_forward, repeat_backward, NULL};
const ae_layer_kind ae_kind_tdense = {"tdense", tdense_setup, tdense_init, tdense_forward, tdense_backward,
                                      NULL};
