/* batchnorm.c - batch normalization over (sample, height, width) per
 * channel, for conv (C x H x W) and dense (F x 1 x 1) inputs.
 *
 * Training normalizes with the statistics of the batch: of this rank's slice
 * (default, as most trainers do), or of the whole global batch when
 * sync = 1 (the statistics and the two backward sums are reduced across
 * ranks through ctx->reduce, so P ranks compute what one process would).
 * Either way the running statistics (non-trainable state) are updated from
 * the GLOBAL batch's sums, which ride in the step's gradient allreduce as
 * aux floats, so every rank holds the same running statistics. Under
 * gradient accumulation a pass's batch is a global micro-batch: sync = 1
 * normalizes over it (ctx->sync_count samples), and forward adds its sums
 * to the aux floats, so the running statistics still see the whole batch. */
#include <math.h>
#include <string.h>

#include "layer_kinds.h"

/* PyTorch conventions: running = (1 - momentum) * running + momentum * batch,
 * the running variance unbiased. */
#define BN_DEFAULT_MOMENTUM 0.1f
#define BN_DEFAULT_EPS 1e-5f

/* ws: xhat per sample; ws_fix: per channel mean, inv_std, then 2C sums
 * (x - r and (x - r)^2 in forward, r the running mean; dy and dy*xhat in
 * backward). state: running mean, running var. aux: the forward sums of this
 * rank's slice. */
enum { BN_MEAN, BN_INVSTD, BN_SUMS, BN_NFIXED = 4 };

static const char *const bn_keys[] = {"momentum", "eps", "sync", "act", "name", NULL};

static ae_status bn_setup(ae_layer *l, const ae_layer_spec *ls, ae_error *err)
{
    ae_status st;
    if ((st = ae_layer_check_args(ls, 0, bn_keys, err))) return st;
    if ((st = ae_layer_arg_float(ls, -1, "momentum", BN_DEFAULT_MOMENTUM, 0.0f, 1.0f, &l->rate, err)) ||
        (st = ae_layer_arg_float(ls, -1, "eps", BN_DEFAULT_EPS, 1e-12f, 1.0f, &l->eps, err)) ||
        (st = ae_layer_arg_int(ls, -1, "sync", 0, 0, 1, &l->flag, err)) ||
        (st = ae_layer_arg_act(ls, -1, AE_ACT_LINEAR, &l->act, err)))
        return st;
    if (l->act == AE_ACT_SOFTMAX)
        return ae_error_set(err, AE_ERR_CONFIG, "%s: bn: softmax is not supported as its activation", ls->origin);
    l->out = l->in;
    l->out_size = l->in_size;
    size_t C = (size_t)l->in.c;
    l->units = (int)C;
    l->use_bias = 1;
    l->no_decay = 1;
    l->n_params = 2 * C; /* gamma (the W view), beta (the b view) */
    l->n_state = 2 * C;
    l->n_aux = 2 * C;
    l->ws_per_sample = l->in_size;
    l->ws_fixed = BN_NFIXED * C;
    l->flops = 4.0 * (double)l->in_size;
    return AE_OK;
}

static void bn_init(ae_layer *l, ae_rng *rng)
{
    (void)rng;
    size_t C = (size_t)l->in.c;
    for (size_t c = 0; c < C; c++) {
        l->W[c] = 1.0f;
        l->b[c] = 0.0f;
        l->state[c] = 0.0f;
        l->state[C + c] = 1.0f;
    }
}

static void bn_forward(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n)
{
    size_t C = (size_t)l->in.c, S = (size_t)l->in.h * l->in.w;
    float *cmean = l->ws_fix + BN_MEAN * C, *cinv = l->ws_fix + BN_INVSTD * C, *sums = l->ws_fix + BN_SUMS * C;
    float *xhat = l->ws;
    if (ctx->training) {
        /* sums of x - shift, shift = the running mean (the same on every rank): the variance
         * E[(x-s)^2] - E[x-s]^2 keeps its precision for inputs far from 0 */
        for (size_t c = 0; c < C; c++) {
            double a = 0.0, b = 0.0, sh = l->state[c];
            for (int i = 0; i < n; i++) {
                const float *p = in + ((size_t)i * C + c) * S;
                for (size_t k = 0; k < S; k++) {
                    double v = (double)p[k] - sh;
                    a += v;
                    b += v * v;
                }
            }
            sums[c] = (float)a;
            sums[C + c] = (float)b;
        }
        /* += : the passes of gradient accumulation add up to the step's global batch */
        if (l->aux)
            for (size_t c = 0; c < 2 * C; c++) l->aux[c] += sums[c];
        double cnt = (double)n * (double)S;
        if (l->flag && ctx->reduce) {
            ctx->reduce(sums, 2 * C, ctx->reduce_user);
            cnt = (double)ae_ctx_sync_count(ctx, n) * (double)S;
        }
        for (size_t c = 0; c < C; c++) {
            double m = cnt > 0 ? sums[c] / cnt : 0.0;
            double v = cnt > 0 ? sums[C + c] / cnt - m * m : 0.0;
            m += l->state[c];
            cmean[c] = (float)m;
            cinv[c] = (float)(1.0 / sqrt((v > 0 ? v : 0.0) + l->eps));
        }
    } else {
        for (size_t c = 0; c < C; c++) {
            cmean[c] = l->state[c];
            cinv[c] = 1.0f / sqrtf(l->state[C + c] + l->eps);
        }
    }
    for (int i = 0; i < n; i++)
        for (size_t c = 0; c < C; c++) {
            size_t off = ((size_t)i * C + c) * S;
            float m = cmean[c], iv = cinv[c], g = l->W[c], bb = l->b[c];
            for (size_t k = 0; k < S; k++) {
                float xh = (in[off + k] - m) * iv;
                xhat[off + k] = xh;
                out[off + k] = g * xh + bb;
            }
        }
    size_t len = (size_t)n * l->out_size;
    if (l->z) memcpy(l->z, out, sizeof(float) * len);
    if (!ae_layer_logits_only(l, ctx)) ae_act_forward(l->act, out, 1, len);
}

static void bn_backward(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout, float *din,
                        int n)
{
    (void)in;
    size_t C = (size_t)l->in.c, S = (size_t)l->in.h * l->in.w;
    float *cinv = l->ws_fix + BN_INVSTD * C, *sums = l->ws_fix + BN_SUMS * C;
    const float *xhat = l->ws;
    if (!l->fused_out) ae_act_backward(l->act, out, dout, 1, (size_t)n * l->out_size);
    /* sums of dy and dy * xhat per channel: the beta and gamma gradients */
    for (size_t c = 0; c < C; c++) {
        double a = 0.0, b = 0.0;
        for (int i = 0; i < n; i++) {
            size_t off = ((size_t)i * C + c) * S;
            for (size_t k = 0; k < S; k++) {
                a += dout[off + k];
                b += (double)dout[off + k] * xhat[off + k];
            }
        }
        sums[c] = (float)a;
        sums[C + c] = (float)b;
        l->db[c] += (float)a;
        l->dW[c] += (float)b;
    }
    double cnt = (double)n * (double)S;
    if (l->flag && ctx->training && ctx->reduce) {
        ctx->reduce(sums, 2 * C, ctx->reduce_user);
        cnt = (double)ae_ctx_sync_count(ctx, n) * (double)S;
    }
    if (!din) return;
    /* dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)) */
    for (size_t c = 0; c < C; c++) {
        float mdy = cnt > 0 ? (float)(sums[c] / cnt) : 0.0f;
        float mdyx = cnt > 0 ? (float)(sums[C + c] / cnt) : 0.0f;
        float k = l->W[c] * cinv[c];
        for (int i = 0; i < n; i++) {
            size_t off = ((size_t)i * C + c) * S;
            for (size_t j = 0; j < S; j++) din[off + j] = k * (dout[off + j] - mdy - xhat[off + j] * mdyx);
        }
    }
}

/* Running statistics from the global batch's summed aux (x, x^2). */
static void bn_update(ae_layer *l, const ae_ctx *ctx)
{
    size_t C = (size_t)l->in.c, S = (size_t)l->in.h * l->in.w;
    double cnt = (double)ctx->batch * (double)S;
    if (cnt <= 0) return;
    float mom = l->rate;
    for (size_t c = 0; c < C; c++) {
        double m = l->aux[c] / cnt; /* of x - running mean, see bn_forward */
        double v = l->aux[C + c] / cnt - m * m;
        m += l->state[c];
        if (v < 0) v = 0;
        double unbiased = cnt > 1 ? v * cnt / (cnt - 1) : v;
        l->state[c] = (1.0f - mom) * l->state[c] + mom * (float)m;
        l->state[C + c] = (1.0f - mom) * l->state[C + c] + mom * (float)unbiased;
    }
}

const ae_layer_kind ae_kind_bn = {"bn", bn_setup, bn_init, bn_forward, bn_backward, bn_update};
