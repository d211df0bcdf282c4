/* vae.c - the reparameterization layer of a variational autoencoder.
 *
 * sample(beta=1) takes the encoder's 2Z outputs as (mu, log variance) and
 * outputs z = mu + exp(logvar / 2) * eps in training, with eps ~ N(0, 1)
 * keyed by (seed, layer, epoch, step, index of the sample in the global
 * batch) so that it does not depend on the rank count; z = mu in
 * evaluation. It adds beta * KL(q(z|x) || N(0, I)) per sample,
 * -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), to the objective: the value
 * in l->penalty, its gradient in backward with weight 1 / (global batch). */
#include <math.h>
#include <string.h>

#include "layer_kinds.h"

#define SAMPLE_PURPOSE_SHIFT 8

static ae_status sample_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    static const char *const keys[] = {"beta", "name", NULL};
    ae_status st;
    if ((st = ae_layer_check_args(ls, 0, keys, err))) return st;
    if ((st = ae_layer_arg_float(ls, -1, "beta", 1.0f, 0.0f, 1e6f, &l->rate, err))) return st;
    if (l->in_size % 2 != 0 || l->in_size == 0)
        return ae_error_set(err, AE_ERR_SHAPE,
                            "%s: sample needs an even number of inputs (mean and log-variance), got %zu", ls->origin,
                            l->in_size);
    size_t z = l->in_size / 2;
    l->out = (ae_shape){(int)z, 1, 1};
    l->out_size = z;
    l->ws_per_sample = z; /* eps */
    l->flops = 4.0 * (double)z;
    return AE_OK;
}

static void sample_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    size_t Z = l->out_size;
    double kl = 0.0;
    uint32_t purpose = AE_RNG_SAMPLE | ((uint32_t)(l->index + 1) << SAMPLE_PURPOSE_SHIFT);
    for (int i = 0; i < n; i++) {
        const float *mu = in + (size_t)i * 2 * Z, *lv = mu + Z;
        float *z = out + (size_t)i * Z, *eps = l->ws + (size_t)i * Z;
        ae_rng r;
        if (ctx->training)
            ae_rng_init(&r, ctx->seed, purpose, (uint32_t)ctx->epoch, (uint32_t)ctx->step,
                        (uint32_t)(ctx->sample0 + i));
        for (size_t j = 0; j < Z; j++) {
            eps[j] = ctx->training ? ae_rng_normal(&r) : 0.0f;
            z[j] = mu[j] + expf(0.5f * lv[j]) * eps[j];
            kl += -0.5 * (1.0 + (double)lv[j] - (double)mu[j] * mu[j] - exp((double)lv[j]));
        }
    }
    l->penalty = l->rate * kl;
}

static void sample_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                            float *din, int n)
{
    (void)out;
    if (!din) return;
    size_t Z = l->out_size;
    int64_t nb = ctx->batch ? ctx->batch : n;
    float k = nb > 0 ? l->rate / (float)nb : 0.0f;
    for (int i = 0; i < n; i++) {
        const float *mu = in + (size_t)i * 2 * Z, *lv = mu + Z;
        const float *dz = dout + (size_t)i * Z, *eps = l->ws + (size_t)i * Z;
        float *dmu = din + (size_t)i * 2 * Z, *dlv = dmu + Z;
        for (size_t j = 0; j < Z; j++) {
            float s = expf(0.5f * lv[j]);
            dmu[j] = dz[j] + k * mu[j];
            dlv[j] = dz[j] * 0.5f * s * eps[j] + k * 0.5f * (s * s - 1.0f);
        }
    }
}

const ae_layer_kind ae_kind_sample = {"sample", sample_setup, NULL, sample_forward, sample_backward, NULL};
