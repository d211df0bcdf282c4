/* test_pca.c - PCA against known spectra, and the Baldi & Hornik result: a
 * linear autoencoder with a k-unit code trained to convergence reaches the
 * reconstruction error of PCA-k. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/config.h"
#include "ae/data.h"
#include "ae/model.h"
#include "ae/optim.h"
#include "ae/pca.h"
#include "ae/rng.h"

#define D 16
#define RANK 3
#define N 2000
#define NOISE 0.1f

/* x = sum_r s_r u_r z_r + noise, with orthonormal-ish random directions and scales 3, 2, 1 */
static void make_data(ae_dataset *ds)
{
    ae_error err;
    CU_ASSERT_FATAL(ae_data_create_float(N, D, NULL, 0, ds, &err) == AE_OK);
    ae_rng r;
    ae_rng_init(&r, 7, AE_RNG_TEST, 1, 0, 0);
    float u[RANK][D];
    for (int k = 0; k < RANK; k++) {
        for (int j = 0; j < D; j++) u[k][j] = ae_rng_normal(&r);
        for (int q = 0; q < k; q++) { /* Gram-Schmidt */
            float dot = 0;
            for (int j = 0; j < D; j++) dot += u[k][j] * u[q][j];
            for (int j = 0; j < D; j++) u[k][j] -= dot * u[q][j];
        }
        float nrm = 0;
        for (int j = 0; j < D; j++) nrm += u[k][j] * u[k][j];
        for (int j = 0; j < D; j++) u[k][j] /= sqrtf(nrm);
    }
    const float scale[RANK] = {3.0f, 2.0f, 1.0f};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) {
            float v = 0.5f + NOISE * ae_rng_normal(&r);
            ds->xf[(size_t)i * D + j] = v;
        }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < RANK; k++) {
            float z = scale[k] * ae_rng_normal(&r);
            for (int j = 0; j < D; j++) ds->xf[(size_t)i * D + j] += z * u[k][j];
        }
}

static void test_pca_spectrum_and_orthonormality(void)
{
    ae_dataset ds;
    make_data(&ds);
    ae_pca p;
    ae_error err;
    CU_ASSERT_FATAL(ae_pca_fit(&ds, 4, &p, &err) == AE_OK);
    /* variances near 9, 4, 1 (+ noise 0.0025), the fourth near the noise */
    CU_ASSERT_DOUBLE_EQUAL(p.var[0], 9.0, 0.9);
    CU_ASSERT_DOUBLE_EQUAL(p.var[1], 4.0, 0.4);
    CU_ASSERT_DOUBLE_EQUAL(p.var[2], 1.0, 0.1);
    CU_ASSERT(p.var[3] < 0.02);
    CU_ASSERT(p.var[0] >= p.var[1] && p.var[1] >= p.var[2] && p.var[2] >= p.var[3]);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            double dot = 0;
            for (int j = 0; j < D; j++) dot += p.comp[a * D + j] * p.comp[b * D + j];
            CU_ASSERT_DOUBLE_EQUAL(dot, a == b ? 1.0 : 0.0, 1e-9);
        }
    /* the error of k components is the variance left, per element */
    double mse3 = ae_pca_mse(&p, &ds, 3), left = 0;
    for (int c = 3; c < 4; c++) left += p.var[c];
    CU_ASSERT(mse3 < 0.0125 && mse3 > 0.0075);
    CU_ASSERT(ae_pca_mse(&p, &ds, 1) > ae_pca_mse(&p, &ds, 2));
    CU_ASSERT(ae_pca_mse(&p, &ds, 2) > mse3);
    (void)left;
    ae_pca_free(&p);
    ae_data_free(&ds);
}

/* Train a linear D-k-D autoencoder with Adam on all of ds (full batch) and
 * return its final MSE per element. */
static double train_linear_ae(const ae_dataset *ds, int k, int steps)
{
    ae_spec *spec = malloc(sizeof *spec);
    ae_error err;
    char ini[256];
    snprintf(ini, sizeof ini, "[model]\nencoder = dense(%d)\ndecoder = dense(%d)\n[loss]\nkind = mse\n", k, D);
    CU_ASSERT_FATAL(ae_config_parse_string(ini, "test", spec, &err) == AE_OK);
    CU_ASSERT_FATAL(ae_config_validate(spec, &err) == AE_OK);
    ae_shape in = {D, 1, 1};
    ae_model *m;
    CU_ASSERT_FATAL(ae_model_create(spec, &in, N, &m, &err) == AE_OK);
    ae_model_init_params(m, 3);
    ae_optim_conf oc = {.kind = AE_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    float *opt = calloc(ae_optim_state_floats(AE_OPT_ADAM, m->n_params), sizeof(float));
    ae_ctx ctx = {.training = 1};
    ae_loss_out lo;
    float scale = ae_model_loss_scale(m, N);
    for (int t = 1; t <= steps; t++) {
        memset(m->grads, 0, sizeof(float) * m->n_params);
        ae_model_forward(m, &ctx, ds->xf, N, m->n_layers);
        ae_model_loss(m, &ctx, ds->xf, ds->xf, NULL, N, scale, 1, &lo);
        float lr = t < steps / 2 ? 1e-2f : (t < 3 * steps / 4 ? 2e-3f : 3e-4f);
        ae_optim_step(&oc, lr, t, m->params, m->grads, opt, m->n_params);
    }
    ae_model_forward(m, &ctx, ds->xf, N, m->n_layers);
    ae_model_loss(m, &ctx, ds->xf, ds->xf, NULL, N, scale, 0, &lo);
    double mse = lo.loss / ((double)N * D);
    free(opt);
    ae_model_free(m);
    free(spec);
    return mse;
}

static void test_pca_linear_autoencoder_matches(void)
{
    ae_dataset ds;
    make_data(&ds);
    ae_pca p;
    ae_error err;
    CU_ASSERT_FATAL(ae_pca_fit(&ds, 3, &p, &err) == AE_OK);
    for (int k = 1; k <= 3; k++) {
        double pca = ae_pca_mse(&p, &ds, (size_t)k);
        double ae = train_linear_ae(&ds, k, 8000);
        printf("\n    k=%d: PCA mse %.6f, linear AE mse %.6f, relative gap %+.4f%%", k, pca, ae,
               100.0 * (ae - pca) / pca);
        /* PCA is optimal: the AE cannot do better (beyond float noise) and must get within 1% */
        CU_ASSERT(ae >= pca * (1.0 - 1e-4));
        CU_ASSERT(ae <= pca * 1.01);
    }
    ae_pca_free(&p);
    ae_data_free(&ds);
}

static void test_pca_rejects_bad_k(void)
{
    ae_dataset ds;
    make_data(&ds);
    ae_pca p;
    ae_error err;
    CU_ASSERT_EQUAL(ae_pca_fit(&ds, 0, &p, &err), AE_ERR_ARG);
    CU_ASSERT_EQUAL(ae_pca_fit(&ds, D + 1, &p, &err), AE_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "components"));
    ae_data_free(&ds);
}

void ae_test_register_pca(void)
{
    CU_pSuite s = CU_add_suite("pca", NULL, NULL);
    CU_add_test(s, "test_pca_spectrum_and_orthonormality", test_pca_spectrum_and_orthonormality);
    CU_add_test(s, "test_pca_linear_autoencoder_matches", test_pca_linear_autoencoder_matches);
    CU_add_test(s, "test_pca_rejects_bad_k", test_pca_rejects_bad_k);
}
