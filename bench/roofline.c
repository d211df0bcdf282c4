/* roofline.c - the sgemm calls of one aetrain training step, timed alone.
 *
 * For a model given as a list of layers, runs exactly the cblas_sgemm calls
 * (shapes, transposes, beta) that src/layers.c (dense) and src/conv.c (conv)
 * make in one training step on a local batch -- forward, then backward: the
 * weight gradient of every layer and the input gradient of every layer but
 * the first -- over and over, with nothing else in between (no bias,
 * activation, im2col, loss, allreduce or optimizer). Its samples/s is an
 * upper bound for aetrain's whole step at the same batch and threads. Also
 * times a plain square sgemm (the machine's sgemm peak) at the same threads.
 *
 * Build (bench/run.sh does it):
 *   gcc -O2 -std=c11 bench/roofline.c -o roofline -lopenblas
 * Usage:
 *   roofline [-t THREADS] [-b BATCH] [-s SECONDS] [-p PEAK_N] [-a] [-c] [-C] [-n NAME] LAYER...
 *   LAYER: dense:IN:OUT  or  conv:C:F:K:OH:OW  (input channels, filters, kernel, output size)
 *   -p 0 skips the peak; -a: the first listed layer computes its input gradient too (when it
 *   is not the model's layer 0); -c prints one CSV row (-C prints the CSV header).
 * Example: roofline -t 1 -b 256 dense:784:32 dense:32:784
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"

/* OpenBLAS extras (cblas.h declares them in OpenBLAS' own header; repeat for safety) */
char *openblas_get_corename(void);
char *openblas_get_config(void);
void openblas_set_num_threads(int);

typedef struct {
    int conv;
    int in, out;             /* dense */
    int c, f, k, oh, ow;     /* conv */
    float *W, *dW, *x, *y, *dy, *dx;
} layer;

static float *buf(size_t n)
{
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, (n ? n : 1) * sizeof(float))) {
        fprintf(stderr, "roofline: out of memory (%zu floats)\n", n);
        exit(7);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

static int parse_layer(const char *s, layer *l)
{
    memset(l, 0, sizeof *l);
    if (sscanf(s, "dense:%d:%d", &l->in, &l->out) == 2 && l->in > 0 && l->out > 0) return 0;
    if (sscanf(s, "conv:%d:%d:%d:%d:%d", &l->c, &l->f, &l->k, &l->oh, &l->ow) == 5 && l->c > 0 && l->f > 0 &&
        l->k > 0 && l->oh > 0 && l->ow > 0) {
        l->conv = 1;
        return 0;
    }
    fprintf(stderr, "roofline: bad layer '%s' (dense:IN:OUT or conv:C:F:K:OH:OW)\n", s);
    return -1;
}

/* FLOPs of the step's sgemm calls for layer i of a local batch n */
static double layer_flops(const layer *l, int n, int first)
{
    double m, k, c;
    if (l->conv) {
        m = l->f, k = (double)l->c * l->k * l->k, c = (double)n * l->oh * l->ow;
        return 2.0 * m * k * c * (first ? 2 : 3);
    }
    m = n, k = l->in, c = l->out;
    return 2.0 * m * k * c * (first ? 2 : 3);
}

static void alloc_layer(layer *l, int n)
{
    if (l->conv) {
        size_t ckk = (size_t)l->c * l->k * l->k, cols = (size_t)n * l->oh * l->ow;
        l->W = buf((size_t)l->f * ckk);
        l->dW = buf((size_t)l->f * ckk);
        l->x = buf(ckk * cols);  /* im2col columns */
        l->y = buf((size_t)l->f * cols);
        l->dy = buf((size_t)l->f * cols);
        l->dx = buf(ckk * cols); /* column gradient */
    } else {
        l->W = buf((size_t)l->in * l->out);
        l->dW = buf((size_t)l->in * l->out);
        l->x = buf((size_t)n * l->in);
        l->y = buf((size_t)n * l->out);
        l->dy = buf((size_t)n * l->out);
        l->dx = buf((size_t)n * l->in);
    }
}

/* One step's sgemm calls, in aetrain's order: forward over the layers, backward in reverse. */
static void step(layer *L, int nl, int n, int din0)
{
    for (int i = 0; i < nl; i++) {
        layer *l = &L[i];
        if (l->conv) {
            int ckk = l->c * l->k * l->k, cols = n * l->oh * l->ow;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l->f, cols, ckk, 1.0f, l->W, ckk, l->x, cols,
                        0.0f, l->y, cols);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, l->out, l->in, 1.0f, l->x, l->in, l->W,
                        l->out, 0.0f, l->y, l->out);
        }
    }
    for (int i = nl - 1; i >= 0; i--) {
        layer *l = &L[i];
        if (l->conv) {
            int ckk = l->c * l->k * l->k, cols = n * l->oh * l->ow;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l->f, ckk, cols, 1.0f, l->dy, cols, l->x, cols,
                        1.0f, l->dW, ckk);
            if (i > 0 || din0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, cols, l->f, 1.0f, l->W, ckk, l->dy,
                            cols, 0.0f, l->dx, cols);
        } else {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, l->in, l->out, n, 1.0f, l->x, l->in, l->dy,
                        l->out, 1.0f, l->dW, l->out);
            if (i > 0 || din0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->in, l->out, 1.0f, l->dy, l->out, l->W,
                            l->out, 0.0f, l->dx, l->in);
        }
    }
}

/* Median seconds per call of fn over blocks of ~50 ms for about `seconds`, after a warm-up. */
typedef void (*work_fn)(void *);
static double time_median(work_fn fn, void *arg, double seconds)
{
    double t0 = bench_now();
    int reps = 0;
    do { fn(arg); reps++; } while (bench_now() - t0 < 0.2 * seconds || reps < 2); /* warm-up */
    double per = (bench_now() - t0) / reps;
    int block = (int)(0.05 / per);
    if (block < 1) block = 1;
    int nblocks = (int)(seconds / (block * per));
    if (nblocks < 3) nblocks = 3;
    if (nblocks > 10000) nblocks = 10000;
    double *t = malloc(sizeof(double) * (size_t)nblocks);
    for (int b = 0; b < nblocks; b++) {
        double s = bench_now();
        for (int r = 0; r < block; r++) fn(arg);
        t[b] = (bench_now() - s) / block;
    }
    qsort(t, (size_t)nblocks, sizeof *t, bench_cmp_double);
    double med = t[nblocks / 2];
    free(t);
    return med;
}

typedef struct { layer *L; int nl, n, din0; } step_arg;
static void step_fn(void *a)
{
    step_arg *s = a;
    step(s->L, s->nl, s->n, s->din0);
}

typedef struct { int n; float *a, *b, *c; } peak_arg;
static void peak_fn(void *a)
{
    peak_arg *p = a;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->n, p->n, p->n, 1.0f, p->a, p->n, p->b, p->n, 0.0f,
                p->c, p->n);
}

static void usage(void)
{
    fprintf(stderr, "usage: roofline [-t THREADS] [-b BATCH] [-s SECONDS] [-p PEAK_N] [-a] [-c] [-C] [-n NAME] "
                    "LAYER...\n  LAYER: dense:IN:OUT or conv:C:F:K:OH:OW\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int threads = 1, batch = 256, peak_n = 2048, csv = 0, nl = 0, din0 = 0;
    double seconds = 2.0;
    const char *name = "model";
    layer *L = calloc((size_t)argc, sizeof *L);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(a, "-b") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(a, "-s") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(a, "-p") && i + 1 < argc) peak_n = atoi(argv[++i]);
        else if (!strcmp(a, "-n") && i + 1 < argc) name = argv[++i];
        else if (!strcmp(a, "-c")) csv = 1;
        else if (!strcmp(a, "-a")) din0 = 1;
        else if (!strcmp(a, "-C")) {
            printf("model,threads,batch,core,step_gflop,step_ms,gflops,samples_per_s_bound,peak_n,peak_gflops\n");
            return 0;
        } else if (a[0] == '-') usage();
        else if (parse_layer(a, &L[nl++])) return 2;
    }
    if (threads < 1 || batch < 1 || seconds <= 0 || peak_n < 0) usage();
    openblas_set_num_threads(threads);
    const char *core = openblas_get_corename();

    double flops = 0, ms = 0, gflops = 0, sps = 0;
    if (nl > 0) {
        for (int i = 0; i < nl; i++) {
            alloc_layer(&L[i], batch);
            flops += layer_flops(&L[i], batch, i == 0 && !din0);
        }
        step_arg sa = {L, nl, batch, din0};
        double t = time_median(step_fn, &sa, seconds);
        ms = 1e3 * t, gflops = flops / t / 1e9, sps = batch / t;
    }
    double peak = 0;
    if (peak_n > 0) {
        size_t nn = (size_t)peak_n * peak_n;
        peak_arg pa = {peak_n, buf(nn), buf(nn), buf(nn)};
        double t = time_median(peak_fn, &pa, seconds < 1.0 ? seconds : 1.0);
        peak = 2.0 * (double)peak_n * peak_n * peak_n / t / 1e9;
        free(pa.a), free(pa.b), free(pa.c);
    }
    if (csv) {
        printf("%s,%d,%d,%s,%.6g,%.6g,%.4g,%.6g,%d,%.4g\n", name, threads, batch, core, flops / 1e9, ms, gflops, sps,
               peak_n, peak);
    } else {
        printf("OpenBLAS core %s (%s), %d thread%s\n", core, openblas_get_config(), threads, threads == 1 ? "" : "s");
        if (nl > 0)
            printf("%s: batch %d, %d layers, %.4g GFLOP of sgemm per step: %.3f ms, %.1f GFLOP/s, "
                   "<= %.0f samples/s\n", name, batch, nl, flops / 1e9, ms, gflops, sps);
        if (peak_n > 0) printf("sgemm %d^3: %.1f GFLOP/s\n", peak_n, peak);
    }
    return 0;
}
