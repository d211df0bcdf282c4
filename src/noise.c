/* noise.c - corruption layers of denoising autoencoders and dropout.
 *
 * Active only in training mode (identity in evaluation; mask(rate, rescale=1)
 * multiplies by its expected value 1 - rate instead). Every sample's
 * draws come from a Philox stream keyed by (seed, layer, epoch, step, index
 * of the sample in the global batch), so the corruption of a sample does not
 * depend on the number of ranks or on which rank computes it. The layer
 * keeps the per-element factor (mask) it applied for backward. */
#include <math.h>
#include <string.h>

#include "layer_kinds.h"

typedef enum { NOISE_GAUSS, NOISE_MASK, NOISE_SALTPEPPER, NOISE_MULT012, NOISE_DROPOUT } noise_kind;

/* rate: gauss std, or the corrupted fraction; flag: the noise_kind */
static ae_status noise_setup_common(ae_layer *l, const ae_layer_spec *ls, noise_kind kind, float lo, float hi,
                                    int needs_rate, ae_error *err)
{
    static const char *const keys[] = {"rate", "name", NULL};
    static const char *const mask_keys[] = {"rate", "rescale", "name", NULL};
    ae_status st;
    if ((st = ae_layer_check_args(ls, needs_rate ? 1 : 0, kind == NOISE_MASK ? mask_keys : keys, err))) return st;
    if (kind == NOISE_MASK && (st = ae_layer_arg_int(ls, -1, "rescale", 0, 0, 1, &l->eval_rescale, err)))
        return st;
    if (needs_rate && (st = ae_layer_arg_float(ls, 0, "rate", NAN, lo, hi, &l->rate, err))) return st;
    l->flag = (int)kind;
    l->out = l->in;
    l->out_size = l->in_size;
    l->ws_per_sample = kind == NOISE_GAUSS ? 0 : l->in_size; /* additive noise has derivative 1 */
    return AE_OK;
}

static ae_status gauss_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    return noise_setup_common(l, ls, NOISE_GAUSS, 0.0f, 1e6f, 1, err);
}
static ae_status mask_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    return noise_setup_common(l, ls, NOISE_MASK, 0.0f, 1.0f, 1, err);
}
static ae_status saltpepper_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    return noise_setup_common(l, ls, NOISE_SALTPEPPER, 0.0f, 1.0f, 1, err);
}
static ae_status mult012_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    return noise_setup_common(l, ls, NOISE_MULT012, 0.0f, 0.0f, 0, err);
}
static ae_status dropout_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st = noise_setup_common(l, ls, NOISE_DROPOUT, 0.0f, 0.999f, 1, err);
    return st;
}

#define NOISE_PURPOSE_SHIFT 8

static void noise_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    size_t d = l->in_size;
    if (!ctx->training) {
        if (l->eval_rescale) { /* masking's expected input, the weight-scaling rule of dropout */
            float keep = 1.0f - l->rate;
            for (size_t i = 0; i < (size_t)n * d; i++) out[i] = in[i] * keep;
        } else {
            memcpy(out, in, sizeof(float) * (size_t)n * d);
        }
        return;
    }
    noise_kind kind = (noise_kind)l->flag;
    float p = l->rate, keep_scale = kind == NOISE_DROPOUT ? 1.0f / (1.0f - p) : 1.0f;
    uint32_t purpose = (kind == NOISE_DROPOUT ? AE_RNG_DROPOUT : AE_RNG_NOISE) |
                       ((uint32_t)(l->index + 1) << NOISE_PURPOSE_SHIFT);
    for (int i = 0; i < n; i++) {
        ae_rng r;
        ae_rng_init(&r, ctx->seed, purpose, (uint32_t)ctx->epoch, (uint32_t)ctx->step,
                    (uint32_t)(ctx->sample0 + i));
        const float *x = in + (size_t)i * d;
        float *y = out + (size_t)i * d;
        float *m = l->ws ? l->ws + (size_t)i * d : NULL;
        for (size_t j = 0; j < d; j++) {
            switch (kind) {
            case NOISE_GAUSS: y[j] = x[j] + p * ae_rng_normal(&r); break;
            case NOISE_MASK:
                m[j] = ae_rng_uniform(&r) < p ? 0.0f : 1.0f;
                y[j] = x[j] * m[j];
                break;
            case NOISE_SALTPEPPER: {
                float u = ae_rng_uniform(&r);
                if (u < p) {
                    m[j] = 0.0f; /* replaced by a constant: no gradient */
                    y[j] = u < 0.5f * p ? 0.0f : 1.0f;
                } else {
                    m[j] = 1.0f;
                    y[j] = x[j];
                }
                break;
            }
            case NOISE_MULT012:
                m[j] = (float)ae_rng_below(&r, 3);
                y[j] = x[j] * m[j];
                break;
            case NOISE_DROPOUT:
                m[j] = ae_rng_uniform(&r) < p ? 0.0f : keep_scale;
                y[j] = x[j] * m[j];
                break;
            }
        }
    }
}

static void noise_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                           float *din, int n)
{
    (void)in;
    (void)out;
    if (!din) return;
    size_t len = (size_t)n * l->in_size;
    if (!ctx->training || !l->ws) {
        float scale = !ctx->training && l->eval_rescale ? 1.0f - l->rate : 1.0f;
        for (size_t i = 0; i < len; i++) din[i] = dout[i] * scale;
        return;
    }
    for (size_t i = 0; i < len; i++) din[i] = dout[i] * l->ws[i];
}

const ae_layer_kind ae_kind_gauss = {"gauss", gauss_setup, NULL, noise_forward, noise_backward, NULL};
const ae_layer_kind ae_kind_mask = {"mask", mask_setup, NULL, noise_forward, noise_backward, NULL};
const ae_layer_kind ae_kind_saltpepper = {"saltpepper", saltpepper_setup, NULL, noise_forward, noise_backward, NULL};
const ae_layer_kind ae_kind_mult012 = {"mult012", mult012_setup, NULL, noise_forward, noise_backward, NULL};
const ae_layer_kind ae_kind_dropout = {"dropout", dropout_setup, NULL, noise_forward, noise_backward, NULL};
