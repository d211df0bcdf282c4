/* ae_testtool.c - helpers for the shell tests:
 *   ae_testtool mkdata DIR NTRAIN NTEST [SIDE]   small labelled IDX files (raw) in DIR
 *   ae_testtool compare A B TOL                  max relative difference of params (and state)
 *                                                of two checkpoints; exit 1 if above TOL
 *   ae_testtool bitequal A B                     exit 0 iff params, optimizer and state are
 *                                                bitwise equal
 *   ae_testtool info CKPT                        print the checkpoint's meta */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/ckpt.h"
#include "ae/rng.h"
#include "testutil.h"

#define NCLASS 10

/* Images with class structure: class k lights a band of rows/cols plus
 * noise, so that an autoencoder and a classifier both have something to learn. */
static int mkdata(const char *dir, int n, const char *split, int side, uint64_t seed)
{
    size_t d = (size_t)side * side;
    uint8_t *x = malloc((size_t)n * d), *y = malloc((size_t)n);
    ae_rng r;
    ae_rng_init(&r, seed, AE_RNG_TEST, 0, 0, 0);
    for (int i = 0; i < n; i++) {
        int k = (int)ae_rng_below(&r, NCLASS);
        y[i] = (uint8_t)k;
        for (int py = 0; py < side; py++)
            for (int px = 0; px < side; px++) {
                float v = 0.15f * ae_rng_uniform(&r);
                if ((py * NCLASS) / side == k) v += 0.7f;
                if ((px * NCLASS) / side == (k * 3) % NCLASS) v += 0.3f * ae_rng_uniform(&r) + 0.2f;
                if (v > 1.0f) v = 1.0f;
                x[(size_t)i * d + (size_t)py * side + px] = (uint8_t)(v * 255.0f + 0.5f);
            }
    }
    char path[4096];
    uint32_t dims3[3] = {(uint32_t)n, (uint32_t)side, (uint32_t)side}, dims1[1] = {(uint32_t)n};
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    int rc = tu_write_idx(path, dims3, 3, x, 0);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
    rc |= tu_write_idx(path, dims1, 1, y, 0);
    free(x);
    free(y);
    return rc;
}

static int load(const char *path, ae_ckpt *c)
{
    ae_error err;
    if (ae_ckpt_load(path, c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static double rel_diff(const float *a, const float *b, size_t n, double *elem_max)
{
    double num = 0, den = 0, em = 0;
    for (size_t i = 0; i < n; i++) {
        double dd = fabs((double)a[i] - b[i]);
        if (dd > num) num = dd;
        if (fabs(a[i]) > den) den = fabs(a[i]);
        double e = dd / fmax(fmax(fabs(a[i]), fabs(b[i])), 1e-3);
        if (e > em) em = e;
    }
    *elem_max = em;
    return den > 0 ? num / den : num;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "mkdata") == 0) {
        int side = argc >= 6 ? atoi(argv[5]) : 28;
        return (mkdata(argv[2], atoi(argv[3]), "train", side, 1) || mkdata(argv[2], atoi(argv[4]), "t10k", side, 2));
    }
    if (argc == 5 && strcmp(argv[1], "compare") == 0) {
        ae_ckpt a, b;
        if (load(argv[2], &a) || load(argv[3], &b)) return 2;
        if (a.n_params != b.n_params || a.n_state != b.n_state) {
            fprintf(stderr, "sizes differ\n");
            return 1;
        }
        double em, es = 0;
        double d = rel_diff(a.params, b.params, a.n_params, &em);
        double ds = a.n_state ? rel_diff(a.state, b.state, a.n_state, &es) : 0;
        double tol = atof(argv[4]);
        printf("params: max |a-b| / max |a| = %.3e, max elementwise rel (floor 1e-3) = %.3e; state: %.3e; "
               "steps %lld vs %lld\n", d, em, ds, (long long)a.meta.step, (long long)b.meta.step);
        int ok = d <= tol && ds <= tol && a.meta.step == b.meta.step;
        ae_ckpt_free(&a);
        ae_ckpt_free(&b);
        return ok ? 0 : 1;
    }
    if (argc == 4 && strcmp(argv[1], "bitequal") == 0) {
        ae_ckpt a, b;
        if (load(argv[2], &a) || load(argv[3], &b)) return 2;
        int eq = a.n_params == b.n_params && a.n_opt == b.n_opt && a.n_state == b.n_state &&
                 memcmp(a.params, b.params, sizeof(float) * a.n_params) == 0 &&
                 (a.n_opt == 0 || memcmp(a.opt, b.opt, sizeof(float) * a.n_opt) == 0) &&
                 (a.n_state == 0 || memcmp(a.state, b.state, sizeof(float) * a.n_state) == 0) &&
                 a.meta.step == b.meta.step;
        printf("%s (steps %lld vs %lld)\n", eq ? "bitwise equal" : "DIFFERENT", (long long)a.meta.step,
               (long long)b.meta.step);
        ae_ckpt_free(&a);
        ae_ckpt_free(&b);
        return eq ? 0 : 1;
    }
    if (argc == 3 && strcmp(argv[1], "info") == 0) {
        ae_ckpt a;
        if (load(argv[2], &a)) return 2;
        printf("epoch %lld step %lld step_in_epoch %lld params %zu opt %zu state %zu hash %016llx\n",
               (long long)a.meta.epoch, (long long)a.meta.step, (long long)a.meta.step_in_epoch, a.n_params, a.n_opt,
               a.n_state, (unsigned long long)a.meta.arch_hash);
        ae_ckpt_free(&a);
        return 0;
    }
    fprintf(stderr, "usage: ae_testtool mkdata DIR NTRAIN NTEST [SIDE] | compare A B TOL | bitequal A B | info C\n");
    return 2;
}
