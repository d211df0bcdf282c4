/* config.h - INI config files -> ae_spec, with file:line errors.
 *
 * Syntax: `[section]` headers, `key = value` lines, `;` or `#` comments
 * (whole-line, or after whitespace), and continuation lines (a line that
 * starts with whitespace continues the previous value, joined by a space).
 * `include = path` (outside or inside a section; path relative to the file
 * that includes it) parses another file first-come: keys set later override.
 * Unknown sections/keys, duplicate keys in one file, and bad values are
 * errors naming file:line. Every key is documented in docs/configs.md.
 *
 * Layer lists (model.encoder, model.decoder, model.head) are written as
 *   kind(arg, arg, key=value, ...), kind(...), ...
 * e.g. `dense(128, relu), dense(32, act=relu, name=code)`. The config module
 * only splits them into ae_layer_spec; each layer kind checks its own args
 * when the model is built (and reports the spec's file:line). */
#ifndef AE_CONFIG_H
#define AE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "ae/optim.h"
#include "ae/status.h"

#define AE_SPEC_MAX_LAYERS 64
#define AE_SPEC_MAX_ARGS 8
#define AE_SPEC_STR 256
#define AE_ACCUM_MAX 4096 /* [train] accum: at most this many passes per optimizer step */

typedef struct ae_layer_arg {
    char key[24]; /* "" for a positional argument */
    char val[48];
} ae_layer_arg;

typedef struct ae_layer_spec {
    char kind[24];
    int nargs;
    ae_layer_arg args[AE_SPEC_MAX_ARGS];
    char origin[AE_SPEC_STR + 16]; /* "file:line" where it was written */
} ae_layer_spec;

typedef enum { AE_LOSS_MSE = 0, AE_LOSS_BCE, AE_LOSS_CE } ae_loss_kind;
typedef enum { AE_MODEL_AUTOENCODER = 0, AE_MODEL_CLASSIFIER } ae_model_type;

typedef struct ae_spec {
    /* [model] */
    ae_model_type type;                          /* type = autoencoder | classifier */
    int n_encoder;                               /* encoder = layer list (required) */
    ae_layer_spec encoder[AE_SPEC_MAX_LAYERS];
    int n_decoder;                               /* decoder = layer list (autoencoder) */
    ae_layer_spec decoder[AE_SPEC_MAX_LAYERS];
    int n_head;                                  /* head = layer list (classifier; default dense(10, softmax)) */
    ae_layer_spec head[AE_SPEC_MAX_LAYERS];
    char init[24];                               /* init = glorot_uniform | glorot_normal | he_uniform | he_normal */
    char pretrained[AE_SPEC_STR];                /* pretrained = "" (checkpoint whose same-named layers load) */
    int freeze;                                  /* freeze = 0 (leading layers kept fixed) */

    /* [pretrain] */
    int pretrain_layerwise;                      /* layerwise = false: greedy layer-wise pretraining first */
    int pretrain_epochs;                         /* epochs = 10 (per phase) */

    /* [loss] */
    ae_loss_kind loss;                           /* kind = mse | bce | ce */
    int loss_sum;                                /* reduction = mean | sum (over the features of a sample) */
    float l2;                                    /* l2 = 0: adds l2/2 * sum(W^2) (weights, not biases) */
    float l1_activity;                           /* l1_activity = 0: adds l1 * sum|a| / batch on activity_layer */
    char activity_layer[32];                     /* activity_layer = code */
    float kl_sparsity;                           /* kl_sparsity = 0: adds beta * sum_j KL(rho || mean_j) */
    float kl_target;                             /* kl_target = 0.05: rho */

    /* [optim] */
    ae_optim_conf optim;                         /* kind, momentum, nesterov, beta1, beta2, rho, eps */
    float lr;                                    /* lr = 1e-3 */
    float clip_norm;                             /* clip_norm = 0 (off) */
    int scale_lr;                                /* scale_lr = false: lr *= batch / base_batch */
    int base_batch;                              /* base_batch = 256 */

    /* [schedule] */
    ae_sched_conf sched;                         /* kind, warmup_epochs, step_epochs, gamma, min_lr (base_lr set from lr) */

    /* [train] */
    int batch;                                   /* batch = 256 (global, over all ranks) */
    int accum;                                   /* accum = 1: global micro-batches per optimizer step */
    int micro_batch;                             /* micro_batch = 0 (off): per-rank pass size, derives accum */
    int epochs;                                  /* epochs = 10 */
    int64_t max_steps;                           /* max_steps = 0 (no limit) */
    uint64_t seed;                               /* seed = 0 */
    int validation;                              /* validation = 5000 */
    int train_limit;                             /* train_limit = 0 (all) */
    int patience;                                /* patience = 0 (off) */
    float target_loss;                           /* target_loss = 0 (off): stop when reached */
    int checkpoint_epochs;                       /* checkpoint_epochs = 1 */
    int64_t checkpoint_steps;                    /* checkpoint_steps = 0 (off) */
    int keep;                                    /* keep = 3 */
    int threads;                                 /* threads = 0 (cores / ranks on the node) */
    int eval_every;                              /* eval_every = 1 */
    int probe;                                   /* probe = true (autoencoders) */
    int probe_epochs;                            /* probe_epochs = 30 */
    float probe_lr;                              /* probe_lr = 1e-2 */
    int probe_batch;                             /* probe_batch = 256 */
    int deterministic;                           /* deterministic = false: bitwise the same state for any P */
    int micro_shards;                            /* micro_shards = 4: fixed split of each global batch */
    int knn;                                     /* knn = 0: k of a k-NN classifier on the code at the end */
    float bucket_mb;                             /* bucket_mb = 0: gradient MB per allreduce started in backward */
    int comm_thread;                             /* comm_thread = true: buckets' sums on a communication thread */
    int allreduce_mpi;                           /* allreduce = node | mpi (bucket_mb = 0) */
    int shard_optimizer;                         /* auto | true | false (allreduce = node) */
    int bucket_step;                             /* bucket_step = true: optimizer per bucket as its sum arrives */
    int step_times;                              /* step_times = false: steps/rank-R.csv per rank */
    int balance;                                 /* balance = false: shares of a batch by the ranks' speed */
    int flush_denormals;                         /* flush_denormals = true: FTZ/DAZ while training */
    float watchdog;                              /* watchdog = 600 (s in one collective before aborting; 0 = off) */
    int ckpt_error_continue;                     /* on_checkpoint_error = stop | continue */

    /* [data] */
    char dataset[AE_SPEC_STR];                   /* dataset = mnist | fashion-mnist | <dir> */
    char data_dir[AE_SPEC_STR];                  /* dir = data */
    int data_shared;                             /* shared = true: one copy of the data per node */

    /* [run] */
    char run_name[128];                          /* name = "" (made by rank 0) */
    char run_dir[AE_SPEC_STR];                   /* dir = runs */
    int tb_images;                               /* tb_images = 8 (test images in TensorBoard; 0 = none) */

    /* Where the spec came from (first file parsed), for messages. */
    char source[AE_SPEC_STR];

    /* optim.rho / optim.eps were given explicitly (in a file or by --set); when 0 they follow
     * optim.kind: rho rmsprop 0.9, adadelta 0.95; eps adam 1e-8, rmsprop 1e-7, adadelta 1e-6
     * (0 where the kind does not use them). */
    int optim_rho_set;
    int optim_eps_set;
} ae_spec;

/* Parsing replaces *spec only on success: on any error *spec is left as it was
 * and err names the file:line (or "--set section.key") and the problem. */

/* Fill *spec with every default (an empty config). */
void ae_config_defaults(ae_spec *spec);

/* Parse a config file (with includes) over the defaults. */
ae_status ae_config_parse_file(const char *path, ae_spec *spec, ae_error *err);

/* Parse config text; origin names it in messages (e.g. "ckpt.aeck:config"). Includes are resolved
 * relative to the current directory. */
ae_status ae_config_parse_string(const char *text, const char *origin, ae_spec *spec, ae_error *err);

/* Apply one override "section.key=value" (as given to --set); errors name
 * "--set section.key". Call ae_config_validate afterwards. */
ae_status ae_config_set(ae_spec *spec, const char *assignment, ae_error *err);

/* Cross-key checks (e.g. autoencoder needs a decoder, ce needs a classifier) and
 * defaults that depend on other keys (rho/eps by optimizer kind). */
ae_status ae_config_validate(ae_spec *spec, ae_error *err);

/* Write the resolved config (every key, canonical form, sections in fixed
 * order) as INI text that ae_config_parse_string reads back to an equal
 * spec. Returns a malloc'ed string or NULL (sets err). */
char *ae_config_dump(const ae_spec *spec, ae_error *err);

/* 1 if a and b set every key to the same value (layer lists compared by kind and args,
 * not by origin; source ignored), else 0 and, when diff != NULL, "section.key" of the
 * first difference in diff (diff_size bytes). For "config changed since the checkpoint". */
int ae_config_equal(const ae_spec *a, const ae_spec *b, char *diff, size_t diff_size);

/* Look up a layer argument: positional index pos (or -1 to skip) or key.
 * Returns the value string or NULL. */
const char *ae_layer_spec_arg(const ae_layer_spec *ls, int pos, const char *key);

#endif
