/* model.c - build a layer list from a spec, lay out the contiguous buffers,
 * and run forward, loss and backward over the list. */
#include "ae/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ae/loss.h"
#include "ae/rng.h"

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* The architecture hash covers what the parameter layout and the maths
 * depend on: kinds, shapes, counts, activations, ties. */
static uint64_t arch_hash(const ae_model *m)
{
    uint64_t h = FNV_OFFSET;
    char buf[256];
    int len = snprintf(buf, sizeof buf, "type=%d in=%d,%d,%d", (int)m->type, m->in.c, m->in.h, m->in.w);
    h = fnv1a(h, buf, (size_t)len);
    for (int i = 0; i < m->n_layers; i++) {
        const ae_layer *l = &m->layers[i];
        len = snprintf(buf, sizeof buf, "|%s out=%d,%d,%d p=%zu s=%zu act=%d bias=%d tie=%s enc=%d", l->kind->name,
                       l->out.c, l->out.h, l->out.w, l->n_params, l->n_state, (int)l->act, l->use_bias,
                       l->tie_name, i < m->n_encoder);
        h = fnv1a(h, buf, (size_t)len);
        /* geometry that changes the maths without changing shapes or counts (conv, pool, upsample);
         * only when set, so that dense models keep their hashes */
        if (l->ksize || l->stride || l->pad_top || l->pad_left || l->ceil_mode || l->factor) {
            len = snprintf(buf, sizeof buf, " k=%d s=%d p=%d,%d c=%d f=%d", l->ksize, l->stride, l->pad_top,
                           l->pad_left, l->ceil_mode, l->factor);
            h = fnv1a(h, buf, (size_t)len);
        }
    }
    return h;
}

int ae_model_find_layer(const ae_model *m, const char *name)
{
    if (strcmp(name, "code") == 0) return m->n_encoder > 0 ? m->n_encoder - 1 : -1;
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(m->layers[i].name, name) == 0) return i;
    return -1;
}

void ae_model_free(ae_model *m)
{
    if (!m) return;
    if (m->act)
        for (int i = 0; i < m->n_layers; i++) free(m->act[i]);
    free(m->act);
    free(m->params_own);
    free(m->grads_own);
    free(m->state);
    free(m->z_last);
    free(m->scratch[0]);
    free(m->scratch[1]);
    free(m->scratch_shared);
    free(m->kl_mean);
    if (m->layers)
        for (int i = 0; i < m->n_layers; i++) free(m->layers[i].ws);
    free(m->layers);
    free(m);
}

static ae_status setup_layers(ae_model *m, const ae_spec *spec, ae_error *err)
{
    const ae_layer_spec *lists[2];
    int counts[2];
    const char *prefix[2];
    lists[0] = spec->encoder;
    counts[0] = spec->n_encoder;
    prefix[0] = "enc";
    if (spec->type == AE_MODEL_CLASSIFIER) {
        lists[1] = spec->head;
        counts[1] = spec->n_head;
        prefix[1] = "head";
    } else {
        lists[1] = spec->decoder;
        counts[1] = spec->n_decoder;
        prefix[1] = "dec";
    }
    m->n_encoder = counts[0];
    m->n_layers = counts[0] + counts[1];
    if (m->n_layers == 0) return ae_error_set(err, AE_ERR_CONFIG, "%s: the model has no layers", spec->source);
    m->layers = ae_calloc((size_t)m->n_layers, sizeof(ae_layer), err);
    if (!m->layers) return AE_ERR_NOMEM;
    ae_shape cur = m->in;
    int idx = 0;
    for (int part = 0; part < 2; part++) {
        for (int j = 0; j < counts[part]; j++, idx++) {
            const ae_layer_spec *ls = &lists[part][j];
            ae_layer *l = &m->layers[idx];
            l->kind = ae_layers_find(ls->kind);
            if (!l->kind)
                return ae_error_set(err, AE_ERR_CONFIG, "%s: unknown layer kind '%s' (known: %s)", ls->origin,
                                    ls->kind, ae_layers_names());
            l->index = idx;
            l->in = cur;
            l->in_size = ae_shape_size(&cur);
            l->init = (ae_init)ae_init_parse(spec->init);
            if ((int)l->init < 0) l->init = AE_INIT_GLOROT_UNIFORM;
            const char *nm = ae_layer_spec_arg(ls, -1, "name");
            if (nm) snprintf(l->name, sizeof l->name, "%s", nm);
            else snprintf(l->name, sizeof l->name, "%s%d", prefix[part], j + 1);
            ae_status st = l->kind->setup(l, ls, err);
            if (st) return st;
            if (ae_shape_size(&l->out) == 0)
                return ae_error_set(err, AE_ERR_SHAPE, "%s: %s gives an empty output from input %dx%dx%d",
                                    ls->origin, ls->kind, cur.c, cur.h, cur.w);
            for (int k = 0; k < idx; k++)
                if (strcmp(m->layers[k].name, l->name) == 0)
                    return ae_error_set(err, AE_ERR_CONFIG, "%s: layer name '%s' is used twice", ls->origin,
                                        l->name);
            if (l->tie_name[0]) {
                int t = ae_model_find_layer(m, l->tie_name);
                ae_layer *src = t >= 0 && t < idx ? &m->layers[t] : NULL;
                if (!src || strcmp(src->kind->name, "dense") != 0 || src->tied)
                    return ae_error_set(err, AE_ERR_CONFIG, "%s: tied = '%s' names no earlier untied dense layer",
                                        ls->origin, l->tie_name);
                if (src->in_size != l->out_size || src->out_size != l->in_size)
                    return ae_error_set(err, AE_ERR_SHAPE,
                                        "%s: cannot tie to '%s': its weight is %zux%zu, this layer needs %zux%zu",
                                        ls->origin, l->tie_name, src->in_size, src->out_size, l->out_size,
                                        l->in_size);
                l->tied = src;
            }
            cur = l->out;
        }
    }
    m->out_size = ae_shape_size(&cur);
    m->code_size = m->n_encoder > 0 ? m->layers[m->n_encoder - 1].out_size : m->in_size;
    return AE_OK;
}

static ae_status check_loss(ae_model *m, const ae_spec *spec, ae_error *err)
{
    ae_layer *last = &m->layers[m->n_layers - 1];
    const char *origin = m->type == AE_MODEL_CLASSIFIER ? (spec->n_head ? spec->head[spec->n_head - 1].origin : "")
                                                        : spec->decoder[spec->n_decoder - 1].origin;
    /* the kinds whose forward keeps the pre-activation in l->z for a fused loss */
    static const char *const z_kinds[] = {"dense", "act", "tdense", "conv", "deconv", "bn"};
    int has_z = 0;
    for (size_t k = 0; k < sizeof z_kinds / sizeof z_kinds[0]; k++) has_z |= strcmp(last->kind->name, z_kinds[k]) == 0;
    m->loss = spec->loss;
    m->loss_sum = spec->loss_sum;
    if (m->type == AE_MODEL_AUTOENCODER && m->out_size != m->in_size)
        return ae_error_set(err, AE_ERR_SHAPE, "%s: the decoder's output has %zu values, the input has %zu",
                            origin, m->out_size, m->in_size);
    if (spec->loss == AE_LOSS_BCE) {
        if (last->act != AE_ACT_SIGMOID || !has_z)
            return ae_error_set(err, AE_ERR_CONFIG,
                                "%s: loss bce needs a sigmoid output layer (the last layer is %s with act %s)",
                                origin, last->kind->name, ae_act_name(last->act));
        m->fused = 1;
    } else if (spec->loss == AE_LOSS_CE) {
        if (last->act != AE_ACT_SOFTMAX || !has_z)
            return ae_error_set(err, AE_ERR_CONFIG,
                                "%s: loss ce needs a softmax output layer (the last layer is %s with act %s)",
                                origin, last->kind->name, ae_act_name(last->act));
        m->fused = 1;
    }
    last->fused_out = m->fused;
    m->l1 = spec->l1_activity;
    m->l2 = spec->l2;
    m->kl = spec->kl_sparsity;
    m->kl_rho = spec->kl_target;
    m->l1_layer = -1;
    if (m->l1 > 0.0f || m->kl > 0.0f) {
        m->l1_layer = ae_model_find_layer(m, spec->activity_layer);
        if (m->l1_layer < 0 || m->l1_layer == m->n_layers - 1)
            return ae_error_set(err, AE_ERR_CONFIG, "%s: [loss] activity_layer: no hidden layer named '%s'",
                                spec->source, spec->activity_layer);
    }
    return AE_OK;
}

static ae_status alloc_buffers(ae_model *m, ae_error *err)
{
    size_t np = 0, ns = 0, na = 0, maxw = m->in_size, scr = 0;
    size_t mb = (size_t)m->max_batch;
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        l->p_off = np;
        l->s_off = ns;
        l->aux_off = na;
        np += l->n_params;
        ns += l->n_state;
        na += l->n_aux;
        if (l->out_size > maxw) maxw = l->out_size;
        size_t need = l->scratch_per_sample * mb + l->scratch_fixed;
        if (need > scr) scr = need;
    }
    m->n_params = np;
    m->n_state = ns;
    m->n_aux = na;
    if (!(m->params_own = ae_alloc_floats(np, err)) || !(m->grads_own = ae_alloc_floats(np + na + AE_GRAD_EXTRA, err)) ||
        !(m->state = ae_alloc_floats(ns, err)) || !(m->act = ae_calloc((size_t)m->n_layers, sizeof(float *), err)) ||
        !(m->z_last = ae_alloc_floats(mb * m->out_size, err)) || !(m->scratch[0] = ae_alloc_floats(mb * maxw, err)) ||
        !(m->scratch[1] = ae_alloc_floats(mb * maxw, err)) || !(m->scratch_shared = ae_alloc_floats(scr, err)))
        return AE_ERR_NOMEM;
    if (m->l1_layer >= 0 && !(m->kl_mean = ae_alloc_floats(m->layers[m->l1_layer].out_size, err)))
        return AE_ERR_NOMEM;
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        if (!(m->act[i] = ae_alloc_floats(mb * l->out_size, err))) return AE_ERR_NOMEM;
        size_t nws = mb * l->ws_per_sample + l->ws_fixed;
        if (nws && !(l->ws = ae_alloc_floats(nws, err))) return AE_ERR_NOMEM;
        l->ws_fix = l->ws_fixed ? l->ws + mb * l->ws_per_sample : NULL;
        l->state = l->n_state ? m->state + l->s_off : NULL;
        l->scratch = m->scratch_shared;
    }
    ae_model_bind_params(m, NULL);
    ae_model_bind_grads(m, NULL);
    m->layers[m->n_layers - 1].z = m->fused ? m->z_last : NULL;
    return AE_OK;
}

void ae_model_bind_params(ae_model *m, float *p)
{
    if (!p) p = m->params_own;
    m->params = p;
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        size_t nw = ae_layer_n_weights(l);
        if (l->n_params) {
            l->W = nw ? p + l->p_off : NULL;
            l->b = l->use_bias ? p + l->p_off + nw : NULL;
        }
    }
}

void ae_model_bind_grads(ae_model *m, float *g)
{
    if (!g) g = m->grads_own;
    m->grads = g;
    m->extra = g + m->n_params + m->n_aux;
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        size_t nw = ae_layer_n_weights(l);
        if (l->n_params) {
            l->dW = nw ? g + l->p_off : NULL;
            l->db = l->use_bias ? g + l->p_off + nw : NULL;
        }
        l->aux = l->n_aux ? g + m->n_params + l->aux_off : NULL;
    }
}

float ae_model_loss_scale(const ae_model *m, int64_t nb)
{
    double per = (m->loss == AE_LOSS_CE || m->loss_sum) ? 1.0 : (double)m->out_size;
    return nb > 0 ? (float)(1.0 / ((double)nb * per)) : 0.0f;
}

void ae_model_update(ae_model *m, const ae_ctx *ctx)
{
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        if (l->kind->update) l->kind->update(l, ctx);
    }
}

ae_status ae_model_create(const ae_spec *spec, const ae_shape *in, int max_batch, ae_model **out,
                          ae_error *err)
{
    *out = NULL;
    if (max_batch < 1) return ae_error_set(err, AE_ERR_ARG, "model: max_batch must be >= 1");
    ae_model *m = ae_calloc(1, sizeof *m, err);
    if (!m) return AE_ERR_NOMEM;
    m->type = spec->type;
    m->in = *in;
    m->in_size = ae_shape_size(in);
    m->max_batch = max_batch;
    ae_status st = setup_layers(m, spec, err);
    if (!st) st = check_loss(m, spec, err);
    if (!st) st = alloc_buffers(m, err);
    if (st) {
        ae_model_free(m);
        return st;
    }
    for (int i = 0; i < m->n_layers; i++) m->flops += m->layers[i].flops;
    m->arch_hash = arch_hash(m);
    *out = m;
    return AE_OK;
}

void ae_model_init_params(ae_model *m, uint64_t seed)
{
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        if (!l->kind->init) continue;
        ae_rng rng;
        ae_rng_init(&rng, seed, AE_RNG_INIT, (uint32_t)i, 0, 0);
        l->kind->init(l, &rng);
    }
}

const float *ae_model_forward(ae_model *m, const ae_ctx *ctx, const float *x, int n, int upto)
{
    const float *cur = x;
    for (int i = 0; i < upto; i++) {
        ae_layer *l = &m->layers[i];
        l->kind->forward(l, ctx, cur, m->act[i], n);
        cur = m->act[i];
    }
    return cur;
}

/* L1 and KL penalties on the activity layer's output: value over the n
 * samples (the KL term counts once per batch), and when d != NULL their
 * gradient, per_sample = 1 / (global batch). The KL's mean activations are
 * over the global batch (reduced across ranks) when ctx->reduce is set: over
 * the pass's global micro-batch under gradient accumulation (ctx->sync_count),
 * whose KL term then weighs |micro-batch| / batch in the step's loss. */
static double activity_penalty(ae_model *m, const ae_ctx *ctx, int n, float per_sample, float *d)
{
    const ae_layer *l = &m->layers[m->l1_layer];
    const float *a = m->act[m->l1_layer];
    size_t w = l->out_size;
    double pen = 0.0;
    if (m->l1 > 0.0f) pen += ae_loss_l1(a, (size_t)n * w, m->l1, per_sample, d);
    if (m->kl > 0.0f) {
        for (size_t j = 0; j < w; j++) m->kl_mean[j] = 0.0f;
        for (int i = 0; i < n; i++)
            for (size_t j = 0; j < w; j++) m->kl_mean[j] += a[(size_t)i * w + j];
        double cnt = (double)n;
        if (d && ctx->reduce) {
            ctx->reduce(m->kl_mean, w, ctx->reduce_user);
            cnt = (double)ae_ctx_sync_count(ctx, n);
        }
        for (size_t j = 0; j < w; j++) m->kl_mean[j] = cnt > 0 ? (float)(m->kl_mean[j] / cnt) : 0.0f;
        /* per sample: the batch's KL term shared out over its samples, so that sums over ranks and
         * samples give it once */
        double kl = ae_loss_kl_sparsity(m->kl_mean, w, m->kl_rho, m->kl, (size_t)n, per_sample, d);
        pen += kl * (double)n;
    }
    return pen;
}

void ae_model_loss(ae_model *m, const ae_ctx *ctx, const float *x, const float *target, const uint8_t *labels,
                   int n, float scale, int backward, ae_loss_out *out)
{
    memset(out, 0, sizeof *out);
    if (n <= 0 && !backward) return;
    int L = m->n_layers;
    const float *y = m->act[L - 1];
    /* the BCE's gradient replaces the logits (which nothing reads after it), so a step touches one
     * buffer of the output's size fewer */
    float *d = !backward ? NULL : m->loss == AE_LOSS_BCE ? m->z_last : m->scratch[0];
    size_t w = m->out_size;
    switch (m->loss) {
    case AE_LOSS_MSE: out->loss = ae_loss_mse(y, target, (size_t)n, w, scale, d); break;
    case AE_LOSS_BCE: out->loss = ae_loss_bce_logits(m->z_last, target, (size_t)n, w, scale, d); break;
    case AE_LOSS_CE: out->loss = ae_loss_ce_logits(m->z_last, labels, (size_t)n, w, scale, d, &out->correct); break;
    }
    for (int i = 0; i < L; i++) out->penalty += m->layers[i].penalty;
    if (m->l1_layer >= 0 && !backward) out->penalty += activity_penalty(m, ctx, n, 0.0f, NULL);
    if (!backward) return;
    /* the penalty is per sample: scale it by 1/N where the data loss is per element 1/(N w) */
    float per_sample = (m->loss == AE_LOSS_CE || m->loss_sum) ? scale : scale * (float)w;
    int cur = 0; /* the layers' input gradients alternate between the two scratch buffers */
    float *dout = d;
    for (int i = L - 1; i >= 0; i--) {
        ae_layer *l = &m->layers[i];
        if (i == m->l1_layer) out->penalty += activity_penalty(m, ctx, n, per_sample, dout);
        float *din = i > 0 ? m->scratch[1 - cur] : NULL;
        l->kind->backward(l, ctx, i > 0 ? m->act[i - 1] : x, m->act[i], dout, din, n);
        if (ctx->layer_done) ctx->layer_done(i, ctx->layer_done_user);
        cur = 1 - cur;
        dout = din;
    }
}

double ae_model_add_l2(ae_model *m)
{
    if (m->l2 <= 0.0f) return 0.0;
    double pen = 0.0;
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        if (!l->W || l->no_decay) continue;
        size_t nw = ae_layer_n_weights(l);
        pen += ae_loss_l2(l->W, nw, m->l2, l->dW);
    }
    return pen;
}

void ae_model_add_l2_grad(ae_model *m) { ae_model_add_l2_grad_range(m, 0, m->n_params); }

/* [*a, *b) = [off, off + len) clipped to [lo, hi); 0 when empty. */
static int clip_span(size_t off, size_t len, size_t lo, size_t hi, size_t *a, size_t *b)
{
    *a = off > lo ? off : lo;
    *b = off + len < hi ? off + len : hi;
    return *a < *b;
}

void ae_model_add_l2_grad_range(ae_model *m, size_t lo, size_t hi)
{
    if (m->l2 <= 0.0f) return;
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        size_t a, b;
        if (!l->W || l->no_decay || !clip_span(l->p_off, ae_layer_n_weights(l), lo, hi, &a, &b)) continue;
        ae_loss_l2_grad(m->params + a, b - a, m->l2, m->grads + a);
    }
}

size_t ae_model_act_bytes_per_sample(const ae_model *m)
{
    /* outputs, the two gradient buffers, per-sample workspaces and the largest shared scratch */
    size_t f = m->out_size, maxw = m->in_size, scr = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const ae_layer *l = &m->layers[i];
        f += l->out_size + l->ws_per_sample;
        if (l->out_size > maxw) maxw = l->out_size;
        if (l->scratch_per_sample > scr) scr = l->scratch_per_sample;
    }
    return (f + 2 * maxw + scr) * sizeof(float);
}

void ae_model_print(const ae_model *m, FILE *f)
{
    fprintf(f, "%-4s %-10s %-8s %-16s %-16s %-8s %12s %14s\n", "#", "name", "kind", "input", "output", "act",
            "params", "FLOPs/sample");
    for (int i = 0; i < m->n_layers; i++) {
        const ae_layer *l = &m->layers[i];
        char in[32], out[32];
        snprintf(in, sizeof in, "%dx%dx%d", l->in.c, l->in.h, l->in.w);
        snprintf(out, sizeof out, "%dx%dx%d", l->out.c, l->out.h, l->out.w);
        char kind[24];
        snprintf(kind, sizeof kind, "%s%s", l->kind->name, l->tied ? "*" : "");
        fprintf(f, "%-4d %-10s %-8s %-16s %-16s %-8s %12zu %14.0f%s\n", i, l->name, kind, in, out,
                ae_act_name(l->act), l->n_params, l->flops, i == m->n_encoder - 1 ? "   <- code" : "");
    }
}

void ae_model_zero_frozen(ae_model *m) { ae_model_zero_frozen_range(m, 0, m->n_params); }

void ae_model_zero_frozen_range(ae_model *m, size_t lo, size_t hi)
{
    for (int i = 0; i < m->n_layers; i++) {
        ae_layer *l = &m->layers[i];
        size_t a, b;
        if (l->frozen && clip_span(l->p_off, l->n_params, lo, hi, &a, &b))
            memset(m->grads + a, 0, sizeof(float) * (b - a));
    }
}

int ae_model_copy_layers(ae_model *dst, const ae_model *src, char *names, size_t cap)
{
    int copied = 0;
    size_t len = 0;
    if (cap) names[0] = '\0';
    for (int i = 0; i < dst->n_layers; i++) {
        ae_layer *d = &dst->layers[i];
        int j = ae_model_find_layer(src, d->name);
        if (j < 0) continue;
        const ae_layer *s = &src->layers[j];
        if (s->kind != d->kind || s->n_params != d->n_params || s->n_state != d->n_state || s->in_size != d->in_size ||
            s->out_size != d->out_size)
            continue;
        if (d->n_params) memcpy(dst->params + d->p_off, src->params + s->p_off, sizeof(float) * d->n_params);
        if (d->n_state) memcpy(dst->state + d->s_off, src->state + s->s_off, sizeof(float) * d->n_state);
        copied++;
        int w = snprintf(names + len, len < cap ? cap - len : 0, "%s%s", len ? ", " : "", d->name);
        if (w > 0) len += (size_t)w;
    }
    return copied;
}
