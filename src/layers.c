/* layers.c - the layer table and the dense, activation and flatten kinds.
 * Dense runs on OpenBLAS sgemm over the whole local batch, with bias and
 * activation fused into one pass over the output. */
#include "ae/layers.h"

#include "fastmath.h"
#include "layer_kinds.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- activations ------------------------------------------------------ */

static const char *const act_names[] = {"linear", "sigmoid", "tanh", "relu", "elu", "softmax"};
static const char *const init_names[] = {"glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "torch"};
#define N_ACTS (sizeof act_names / sizeof act_names[0])
#define N_INITS (sizeof init_names / sizeof init_names[0])

const char *ae_act_name(ae_act a) { return (unsigned)a < N_ACTS ? act_names[a] : "?"; }
const char *ae_init_name(ae_init i) { return (unsigned)i < N_INITS ? init_names[i] : "?"; }

int ae_act_parse(const char *s)
{
    for (size_t i = 0; i < N_ACTS; i++)
        if (strcmp(s, act_names[i]) == 0) return (int)i;
    return -1;
}

int ae_init_parse(const char *s)
{
    for (size_t i = 0; i < N_INITS; i++)
        if (strcmp(s, init_names[i]) == 0) return (int)i;
    return -1;
}

static void softmax_rows(float *x, size_t n, size_t w)
{
    for (size_t r = 0; r < n; r++) {
        float *row = x + r * w;
        float mx = row[0];
        for (size_t j = 1; j < w; j++) mx = row[j] > mx ? row[j] : mx;
        float s = 0.0f;
        for (size_t j = 0; j < w; j++) row[j] = ae_fast_exp(row[j] - mx);
        for (size_t j = 0; j < w; j++) s += row[j];
        float inv = 1.0f / s;
        for (size_t j = 0; j < w; j++) row[j] *= inv;
    }
}

void ae_act_forward(ae_act act, float *x, size_t n, size_t w)
{
    size_t len = n * w;
    switch (act) {
    case AE_ACT_LINEAR: break;
    case AE_ACT_SIGMOID:
        ae_fast_sigmoid_n(x, len);
        break;
    case AE_ACT_TANH:
        for (size_t i = 0; i < len; i++) x[i] = tanhf(x[i]);
        break;
    case AE_ACT_RELU:
        for (size_t i = 0; i < len; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case AE_ACT_ELU:
        for (size_t i = 0; i < len; i++) {
            float e = ae_fast_exp(x[i]) - 1.0f; /* exp(x) - 1: absolute error ~1e-7 near 0 */
            x[i] = x[i] > 0.0f ? x[i] : e;
        }
        break;
    case AE_ACT_SOFTMAX: softmax_rows(x, n, w); break;
    }
}

void ae_act_backward(ae_act act, const float *y, float *d, size_t n, size_t w)
{
    size_t len = n * w;
    switch (act) {
    case AE_ACT_LINEAR: break;
    case AE_ACT_SIGMOID:
        for (size_t i = 0; i < len; i++) d[i] *= y[i] * (1.0f - y[i]);
        break;
    case AE_ACT_TANH:
        for (size_t i = 0; i < len; i++) d[i] *= 1.0f - y[i] * y[i];
        break;
    case AE_ACT_RELU: /* a select of two constants: GCC vectorizes it (d *= (float)(y > 0) became a branch) */
        for (size_t i = 0; i < len; i++) {
            float pos = y[i] > 0.0f ? 1.0f : 0.0f;
            d[i] = d[i] * pos;
        }
        break;
    case AE_ACT_ELU: /* y > 0: 1, else y + 1 */
        for (size_t i = 0; i < len; i++) {
            float pos = (float)(y[i] > 0.0f);
            d[i] *= pos + (1.0f - pos) * (y[i] + 1.0f);
        }
        break;
    case AE_ACT_SOFTMAX:
        for (size_t r = 0; r < n; r++) {
            const float *yr = y + r * w;
            float *dr = d + r * w;
            float dot = 0.0f;
            for (size_t j = 0; j < w; j++) dot += dr[j] * yr[j];
            for (size_t j = 0; j < w; j++) dr[j] = yr[j] * (dr[j] - dot);
        }
        break;
    }
}

/* ---- argument helpers --------------------------------------------------- */

ae_status ae_layer_arg_int(const ae_layer_spec *ls, int pos, const char *key, int def, int lo, int hi, int *out,
                           ae_error *err)
{
    const char *v = ae_layer_spec_arg(ls, pos, key);
    if (!v) {
        if (def < lo) return ae_error_set(err, AE_ERR_CONFIG, "%s: %s: missing argument '%s'", ls->origin,
                                          ls->kind, key);
        *out = def;
        return AE_OK;
    }
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < lo || x > hi)
        return ae_error_set(err, AE_ERR_CONFIG, "%s: %s: %s = '%s' is not an integer in [%d, %d]", ls->origin,
                            ls->kind, key, v, lo, hi);
    *out = (int)x;
    return AE_OK;
}

ae_status ae_layer_arg_act(const ae_layer_spec *ls, int pos, ae_act def, ae_act *out, ae_error *err)
{
    const char *v = ae_layer_spec_arg(ls, pos, "act");
    if (!v) {
        *out = def;
        return AE_OK;
    }
    int a = ae_act_parse(v);
    if (a < 0)
        return ae_error_set(err, AE_ERR_CONFIG,
                            "%s: %s: unknown activation '%s' (allowed: linear, sigmoid, tanh, relu, elu, softmax)",
                            ls->origin, ls->kind, v);
    *out = (ae_act)a;
    return AE_OK;
}

ae_status ae_layer_arg_float(const ae_layer_spec *ls, int pos, const char *key, float def, float lo, float hi,
                             float *out, ae_error *err)
{
    const char *v = ae_layer_spec_arg(ls, pos, key);
    if (!v) {
        if (isnan(def)) return ae_error_set(err, AE_ERR_CONFIG, "%s: %s: missing argument '%s'", ls->origin,
                                            ls->kind, key);
        *out = def;
        return AE_OK;
    }
    char *end;
    float x = strtof(v, &end);
    if (*v == '\0' || *end != '\0' || !(x >= lo && x <= hi))
        return ae_error_set(err, AE_ERR_CONFIG, "%s: %s: %s = '%s' is not a number in [%g, %g]", ls->origin,
                            ls->kind, key, v, lo, hi);
    *out = x;
    return AE_OK;
}

/* Reject keyed arguments the kind does not know and surplus positional ones. */
ae_status ae_layer_check_args(const ae_layer_spec *ls, int max_pos, const char *const *keys, ae_error *err)
{
    int pos = 0;
    for (int i = 0; i < ls->nargs; i++) {
        const char *k = ls->args[i].key;
        if (!*k) {
            if (++pos > max_pos)
                return ae_error_set(err, AE_ERR_CONFIG, "%s: %s takes at most %d positional argument%s",
                                    ls->origin, ls->kind, max_pos, max_pos == 1 ? "" : "s");
            continue;
        }
        int known = 0;
        for (const char *const *p = keys; *p; p++) known |= strcmp(*p, k) == 0;
        if (!known)
            return ae_error_set(err, AE_ERR_CONFIG, "%s: %s: unknown argument '%s'", ls->origin, ls->kind, k);
    }
    return AE_OK;
}

/* ---- dense ------------------------------------------------------------- */

static const char *const dense_keys[] = {"units", "act", "init", "name", "bias", "tied", NULL};

static ae_status dense_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    if ((st = ae_layer_check_args(ls, 2, dense_keys, err))) return st;
    if ((st = ae_layer_arg_int(ls, 0, "units", -1, 1, 1 << 24, &l->units, err))) return st;
    if ((st = ae_layer_arg_act(ls, 1, AE_ACT_LINEAR, &l->act, err))) return st;
    if ((st = ae_layer_arg_int(ls, -1, "bias", 1, 0, 1, &l->use_bias, err))) return st;
    const char *init = ae_layer_spec_arg(ls, -1, "init");
    if (init) {
        int i = ae_init_parse(init);
        if (i < 0)
            return ae_error_set(err, AE_ERR_CONFIG,
                                "%s: dense: unknown init '%s' (allowed: " AE_INIT_NAMES ")", ls->origin, init);
        l->init = (ae_init)i;
    }
    const char *tied = ae_layer_spec_arg(ls, -1, "tied");
    if (tied) snprintf(l->tie_name, sizeof l->tie_name, "%s", tied);
    l->out = (ae_shape){l->units, 1, 1};
    l->out_size = (size_t)l->units;
    size_t nw = tied ? 0 : l->in_size * (size_t)l->units;
    l->n_params = nw + (l->use_bias ? (size_t)l->units : 0);
    l->flops = 2.0 * (double)l->in_size * l->units;
    return AE_OK;
}

void ae_layer_init_weights(float *w, size_t nw, double fan_in, double fan_out, ae_init init, ae_rng *rng)
{
    double scale;
    int normal;
    switch (init) {
    case AE_INIT_GLOROT_NORMAL: scale = sqrt(2.0 / (fan_in + fan_out)); normal = 1; break;
    case AE_INIT_HE_UNIFORM: scale = sqrt(6.0 / fan_in); normal = 0; break;
    case AE_INIT_HE_NORMAL: scale = sqrt(2.0 / fan_in); normal = 1; break;
    case AE_INIT_TORCH: scale = 1.0 / sqrt(fan_in); normal = 0; break;
    case AE_INIT_GLOROT_UNIFORM:
    default: scale = sqrt(6.0 / (fan_in + fan_out)); normal = 0; break;
    }
    for (size_t i = 0; i < nw; i++)
        w[i] = normal ? (float)scale * ae_rng_normal(rng) : (float)scale * (2.0f * ae_rng_uniform(rng) - 1.0f);
}

void ae_layer_init_bias(float *b, size_t nb, double fan_in, ae_init init, ae_rng *rng)
{
    if (init == AE_INIT_TORCH) ae_layer_init_weights(b, nb, fan_in, fan_in, init, rng); /* U(+-1/sqrt(fan_in)) */
    else memset(b, 0, sizeof(float) * nb);
}

/* Weights first, then the bias, from the layer's own stream (a tied layer draws only its bias). */
static void dense_init(ae_layer *l, ae_rng *rng)
{
    if (!l->tie_name[0])
        ae_layer_init_weights(l->W, l->in_size * (size_t)l->units, (double)l->in_size, (double)l->units, l->init,
                              rng);
    if (l->use_bias) ae_layer_init_bias(l->b, (size_t)l->units, (double)l->in_size, l->init, rng);
}

/* Every row of out (n x units) set to the bias: the sgemm then adds into it (beta = 1), which replaces
 * OpenBLAS' own zeroing of C (beta = 0) and a pass of its own that added the bias. */
static void fill_bias_rows(const ae_layer *l, float *out, int n)
{
    size_t u = (size_t)l->units;
    for (int r = 0; r < n; r++) memcpy(out + (size_t)r * u, l->b, sizeof(float) * u);
}

static void dense_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    if (n <= 0) return;
    int in_sz = (int)l->in_size, u = l->units;
    /* a training step's fused output: the logits go straight to l->z, the output is not needed */
    int logits_only = ae_layer_logits_only(l, ctx);
    float *dst = logits_only ? l->z : out;
    float beta = l->use_bias ? 1.0f : 0.0f;
    if (l->use_bias) fill_bias_rows(l, dst, n);
    if (l->tied) /* dst = in . Wsrc^T, Wsrc is (u x in_sz) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, u, in_sz, 1.0f, in, in_sz, l->tied->W, in_sz,
                    beta, dst, u);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, u, in_sz, 1.0f, in, in_sz, l->W, u, beta, dst,
                    u);
    if (logits_only) return;
    if (l->z) memcpy(l->z, out, sizeof(float) * (size_t)n * (size_t)u);
    ae_act_forward(l->act, out, (size_t)n, (size_t)u);
}

static void dense_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                           float *din, int n)
{
    (void)ctx;
    if (n <= 0) return;
    int in_sz = (int)l->in_size, u = l->units;
    if (l->use_bias) { /* the activation's derivative and the bias' sum in one pass, row by row (in L1) */
        for (int r = 0; r < n; r++) {
            float *row = dout + (size_t)r * u;
            if (!l->fused_out) ae_act_backward(l->act, out + (size_t)r * u, row, 1, (size_t)u);
            for (int j = 0; j < u; j++) l->db[j] += row[j];
        }
    } else if (!l->fused_out)
        ae_act_backward(l->act, out, dout, (size_t)n, (size_t)u);
    if (l->tied) {
        /* dWsrc (u x in_sz) += dout^T . in */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, u, in_sz, n, 1.0f, dout, u, in, in_sz, 1.0f,
                    l->tied->dW, in_sz);
        if (din)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in_sz, u, 1.0f, dout, u, l->tied->W, in_sz,
                        0.0f, din, in_sz);
    } else {
        /* dW (in_sz x u) += in^T . dout */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in_sz, u, n, 1.0f, in, in_sz, dout, u, 1.0f, l->dW,
                    u);
        if (din)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, in_sz, u, 1.0f, dout, u, l->W, u, 0.0f, din,
                        in_sz);
    }
}

/* ---- standalone activation ---------------------------------------------- */

static const char *const act_keys[] = {"act", "name", NULL};

static ae_status act_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    if ((st = ae_layer_check_args(ls, 1, act_keys, err))) return st;
    if (!ae_layer_spec_arg(ls, 0, "act"))
        return ae_error_set(err, AE_ERR_CONFIG, "%s: act: missing the activation, e.g. act(relu)", ls->origin);
    if ((st = ae_layer_arg_act(ls, 0, AE_ACT_LINEAR, &l->act, err))) return st;
    l->out = l->in;
    l->out_size = l->in_size;
    return AE_OK;
}

static void act_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    size_t len = (size_t)n * l->out_size;
    if (l->z) memcpy(l->z, in, sizeof(float) * len);
    if (ae_layer_logits_only(l, ctx)) return;
    if (out != in) memcpy(out, in, sizeof(float) * len);
    size_t w = l->act == AE_ACT_SOFTMAX ? l->out_size : len;
    ae_act_forward(l->act, out, l->act == AE_ACT_SOFTMAX ? (size_t)n : 1, w);
}

static void act_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                         float *din, int n)
{
    (void)ctx; (void)in;
    if (!l->fused_out) ae_act_backward(l->act, out, dout, (size_t)n, l->out_size);
    if (din) memcpy(din, dout, sizeof(float) * (size_t)n * l->out_size);
}

/* ---- flatten (a reshape: data layout is unchanged) ----------------------- */

static const char *const flatten_keys[] = {"name", NULL};

static ae_status flatten_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    if ((st = ae_layer_check_args(ls, 0, flatten_keys, err))) return st;
    l->out = (ae_shape){(int)l->in_size, 1, 1};
    l->out_size = l->in_size;
    return AE_OK;
}

static void copy_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    (void)ctx;
    memcpy(out, in, sizeof(float) * (size_t)n * l->out_size);
}

static void copy_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                          float *din, int n)
{
    (void)ctx; (void)in; (void)out;
    if (din) memcpy(din, dout, sizeof(float) * (size_t)n * l->out_size);
}

/* ---- the table ------------------------------------------------------------ */

static const ae_layer_kind kind_dense = {"dense", dense_setup, dense_init, dense_forward, dense_backward, NULL};
static const ae_layer_kind kind_act = {"act", act_setup, NULL, act_forward, act_backward, NULL};
static const ae_layer_kind kind_flatten = {"flatten", flatten_setup, NULL, copy_forward, copy_backward, NULL};

/* One row per layer kind. */
static const ae_layer_kind *const layer_kinds[] = {
    &kind_dense,
    &kind_act,
    &kind_flatten,
    &ae_kind_bn,
    &ae_kind_gauss,
    &ae_kind_mask,
    &ae_kind_saltpepper,
    &ae_kind_mult012,
    &ae_kind_dropout,
    &ae_kind_sample,
    &ae_kind_conv,
    &ae_kind_deconv,
    &ae_kind_maxpool,
    &ae_kind_upsample,
    &ae_kind_reshape,
    &ae_kind_lstm,
    &ae_kind_repeat,
    &ae_kind_tdense,
};

const ae_layer_kind *ae_layers_find(const char *name)
{
    for (size_t i = 0; i < sizeof layer_kinds / sizeof layer_kinds[0]; i++)
        if (strcmp(layer_kinds[i]->name, name) == 0) return layer_kinds[i];
    return NULL;
}

const char *ae_layers_names(void)
{
    static char names[1024];
    if (!names[0]) {
        size_t len = 0;
        for (size_t i = 0; i < sizeof layer_kinds / sizeof layer_kinds[0]; i++) {
            int w = snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "", layer_kinds[i]->name);
            if (w < 0 || (size_t)w >= sizeof names - len) break;
            len += (size_t)w;
        }
    }
    return names;
}
