/* eval.h - evaluation of a model on a dataset, sharded over the ranks and
 * reduced (every sample counted once): reconstruction error per element in
 * MSE and BCE, classification loss and accuracy; and encoding a dataset. */
#ifndef AE_EVAL_H
#define AE_EVAL_H

#include "ae/data.h"
#include "ae/model.h"
#include "ae/status.h"

typedef struct ae_eval_out {
    double loss;     /* the model's training loss (per element, or per sample for ce) */
    double mse;      /* autoencoder: mean squared error per element */
    double bce;      /* autoencoder: binary cross-entropy per element (outputs clamped to [1e-7, 1-1e-7]
                        unless the model has a fused sigmoid output) */
    double accuracy; /* classifier: fraction correct */
    double penalty;  /* penalties per sample: activity (L1, KL sparsity) and layers' own (VAE KL) */
    double code_mean;/* autoencoder: mean activation of the code layer over samples and units */
    size_t n;        /* samples evaluated (all ranks) */
} ae_eval_out;

/* Collective: evaluate m (eval mode) on ds, each rank taking a contiguous
 * share, in chunks of m->max_batch. xbuf holds m->max_batch x ds->d floats. */
ae_status ae_eval_dataset(ae_model *m, const ae_dataset *ds, float *xbuf, ae_eval_out *out, ae_error *err);

/* Not collective: encode all of ds through layers [0, upto) into a new float
 * dataset (labels copied). */
ae_status ae_eval_encode(ae_model *m, const ae_dataset *ds, int upto, ae_dataset *codes, ae_error *err);
/* Not collective: the codes of samples [lo, hi) of ds into out ((hi - lo) rows of the width of layer
 * upto - 1's output). */
ae_status ae_eval_encode_rows(ae_model *m, const ae_dataset *ds, int upto, size_t lo, size_t hi, float *out,
                              ae_error *err);

/* Collective: accuracy of k-nearest-neighbour classification (Euclidean,
 * majority vote, ties to the nearest) of test rows by train rows, float
 * datasets with labels; each rank classifies its share of test. */
ae_status ae_eval_knn(const ae_dataset *train, const ae_dataset *test, int k, double *accuracy, ae_error *err);

#endif
