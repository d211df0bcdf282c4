/* pca.c - PCA by eigendecomposition of the covariance (double precision). */
#include "ae/pca.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK from OpenBLAS (Fortran symbol) */
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
             const int *lwork, int *iwork, const int *liwork, int *info);

#define PCA_CHUNK 1024

void ae_pca_free(ae_pca *p)
{
    if (!p) return;
    free(p->mean);
    free(p->comp);
    free(p->var);
    memset(p, 0, sizeof *p);
}

ae_status ae_pca_fit(const ae_dataset *ds, size_t k, ae_pca *out, ae_error *err)
{
    memset(out, 0, sizeof *out);
    size_t d = ds->d, n = ds->n;
    if (k < 1 || k > d || n < 2)
        return ae_error_set(err, AE_ERR_ARG, "pca: %zu components of %zu features from %zu samples", k, d, n);
    double *cov = ae_calloc(d * d, sizeof(double), err);
    double *mean = ae_calloc(d, sizeof(double), err);
    float *xf = ae_malloc(sizeof(float) * PCA_CHUNK * d, err);
    double *xc = ae_malloc(sizeof(double) * PCA_CHUNK * d, err);
    double *w = ae_malloc(sizeof(double) * d, err);
    ae_status st = (cov && mean && xf && xc && w) ? AE_OK : AE_ERR_NOMEM;
    for (size_t s = 0; !st && s < n; s += PCA_CHUNK) {
        size_t m = n - s < PCA_CHUNK ? n - s : PCA_CHUNK;
        ae_data_range_x(ds, s, m, xf);
        for (size_t i = 0; i < m * d; i++) mean[i % d] += xf[i];
    }
    if (!st)
        for (size_t j = 0; j < d; j++) mean[j] /= (double)n;
    /* covariance = sum (x - mean)(x - mean)^T / (n - 1), upper triangle in column-major terms */
    for (size_t s = 0; !st && s < n; s += PCA_CHUNK) {
        size_t m = n - s < PCA_CHUNK ? n - s : PCA_CHUNK;
        ae_data_range_x(ds, s, m, xf);
        for (size_t i = 0; i < m * d; i++) xc[i] = (double)xf[i] - mean[i % d];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)m, 1.0 / (double)(n - 1), xc, (int)d, 1.0,
                    cov, (int)d);
    }
    int dn = (int)d, info = 0, lwork = -1, liwork = -1, iwq = 0;
    double wq = 0;
    if (!st) dsyevd_("V", "L", &dn, cov, &dn, w, &wq, &lwork, &iwq, &liwork, &info); /* workspace query */
    double *work = NULL;
    int *iwork = NULL;
    if (!st && info == 0) {
        lwork = (int)wq;
        liwork = iwq;
        work = ae_malloc(sizeof(double) * (size_t)lwork, err);
        iwork = ae_malloc(sizeof(int) * (size_t)liwork, err);
        if (!work || !iwork) st = AE_ERR_NOMEM;
        /* row-major upper == column-major lower: the same array */
        if (!st) dsyevd_("V", "L", &dn, cov, &dn, w, work, &lwork, iwork, &liwork, &info);
    }
    if (!st && info != 0) st = ae_error_set(err, AE_ERR_NUMERIC, "pca: the eigensolver failed (info %d)", info);
    if (!st) {
        out->d = d;
        out->k = k;
        out->mean = mean;
        mean = NULL;
        out->comp = ae_malloc(sizeof(double) * k * d, err);
        out->var = ae_malloc(sizeof(double) * k, err);
        if (!out->comp || !out->var) st = AE_ERR_NOMEM;
    }
    if (!st) {
        /* eigenvalues ascending; column j of the column-major result is eigenvector j, i.e. row j of cov */
        for (size_t j = 0; j < d; j++) out->total_var += w[j];
        for (size_t c = 0; c < k; c++) {
            size_t j = d - 1 - c;
            out->var[c] = w[j];
            memcpy(out->comp + c * d, cov + j * d, sizeof(double) * d);
        }
    }
    if (st) ae_pca_free(out);
    free(cov);
    free(mean);
    free(xf);
    free(xc);
    free(w);
    free(work);
    free(iwork);
    return st;
}

void ae_pca_project(const ae_pca *p, const float *x, size_t n, size_t k, float *codes)
{
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < k; c++) {
            double s = 0.0;
            const double *v = p->comp + c * p->d;
            for (size_t j = 0; j < p->d; j++) s += ((double)x[i * p->d + j] - p->mean[j]) * v[j];
            codes[i * k + c] = (float)s;
        }
}

double ae_pca_mse(const ae_pca *p, const ae_dataset *ds, size_t k)
{
    size_t d = p->d;
    float *xf = malloc(sizeof(float) * PCA_CHUNK * d);
    double *code = malloc(sizeof(double) * k);
    if (!xf || !code) {
        free(xf);
        free(code);
        return -1.0;
    }
    double se = 0.0;
    for (size_t s = 0; s < ds->n; s += PCA_CHUNK) {
        size_t m = ds->n - s < PCA_CHUNK ? ds->n - s : PCA_CHUNK;
        ae_data_range_x(ds, s, m, xf);
        for (size_t i = 0; i < m; i++) {
            const float *x = xf + i * d;
            for (size_t c = 0; c < k; c++) {
                double t = 0.0;
                const double *v = p->comp + c * d;
                for (size_t j = 0; j < d; j++) t += ((double)x[j] - p->mean[j]) * v[j];
                code[c] = t;
            }
            for (size_t j = 0; j < d; j++) {
                double r = p->mean[j];
                for (size_t c = 0; c < k; c++) r += code[c] * p->comp[c * d + j];
                double e = r - x[j];
                se += e * e;
            }
        }
    }
    free(xf);
    free(code);
    return se / ((double)ds->n * (double)d);
}
