/* model.h - a model: the layer list, its shapes, and the contiguous buffers
 * (parameters, gradients, non-trainable state; the optimizer state lives
 * with the trainer and has the params' layout) plus forward/backward over
 * the list. The activations of one local batch are kept for backward. */
#ifndef AE_MODEL_H
#define AE_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ae/config.h"
#include "ae/layers.h"
#include "ae/status.h"

/* The gradient buffer carries AE_GRAD_EXTRA floats after the gradients, so
 * that one allreduce per step also sums the step's scalars (loss, penalty,
 * stop requests, correct count): see train.c. */
#define AE_GRAD_EXTRA 4

typedef struct ae_model {
    ae_model_type type;
    int n_layers;
    int n_encoder;        /* layers [0, n_encoder) are the encoder; the code is layer n_encoder-1's output */
    ae_layer *layers;
    ae_shape in;
    size_t in_size, out_size, code_size;
    size_t n_params, n_state, n_aux;
    float *params;        /* (n_params) all trainable tensors */
    float *params_own;    /* the model's own parameter buffer (params points here unless rebound) */
    float *grads;         /* (n_params + n_aux + AE_GRAD_EXTRA): gradients in the params' layout, then the
                             layers' aux sums (batch statistics), then the step's scalars */
    float *extra;         /* grads + n_params + n_aux */
    float *grads_own;     /* the model's own gradient buffer (grads points here unless rebound) */
    float *scratch_shared;/* layers' shared scratch */
    float *state;         /* (n_state) non-trainable (running statistics) */
    int max_batch;        /* activations are sized for this many samples */
    float **act;          /* act[i]: output of layer i, (max_batch x out_size_i) */
    float *z_last;        /* pre-activation of the last layer (max_batch x out_size) */
    float *scratch[2];    /* gradient ping-pong, (max_batch x max layer size) */
    ae_loss_kind loss;
    int loss_sum;         /* reconstruction loss summed over a sample's features (else averaged) */
    int fused;            /* loss computed from the last layer's logits */
    int l1_layer;         /* layer index of the L1 activity / KL sparsity penalties, -1 if none */
    float l1;
    float kl, kl_rho;     /* KL sparsity weight and target */
    float *kl_mean;       /* (code width) mean activations of the batch */
    float l2;
    uint64_t arch_hash;
    double flops;         /* forward FLOPs per sample (2 x multiply-adds) */
} ae_model;

/* Build a model from a spec for inputs of shape in, with activations for up
 * to max_batch samples. Shapes, layer args and loss/output pairing are
 * checked; errors name the config file:line of the offending layer. */
ae_status ae_model_create(const ae_spec *spec, const ae_shape *in, int max_batch, ae_model **out,
                          ae_error *err);
void ae_model_free(ae_model *m); /* accepts NULL */

/* Initialize all parameters from (seed, AE_RNG_INIT, layer index). */
void ae_model_init_params(ae_model *m, uint64_t seed);

/* Forward n <= max_batch samples through layers [0, upto); upto = n_layers
 * for the whole model. Returns the output of layer upto-1 (owned by m), or x
 * when upto == 0. */
const float *ae_model_forward(ae_model *m, const ae_ctx *ctx, const float *x, int n, int upto);

typedef struct ae_loss_out {
    double loss;     /* sum over the n samples of the data loss (per element for mse/bce, per sample for ce) */
    double penalty;  /* L1 activity penalty (lambda * sum|a|) over the n samples */
    size_t correct;  /* classifier: samples whose argmax is the label */
} ae_loss_out;

/* After ae_model_forward(..., n_layers): the loss of the output against
 * target (autoencoder: n x out_size floats) or labels (classifier). When
 * backward != 0, also back-propagates d(scale * loss + penalty / N) into
 * m->grads (accumulating), N the global batch (scale x out_size for a
 * per-element mean, scale otherwise: see ae_model_loss_scale). Typical scale: 1 / (global batch x out_size) for
 * reconstruction, 1 / global batch for ce. Backward calls ctx->layer_done
 * (when set) after each layer, last layer first. With backward and the bce
 * loss the output's gradient is written over the logits (m->z_last). */
void ae_model_loss(ae_model *m, const ae_ctx *ctx, const float *x, const float *target, const uint8_t *labels,
                   int n, float scale, int backward, ae_loss_out *out);

/* Gradient scale of the data loss for a global batch of nb samples:
 * 1 / (nb x out_size) for a per-element mean, 1 / nb for a per-sample sum or ce. */
float ae_model_loss_scale(const ae_model *m, int64_t nb);

/* After the step's allreduce: let layers fold the summed aux values into
 * their non-trainable state (same on every rank). */
void ae_model_update(ae_model *m, const ae_ctx *ctx);

/* Point grads, extra and every layer's gradient and aux views at g, a
 * buffer of the grads layout (n_params + n_aux + AE_GRAD_EXTRA floats) owned
 * by the caller, so that forward and backward write there; NULL points them
 * back at the model's own buffer. Deterministic mode computes each
 * micro-shard into its own buffer this way, without copies. */
void ae_model_bind_grads(ae_model *m, float *g);
/* The same for the parameters: every layer's W and b views at p (n_params
 * floats, the caller's; the training loop binds a node-shared copy), NULL
 * back at the model's own buffer. */
void ae_model_bind_params(ae_model *m, float *p);

/* The same gradient without the penalty's value (the training step's path). */
void ae_model_add_l2_grad(ae_model *m);

/* Zero the gradients of frozen layers (after the allreduce and L2). */
void ae_model_zero_frozen(ae_model *m);

/* Both, for the parameters in [lo, hi) of the buffer only (a bucket of whole layers, stepped as
 * soon as its sum is in; a rank's chunk of the node-sharded step, which may cut layers). */
void ae_model_add_l2_grad_range(ae_model *m, size_t lo, size_t hi);
void ae_model_zero_frozen_range(ae_model *m, size_t lo, size_t hi);

/* Copy the parameters (and non-trainable state) of every layer of src into
 * the layer of dst with the same name, kind and sizes. Returns the number of
 * layers copied and lists their names in names (comma-separated). */
int ae_model_copy_layers(ae_model *dst, const ae_model *src, char *names, size_t cap);

/* Add the L2 penalty gradient l2 * W to grads (weights, not biases); returns
 * l2/2 * sum W^2. */
double ae_model_add_l2(ae_model *m);

/* Index of the layer named name ("code" = the last encoder layer), -1 if none. */
int ae_model_find_layer(const ae_model *m, const char *name);

/* Print the layer table (shapes, params, FLOPs) and totals. */
void ae_model_print(const ae_model *m, FILE *f);

/* Bytes of activations + scratch per sample (for memory estimates). */
size_t ae_model_act_bytes_per_sample(const ae_model *m);

#endif
