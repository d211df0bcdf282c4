/* train.h - the data-parallel training loop and the commands built on it:
 * train (with run folder, checkpoints, resume, early stopping, probe),
 * evaluate a checkpoint, and check a config without training. */
#ifndef AE_TRAIN_H
#define AE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "ae/config.h"
#include "ae/status.h"

typedef struct ae_train_opts {
    const char *config_path; /* for the default run name (its file stem) */
    const char *resume;      /* NULL, "auto", or a checkpoint path */
    int quiet;
    const char *command;     /* command line, for the run record */
} ae_train_opts;

typedef struct ae_train_result {
    double test_loss, test_mse, test_bce, test_acc; /* test_acc: classifier, else NAN */
    double probe_acc;                                /* autoencoder probe, NAN when not run */
    double knn_acc;                                  /* k-NN on the code, NAN when not run */
    double samples_per_s;                            /* mean training throughput */
    int64_t steps;
    /* [train] target_loss: where it was reached (epoch 0: not reached or off), the wall time of this
     * process's training up to then (steps, evaluation, checkpoints) and its training steps alone */
    int64_t target_epoch, target_step;
    double time_to_target_s, train_time_to_target_s;
    char run_dir[4096];
} ae_train_result;

/* Collective: train as the spec says. Rank 0 writes the run folder. On
 * SIGUSR1/SIGUSR2/SIGTERM every rank stops after the same step, rank 0
 * checkpoints, and AE_ERR_INTERRUPTED is returned. */
ae_status ae_train_run(ae_spec *spec, const ae_train_opts *opts, ae_train_result *res, ae_error *err);

/* Collective: evaluate a checkpoint on its config's test set (and the probe
 * when probe != 0 for autoencoders). Prints results on rank 0. */
ae_status ae_train_eval_ckpt(const char *path, int probe, int quiet, ae_error *err);

/* Print layer shapes, parameter count, FLOPs per sample and memory per rank
 * for a P-rank run, without loading data or training. */
ae_status ae_train_check(ae_spec *spec, int nranks, ae_error *err);

/* PCA baseline: fit on the config's training split, print the test MSE per
 * element for each of the nk component counts ks[] (not collective: run it
 * as one process). */
ae_status ae_train_pca(ae_spec *spec, const int *ks, int nk, ae_error *err);

/* Write the codes of a checkpoint's model for its dataset's test (or
 * train) split: CSV (label, c0, c1, ...) or, for a name ending in .npy, a
 * float32 NPY array (n x code) plus <stem>_labels.npy (uint8) and the
 * encoder's weights as <stem>_<layer>_W.npy / _b.npy. Not collective. */
ae_status ae_train_encode(const char *ckpt, const char *out, int train_split, ae_error *err);

/* ---- gradient accumulation: the passes of one step (pure arithmetic) ---- */

/* Part `part` of `parts` contiguous parts of [0, n): [n part / parts,
 * n (part + 1) / parts). The parts partition [0, n) in order; part sizes
 * differ by at most one (ranks' slices of a batch, global micro-batches,
 * deterministic micro-shards). parts >= 1, 0 <= part < parts. */
void ae_train_split(size_t n, int parts, int part, size_t *lo, size_t *hi);

/* One rank's pass of a step: the global micro-batch [g_lo, g_hi) of the
 * step's nb samples, and this rank's slice [lo, hi) of it (indices into the
 * global batch: lo is the pass's first global sample, the key of its noise). */
typedef struct ae_train_pass {
    size_t g_lo, g_hi; /* global micro-batch `pass` of `passes` */
    size_t lo, hi;     /* rank `rank` of `nranks`'s contiguous slice of it */
} ae_train_pass;

void ae_train_pass_range(size_t nb, int passes, int nranks, int pass, int rank, ae_train_pass *out);

/* ---- load balancing (train.balance): the ranks' shares of each pass ---- */

/* Rank `rank`'s slice of [0, n) when the ranks' shares follow the integer
 * weights w[0..nranks) (w > 0, their sum below 2^63): the cut before rank q
 * is floor(n W_q / W), W_q the sum of the weights before q and W of all.
 * Integer arithmetic only, so every rank computes the same cuts from the
 * same weights; equal weights give ae_train_split's slices; w = NULL is
 * ae_train_split. */
void ae_train_balance_split(size_t n, int nranks, const int64_t *w, int rank, size_t *lo, size_t *hi);

/* Clamps the weights in place into [ceil(w_max (4P - 5) / (5 (P - 1))),
 * w_max], P = nranks >= 2: the bound under which no rank's share of a pass
 * exceeds 5/4 of the equal share (so its slice has at most
 * ae_train_balance_max samples). Weights <= 0 become w_max. */
void ae_train_balance_clamp(int64_t *w, int nranks);

/* The most samples a rank computes in one pass when the shares are
 * balanced, for passes of at most pass_max samples per rank when equal:
 * min(nranks x pass_max, floor(5 pass_max / 4) + 1); pass_max for one rank. */
int ae_train_balance_max(int pass_max, int nranks);

/* ae_train_pass_range with the ranks' slices of each pass by
 * ae_train_balance_split (w = NULL: ae_train_pass_range). */
void ae_train_pass_range_w(size_t nb, int passes, int nranks, const int64_t *w, int pass, int rank,
                           ae_train_pass *out);

/* Passes per step: accum, or with micro_batch > 0 the fewest that keep a
 * rank's pass at most micro_batch samples, ceil(batch / (nranks x
 * micro_batch)). */
int ae_train_passes(int batch, int nranks, int accum, int micro_batch);

/* The most samples a rank computes in one pass of a step of at most batch
 * samples: ceil(ceil(batch / passes) / nranks) (activations are sized for it). */
int ae_train_pass_max(int batch, int passes, int nranks);

/* OpenBLAS threads for this rank: requested > 0, or the usable cores of
 * this rank (its CPU affinity) divided by the ranks sharing the node. */
int ae_train_threads(int requested);

#endif
