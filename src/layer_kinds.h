/* layer_kinds.h - private to the layer files: argument helpers and the layer
 * kinds defined outside layers.c (listed in the table in layers.c). */
#ifndef AE_LAYER_KINDS_H
#define AE_LAYER_KINDS_H

#include "ae/layers.h"

/* Integer argument at position pos (or -1) or key; def < lo means required. */
ae_status ae_layer_arg_int(const ae_layer_spec *ls, int pos, const char *key, int def, int lo, int hi, int *out,
                           ae_error *err);
/* Float argument; def = NAN means required. */
ae_status ae_layer_arg_float(const ae_layer_spec *ls, int pos, const char *key, float def, float lo, float hi,
                             float *out, ae_error *err);
/* Activation argument (key "act"). */
ae_status ae_layer_arg_act(const ae_layer_spec *ls, int pos, ae_act def, ae_act *out, ae_error *err);
/* Fill w[0..nw) by the init scheme (glorot / he / torch, normal / uniform) with the given fans. */
void ae_layer_init_weights(float *w, size_t nw, double fan_in, double fan_out, ae_init init, ae_rng *rng);
/* Biases: 0, or U(+-1/sqrt(fan_in)) for init = torch (drawn after the weights, from the same stream). */
void ae_layer_init_bias(float *b, size_t nb, double fan_in, ae_init init, ae_rng *rng);
/* Reject unknown keys (keys: NULL-terminated) and more than max_pos positional arguments. */
ae_status ae_layer_check_args(const ae_layer_spec *ls, int max_pos, const char *const *keys, ae_error *err);

/* batchnorm.c */
extern const ae_layer_kind ae_kind_bn;
/* noise.c */
extern const ae_layer_kind ae_kind_gauss, ae_kind_mask, ae_kind_saltpepper, ae_kind_mult012, ae_kind_dropout;

/* conv.c */
extern const ae_layer_kind ae_kind_conv, ae_kind_deconv, ae_kind_maxpool, ae_kind_upsample, ae_kind_reshape;

/* vae.c */
extern const ae_layer_kind ae_kind_sample;

/* lstm.c */
extern const ae_layer_kind ae_kind_lstm, ae_kind_repeat, ae_kind_tdense;

#endif
