/* gradcheck.h - the library's one finite-difference gradient checker (after
 * kann's kad_check_grad). Every layer and loss test runs its gradients
 * through it: analytic gradients against central differences of the same
 * objective, evaluated with the forward pass only.
 *
 * The objective of a model on n samples is the one training differentiates
 * for a global batch of n (see model.h and train.c):
 *   J = scale * loss + penalty / n + l2
 * with scale = ae_model_loss_scale(m, n) (1 / (n out_size) for a per-element
 * mean, 1 / n for ce or a per-sample sum), loss and penalty (L1 activity and
 * any other per-sample terms) as ae_model_loss reports them, and l2 from
 * ae_model_add_l2.
 *
 * Input gradients: a model computes none (its first layer gets din = NULL),
 * so a layer's din is checked through the parameters of a dense layer in
 * front of it (the tests put one before every act, flatten, ...), and
 * ae_gradcheck_func checks a loss's d/d(input) directly. */
#ifndef AE_GRADCHECK_H
#define AE_GRADCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "ae/layers.h"
#include "ae/model.h"
#include "ae/status.h"

/* Defaults of ae_gradcheck_opts. Chosen on 17 small models (every activation, dense and act, tied,
 * flatten, bce, ce, L1 + L2) x 16 seeds, 17344 coordinates: with these the largest error was 0.77 tol,
 * none was skipped, 7% needed a smaller step near a kink, 14% were judged against the noise floor
 * (small gradients: see gradcheck.c). */
#define AE_GRADCHECK_TOL 1e-3         /* a coordinate above this relative error counts as failed */
#define AE_GRADCHECK_REL_STEP 0.2     /* h = rel_step * max(|p|, min_mag): large, against float noise; */
#define AE_GRADCHECK_LEVELS 3         /* the truncation error is then removed: Richardson h, h/2, h/4 */
#define AE_GRADCHECK_MIN_MAG 0.5      /* h >= 0.1: parameters near 0 still get a step J can resolve */
#define AE_GRADCHECK_NOISE_SIGMAS 6.0 /* floor = noise_sigmas * sd(numeric) / tol */
#define AE_GRADCHECK_DITHERS 32       /* evaluations of J that measure its rounding noise */

typedef struct ae_gradcheck_opts {
    double tol;           /* n_failed counts coordinates with relative error > tol */
    double rel_step;      /* step h = rel_step * max(|p|, min_mag) ... */
    double min_mag;       /* ... so that h scales with the parameter */
    int levels;           /* Richardson levels 1..4: 1 = D(h); 2 = (4 D(h/2) - D(h)) / 3; ... */
    double noise_sigmas;  /* relative error = |a - n| / max(|a|, |n|, noise_sigmas * sd / tol), sd the
                           * rounding noise of n (0: no floor) */
    int n_dither;         /* evaluations of J that measure its rounding noise (< 2: assume none) */
    size_t max_per_layer; /* 0: every coordinate; else at most this many, drawn at random, per layer */
    uint64_t seed;        /* draws the subset and the dither; also the seed of the default ctx */
    const ae_ctx *ctx;    /* forward/loss context; NULL: training mode, seed o->seed, epoch/step 0 */
    int verbose;          /* print per-layer maxima (and coordinates above tol) to stderr */
} ae_gradcheck_opts;

/* Fill *o with the defaults above, all coordinates, seed 0. Every check also takes o = NULL for these. */
void ae_gradcheck_opts_default(ae_gradcheck_opts *o);

typedef struct ae_gradcheck_result {
    double max_rel_err;     /* over the checked coordinates */
    size_t worst_index;     /* where: index into m->params (model) or into x (function) */
    int worst_layer;        /* layer owning worst_index (-1 for ae_gradcheck_func) */
    char worst_name[32];    /* its name ("" for ae_gradcheck_func) */
    double worst_analytic;  /* the two derivatives at worst_index */
    double worst_numeric;
    double floor;           /* the denominator floor at worst_index */
    double noise;           /* measured sd of the rounding error of one evaluation of J (or f) */
    double objective;       /* J (or f) at the unperturbed point */
    size_t n_checked;       /* coordinates compared */
    size_t n_skipped;       /* coordinates not compared: even h/512 straddles a kink (relu, elu, |a|) */
    size_t n_shrunk;        /* coordinates compared with a smaller step, the first straddling a kink */
    size_t n_failed;        /* checked coordinates with relative error > tol */
    size_t n_floored;       /* checked coordinates below the floor (judged on noise), unless a == n exactly */
} ae_gradcheck_result;

/* J at the current parameters (forward pass, loss and penalties without
 * backward). Adds the L2 gradient into m->grads as a side effect (it calls
 * ae_model_add_l2). n <= m->max_batch. */
double ae_gradcheck_objective(ae_model *m, const ae_ctx *ctx, const float *x, const float *target,
                              const uint8_t *labels, int n);

/* The analytic gradient of J: zeroes m->grads, runs forward, ae_model_loss
 * with backward, and ae_model_add_l2; copies the n_params gradient floats
 * into grad (when not NULL) and J into *objective (when not NULL). m->grads
 * keeps the gradient. Errors: AE_ERR_ARG (n out of [1, max_batch]). */
ae_status ae_gradcheck_model_grad(ae_model *m, const ae_ctx *ctx, const float *x, const float *target,
                                  const uint8_t *labels, int n, float *grad, double *objective,
                                  ae_error *err);

/* Compare a given gradient (n_params floats, e.g. from ae_gradcheck_model_grad,
 * possibly altered by a test) against central differences of J. Parameters
 * are perturbed in place and restored bit for bit; m->grads is left holding
 * grad. Errors: AE_ERR_ARG, AE_ERR_NOMEM, AE_ERR_NUMERIC (J not finite at the
 * unperturbed point). A gradient mismatch is not an error: read *r. */
ae_status ae_gradcheck_model_against(ae_model *m, const float *x, const float *target, const uint8_t *labels,
                                     int n, const float *grad, const ae_gradcheck_opts *o,
                                     ae_gradcheck_result *r, ae_error *err);

/* ae_gradcheck_model_grad then ae_gradcheck_model_against: the check every
 * layer test runs. labels is for ce, target for mse and bce (n x out_size). */
ae_status ae_gradcheck_model(ae_model *m, const float *x, const float *target, const uint8_t *labels, int n,
                             const ae_gradcheck_opts *o, ae_gradcheck_result *r, ae_error *err);

/* One line for messages: "max rel err E at NAME[i] (analytic A, numeric N, floor F), C checked,
 * S skipped, K floored, noise sd D". */
void ae_gradcheck_format(const ae_gradcheck_result *r, char *buf, size_t n);

/* A scalar function of len floats: returns f(x) (accumulated in double) and,
 * when grad != NULL, writes df/dx into grad (len floats). */
typedef double (*ae_gradcheck_fn)(void *ud, const float *x, float *grad);

/* Check a function's gradient against central differences of f, e.g. a loss
 * with respect to its input (tests wrap ae_loss_* in an ae_gradcheck_fn).
 * x is perturbed in place and restored. No kink detection: keep x away from
 * kinks by more than the step. max_per_layer applies to x as one layer.
 * Errors: AE_ERR_NOMEM, AE_ERR_NUMERIC (f not finite at x). */
ae_status ae_gradcheck_func(ae_gradcheck_fn f, void *ud, float *x, size_t len, const ae_gradcheck_opts *o,
                            ae_gradcheck_result *r, ae_error *err);

#endif
