/* allreduce.c - the time of a float sum over the ranks, by message size.
 *
 * For buffers of 4 KB to 64 MB (powers of 2, or -m MIN -M MAX bytes), times
 * an in-place MPI_Allreduce(MPI_SUM) of floats on MPI_COMM_WORLD, the call
 * aetrain's gradient allreduce makes, and with -i also the bucketed path: the
 * buffer cut into buckets of -k BYTES, each an MPI_Iallreduce started one
 * after the other, then MPI_Waitall (no compute in between, so this is the
 * buckets' transfer cost, not overlap). Each size: a warm-up call, then
 * repeats until about -s SECONDS (default 0.5, at least 3 repeats, at most
 * 1000); the time of a repeat is the maximum over the ranks (a barrier
 * before each), and the row gives the median. Rank 0 prints and writes CSV:
 *
 *   bytes,ranks,seconds,mode,reps,label
 *
 * mode "allreduce" or "iallreduce_<bucket bytes>" (with -g G: "allreduce_gap<G>ms"); label
 * from -l (default "-").
 *
 * With -N the operation is instead aetrain's gradient sum through node-shared memory as a step of
 * train.allreduce = node with train.shard_optimizer runs it (src/dist.c: ae_dist_nodesum_run owned,
 * the node's agreement, and the barrier after the optimizer, which itself is not timed): mode
 * "nodesum" (with -g: "nodesum_gap<G>ms"); the buffer is then the node's shared window.
 *
 * Usage: mpirun -n P allreduce [-m MIN] [-M MAX] [-x BYTES] [-s SECONDS] [-i] [-k BUCKET] [-g MS] [-N]
 *                              [-l LABEL] [-o CSV] [-a]
 *   -x BYTES: one more size (e.g. a model's gradient buffer) besides the powers of 2.
 *   -a appends to CSV (no header) instead of rewriting it. -g MS: every rank computes (a
 *   floating-point loop) for MS milliseconds before each timed call, as a training step's
 *   forward and backward do between its allreduces, with no barrier or other MPI call between
 *   the calls (the repeat count is fixed after a warm-up; -s budgets the calls and the gaps);
 *   with -i only the plain allreduce has the gap.
 * Built by CMake (target allreduce_bench).
 */
#define _GNU_SOURCE
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ae/dist.h"
#include "benchutil.h"

#define AR_MAX_REPS 1000
#define AR_MIN_REPS 3

/* One timed operation over n floats: a blocking allreduce (bucket == 0) or
 * bucketed nonblocking ones; returns the slowest rank's time. */
static double gap_s; /* -g: compute between the calls */
static volatile double gap_sink;
static ae_dist_nodesum *node; /* -N: the node sum of the current size (its window is the buffer) */

/* The sum of n floats: MPI_Allreduce, or (-N) the node sum with its agreement (which the trainer's
 * sharded step also takes as its barrier: the step runs between the two). */
static void sum_op(float *buf, size_t n)
{
    if (!node) {
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        return;
    }
    ae_error err = {0};
    int flag = 0;
    if (ae_dist_nodesum_run(node, 1, &err) || ae_dist_nodesum_agree(node, &flag, &err)) {
        fprintf(stderr, "allreduce: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
}

static double one(float *buf, size_t n, size_t bucket, MPI_Request *rq)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    if (bucket == 0) {
        sum_op(buf, n);
    } else {
        int k = 0;
        for (size_t off = 0; off < n; off += bucket, k++) {
            size_t c = n - off < bucket ? n - off : bucket;
            MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &rq[k]);
        }
        MPI_Waitall(k, rq, MPI_STATUSES_IGNORE);
    }
    double t = MPI_Wtime() - t0, tmax;
    MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return tmax;
}

static void compute_gap(void)
{
    double x = 1.0, until = MPI_Wtime() + gap_s;
    while (MPI_Wtime() < until)
        for (int k = 0; k < 1000; k++) x = x * 1.0000001 + 1e-9;
    gap_sink = x;
}

/* -g: compute, then the allreduce, and no other MPI call in between (as in a training step: a
 * barrier or a small collective after the sum would push its last bytes out sooner); the repeat
 * count is fixed up front and the per-repeat maximum over the ranks taken at the end. */
static double measure_gap(float *buf, size_t n, double seconds, int *reps_out)
{
    static double t[AR_MAX_REPS], tmax[AR_MAX_REPS];
    double t1 = one(buf, n, 0, NULL); /* warm-up; the slowest rank's time */
    int reps = (int)(seconds / (t1 + gap_s));
    reps = reps < AR_MIN_REPS ? AR_MIN_REPS : reps > AR_MAX_REPS ? AR_MAX_REPS : reps;
    MPI_Bcast(&reps, 1, MPI_INT, 0, MPI_COMM_WORLD);
    for (int i = 0; i < reps; i++) {
        compute_gap();
        double t0 = MPI_Wtime();
        sum_op(buf, n);
        t[i] = MPI_Wtime() - t0;
    }
    MPI_Allreduce(t, tmax, reps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    *reps_out = reps;
    return bench_median(tmax, reps);
}

/* Median time of the operation at n floats (the same repeat count on every rank). */
static double measure(float *buf, size_t n, size_t bucket, MPI_Request *rq, double seconds, int *reps_out)
{
    static double t[AR_MAX_REPS];
    if (gap_s > 0 && bucket == 0) return measure_gap(buf, n, seconds, reps_out);
    one(buf, n, bucket, rq); /* warm-up */
    double total = 0.0;
    int reps = 0;
    while (reps < AR_MAX_REPS) {
        t[reps] = one(buf, n, bucket, rq);
        total += t[reps++];
        int more = reps < AR_MIN_REPS || total < seconds;
        MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (!more) break;
    }
    *reps_out = reps;
    return bench_median(t, reps);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    size_t lo = 4096, hi = 64u << 20, bucket_bytes = 1u << 20, extra = 0;
    double seconds = 0.5;
    int nb = 0, append = 0, nodesum = 0;
    const char *csv = NULL, *label = "-";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-m") && more) lo = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "-M") && more) hi = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "-x") && more) extra = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "-s") && more) seconds = atof(argv[++i]);
        else if (!strcmp(a, "-k") && more) bucket_bytes = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "-g") && more) gap_s = 1e-3 * atof(argv[++i]);
        else if (!strcmp(a, "-l") && more) label = argv[++i];
        else if (!strcmp(a, "-o") && more) csv = argv[++i];
        else if (!strcmp(a, "-i")) nb = 1;
        else if (!strcmp(a, "-N")) nodesum = 1;
        else if (!strcmp(a, "-a")) append = 1;
        else {
            if (rank == 0)
                fprintf(stderr, "usage: allreduce [-m MIN] [-M MAX] [-x BYTES] [-s SECONDS] [-i] [-k BUCKET] [-g MS] [-N] "
                                "[-l LABEL] [-o CSV] [-a]\n");
            MPI_Finalize();
            return 2;
        }
    }
    if (lo < sizeof(float) || hi < lo || bucket_bytes < sizeof(float) || hi / sizeof(float) > 0x7fffffffu ||
        extra / sizeof(float) > 0x7fffffffu) {
        if (rank == 0) fprintf(stderr, "allreduce: bad sizes\n");
        MPI_Finalize();
        return 2;
    }
    size_t nmax = (hi > extra ? hi : extra) / sizeof(float), bucket = bucket_bytes / sizeof(float);
    float *buf = malloc(nmax * sizeof *buf);
    MPI_Request *rq = malloc((nmax / bucket + 2) * sizeof *rq);
    if (!buf || !rq) MPI_Abort(MPI_COMM_WORLD, 7);
    for (size_t i = 0; i < nmax; i++) buf[i] = 1e-6f * (float)(i % 1000);
    FILE *f = NULL;
    if (rank == 0 && csv) {
        f = fopen(csv, append ? "a" : "w");
        if (!f) {
            fprintf(stderr, "allreduce: cannot write %s\n", csv);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (!append) fprintf(f, "bytes,ranks,seconds,mode,reps,label\n");
    }
    ae_error err = {0};
    if (nodesum && ae_dist_init(&argc, &argv, 0, &err)) {
        fprintf(stderr, "allreduce: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    if (nodesum) nb = 0;
    if (rank == 0) printf("%12s %6s %12s %10s %s\n", "bytes", "ranks", "seconds", "GB/s", "mode");
    for (int pass = 0; pass <= nb; pass++) {
        for (size_t b2 = lo, done_extra = extra == 0; b2 <= hi || !done_extra;) {
            size_t bytes = b2;
            if (!done_extra && (extra < b2 || b2 > hi)) { /* -x: one more size, in its place */
                bytes = extra;
                done_extra = 1;
            } else {
                b2 *= 2;
            }
            size_t n = bytes / sizeof(float);
            int reps;
            float *b = buf;
            if (nodesum) {
                char why[256];
                if (ae_dist_nodesum_create(n, 4, &node, &b, why, sizeof why, &err) || !node) {
                    if (rank == 0) fprintf(stderr, "allreduce: no node sum: %s\n", node ? why : err.msg);
                    MPI_Abort(MPI_COMM_WORLD, 3);
                }
                memcpy(b, buf, n * sizeof(float));
            }
            double t = measure(b, n, pass ? bucket : 0, rq, seconds, &reps);
            ae_dist_nodesum_free(node);
            node = NULL;
            char mode[48];
            const char *op = nodesum ? "nodesum" : "allreduce";
            if (pass) snprintf(mode, sizeof mode, "iallreduce_%zu", bucket_bytes);
            else if (gap_s > 0) snprintf(mode, sizeof mode, "%s_gap%gms", op, 1e3 * gap_s);
            else snprintf(mode, sizeof mode, "%s", op);
            if (rank == 0) {
                printf("%12zu %6d %12.6e %10.3f %s\n", bytes, P, t, 1e-9 * (double)bytes / t, mode);
                fflush(stdout);
                if (f) fprintf(f, "%zu,%d,%.6e,%s,%d,%s\n", bytes, P, t, mode, reps, label);
            }
        }
    }
    if (f && fclose(f)) fprintf(stderr, "allreduce: cannot write %s\n", csv);
    free(buf);
    free(rq);
    if (nodesum) ae_dist_finalize();
    MPI_Finalize();
    return 0;
}
