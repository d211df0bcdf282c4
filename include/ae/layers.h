/* layers.h - layer kinds: shape rule, parameter count, init, forward and
 * backward. One table row per kind; the model walks a list of layers.
 *
 * Conventions (llm.c style): activations are row-major (n samples x size),
 * forward writes its output, backward ACCUMULATES (+=) into the parameter
 * gradients and WRITES din. backward may overwrite dout (it is the model's
 * scratch). A layer's trainable tensors are views into the model's one
 * params buffer (and the same offsets into the grads buffer); non-trainable
 * state (running statistics) views into the model's state buffer. */
#ifndef AE_LAYERS_H
#define AE_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "ae/config.h"
#include "ae/rng.h"
#include "ae/status.h"

typedef struct ae_shape {
    int c, h, w; /* a flat vector of n features is (n, 1, 1) */
} ae_shape;

static inline size_t ae_shape_size(const ae_shape *s) { return (size_t)s->c * s->h * s->w; }

typedef enum { AE_ACT_LINEAR = 0, AE_ACT_SIGMOID, AE_ACT_TANH, AE_ACT_RELU, AE_ACT_ELU, AE_ACT_SOFTMAX } ae_act;
typedef enum {
    AE_INIT_GLOROT_UNIFORM = 0, AE_INIT_GLOROT_NORMAL, AE_INIT_HE_UNIFORM, AE_INIT_HE_NORMAL,
    AE_INIT_TORCH /* PyTorch's nn.Linear / nn.Conv2d default: weights and biases U(+-1/sqrt(fan_in)) */
} ae_init;
/* The names ae_init_parse accepts, comma-separated, for error messages. */
#define AE_INIT_NAMES "glorot_uniform, glorot_normal, he_uniform, he_normal, torch"

const char *ae_act_name(ae_act a);
/* Parse "relu" etc.; returns -1 if unknown. */
int ae_act_parse(const char *s);
int ae_init_parse(const char *s);
const char *ae_init_name(ae_init i);

/* In-place activation of n rows of width w (softmax is per row). */
void ae_act_forward(ae_act act, float *x, size_t n, size_t w);
/* d[i] *= act'(at y[i]), in place; y is the activation's output. */
void ae_act_backward(ae_act act, const float *y, float *d, size_t n, size_t w);

/* Per-call context: mode and the keys of any randomness (noise, dropout)
 * so that a sample's draws depend on (seed, epoch, step, global sample index)
 * only, never on the rank that computes it. */
typedef struct ae_ctx {
    int training;
    uint64_t seed;
    int64_t epoch;
    int64_t step;
    int64_t sample0; /* index in the global batch of this call's first sample */
    int64_t batch;   /* samples in the global batch (all ranks): the loss scale; 0 = this call's n */
    /* samples that ctx->reduce's sums span: the global micro-batch of this pass under gradient
     * accumulation ([train] accum), which is less than batch; 0 = batch */
    int64_t sync_count;
    /* Sum buf[0..n) over all ranks in place (synchronized batch norm); NULL
     * when running alone. Layers never call MPI themselves. */
    ae_status (*reduce)(float *buf, size_t n, void *user);
    void *reduce_user;
    /* Optional: called by the model's backward (ae_model_loss) after the
     * backward of each layer, in reverse layer order, with the layer's
     * index (the trainer starts the allreduce of finished gradient buckets
     * there). NULL: none. */
    void (*layer_done)(int layer, void *user);
    void *layer_done_user;
    /* The caller reads only the fused loss's logits (the last layer's l->z), not
     * the model's output (a training step): that layer skips its activation and
     * need not write its output. 0: every layer writes its output. */
    int logits_only;
} ae_ctx;

/* The sample count that divides a sum reduced through ctx->reduce (synchronized
 * batch norm, the KL sparsity's mean activations): sync_count, else batch, else n. */
static inline int64_t ae_ctx_sync_count(const ae_ctx *ctx, int n)
{
    return ctx->sync_count ? ctx->sync_count : ctx->batch ? ctx->batch : n;
}

typedef struct ae_layer ae_layer;

typedef struct ae_layer_kind {
    const char *name;
    /* Parse args, set out shape, n_params, n_state, flops; errors name ls->origin. */
    ae_status (*setup)(ae_layer *l, const ae_layer_spec *ls, ae_error *err);
    /* Initialize the layer's parameter views (rng keyed per layer). */
    void (*init)(ae_layer *l, ae_rng *rng);
    void (*forward)(ae_layer *l, const ae_ctx *ctx, const float *in, float *out, int n);
    /* din may be NULL (first layer: no input gradient needed). */
    void (*backward)(ae_layer *l, const ae_ctx *ctx, const float *in, const float *out, float *dout,
                     float *din, int n);
    /* Optional: after the step's allreduce, fold the summed aux floats (e.g.
     * batch-norm statistics of the global batch) into the non-trainable
     * state; identical on every rank. */
    void (*update)(ae_layer *l, const ae_ctx *ctx);
} ae_layer_kind;

struct ae_layer {
    const ae_layer_kind *kind;
    char name[32];
    int index;
    ae_shape in, out;
    size_t in_size, out_size;
    ae_act act;
    ae_init init;
    int units;            /* dense: output features */
    int use_bias;
    char tie_name[32];    /* dense: name of the layer whose weight it uses transposed */
    ae_layer *tied;       /* resolved tie (NULL when untied) */
    int fused_out;        /* set by the model: loss gives d/dz directly, skip act backward */
    float *z;             /* set by the model for the last layer: pre-activation (n x out) */
    double flops;         /* forward multiply-adds x 2 per sample */
    size_t n_params, p_off; /* trainable floats and offset in params/grads */
    size_t n_state, s_off;  /* non-trainable floats and offset in state */
    float *W, *b;         /* views into params (W: in x units, row-major) */
    float *dW, *db;       /* views into grads */
    float *state;
    int no_decay;         /* L2 weight decay skips W (e.g. batch-norm scale) */
    int frozen;           /* parameters not trained (their gradients are zeroed after the allreduce) */
    int eval_rescale;     /* mask: in evaluation multiply the input by 1 - rate */
    /* geometry of conv / pool / upsample kinds */
    int filters, ksize, stride, pad_top, pad_left, ceil_mode, factor;
    float rate;           /* noise / dropout parameter */
    int flag;             /* kind-specific switch (e.g. batch-norm sync) */
    /* per-sample workspace kept from forward to backward (masks, argmax,
     * normalized values): ws_per_sample floats per sample, set in setup,
     * allocated by the model (max_batch x ws_per_sample) */
    size_t ws_per_sample, ws_fixed; /* ws holds max_batch x ws_per_sample + ws_fixed floats */
    float *ws;
    float *ws_fix;        /* the ws_fixed floats, after the per-sample part */
    float eps;            /* batch-norm epsilon */
    double penalty;       /* a loss term the layer adds itself (VAE KL), summed over the last forward's samples */
    /* scratch shared by all layers (im2col columns ...): scratch_per_sample
     * floats per sample plus scratch_fixed, set in setup */
    size_t scratch_per_sample, scratch_fixed;
    float *scratch;
    /* aux floats summed by the step's allreduce (after the gradients),
     * ADDED TO (+=) by forward in training mode, like the gradients by
     * backward (the trainer zeroes both once per step, so the passes of
     * gradient accumulation sum up), read by update */
    size_t n_aux, aux_off;
    float *aux;
};

/* Whether this forward may skip the layer's activation (and its output): it
 * feeds a fused loss whose caller reads only the logits, kept in l->z. */
static inline int ae_layer_logits_only(const ae_layer *l, const ae_ctx *ctx)
{
    return ctx->logits_only && l->fused_out && l->z;
}

/* The layer's weight count: its parameters without the bias (W, then b, in its span). */
static inline size_t ae_layer_n_weights(const ae_layer *l)
{
    return l->n_params - (l->use_bias ? (size_t)l->units : 0);
}

/* Find a layer kind by name; NULL if none. */
const ae_layer_kind *ae_layers_find(const char *name);
/* Comma-separated names of all kinds, for messages. */
const char *ae_layers_names(void);

#endif
