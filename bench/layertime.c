/* layertime.c - per-layer compute time of one training step of a config.
 *
 * Builds the config's model with the library (ae_model_create), on random
 * inputs of the config's input shape, and times at the per-rank batch on
 * 1 OpenBLAS thread (no MPI): the forward of each layer (its kind's
 * forward, as ae_model_forward calls it), the loss with its backward (the
 * time between the backward hook's calls, ctx->layer_done, is each layer's
 * backward; the last layer's includes the loss and its gradient), and the
 * optimizer step over all parameters. Each is the median over repeats of
 * the whole step, after a warm-up. Prints a table and, with -o, writes a CSV:
 *
 *   layer,name,params,fwd_s_per_sample,bwd_s_per_sample,grad_bytes,batch
 *
 * one row per layer in layer order (grad_bytes: 4 x its parameters), then a
 * row "optimizer" (layer -1; its time in the bwd column, per sample of the
 * batch: x batch for the step's optimizer time) and a row "step" (the sums). The
 * scaling model (bench/scaling_model.py) reads it.
 *
 * Usage: layertime [-b BATCH] [-s SECONDS] [-t THREADS] [-o CSV] [--set KEY=VALUE ...] CONFIG
 *   -b: samples per rank (default the config's [train] batch); -s: seconds of timed steps
 *   (default 3); -t: OpenBLAS threads (default 1).
 * Built by CMake (target layertime, linked against the library).
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "ae/config.h"
#include "ae/model.h"
#include "ae/optim.h"
#include "ae/status.h"

void openblas_set_num_threads(int);

#define LT_MAX_REPS 100000
#define LT_WARMUP 3
#define LT_MAX_SETS 32

typedef struct timing {
    int nl;
    double *t_bwd_mark; /* (nl) time at which layer i's backward finished */
} timing;

static void on_layer_done(int layer, void *user)
{
    timing *t = user;
    if (layer >= 0 && layer < t->nl) t->t_bwd_mark[layer] = bench_now();
}

static int usage(void)
{
    fprintf(stderr, "usage: layertime [-b BATCH] [-s SECONDS] [-t THREADS] [-o CSV] [--set KEY=VALUE ...] CONFIG\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *csv = NULL, *sets[LT_MAX_SETS];
    int batch = 0, threads = 1, nsets = 0;
    double seconds = 3.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-b") && more) batch = atoi(argv[++i]);
        else if (!strcmp(a, "-s") && more) seconds = atof(argv[++i]);
        else if (!strcmp(a, "-t") && more) threads = atoi(argv[++i]);
        else if (!strcmp(a, "-o") && more) csv = argv[++i];
        else if (!strcmp(a, "--set") && more && nsets < LT_MAX_SETS) sets[nsets++] = argv[++i];
        else if (a[0] == '-' || config) return usage();
        else config = a;
    }
    if (!config || threads < 1 || !(seconds > 0)) return usage();
    openblas_set_num_threads(threads);

    ae_error err;
    ae_error_clear(&err);
    ae_spec *spec = calloc(1, sizeof *spec);
    if (!spec) return 7;
    ae_config_defaults(spec);
    ae_status st = ae_config_parse_file(config, spec, &err);
    for (int k = 0; !st && k < nsets; k++) st = ae_config_set(spec, sets[k], &err);
    if (!st) st = ae_config_validate(spec, &err);
    if (st) {
        fprintf(stderr, "layertime: %s\n", err.msg);
        return 1;
    }
    if (batch <= 0) batch = spec->batch;
    ae_shape in = {1, 28, 28}; /* MNIST-shaped, as bench/run.sh's random data */
    ae_model *m = NULL;
    if ((st = ae_model_create(spec, &in, batch, &m, &err))) {
        fprintf(stderr, "layertime: %s\n", err.msg);
        return 1;
    }
    ae_model_init_params(m, spec->seed);
    int nl = m->n_layers;
    size_t nopt = ae_optim_state_floats(spec->optim.kind, m->n_params);
    float *x = ae_alloc_floats((size_t)batch * m->in_size, &err);
    float *opt = ae_alloc_floats(nopt ? nopt : 1, &err);
    double *fwd = calloc((size_t)nl * LT_MAX_REPS, sizeof *fwd), *bwd = calloc((size_t)nl * LT_MAX_REPS, sizeof *bwd);
    double *optt = calloc(LT_MAX_REPS, sizeof *optt), *mark = calloc((size_t)nl, sizeof *mark);
    if (!x || !opt || !fwd || !bwd || !optt || !mark) {
        fprintf(stderr, "layertime: out of memory\n");
        return 7;
    }
    for (size_t i = 0; i < (size_t)batch * m->in_size; i++)
        x[i] = (float)((i * 2654435761u) % 256) / 255.0f; /* uniform bytes / 255 */
    memset(opt, 0, (nopt ? nopt : 1) * sizeof *opt);
    timing tm = {nl, mark};
    ae_ctx ctx = {.training = 1, .seed = spec->seed, .batch = batch, .layer_done = on_layer_done,
                  .layer_done_user = &tm};
    float scale = ae_model_loss_scale(m, batch);
    size_t ngrad = m->n_params + m->n_aux + AE_GRAD_EXTRA;
    int reps = 0;
    double t_start = bench_now();
    for (int it = 0; reps < LT_MAX_REPS; it++) {
        memset(m->grads, 0, ngrad * sizeof *m->grads);
        ctx.step = it;
        const float *cur = x;
        for (int i = 0; i < nl; i++) {
            ae_layer *l = &m->layers[i];
            double t0 = bench_now();
            l->kind->forward(l, &ctx, cur, m->act[i], batch);
            if (it >= LT_WARMUP) fwd[(size_t)i * LT_MAX_REPS + reps] = bench_now() - t0;
            cur = m->act[i];
        }
        ae_loss_out lo;
        double t0 = bench_now();
        ae_model_loss(m, &ctx, x, x, NULL, batch, scale, 1, &lo);
        double t1 = bench_now();
        ae_optim_step(&spec->optim, spec->lr, it + 1, m->params, m->grads, opt, m->n_params);
        double t2 = bench_now();
        if (it < LT_WARMUP) {
            t_start = bench_now();
            continue;
        }
        for (int i = nl - 1; i >= 0; i--) {
            double after = i == nl - 1 ? t0 : mark[i + 1];
            bwd[(size_t)i * LT_MAX_REPS + reps] = mark[i] - after;
        }
        (void)t1;
        optt[reps] = t2 - t1;
        reps++;
        if (bench_now() - t_start >= seconds && reps >= 5) break;
    }

    printf("layertime: %s, batch %d per rank, %d thread(s), %d timed steps (median)\n", config, batch, threads,
           reps);
    printf("%-5s %-12s %10s %12s %12s %12s %12s\n", "layer", "name", "params", "fwd us/samp", "bwd us/samp",
           "grad MB", "fwd+bwd ms");
    FILE *f = csv ? fopen(csv, "w") : NULL;
    if (csv && !f) {
        fprintf(stderr, "layertime: cannot write %s\n", csv);
        return 1;
    }
    if (f) fprintf(f, "layer,name,params,fwd_s_per_sample,bwd_s_per_sample,grad_bytes,batch\n");
    double sf = 0, sb = 0;
    for (int i = 0; i < nl; i++) {
        const ae_layer *l = &m->layers[i];
        double tf = bench_median(fwd + (size_t)i * LT_MAX_REPS, reps) / batch;
        double tb = bench_median(bwd + (size_t)i * LT_MAX_REPS, reps) / batch;
        sf += tf;
        sb += tb;
        printf("%-5d %-12s %10zu %12.3f %12.3f %12.3f %12.3f\n", i, l->name, l->n_params, 1e6 * tf, 1e6 * tb,
               4e-6 * (double)l->n_params, 1e3 * (tf + tb) * batch);
        if (f) fprintf(f, "%d,%s,%zu,%.6e,%.6e,%zu,%d\n", i, l->name, l->n_params, tf, tb, 4 * l->n_params, batch);
    }
    double to = bench_median(optt, reps) / batch;
    printf("%-5s %-12s %10zu %12s %12.3f %12.3f %12.3f\n", "-", "optimizer", m->n_params, "-", 1e6 * to,
           4e-6 * (double)m->n_params, 1e3 * to * batch);
    printf("%-5s %-12s %10zu %12.3f %12.3f %12.3f %12.3f\n", "-", "step", m->n_params, 1e6 * sf, 1e6 * (sb + to),
           4e-6 * (double)m->n_params, 1e3 * (sf + sb + to) * batch);
    if (f) {
        fprintf(f, "-1,optimizer,%zu,0,%.6e,0,%d\n", m->n_params, to, batch);
        fprintf(f, "-1,step,%zu,%.6e,%.6e,%zu,%d\n", m->n_params, sf, sb + to, 4 * m->n_params, batch);
        if (fclose(f)) {
            fprintf(stderr, "layertime: cannot write %s\n", csv);
            return 1;
        }
    }
    free(fwd);
    free(bwd);
    free(optt);
    free(mark);
    free(x);
    free(opt);
    ae_model_free(m);
    free(spec);
    return 0;
}
