/* ae_testtool.c - helpers for the shell tests:
 *   ae_testtool mkdata DIR NTRAIN NTEST [SIDE]   small labelled IDX files (raw) in DIR
 *   ae_testtool compare A B TOL                  max relative difference of params (and state)
 *                                                of two checkpoints; exit 1 if above TOL
 *   ae_testtool bitequal A B                     exit 0 iff params, optimizer and state are
 *                                                bitwise equal
 *   ae_testtool info CKPT                        print the checkpoint's meta
 *   mpirun ... ae_testtool nodesum N...          ae_dist_nodesum over every rank, for buffers of
 *                                                each N floats: exit 0 iff every rank's result
 *                                                is bitwise the node sums in local rank order,
 *                                                added between the nodes (2 nodes at most: one
 *                                                addition, exact; more: within 1e-6) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "ae/ckpt.h"
#include "ae/dist.h"
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

/* The value rank r contributes at i: magnitudes over 2^-8 .. 2^8, so that
 * another order of the additions gives other bits. */
static float nodesum_value(uint64_t r, size_t i)
{
    ae_rng g;
    ae_rng_init(&g, 77, AE_RNG_TEST, (uint32_t)r, (uint32_t)i, 0);
    return (ae_rng_uniform(&g) * 2.0f - 1.0f) * ldexpf(1.0f, (int)ae_rng_below(&g, 17) - 8);
}

static int nodesum(int nsizes, char **sizes)
{
    ae_error err = {0};
    if (ae_dist_init(NULL, NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int P = ae_dist_size(), r = ae_dist_rank(), bad = 0;
    /* each rank's node: the lowest world rank on it */
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL, &node);
    int lead = r, *leads = malloc(sizeof(int) * (size_t)P);
    MPI_Allreduce(MPI_IN_PLACE, &lead, 1, MPI_INT, MPI_MIN, node);
    MPI_Allgather(&lead, 1, MPI_INT, leads, 1, MPI_INT, MPI_COMM_WORLD);
    MPI_Comm_free(&node);
    int nodes = 0;
    for (int q = 0; q < P; q++) nodes += leads[q] == q;
    for (int k = 0; k < nsizes; k++) {
        size_t n = (size_t)atol(sizes[k]), tail = n / 3 < 5 ? n / 3 : 5;
        float *want = malloc(sizeof(float) * (n ? n : 1));
        for (size_t i = 0; i < n; i++) {
            float total = 0.0f;
            int first_node = 1;
            for (int l = 0; l < P; l++) {
                if (leads[l] != l) continue;
                float part = 0.0f;
                int first = 1;
                for (int q = l; q < P; q++)
                    if (leads[q] == l) {
                        part = first ? nodesum_value((uint64_t)q, i) : part + nodesum_value((uint64_t)q, i);
                        first = 0;
                    }
                total = first_node ? part : total + part;
                first_node = 0;
            }
            want[i] = total;
        }
        ae_dist_nodesum *s = NULL;
        float *buf = NULL;
        char why[256];
        if (ae_dist_nodesum_create(n, tail, &s, &buf, why, sizeof why, &err)) {
            fprintf(stderr, "rank %d: %s\n", r, err.msg);
            return 2;
        }
        if (!s) {
            if (r == 0) fprintf(stderr, "nodesum: not used: %s\n", why);
            bad = 1;
            free(want);
            break;
        }
        /* three checks: the whole sum in every buffer; owned, this rank's chunk and the tail;
         * after the gather, the whole sum again */
        static const char *const what[3] = {"whole sum", "owned chunk + tail", "owned, gathered"};
        for (int mode = 0; mode < 2; mode++) {
            for (size_t i = 0; i < n; i++) buf[i] = nodesum_value((uint64_t)r, i);
            int flag = 0;
            if (ae_dist_nodesum_run(s, mode, &err) || (mode && ae_dist_nodesum_agree(s, &flag, &err))) {
                fprintf(stderr, "rank %d: %s\n", r, err.msg);
                return 2;
            }
            size_t lo, hi;
            ae_dist_nodesum_chunk(s, &lo, &hi);
            for (int pass = mode; pass < 2 * mode + 1; pass++) {
                if (pass == 2) ae_dist_nodesum_gather(s);
                double worst = 0.0;
                size_t wrong = 0, checked = 0;
                for (size_t i = 0; i < n; i++) {
                    if (pass == 1 && (i < lo || i >= hi) && i < n - tail) continue;
                    checked++;
                    if (memcmp(&want[i], &buf[i], sizeof want[i]) != 0) {
                        wrong++;
                        double d = fabs((double)want[i] - (double)buf[i]) / (fabs((double)want[i]) + 1e-30);
                        if (d > worst) worst = d;
                    }
                }
                int ok = nodes <= 2 ? wrong == 0 : worst <= 1e-6;
                int all_ok = ok;
                MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
                if (r == 0 || !ok)
                    printf("nodesum rank %d: n %zu (tail %zu), %s, %d ranks on %d node%s, %d per node: %zu of %zu "
                           "differ from the ordered sum (max rel %.2e): %s\n", r, n, tail, what[pass], P, nodes,
                           nodes == 1 ? "" : "s", ae_dist_nodesum_ranks(s), wrong, checked, worst,
                           all_ok ? "ok" : "FAILED");
                bad |= !all_ok;
            }
            /* nobody refills its buffer before every rank has checked (the gather reads them) */
            MPI_Barrier(MPI_COMM_WORLD);
        }
        ae_dist_nodesum_free(s);
        free(want);
    }
    free(leads);
    ae_dist_finalize();
    return bad;
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
    if (argc >= 3 && strcmp(argv[1], "nodesum") == 0) return nodesum(argc - 2, argv + 2);
    fprintf(stderr, "usage: ae_testtool mkdata DIR NTRAIN NTEST [SIDE] | compare A B TOL | bitequal A B | info C | "
                    "nodesum N...\n");
    return 2;
}
