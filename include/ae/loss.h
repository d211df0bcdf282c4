/* loss.h - reconstruction and classification losses and penalties.
 *
 * Each loss returns the SUM over the n samples (and w features) of the
 * per-element loss, accumulated in double, and, when d != NULL, writes
 * scale * d(sum)/d(input) into d. The caller picks scale (e.g. 1/(N*w) for
 * the mean over a global batch of N samples). The *_logits forms take the
 * pre-activation z and write the gradient with respect to z: stable, and
 * the activation's own backward is skipped. */
#ifndef AE_LOSS_H
#define AE_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* Per element (y - t)^2; d = scale * 2 (y - t) w.r.t. y. */
double ae_loss_mse(const float *y, const float *t, size_t n, size_t w, float scale, float *d);

/* Binary cross-entropy of sigmoid(z) against t in [0,1], from the logits:
 * max(z,0) - z t + log(1 + exp(-|z|)); d = scale * (sigmoid(z) - t) w.r.t. z. d may be z itself (each
 * element's gradient replaces its logit). */
double ae_loss_bce_logits(const float *z, const float *t, size_t n, size_t w, float scale, float *d);

/* Binary cross-entropy of outputs y (clamped to [AE_BCE_EPS, 1-AE_BCE_EPS]);
 * d w.r.t. y. For outputs that are not a sigmoid. */
#define AE_BCE_EPS 1e-7f
double ae_loss_bce(const float *y, const float *t, size_t n, size_t w, float scale, float *d);

/* Softmax cross-entropy from logits z (n x w) and labels; per sample
 * logsumexp(z) - z[label]; d = scale * (softmax(z) - onehot) w.r.t. z.
 * *correct (if not NULL) += samples whose argmax(z) == label. */
double ae_loss_ce_logits(const float *z, const uint8_t *labels, size_t n, size_t w, float scale, float *d,
                         size_t *correct);

/* L1 activity penalty lambda * sum|a|; d += scale * lambda * sign(a). */
double ae_loss_l1(const float *a, size_t len, float lambda, float scale, float *d);

/* KL sparsity penalty beta * sum_j KL(rho || q_j) for mean activations
 * q[0..w) (clamped to [AE_KL_EPS, 1-AE_KL_EPS]); when d != NULL, adds
 * scale * beta * KL'(q_j) to d[i*w + j] for the n samples. */
#define AE_KL_EPS 1e-6f
double ae_loss_kl_sparsity(const float *q, size_t w, float rho, float beta, size_t n, float scale, float *d);

/* L2 weight penalty lambda/2 * sum w^2; g += lambda * w (when g != NULL). */
double ae_loss_l2(const float *wt, size_t len, float lambda, float *g);
/* Only the gradient: g += lambda * w (one vectorized pass, no sum). */
void ae_loss_l2_grad(const float *wt, size_t len, float lambda, float *g);

#endif
