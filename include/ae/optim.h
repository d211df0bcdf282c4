/* optim.h - optimizers over one flat parameter buffer, learning-rate
 * schedules and gradient clipping.
 *
 * The optimizer state of all parameters is one buffer of
 * ae_optim_state_floats(kind, n) floats, laid out as k consecutive blocks of
 * n floats (k = 1 for SGD / RMSProp, 2 for Adam / Adadelta; plain SGD,
 * momentum 0, leaves its block untouched and accepts state == NULL), zeroed
 * before the first step. Every rank applies the same step to the same numbers. */
#ifndef AE_OPTIM_H
#define AE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { AE_OPT_SGD = 0, AE_OPT_RMSPROP, AE_OPT_ADAM, AE_OPT_ADADELTA } ae_opt_kind;

typedef struct ae_optim_conf {
    ae_opt_kind kind;
    float momentum;  /* SGD: 0 = plain */
    int nesterov;    /* SGD with momentum: Nesterov form (PyTorch's) */
    float beta1;     /* Adam (0.9) */
    float beta2;     /* Adam (0.999) */
    float rho;       /* RMSProp (0.9), Adadelta (0.95): decay of the squares */
    float eps;       /* Adam 1e-8, RMSProp 1e-7, Adadelta 1e-6 */
} ae_optim_conf;

/* Floats of optimizer state for n parameters. */
size_t ae_optim_state_floats(ae_opt_kind kind, size_t n);

/* One step over p[0..n) with gradients g, learning rate lr; t is the 1-based
 * step number (Adam's bias correction). Formulas (PyTorch conventions):
 *   SGD:      v = mu*v + g;  p -= lr * (nesterov ? g + mu*v : v)   (mu=0: p -= lr*g)
 *   RMSProp:  s = rho*s + (1-rho)*g^2;  p -= lr * g / (sqrt(s) + eps)
 *   Adam:     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
 *             p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
 *   Adadelta: s = rho*s + (1-rho)*g^2;  d = sqrt(u+eps)/sqrt(s+eps)*g;
 *             u = rho*u + (1-rho)*d^2;  p -= lr * d
 * state blocks: SGD [v], RMSProp [s], Adam [m, v], Adadelta [s, u].
 * The finite check of g is part of the pass: the buffers go in blocks of 64
 * floats, each block's gradients checked just before its update. Returns 0
 * when every gradient was finite and every parameter stepped; 1 when one was
 * Inf or NaN: the update stopped at its block (the blocks before it are
 * stepped, that one and the rest are not), which the caller must treat as a
 * failed step (the trainer ends the run with the error and saves none of it). */
int ae_optim_step(const ae_optim_conf *c, float lr, int64_t t, float *p, const float *g, float *state,
                  size_t n);

/* The same step over elements [off, off + len) only of buffers of n parameters (the state blocks
 * are n long each), with the same check and result. Elementwise: the steps of disjoint ranges
 * that cover [0, n) give the bits of one ae_optim_step. */
int ae_optim_step_range(const ae_optim_conf *c, float lr, int64_t t, float *p, const float *g, float *state,
                        size_t n, size_t off, size_t len);

/* ae_optim_step_range that also sets the gradients it stepped to 0, each block just after its
 * update (in L1 still): the trainer's next step then needs no zeroing pass over them. At a
 * non-finite gradient (1) the blocks before its block are stepped and zeroed, the rest untouched. */
int ae_optim_step_range_zero(const ae_optim_conf *c, float lr, int64_t t, float *p, float *g, float *state,
                             size_t n, size_t off, size_t len);

typedef enum { AE_SCHED_CONSTANT = 0, AE_SCHED_STEP, AE_SCHED_COSINE } ae_sched_kind;

typedef struct ae_sched_conf {
    ae_sched_kind kind;
    float base_lr;        /* lr after warm-up (before decay) */
    float warmup_epochs;  /* linear warm-up from 0 over this many epochs (may be fractional) */
    float step_epochs;    /* step: multiply by gamma every step_epochs epochs */
    float gamma;          /* step: factor */
    float min_lr;         /* cosine: floor reached at the last step */
} ae_sched_conf;

/* Learning rate for global step `step` (0-based) of a run of total_steps
 * steps with steps_per_epoch steps an epoch. Warm-up: lr = base * (step+1) /
 * warmup_steps while step < warmup_steps. Then constant, step
 * (base * gamma^floor(epoch_float / step_epochs)) or cosine from base to min_lr
 * over the steps after warm-up. */
float ae_sched_lr(const ae_sched_conf *c, int64_t step, int64_t steps_per_epoch, int64_t total_steps);

/* Global L2 norm of g[0..n), accumulated in double. */
double ae_optim_grad_norm(const float *g, size_t n);

/* If max_norm > 0 and the global norm exceeds it, scale g so its norm is
 * max_norm. Returns the norm before clipping. */
double ae_optim_clip(float *g, size_t n, double max_norm);

#endif
