/* eval.c - sharded evaluation and dataset encoding. */
#include "ae/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ae/dist.h"
#include "ae/loss.h"

enum { SUM_LOSS, SUM_MSE, SUM_BCE, SUM_CORRECT, SUM_PEN, SUM_CODE, SUM_N, SUM_COUNT };

ae_status ae_eval_dataset(ae_model *m, const ae_dataset *ds, float *xbuf, ae_eval_out *out, ae_error *err)
{
    int P = ae_dist_size(), r = ae_dist_rank();
    size_t lo = ds->n * (size_t)r / (size_t)P, hi = ds->n * (size_t)(r + 1) / (size_t)P;
    double sums[SUM_COUNT] = {0};
    ae_ctx ctx = {0};
    size_t w = m->out_size;
    int is_ae = m->type == AE_MODEL_AUTOENCODER;
    for (size_t s = lo; s < hi; s += (size_t)m->max_batch) {
        int n = (int)(hi - s < (size_t)m->max_batch ? hi - s : (size_t)m->max_batch);
        ae_data_range_x(ds, s, (size_t)n, xbuf);
        const float *y = ae_model_forward(m, &ctx, xbuf, n, m->n_layers);
        ae_loss_out lo_;
        ae_model_loss(m, &ctx, xbuf, xbuf, ds->y ? ds->y + s : NULL, n, 0.0f, 0, &lo_);
        sums[SUM_LOSS] += lo_.loss;
        sums[SUM_PEN] += lo_.penalty;
        sums[SUM_CORRECT] += (double)lo_.correct;
        if (is_ae && m->n_encoder > 0) {
            const float *c = m->act[m->n_encoder - 1];
            size_t len = (size_t)n * m->code_size;
            double cs = 0.0;
            for (size_t k = 0; k < len; k++) cs += c[k];
            sums[SUM_CODE] += cs;
        }
        if (is_ae) {
            sums[SUM_MSE] += m->loss == AE_LOSS_MSE ? lo_.loss : ae_loss_mse(y, xbuf, (size_t)n, w, 0.0f, NULL);
            sums[SUM_BCE] += m->loss == AE_LOSS_BCE ? lo_.loss : ae_loss_bce(y, xbuf, (size_t)n, w, 0.0f, NULL);
        }
        sums[SUM_N] += n;
    }
    ae_status st = ae_dist_allreduce_sum_f64(sums, SUM_COUNT, err);
    if (st) return st;
    memset(out, 0, sizeof *out);
    double n = sums[SUM_N] > 0 ? sums[SUM_N] : 1.0;
    double per = is_ae && !m->loss_sum ? n * (double)w : n;
    out->n = (size_t)sums[SUM_N];
    out->loss = sums[SUM_LOSS] / per;
    out->penalty = sums[SUM_PEN] / n;
    if (is_ae) {
        out->mse = sums[SUM_MSE] / (n * (double)w);
        out->bce = sums[SUM_BCE] / (n * (double)w);
        out->code_mean = sums[SUM_CODE] / (n * (double)m->code_size);
    } else {
        out->accuracy = sums[SUM_CORRECT] / n;
    }
    return AE_OK;
}

ae_status ae_eval_encode_rows(ae_model *m, const ae_dataset *ds, int upto, size_t lo, size_t hi, float *out,
                             ae_error *err)
{
    size_t cw = upto > 0 ? m->layers[upto - 1].out_size : m->in_size;
    if (hi <= lo) return AE_OK;
    float *xbuf = ae_alloc_floats((size_t)m->max_batch * ds->d, err);
    if (!xbuf) return AE_ERR_NOMEM;
    ae_ctx ctx = {0};
    for (size_t s = lo; s < hi; s += (size_t)m->max_batch) {
        int n = (int)(hi - s < (size_t)m->max_batch ? hi - s : (size_t)m->max_batch);
        ae_data_range_x(ds, s, (size_t)n, xbuf);
        const float *c = ae_model_forward(m, &ctx, xbuf, n, upto);
        memcpy(out + (s - lo) * cw, c, sizeof(float) * (size_t)n * cw);
    }
    free(xbuf);
    return AE_OK;
}

ae_status ae_eval_encode(ae_model *m, const ae_dataset *ds, int upto, ae_dataset *codes, ae_error *err)
{
    size_t cw = upto > 0 ? m->layers[upto - 1].out_size : m->in_size;
    ae_status st = ae_data_create_float(ds->n, cw, ds->y, ds->nclass, codes, err);
    if (!st) st = ae_eval_encode_rows(m, ds, upto, 0, ds->n, codes->xf, err);
    if (st) ae_data_free(codes);
    return st;
}

#define KNN_MAX 64
#define KNN_CLASSES 256

ae_status ae_eval_knn(const ae_dataset *train, const ae_dataset *test, int k, double *accuracy, ae_error *err)
{
    if (k < 1 || k > KNN_MAX || !train->xf || !test->xf || !train->y || !test->y || train->d != test->d ||
        (size_t)k > train->n)
        return ae_error_set(err, AE_ERR_ARG, "knn: needs labelled float codes of equal width and 1 <= k <= %d",
                            KNN_MAX);
    int P = ae_dist_size(), r = ae_dist_rank();
    size_t lo = test->n * (size_t)r / (size_t)P, hi = test->n * (size_t)(r + 1) / (size_t)P, d = train->d;
    double sums[2] = {0.0, (double)(hi - lo)};
    for (size_t i = lo; i < hi; i++) {
        const float *q = test->xf + i * d;
        float best[KNN_MAX];
        int lab[KNN_MAX] = {0}, nb = 0;
        for (size_t j = 0; j < train->n; j++) {
            const float *x = train->xf + j * d;
            float dist = 0.0f;
            for (size_t c = 0; c < d; c++) {
                float e = q[c] - x[c];
                dist += e * e;
            }
            if (nb == k && dist >= best[k - 1]) continue;
            int pos = nb < k ? nb++ : k - 1;
            while (pos > 0 && best[pos - 1] > dist) {
                best[pos] = best[pos - 1];
                lab[pos] = lab[pos - 1];
                pos--;
            }
            best[pos] = dist;
            lab[pos] = train->y[j];
        }
        int votes[KNN_CLASSES] = {0}, win = lab[0];
        for (int t = 0; t < nb; t++)
            if (++votes[lab[t]] > votes[win]) win = lab[t];
        sums[0] += win == test->y[i];
    }
    ae_status st = ae_dist_allreduce_sum_f64(sums, 2, err);
    if (st) return st;
    *accuracy = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
    return AE_OK;
}
