/* pca.h - principal component analysis of a dataset (the linear baseline
 * of the autoencoders): covariance in double with OpenBLAS dsyrk, symmetric
 * eigensolver from OpenBLAS' LAPACK (dsyevd), reconstruction error. */
#ifndef AE_PCA_H
#define AE_PCA_H

#include <stddef.h>

#include "ae/data.h"
#include "ae/status.h"

typedef struct ae_pca {
    size_t d;          /* features */
    size_t k;          /* components kept */
    double *mean;      /* (d) */
    double *comp;      /* (k x d) orthonormal rows, largest variance first */
    double *var;       /* (k) variance along each component */
    double total_var;  /* sum of all d variances */
} ae_pca;

/* Fit the first k components (1 <= k <= d) of ds. */
ae_status ae_pca_fit(const ae_dataset *ds, size_t k, ae_pca *out, ae_error *err);

/* Mean squared error per element of reconstructing ds from its first k
 * components (k <= p->k). */
double ae_pca_mse(const ae_pca *p, const ae_dataset *ds, size_t k);

/* Project n rows of x (n x d floats) on the first k components: codes (n x k). */
void ae_pca_project(const ae_pca *p, const float *x, size_t n, size_t k, float *codes);

void ae_pca_free(ae_pca *p); /* accepts NULL */

#endif
