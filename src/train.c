/* train.c - the data-parallel training loop.
 *
 * Every rank holds the same model. For global step s of epoch e, every rank
 * computes the same permutation of the training set (keyed by (seed, e)),
 * takes the same global batch, and works on its contiguous slice of it; the
 * local gradients are sums over the slice scaled by 1/(global batch), so one
 * in-place allreduce (sum) of the gradient buffer gives the gradient of the
 * global batch, whatever the rank count. The step's scalars (loss, penalty,
 * stop requests) ride in the same allreduce; every rank then applies the
 * same optimizer step to the same numbers. With gradient accumulation
 * ([train] accum, micro_batch) the batch runs as k global micro-batches, one
 * forward + backward pass each on every rank, all adding into the one
 * gradient buffer before that one allreduce. */
#define _GNU_SOURCE
#include "ae/train.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ae/ckpt.h"
#include "ae/cpu.h"
#include "ae/data.h"
#include "ae/dist.h"
#include "ae/eval.h"
#include "ae/model.h"
#include "ae/optim.h"
#include "ae/pca.h"
#include "ae/plot.h"
#include "ae/report.h"
#include "ae/rng.h"
#include "ae/tboard.h"

#ifndef AE_VERSION
#define AE_VERSION "0.0.0"
#endif
#include "ae_gitcommit.h" /* AE_GIT_COMMIT, generated at build time */

#define PATH_CAP 4096
#define PROGRESS_PERIOD_S 0.25
#define EVAL_MIN_BATCH 256
/* MiB of activations evaluation may add beyond the training pass's to reach EVAL_MIN_BATCH samples */
#define EVAL_EXTRA_MIB 16.0

enum { EX_LOSS, EX_PENALTY, EX_STOP, EX_CORRECT };

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* a file-size limit makes a checkpoint write fail with EFBIG instead of killing the rank */
    signal(SIGXFSZ, SIG_IGN);
}

/* Fault injection for the reliability tests, from the environment:
 *   AE_FAULT=stall:R:S     rank R stops calling collectives before step S (sleeps)
 *   AE_FAULT=slow:R:MS     rank R sleeps MS milliseconds in every step (a slower rank)
 *   AE_FAULT=exit:R:S      rank R exits before step S
 *   AE_FAULT=nan:R:S       rank R's loss becomes NaN at step S
 *   AE_FAULT=loadfail:R    rank R fails to load the data
 *   AE_FAULT=tbimage:R:E   rank R's TensorBoard images of epoch E fail (R = 0: the writer) */
typedef struct fault {
    char kind[16];
    int rank;
    int64_t step;
} fault;

static fault the_fault = {"", -1, -1};

static void fault_read(void)
{
    const char *f = getenv("AE_FAULT");
    the_fault.kind[0] = '\0';
    if (!f) return;
    long long step = -1;
    int rank = -1;
    char kind[16] = "";
    if (sscanf(f, "%15[a-z]:%d:%lld", kind, &rank, &step) >= 2) {
        snprintf(the_fault.kind, sizeof the_fault.kind, "%s", kind);
        the_fault.rank = rank;
        the_fault.step = step;
    }
}

static int fault_at(const char *kind, int64_t step)
{
    return the_fault.kind[0] && strcmp(the_fault.kind, kind) == 0 && the_fault.rank == ae_dist_rank() &&
           (step < 0 || the_fault.step == step);
}

/* ---- the passes of a step ------------------------------------------------- */

void ae_train_split(size_t n, int parts, int part, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)part / (size_t)parts;
    *hi = n * (size_t)(part + 1) / (size_t)parts;
}

void ae_train_pass_range(size_t nb, int passes, int nranks, int pass, int rank, ae_train_pass *out)
{
    ae_train_pass_range_w(nb, passes, nranks, NULL, pass, rank, out);
}

void ae_train_pass_range_w(size_t nb, int passes, int nranks, const int64_t *w, int pass, int rank,
                           ae_train_pass *out)
{
    ae_train_split(nb, passes, pass, &out->g_lo, &out->g_hi);
    size_t a, b;
    ae_train_balance_split(out->g_hi - out->g_lo, nranks, w, rank, &a, &b);
    out->lo = out->g_lo + a;
    out->hi = out->g_lo + b;
}

void ae_train_balance_split(size_t n, int nranks, const int64_t *w, int rank, size_t *lo, size_t *hi)
{
    if (!w) {
        ae_train_split(n, nranks, rank, lo, hi);
        return;
    }
    unsigned __int128 before = 0, total = 0;
    for (int q = 0; q < nranks; q++) {
        if (q == rank) before = total;
        total += (unsigned __int128)w[q];
    }
    unsigned __int128 upto = before + (unsigned __int128)w[rank];
    *lo = (size_t)((unsigned __int128)n * before / total);
    *hi = rank == nranks - 1 ? n : (size_t)((unsigned __int128)n * upto / total);
}

void ae_train_balance_clamp(int64_t *w, int nranks)
{
    int64_t top = 1;
    for (int q = 0; q < nranks; q++)
        if (w[q] > top) top = w[q];
    if (nranks < 2) return;
    /* the rank with top and every other at the floor: share top / (top + (P - 1) floor) <= 5 / (4 P) */
    unsigned __int128 num = (unsigned __int128)top * (unsigned)(4 * nranks - 5), den = 5u * (unsigned)(nranks - 1);
    int64_t floor_w = (int64_t)((num + den - 1) / den);
    for (int q = 0; q < nranks; q++) {
        if (w[q] <= 0) w[q] = top;
        if (w[q] < floor_w) w[q] = floor_w;
    }
}

int ae_train_balance_max(int pass_max, int nranks)
{
    if (nranks < 2) return pass_max;
    int64_t cap = (int64_t)pass_max * 5 / 4 + 1, all = (int64_t)pass_max * nranks;
    return (int)(cap < all ? cap : all);
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

int ae_train_passes(int batch, int nranks, int accum, int micro_batch)
{
    if (micro_batch <= 0) return accum > 1 ? accum : 1;
    /* in int64: nranks x micro_batch may pass INT_MAX */
    int64_t per_pass = (int64_t)nranks * micro_batch;
    return (int)(((int64_t)batch + per_pass - 1) / per_pass);
}

int ae_train_pass_max(int batch, int passes, int nranks) { return ceil_div(ceil_div(batch, passes), nranks); }

int ae_train_threads(int requested)
{
    if (requested > 0) return requested;
    cpu_set_t set;
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int share = cores / (ae_dist_local_size() > 0 ? ae_dist_local_size() : 1);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < share) share = CPU_COUNT(&set);
    return share > 0 ? share : 1;
}

/* ---- the loop state shared by training and the probe --------------------- */

typedef struct loop {
    ae_model *m;
    float *opt;
    ae_optim_conf oc;
    ae_sched_conf sc;
    float clip;
    const ae_dataset *train;
    int batch;
    uint64_t seed;
    int64_t steps_per_epoch, total_steps;
    float *xbuf;
    uint8_t *ybuf;
    uint32_t *perm;
    int64_t perm_epoch;
    int passes; /* gradient accumulation: global micro-batches per step (1 = off) */
    /* deterministic mode: fixed micro-shards, summed in global piece order */
    int det, shards;
    float **piece;        /* (this rank's pieces) the micro-shard gradient buffers of a step */
    float *piece_buf;     /* (pieces x ntot, one fewer on rank 0, whose first piece is m's own buffer) */
    /* position */
    int64_t epoch, step, step_in_epoch;
    double run_sum, run_cnt;
    /* bucketed allreduce (train.bucket_mb > 0, P > 1, default mode): buckets of whole layers' gradients
     * in reverse layer order, each started during backward once no later layer of backward writes to it */
    struct bucket {
        size_t off, n;
        int ready; /* the bucket can start after the backward of this layer */
        int mark;  /* its sum is done once the first `mark` requests of the step are */
    } *bkt;
    int n_bkt, next_bkt;
    int bucket_step; /* step each bucket's parameters as soon as its sum is in (train.bucket_step) */
    ae_dist_reqs *reqs;
    ae_dist_nodesum *ns; /* train.allreduce = node (bucket_mb = 0): m's gradients live in its window */
    /* train.shard_optimizer: the node's one copy of the parameters and optimizer state (m->params
     * and opt point there while shared; the private buffers are opt_own and m's own) */
    ae_dist_shm *p_shm, *o_shm;
    float *opt_own;
    int shard;
    ae_error bkt_err; /* the first failure of a call made during backward */
    /* timing of the current epoch: the step, its wait for the gradient sums after backward, and its
     * communication during backward (the calls made there; with the communication thread, the
     * thread's time in MPI_Allreduce before the wait) */
    double t_steps, t_allreduce, t_overlap;
    double lr;
    /* train.balance (P > 1, not deterministic; bal_w = NULL: off): the ranks' speeds in samples per
     * second x 1024, a running mean over the steps (bal_w), this step's as gathered (bal_raw), and the
     * clamped weights the slices follow (bal_use, once bal_ready); bal_tail: this rank's time of the
     * last step after its last synchronization (its optimizer), which the next measurement adds */
    int64_t *bal_w, *bal_raw, *bal_use;
    int bal_ready, bal_have_tail;
    double bal_tail;
    double bal_share_hi, bal_share_lo; /* sums over the balanced steps of the largest and smallest share */
    int64_t bal_steps;
    FILE *steps_f; /* train.step_times: this rank's steps/rank-R.csv, one row a step (NULL = off) */
    /* [z_lo, z_hi): the gradients the last step's optimizer set to 0 as it went (default mode), which
     * the next step's zeroing skips */
    size_t z_lo, z_hi;
} loop;

/* train.shard_optimizer: auto, true, false (the config's order); auto shards from this size on,
 * where it measured faster (docs/performance.md) */
enum { SHARD_AUTO = 0, SHARD_TRUE = 1, SHARD_FALSE = 2 };
#define SHARD_AUTO_BYTES 4e6

/* train.shard_optimizer: from here on the node holds the parameters and the optimizer state once,
 * in shared memory (copied from the node's first rank: every rank has the same), and each rank
 * steps its chunk of them. Collective; nothing changes when the node has no room (the log says so). */
static ae_status loop_share(loop *L, const ae_spec *spec, ae_error *err)
{
    ae_model *m = L->m;
    if (!L->ns || spec->shard_optimizer == SHARD_FALSE) return AE_OK;
    if (spec->shard_optimizer == SHARD_AUTO && sizeof(float) * m->n_params < SHARD_AUTO_BYTES) {
        ae_report_log("optimizer: every rank steps all parameters (train.shard_optimizer = auto: %.2f MB of "
                      "parameters, below %.0f MB)",
                      (double)(sizeof(float) * m->n_params) / 1e6, SHARD_AUTO_BYTES / 1e6);
        return AE_OK;
    }
    if (L->clip > 0.0f) {
        ae_report_log("optimizer: every rank steps all parameters (train.shard_optimizer: optim.clip_norm needs the "
                      "norm of every gradient first)");
        return AE_OK;
    }
    int lead = ae_dist_local_rank() == 0;
    size_t n_opt = ae_optim_state_floats(L->oc.kind, m->n_params);
    size_t pb = lead ? sizeof(float) * m->n_params : 0, ob = lead ? sizeof(float) * (n_opt ? n_opt : 1) : 0;
    void *pp = NULL, *op = NULL;
    char why[256] = "";
    ae_status st = ae_dist_node_alloc(&pb, &pp, &L->p_shm, why, sizeof why, err);
    if (!st && pp) st = ae_dist_node_alloc(&ob, &op, &L->o_shm, why, sizeof why, err);
    if (!st && (!pp || !op)) {
        ae_dist_node_free(L->o_shm);
        ae_dist_node_free(L->p_shm);
        L->o_shm = L->p_shm = NULL;
        ae_report_log("optimizer: every rank steps all parameters (train.shard_optimizer: %s)", why);
        return AE_OK;
    }
    if (st) return st;
    if (lead) {
        memcpy(pp, m->params, sizeof(float) * m->n_params);
        if (n_opt) memcpy(op, L->opt, sizeof(float) * n_opt);
    }
    if ((st = ae_dist_node_sync(L->p_shm, err))) return st;
    ae_model_bind_params(m, pp);
    L->opt_own = L->opt;
    L->opt = op;
    L->shard = 1;
    ae_report_log("optimizer: the node holds the parameters and optimizer state once; each of its %d ranks steps "
                  "1/%d of them (train.shard_optimizer)",
                  ae_dist_nodesum_ranks(L->ns), ae_dist_nodesum_ranks(L->ns));
    return AE_OK;
}

/* Back to every rank's own parameters and optimizer state (copies of the node's). Collective. */
static void loop_unshare(loop *L)
{
    if (!L->shard) return;
    ae_model *m = L->m;
    size_t n_opt = ae_optim_state_floats(L->oc.kind, m->n_params);
    memcpy(m->params_own, m->params, sizeof(float) * m->n_params);
    if (n_opt) memcpy(L->opt_own, L->opt, sizeof(float) * n_opt);
    ae_dist_node_sync(L->p_shm, NULL); /* every rank has copied before the segments go */
    ae_model_bind_params(m, NULL);
    L->opt = L->opt_own;
    L->opt_own = NULL;
    L->shard = 0;
    ae_dist_node_free(L->o_shm);
    ae_dist_node_free(L->p_shm);
    L->o_shm = L->p_shm = NULL;
}

static void loop_free(loop *L)
{
    free(L->bkt);
    free(L->bal_w);
    if (L->steps_f) fclose(L->steps_f);
    ae_dist_reqs_free(L->reqs);
    loop_unshare(L);
    if (L->ns) ae_model_bind_grads(L->m, NULL);
    ae_dist_nodesum_free(L->ns);
    free(L->piece);
    free(L->piece_buf);
    free(L->opt);
    free(L->xbuf);
    free(L->ybuf);
    free(L->perm);
}

/* Cut the gradients into buckets of whole layers, last layer first, each
 * closed once it holds at least mb MB. A bucket is ready after the backward
 * of the lowest-indexed layer that writes into it (backward runs from the
 * last layer down): its own layers, and a tied layer, which adds into the
 * weight of the layer it is tied to. */
static ae_status plan_buckets(loop *L, const ae_spec *spec, ae_error *err)
{
    const ae_model *m = L->m;
    float mb = spec->bucket_mb;
    int thread = spec->comm_thread;
    size_t target = (size_t)((double)mb * 1048576.0 / sizeof(float)), hi = m->n_params, reqs = 2;
    if (target < 1) target = 1;
    if (!(L->bkt = ae_calloc((size_t)m->n_layers, sizeof *L->bkt, err))) return AE_ERR_NOMEM;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        size_t lo = m->layers[i].p_off;
        if (hi > lo && (hi - lo >= target || i == 0)) {
            L->bkt[L->n_bkt++] = (struct bucket){.off = lo, .n = hi - lo, .ready = i};
            hi = lo;
        }
    }
    for (int k = 0; k < L->n_bkt; k++) {
        struct bucket *b = &L->bkt[k];
        for (int i = m->n_layers - 1; i >= 0; i--) {
            const ae_layer *l = &m->layers[i], *w = l->tied ? l->tied : l;
            int own = l->n_params && l->p_off < b->off + b->n && b->off < l->p_off + l->n_params;
            int tie = l->tied && w->p_off < b->off + b->n && b->off < w->p_off + w->n_params;
            if ((own || tie) && i < b->ready) b->ready = i;
        }
        reqs += 1 + b->n / ((size_t)1 << 30);
    }
    reqs += (m->n_aux + AE_GRAD_EXTRA) / ((size_t)1 << 30);
    ae_status st = ae_dist_reqs_create((int)reqs, thread, &L->reqs, err);
    if (st) return st;
    if (ae_dist_reqs_threaded(L->reqs))
        ae_report_log("gradient allreduce: %d buckets of >= %g MB started during backward, summed on a "
                      "communication thread",
                      L->n_bkt, (double)mb);
    else
        ae_report_log("gradient allreduce: %d buckets of >= %g MB started during backward, driven by MPI_Testall "
                      "between layers%s",
                      L->n_bkt, (double)mb,
                      !thread                     ? ""
                      : ae_dist_thread_multiple() ? " (train.comm_thread: a rank could not start its thread)"
                                                  : " (train.comm_thread: this MPI provides no MPI_THREAD_MULTIPLE)");
    /* with MPI_Testall the sums do not move while the main thread steps: stepping per bucket would
     * only wait in more pieces */
    L->bucket_step = spec->bucket_step && L->clip <= 0.0f && ae_dist_reqs_threaded(L->reqs);
    if (L->bucket_step)
        ae_report_log("optimizer: each bucket's parameters stepped as soon as its sum is in");
    else if (spec->bucket_step)
        ae_report_log("optimizer: one step after every sum is in (%s)",
                      L->clip > 0.0f ? "optim.clip_norm needs the norm of all gradients"
                                     : "train.bucket_step needs the communication thread: with MPI_Testall the "
                                       "sums do not move while the optimizer steps");
    return AE_OK;
}

static ae_status loop_init(loop *L, ae_model *m, const ae_spec *spec, const ae_dataset *train, ae_error *err)
{
    memset(L, 0, sizeof *L);
    L->m = m;
    L->oc = spec->optim;
    L->sc = spec->sched;
    L->clip = spec->clip_norm;
    L->train = train;
    L->batch = spec->batch;
    L->seed = spec->seed;
    L->steps_per_epoch = (int64_t)((train->n + (size_t)spec->batch - 1) / (size_t)spec->batch);
    L->total_steps = L->steps_per_epoch * spec->epochs;
    if (spec->max_steps > 0 && spec->max_steps < L->total_steps) L->total_steps = spec->max_steps;
    L->perm_epoch = -1;
    size_t n_opt = ae_optim_state_floats(L->oc.kind, m->n_params);
    if (!(L->opt = ae_alloc_floats(n_opt, err))) return AE_ERR_NOMEM;
    if (!(L->xbuf = ae_alloc_floats((size_t)m->max_batch * train->d, err))) return AE_ERR_NOMEM;
    if (!(L->ybuf = ae_calloc((size_t)m->max_batch, 1, err))) return AE_ERR_NOMEM;
    if (!(L->perm = ae_calloc(train->n ? train->n : 1, sizeof(uint32_t), err))) return AE_ERR_NOMEM;
    L->passes = ae_train_passes(spec->batch, ae_dist_size(), spec->accum, spec->micro_batch);
    L->det = spec->deterministic;
    L->shards = spec->micro_shards;
    if (!L->det && spec->balance && ae_dist_size() > 1) {
        size_t P = (size_t)ae_dist_size();
        if (!(L->bal_w = ae_calloc(3 * P, sizeof(int64_t), err))) return AE_ERR_NOMEM;
        L->bal_raw = L->bal_w + P;
        L->bal_use = L->bal_raw + P;
    }
    if (L->det) {
        if (ae_dist_size() > L->shards)
            return ae_error_set(err, AE_ERR_CONFIG, "%s: [train] micro_shards = %d is fewer than the %d ranks",
                                spec->source, L->shards, ae_dist_size());
        int P = ae_dist_size(), r = ae_dist_rank(), k = L->shards * (r + 1) / P - L->shards * r / P;
        size_t ntot = m->n_params + m->n_aux + AE_GRAD_EXTRA, nbuf = (size_t)(k - (r == 0));
        if (!(L->piece = ae_calloc((size_t)k, sizeof(float *), err))) return AE_ERR_NOMEM;
        if (nbuf && !(L->piece_buf = ae_alloc_floats(nbuf * ntot, err))) return AE_ERR_NOMEM;
    }
    if (!L->det && spec->bucket_mb > 0 && ae_dist_size() > 1) return plan_buckets(L, spec, err);
    if (!L->det && !spec->allreduce_mpi && ae_dist_size() > 1) {
        char why[320];
        float *buf = NULL;
        size_t ntot = m->n_params + m->n_aux + AE_GRAD_EXTRA;
        ae_status st = ae_dist_nodesum_create(ntot, ntot - m->n_params, &L->ns, &buf, why, sizeof why, err);
        if (st) return st;
        if (L->ns) {
            ae_model_bind_grads(m, buf);
            ae_report_log("gradient allreduce: the %d ranks of each node sum through shared memory%s",
                          ae_dist_nodesum_ranks(L->ns),
                          ae_dist_size() > ae_dist_nodesum_ranks(L->ns) ? ", then one allreduce between nodes" : "");
        } else {
            ae_report_log("gradient allreduce: MPI_Allreduce (train.allreduce = node: %s)", why);
        }
    }
    return AE_OK;
}

static const char *nonfinite_layer(const ae_model *m)
{
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const ae_layer *l = &m->layers[i];
        for (size_t k = 0; k < l->n_params; k++)
            if (!isfinite(m->grads[l->p_off + k])) return l->name;
    }
    return NULL;
}

/* Layers' in-forward reductions (synchronized batch norm). */
static ae_status reduce_cb(float *buf, size_t n, void *user)
{
    (void)user;
    return ae_dist_allreduce_sum(buf, n, NULL);
}

/* Backward hook of the bucketed allreduce: start the buckets (in plan order,
 * the same on every rank) that no layer still to come writes into, then let
 * MPI move the started ones along. The first failure is kept for loop_step. */
static void bucket_done(int layer, void *user)
{
    loop *L = user;
    if (L->bkt_err.code) return;
    double t0 = ae_dist_time();
    ae_status st = AE_OK;
    for (; !st && L->next_bkt < L->n_bkt && L->bkt[L->next_bkt].ready >= layer; L->next_bkt++) {
        struct bucket *b = &L->bkt[L->next_bkt];
        st = ae_dist_iallreduce_sum(L->reqs, L->m->grads + b->off, b->n, &L->bkt_err);
        if (L->bucket_step) b->mark = ae_dist_reqs_started(L->reqs);
    }
    if (!st) ae_dist_progress(L->reqs, &L->bkt_err);
    /* with the thread, the hook's own time is not communication (ae_dist_reqs_hidden_s counts that) */
    if (!ae_dist_reqs_threaded(L->reqs)) L->t_overlap += ae_dist_time() - t0;
}

/* Collective (train.balance): every rank's speed in this step, its n_local samples over its time
 * from the last step's last synchronization to this step's sum (busy: this step's part; the
 * previous step's optimizer adds L->bal_tail), gathered; the next steps' slices follow the running
 * mean of the speeds (the newest step counts half), clamped (ae_train_balance_clamp). A step
 * counts when it is full, every rank had samples and the previous step was measured: the weights
 * are the same integers on every rank. At the fixed point every rank reaches the sum at once. */
static ae_status balance_update(loop *L, size_t nb, size_t n_local, double busy, ae_error *err)
{
    int P = ae_dist_size();
    double c = busy + L->bal_tail, v = c > 0 ? 1024.0 * (double)n_local / c : 0.0;
    int64_t mine = L->bal_have_tail && nb == (size_t)L->batch && v >= 1.0 && v < 1e15 ? (int64_t)llround(v) : 0;
    ae_status st = ae_dist_allgather_i64(mine, L->bal_raw, err);
    if (st) return st;
    for (int q = 0; q < P; q++)
        if (L->bal_raw[q] <= 0) return AE_OK;
    for (int q = 0; q < P; q++) L->bal_w[q] = L->bal_ready ? (L->bal_w[q] + L->bal_raw[q]) / 2 : L->bal_raw[q];
    memcpy(L->bal_use, L->bal_w, sizeof(int64_t) * (size_t)P);
    ae_train_balance_clamp(L->bal_use, P);
    L->bal_ready = 1;
    size_t lo, hi, most = 0, least = (size_t)L->batch;
    for (int q = 0; q < P; q++) {
        ae_train_balance_split((size_t)L->batch, P, L->bal_use, q, &lo, &hi);
        if (hi - lo > most) most = hi - lo;
        if (hi - lo < least) least = hi - lo;
    }
    L->bal_share_hi += (double)most * P / L->batch;
    L->bal_share_lo += (double)least * P / L->batch;
    L->bal_steps++;
    return AE_OK;
}

/* Zero the gradients, aux sums and step scalars the passes of a step add into. */
static void zero_grads(ae_model *m) { memset(m->grads, 0, sizeof(float) * (m->n_params + m->n_aux + AE_GRAD_EXTRA)); }

/* zero_grads but for [L->z_lo, L->z_hi), which the last step's optimizer left at 0. */
static void zero_grads_rest(loop *L)
{
    ae_model *m = L->m;
    size_t ntot = m->n_params + m->n_aux + AE_GRAD_EXTRA;
    memset(m->grads, 0, sizeof(float) * L->z_lo);
    memset(m->grads + L->z_hi, 0, sizeof(float) * (ntot - L->z_hi));
    L->z_lo = L->z_hi = 0;
}

/* Collective: the epoch's breakdown of the step time, as means over the ranks (metrics.csv):
 * allreduce_frac, the time in the gradient allreduce's calls (during backward and after it);
 * allreduce_exposed_frac, the wait after backward; wait_frac, the part of that spent waiting for a
 * slower rank. Every rank's exposed time is the transfer plus its wait for the last rank to arrive;
 * the rank with the shortest one is taken as the one that waited least, so (mean - min) over the
 * ranks of the exposed time estimates the waiting (a lower bound when the slowest rank changes from
 * step to step). Shares of the mean step time; with one rank, rank 0's own and no waiting. */
static ae_status step_shares(const loop *L, ae_metrics_row *row, ae_error *err)
{
    double sums[3] = {L->t_allreduce, L->t_overlap, L->t_steps}, lo = -L->t_allreduce;
    ae_status st = ae_dist_allreduce_sum_f64(sums, 3, err);
    if (!st) st = ae_dist_allreduce_max_f64(&lo, 1, err);
    if (st) return st;
    double P = (double)ae_dist_size(), exposed = sums[0] / P, hidden = sums[1] / P, step = sums[2] / P;
    row->allreduce_frac = step > 0 ? (exposed + hidden) / step : 0.0;
    row->allreduce_exposed_frac = step > 0 ? exposed / step : 0.0;
    row->wait_frac = step > 0 && P > 1 ? (exposed + lo) / step : 0.0;
    if (row->wait_frac < 0) row->wait_frac = 0.0;
    return AE_OK;
}

/* Forward and backward of global-batch samples [lo, hi) of this step of nb,
 * ADDED into m->grads, its aux sums and its trailing scalars. sync: layers
 * reduce across ranks (their sums span `span` samples, the pass's global
 * micro-batch); last: the step's last pass, during whose backward the
 * gradient buckets start (the earlier passes have finished writing). */
static void local_pass(loop *L, const uint32_t *perm_batch, size_t lo, size_t hi, size_t nb, int sync, size_t span,
                       int last, const uint32_t *next, size_t n_next)
{
    ae_model *m = L->m;
    int n = (int)(hi - lo);
    float *extra = m->extra;
    int is_ae = m->type == AE_MODEL_AUTOENCODER;
    float scale = ae_model_loss_scale(m, (int64_t)nb);
    /* an empty slice still runs the (empty) passes: synchronized layers reduce in them */
    ae_data_gather_x_next(L->train, perm_batch + lo, (size_t)n, next, n_next, L->xbuf);
    if (!is_ae) ae_data_gather_y(L->train, perm_batch + lo, (size_t)n, L->ybuf);
    ae_ctx ctx = {.training = 1, .seed = L->seed, .epoch = L->epoch, .step = L->step, .sample0 = (int64_t)lo,
                  .batch = (int64_t)nb, .sync_count = (int64_t)span, .reduce = sync ? reduce_cb : NULL,
                  .layer_done = sync && last && L->reqs ? bucket_done : NULL, .layer_done_user = L,
                  .logits_only = 1};
    ae_model_forward(m, &ctx, L->xbuf, n, m->n_layers);
    ae_loss_out lo_;
    ae_model_loss(m, &ctx, L->xbuf, L->xbuf, L->ybuf, n, scale, 1, &lo_);
    extra[EX_LOSS] += (float)(lo_.loss * scale);
    extra[EX_PENALTY] += (float)(lo_.penalty / (double)nb);
    extra[EX_CORRECT] += (float)lo_.correct;
    if (fault_at("nan", L->step + 1)) extra[EX_LOSS] = NAN;
}

/* The optimizer step of each bucket as soon as its sum is in, while the later ones are still being
 * summed: L2 gradient, frozen layers, finite check and update, on the bucket's whole layers only,
 * which gives the bits of one step after every sum (the updates are elementwise). Returns the
 * seconds spent stepping; *bad is set at the first bucket with a non-finite gradient, and no bucket
 * is stepped from then on (the step ends in an error). A failed wait is left in L->bkt_err. */
static double bucket_steps(loop *L, int *bad)
{
    ae_model *m = L->m;
    double busy = 0.0;
    L->lr = ae_sched_lr(&L->sc, L->step, L->steps_per_epoch, L->total_steps);
    int k = 0;
    for (; k < L->n_bkt && !*bad; k++) {
        const struct bucket *b = &L->bkt[k];
        if (ae_dist_wait_first(L->reqs, b->mark, &L->bkt_err)) break;
        double t0 = ae_dist_time();
        ae_model_add_l2_grad_range(m, b->off, b->off + b->n);
        ae_model_zero_frozen_range(m, b->off, b->off + b->n);
        *bad = ae_optim_step_range_zero(&L->oc, (float)L->lr, L->step + 1, m->params, m->grads, L->opt,
                                        m->n_params, b->off, b->n);
        busy += ae_dist_time() - t0;
    }
    if (k == L->n_bkt && !*bad && L->n_bkt) { /* every bucket stepped (and zeroed): [first's off, n_params) */
        L->z_lo = L->bkt[L->n_bkt - 1].off;
        L->z_hi = m->n_params;
    }
    return busy;
}

/* One global step: local forward/backward on this rank's slice (of each
 * global micro-batch in turn, under gradient accumulation), one allreduce,
 * penalties, clipping, optimizer. *stop is set when any rank
 * asked to stop (signal). In deterministic mode the slice is a fixed set of
 * micro-shards, each computed into its own gradient buffer, and the sum is
 * the float chain (((p0 + p1) + p2) + ...) in global piece order
 * (ae_dist_ordered_sum), the same operations for every rank count. */
static ae_status loop_step(loop *L, int *stop, ae_error *err)
{
    ae_model *m = L->m;
    const ae_dataset *ds = L->train;
    if (L->perm_epoch != L->epoch) {
        ae_rng rng;
        ae_rng_init(&rng, L->seed, AE_RNG_SHUFFLE, (uint32_t)L->epoch, 0, 0);
        ae_rng_permutation(&rng, L->perm, ds->n);
        L->perm_epoch = L->epoch;
    }
    ae_dist_set_step(L->step + 1);
    if (fault_at("stall", L->step + 1))
        for (;;) sleep(1);
    if (fault_at("exit", L->step + 1)) _exit(1);
    double t0 = ae_dist_time();
    if (fault_at("slow", -1)) { /* a slower rank (inside the timed step): the_fault.step is ms per step */
        struct timespec nap = {(time_t)(the_fault.step / 1000), (long)(the_fault.step % 1000) * 1000000L};
        nanosleep(&nap, NULL);
    }
    int P = ae_dist_size(), r = ae_dist_rank();
    size_t start = (size_t)L->step_in_epoch * (size_t)L->batch;
    size_t nb = ds->n - start < (size_t)L->batch ? ds->n - start : (size_t)L->batch;
    const uint32_t *batch = L->perm + start;
    size_t ntot = m->n_params + m->n_aux + AE_GRAD_EXTRA;
    float *extra = m->extra;
    float stop_req = stop_signal ? 1.0f : 0.0f;
    ae_status st;
    double t1, t2, t_exit, t_opt = 0.0; /* t_opt: the optimizer steps' time inside [t1, t2] (buckets, chunk) */
    const int64_t *W = L->bal_ready ? L->bal_use : NULL; /* train.balance: the ranks' weights */
    size_t n_local = 0;
    int stepped = 0, bad = 0;
    size_t c_lo = 0, c_hi = 0; /* train.shard_optimizer: this rank's chunk of the parameters */
    if (!L->det) {
        L->next_bkt = 0;
        zero_grads_rest(L);
        /* every rank runs every pass, an empty slice too: synchronized layers reduce in them */
        for (int j = 0; j < L->passes; j++) {
            ae_train_pass pr, nx = {0};
            ae_train_pass_range_w(nb, L->passes, P, W, j, r, &pr);
            n_local += pr.hi - pr.lo;
            /* the rows this rank gathers next: the next pass's, or the next step's first pass's */
            const uint32_t *next = NULL;
            if (j + 1 < L->passes) {
                ae_train_pass_range_w(nb, L->passes, P, W, j + 1, r, &nx);
                next = batch + nx.lo;
            } else if (start + nb < ds->n && L->step_in_epoch + 1 < L->steps_per_epoch) {
                size_t nb2 = ds->n - start - nb < (size_t)L->batch ? ds->n - start - nb : (size_t)L->batch;
                ae_train_pass_range_w(nb2, L->passes, P, W, 0, r, &nx);
                next = batch + nb + nx.lo;
            }
            local_pass(L, batch, pr.lo, pr.hi, nb, 1, pr.g_hi - pr.g_lo, j == L->passes - 1, next, nx.hi - nx.lo);
        }
        extra[EX_STOP] = stop_req;
        t1 = ae_dist_time();
        if (L->reqs) {
            /* buckets started during backward; the aux sums and the step's scalars (written last) now */
            if (L->bkt_err.code) {
                *err = L->bkt_err;
                return err->code;
            }
            if (L->next_bkt != L->n_bkt) bucket_done(0, L);
            if (!L->bkt_err.code)
                ae_dist_iallreduce_sum(L->reqs, m->grads + m->n_params, ntot - m->n_params, &L->bkt_err);
            if (!L->bkt_err.code && L->bucket_step) {
                t_opt = bucket_steps(L, &bad);
                stepped = 1;
            }
            if (!L->bkt_err.code) ae_dist_wait_all(L->reqs, &L->bkt_err);
            L->t_overlap += ae_dist_reqs_hidden_s(L->reqs);
            if (L->bkt_err.code) {
                *err = L->bkt_err;
                return err->code;
            }
        } else if (L->ns) {
            if ((st = ae_dist_nodesum_run(L->ns, L->shard, err))) return st;
            if (L->shard) {
                /* this rank's chunk: L2 gradient, frozen layers, and the step with its finite check;
                 * the node agrees on the check, which is also the barrier that every chunk is stepped
                 * before the next forward reads the parameters (and after which the step's scalars,
                 * which every buffer has, may be read) */
                double ts = ae_dist_time();
                ae_dist_nodesum_chunk(L->ns, &c_lo, &c_hi);
                if (c_hi > m->n_params) c_hi = m->n_params;
                if (c_lo > c_hi) c_lo = c_hi;
                ae_model_add_l2_grad_range(m, c_lo, c_hi);
                ae_model_zero_frozen_range(m, c_lo, c_hi);
                L->lr = ae_sched_lr(&L->sc, L->step, L->steps_per_epoch, L->total_steps);
                bad = ae_optim_step_range_zero(&L->oc, (float)L->lr, L->step + 1, m->params, m->grads,
                                               L->opt, m->n_params, c_lo, c_hi - c_lo);
                if (!bad) L->z_lo = c_lo, L->z_hi = c_hi;
                t_opt = ae_dist_time() - ts;
                if ((st = ae_dist_nodesum_agree(L->ns, &bad, err))) return st;
                if (bad) ae_dist_nodesum_gather(L->ns); /* the whole sum, for the report of the layer */
                stepped = 1;
            }
        } else if ((st = ae_dist_allreduce_sum(m->grads, ntot, err))) return st;
        t2 = t_exit = ae_dist_time();
        if (L->bal_w) {
            if ((st = balance_update(L, nb, n_local, t1 - t0, err))) return st;
            t_exit = ae_dist_time();
            L->t_allreduce += t_exit - t2;
        }
    } else {
        /* rank 0's first piece starts the chain in the model's own buffer; every other piece gets its
         * own buffer (a rank after 0 can add its pieces only once the prefix sum has arrived) */
        int M = L->shards, j0 = M * r / P, j1 = M * (r + 1) / P, k = 0;
        for (int j = j0; j < j1; j++, k++) {
            L->piece[k] = r == 0 && j == j0 ? m->grads_own : L->piece_buf + (size_t)(k - (r == 0)) * ntot;
            ae_model_bind_grads(m, L->piece[k]);
            zero_grads(m);
            size_t lo, hi;
            ae_train_split(nb, M, j, &lo, &hi);
            local_pass(L, batch, lo, hi, nb, 0, 0, 1, NULL, 0);
            n_local += hi - lo;
            m->extra[EX_STOP] = j == j0 ? stop_req : 0.0f;
        }
        ae_model_bind_grads(m, NULL);
        t1 = ae_dist_time();
        /* NaN and inf propagate through the float sums to the non-finite check below */
        if ((st = ae_dist_ordered_sum(L->piece, k, m->grads, ntot, err))) return st;
        t2 = t_exit = ae_dist_time();
    }
    if (m->n_aux) {
        ae_ctx uctx = {.training = 1, .seed = L->seed, .epoch = L->epoch, .step = L->step, .batch = (int64_t)nb};
        ae_model_update(m, &uctx);
    }
    double norm = bad ? NAN : 0.0;
    if (!stepped) {
        /* the finite check is part of the optimizer's pass; clipping needs the norm first. No step
         * on a non-finite loss, nor on a non-finite norm */
        ae_model_add_l2_grad(m);
        ae_model_zero_frozen(m);
        L->lr = ae_sched_lr(&L->sc, L->step, L->steps_per_epoch, L->total_steps);
        if (L->clip > 0.0f) norm = ae_optim_clip(m->grads, m->n_params, L->clip);
        if (isfinite(norm) && isfinite(extra[EX_LOSS])) {
            /* default mode: the next step adds into this buffer again, so the step zeroes as it goes */
            if (L->det ? ae_optim_step(&L->oc, (float)L->lr, L->step + 1, m->params, m->grads, L->opt, m->n_params)
                       : ae_optim_step_range_zero(&L->oc, (float)L->lr, L->step + 1, m->params, m->grads, L->opt,
                                                  m->n_params, 0, m->n_params))
                norm = NAN;
            else if (!L->det) L->z_hi = m->n_params;
        }
    }
    if (!isfinite(norm) || !isfinite(extra[EX_LOSS])) {
        const char *where = nonfinite_layer(m);
        return ae_error_set(err, AE_ERR_NUMERIC, "non-finite %s at epoch %lld, step %lld%s%s (lr %.3g)",
                            isfinite(extra[EX_LOSS]) ? "gradient" : "loss", (long long)L->epoch + 1,
                            (long long)L->step + 1, where ? ", first in layer " : "", where ? where : "", L->lr);
    }
    L->run_sum += (double)extra[EX_LOSS] * (double)nb;
    L->run_cnt += (double)nb;
    L->step++;
    L->step_in_epoch++;
    *stop = extra[EX_STOP] > 0.0f;
    double t3 = ae_dist_time();
    L->bal_tail = t3 - t_exit;
    L->bal_have_tail = 1;
    if (L->steps_f)
        fprintf(L->steps_f, "%lld,%zu,%.7f,%.7f,%.7f,%.7f\n", (long long)L->step, n_local, t1 - t0,
                t2 - t1 - t_opt, t3 - t2 + t_opt, t3 - t0);
    L->t_steps += t3 - t0;
    L->t_allreduce += t2 - t1 - t_opt;
    return AE_OK;
}

/* ---- run folder and checkpoints ----------------------------------------- */

static int mkdir_p(const char *path)
{
    char tmp[PATH_CAP];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return (mkdir(tmp, 0755) != 0 && errno != EEXIST) ? -1 : 0;
}

/* train.step_times: RUN/steps/rank-R.csv (R with 5 digits), appended to on a resume, its header
 * when new: per step its number (after it), this rank's samples, and the step's four times in
 * seconds: compute (forward, backward, the gather: from the step's start to its gradient sum),
 * sum (the sum, the waiting for the other ranks in it, and the balance exchange), after (the
 * optimizer and the rest), step (all). Every rank makes the folder, which on a shared file system
 * is one. Written through stdio's buffer: a row costs no system call. */
static ae_status open_step_times(loop *L, const char *dir, ae_error *err)
{
    char path[PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/steps", dir);
    if (mkdir_p(path) != 0) return ae_error_set(err, AE_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/steps/rank-%05d.csv", dir, ae_dist_rank());
    if (!(L->steps_f = fopen(path, "a"))) return ae_error_set(err, AE_ERR_IO, "%s: %s", path, strerror(errno));
    if (fseek(L->steps_f, 0, SEEK_END) == 0 && ftell(L->steps_f) == 0)
        fprintf(L->steps_f, "step,samples,compute_s,sum_s,after_s,step_s\n");
    return AE_OK;
}

typedef struct run_ctx {
    char dir[PATH_CAP];
    char ckpt_dir[PATH_CAP + 8];
    char *config_text;
} run_ctx;

static void fill_meta(const loop *L, const ae_spec *spec, int64_t bad, double best, ae_ckpt_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    meta->arch_hash = L->m->arch_hash;
    meta->seed = spec->seed;
    meta->epoch = L->epoch;
    meta->step = L->step;
    meta->step_in_epoch = L->step_in_epoch;
    meta->bad_epochs = bad;
    meta->best_val = best;
    meta->run_loss_sum = L->run_sum;
    meta->run_loss_count = L->run_cnt;
    meta->nranks = ae_dist_size();
}

/* Collective: rank 0 writes a checkpoint (numbered, or best when best != 0)
 * and prunes old ones; all ranks agree on the outcome. */
static ae_status save_ckpt(const run_ctx *rc, const loop *L, const ae_spec *spec, int64_t bad, double best,
                           int is_best, ae_error *err)
{
    ae_status st = AE_OK;
    if (ae_dist_rank() == 0) {
        char path[2 * PATH_CAP];
        if (is_best) snprintf(path, sizeof path, "%s/%s", rc->ckpt_dir, AE_CKPT_BEST);
        else
            snprintf(path, sizeof path, "%s/%s%010lld-e%05lld%s", rc->ckpt_dir, AE_CKPT_PREFIX,
                     (long long)L->step, (long long)L->epoch, AE_CKPT_SUFFIX);
        ae_ckpt_meta meta;
        fill_meta(L, spec, bad, best, &meta);
        size_t n_opt = ae_optim_state_floats(L->oc.kind, L->m->n_params);
        st = ae_ckpt_save(path, &meta, rc->config_text, L->m->params, L->m->n_params, L->opt, n_opt, L->m->state,
                          L->m->n_state, 0, err);
        if (!st && !is_best) {
            char **names;
            int n = ae_ckpt_list(rc->ckpt_dir, AE_CKPT_PREFIX, AE_CKPT_SUFFIX, &names);
            for (int i = 0; i + spec->keep < n; i++) {
                char old[2 * PATH_CAP];
                snprintf(old, sizeof old, "%s/%s", rc->ckpt_dir, names[i]);
                unlink(old);
            }
            ae_ckpt_names_free(names, n);
        }
    }
    st = ae_dist_agree(st, err);
    if (st == AE_ERR_IO && spec->ckpt_error_continue) {
        ae_report_warn("%s (on_checkpoint_error = continue: training goes on)", err->msg);
        return AE_OK;
    }
    return st;
}

/* Rank 0: the newest numbered checkpoint in a run folder, or "" if none. */
static void newest_ckpt(const char *run_dir, char *out, size_t cap)
{
    char dir[PATH_CAP + 8];
    snprintf(dir, sizeof dir, "%s/ckpt", run_dir);
    char **names;
    int n = ae_ckpt_list(dir, AE_CKPT_PREFIX, AE_CKPT_SUFFIX, &names);
    out[0] = '\0';
    if (n > 0 && snprintf(out, cap, "%s/%s", dir, names[n - 1]) >= (int)cap) out[0] = '\0';
    ae_ckpt_names_free(names, n);
}

static void config_stem(const char *path, char *out, size_t cap)
{
    const char *b = path ? strrchr(path, '/') : NULL;
    b = b ? b + 1 : (path ? path : "run");
    snprintf(out, cap, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = '\0';
}

/* Rank 0: choose the run folder and the checkpoint to resume from. */
static ae_status choose_run(const ae_spec *spec, const ae_train_opts *opts, char *run_dir, char *resume_path,
                            ae_error *err)
{
    char stem[256];
    config_stem(opts->config_path, stem, sizeof stem);
    resume_path[0] = '\0';
    if (opts->resume && strcmp(opts->resume, "auto") != 0) {
        snprintf(resume_path, PATH_CAP, "%s", opts->resume);
        if (!spec->run_name[0]) {
            /* <run>/ckpt/<file>: continue in <run> */
            char tmp[PATH_CAP];
            snprintf(tmp, sizeof tmp, "%s", opts->resume);
            char *slash = strrchr(tmp, '/');
            if (slash) {
                *slash = '\0';
                char *base = strrchr(tmp, '/');
                if (base && strcmp(base + 1, "ckpt") == 0) {
                    *base = '\0';
                    snprintf(run_dir, PATH_CAP, "%s", tmp);
                    return AE_OK;
                }
                if (!base && strcmp(tmp, "ckpt") == 0) {
                    snprintf(run_dir, PATH_CAP, ".");
                    return AE_OK;
                }
            }
        }
    }
    if (spec->run_name[0]) {
        snprintf(run_dir, PATH_CAP, "%s/%s", spec->run_dir, spec->run_name);
    } else if (opts->resume && strcmp(opts->resume, "auto") == 0) {
        /* the newest run of this config */
        char prefix[300];
        snprintf(prefix, sizeof prefix, "%s-", stem);
        char **names;
        int n = ae_ckpt_list(spec->run_dir, prefix, "", &names);
        if (n > 0) snprintf(run_dir, PATH_CAP, "%s/%s", spec->run_dir, names[n - 1]);
        else run_dir[0] = '\0';
        ae_ckpt_names_free(names, n);
    } else {
        run_dir[0] = '\0';
    }
    if (!run_dir[0]) {
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        char ts[32];
        strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tmv);
        snprintf(run_dir, PATH_CAP, "%s/%s-%s", spec->run_dir, stem, ts);
    }
    if (opts->resume && strcmp(opts->resume, "auto") == 0) newest_ckpt(run_dir, resume_path, PATH_CAP);
    (void)err;
    return AE_OK;
}

static ae_status write_text(const char *dir, const char *name, const char *text, ae_error *err)
{
    char path[2 * PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return ae_error_set(err, AE_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0) return ae_error_set(err, AE_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return AE_OK;
}

static void json_escape(const char *s, char *out, size_t cap)
{
    size_t j = 0;
    for (; *s && j + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[j++] = '\\'; out[j++] = (char)c; }
        else if (c < 0x20) j += (size_t)snprintf(out + j, cap - j, "\\u%04x", c);
        else out[j++] = (char)c;
    }
    out[j] = '\0';
}

static ae_status write_record(const char *dir, const ae_train_opts *opts, int threads, int ftz, const char *hosts,
                              const char *resume_path, ae_error *err)
{
    char cmd[4096], host_esc[4096], res_esc[PATH_CAP * 2];
    json_escape(opts->command ? opts->command : "", cmd, sizeof cmd);
    json_escape(hosts, host_esc, sizeof host_esc);
    json_escape(resume_path, res_esc, sizeof res_esc);
    char blas_esc[1024];
    json_escape(ae_cpu_note(), blas_esc, sizeof blas_esc);
    char text[16384];
    time_t now = time(NULL);
    char ts[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    int len = snprintf(text, sizeof text,
             "{\n  \"aetrain_version\": \"%s\",\n  \"git_commit\": \"%s\",\n  \"started\": \"%s\",\n"
             "  \"command\": \"%s\",\n  \"ranks\": %d,\n  \"ranks_per_node\": %d,\n  \"threads_per_rank\": %d,\n"
             "  \"openblas_core\": \"%s\",\n  \"openblas_config\": \"%s\",\n  \"openblas_note\": \"%s\",\n"
             "  \"flush_denormals\": %s,\n  \"hosts\": \"%s\",\n"
             "  \"resumed_from\": \"%s\"\n}\n",
             AE_VERSION, AE_GIT_COMMIT, ts, cmd, ae_dist_size(), ae_dist_local_size(), threads,
             openblas_get_corename(), openblas_get_config(), blas_esc, ftz ? "true" : "false", host_esc, res_esc);
    if (len >= (int)sizeof text) return ae_error_set(err, AE_ERR_IO, "%s: run record too long", dir);
    char name[64];
    /* one record per start: run.json for the first, run-<k>.json for resumes */
    snprintf(name, sizeof name, "run.json");
    char path[2 * PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (int k = 1; access(path, F_OK) == 0 && k < 10000; k++) {
        snprintf(name, sizeof name, "run-%d.json", k);
        snprintf(path, sizeof path, "%s/%s", dir, name);
    }
    return write_text(dir, name, text, err);
}

/* ---- data and model set-up shared by train and eval ---------------------- */

typedef struct data_set {
    ae_dataset full, train, val, test;
    void *shm;          /* [data] shared: the node's segment holding train, val and test */
    size_t data_bytes;  /* bytes of train + val + test (in the segment or private) */
} data_set;

static void data_free(data_set *d)
{
    ae_data_free(&d->full);
    ae_data_free(&d->train);
    ae_data_free(&d->val);
    ae_data_free(&d->test);
    ae_dist_node_free(d->shm); /* collective over the node, after the views are gone */
    d->shm = NULL;
}

/* The data module's node-shared memory, from the MPI module. */
static ae_status shm_alloc(size_t *bytes, void **ptr, void **handle, char *why, size_t why_cap, ae_error *err)
{
    ae_dist_shm *h = NULL;
    ae_status st = ae_dist_node_alloc(bytes, ptr, &h, why, why_cap, err);
    *handle = h;
    return st;
}
static ae_status shm_sync(void *handle, ae_error *err) { return ae_dist_node_sync(handle, err); }
static void shm_release(void *handle) { ae_dist_node_free(handle); }
static const ae_data_shm_ops node_shm = {shm_alloc, shm_sync, shm_release};

/* This rank's own copy of the test set and (need_train) of the training and
 * validation splits. */
static ae_status load_private(const ae_spec *spec, int need_train, data_set *d, ae_error *err)
{
    ae_status st = ae_data_load_named(spec->dataset, spec->data_dir, 1, &d->test, err);
    if (!st && need_train) {
        st = ae_data_load_named(spec->dataset, spec->data_dir, 0, &d->full, err);
        if (!st && spec->train_limit > 0 && (size_t)spec->train_limit < d->full.n)
            ae_data_truncate(&d->full, (size_t)spec->train_limit);
        if (!st && (size_t)spec->validation >= d->full.n)
            st = ae_error_set(err, AE_ERR_CONFIG,
                              "%s: [train] validation = %d leaves no training samples (the training set has %zu)",
                              spec->source, spec->validation, d->full.n);
        if (!st) st = ae_data_split(&d->full, (size_t)spec->validation, spec->seed, &d->train, &d->val, err);
        if (!st) ae_data_free(&d->full);
    }
    return st;
}

/* Collective: every rank (with [data] shared, the first rank of each node)
 * loads the data; the first failure is everyone's. Shared, the node's other
 * ranks then see the first rank's copy; on a node without room for it
 * (file-size limit, a small /dev/shm) they load their own, with a warning. */
static ae_status load_data(const ae_spec *spec, int need_train, data_set *d, ae_error *err)
{
    memset(d, 0, sizeof *d);
    int leader = !spec->data_shared || ae_dist_local_rank() == 0;
    ae_status st = leader ? load_private(spec, need_train, d, err) : AE_OK;
    if (!st && fault_at("loadfail", -1)) /* on any rank, leader or not */
        st = ae_error_set(err, AE_ERR_IO, "injected fault: rank %d cannot read its data", ae_dist_rank());
    if (spec->data_shared && (st = ae_dist_agree(st, err))) { /* the leaders' errors reach every rank */
        data_free(d);
        return st;
    }
    if (spec->data_shared) {
        ae_dataset sets[] = {d->train, d->val, d->test};
        char why[256];
        st = ae_data_share(sets, 3, leader, &node_shm, &d->shm, why, sizeof why, err);
        d->train = sets[0];
        d->val = sets[1];
        d->test = sets[2];
        if (!st && !d->shm) {
            if (leader && ae_dist_rank() == 0)
                ae_report_warn("data not shared on this node (%s): every rank loads its own copy", why);
            else if (leader) /* another node's leader: rank 0's warning is only about its own node */
                fprintf(stderr, "aetrain: warning: rank %d: data not shared on its node (%s): every rank loads its "
                        "own copy\n", ae_dist_rank(), why);
            if (!leader) st = load_private(spec, need_train, d, err);
        }
    }
    if (!st) {
        ae_dataset sets[] = {d->train, d->val, d->test};
        d->data_bytes = ae_data_pack_size(sets, 3);
    }
    if (!st && spec->type == AE_MODEL_CLASSIFIER && !d->test.y)
        st = ae_error_set(err, AE_ERR_CONFIG, "%s: a classifier needs labels; the dataset has none", spec->source);
    st = ae_dist_agree(st, err);
    if (st) data_free(d);
    return st;
}

/* Passes per step of a P-rank run of spec, and the most samples a rank computes at once: the per-rank
 * batch, or under gradient accumulation the largest per-rank pass. */
static int spec_passes(const ae_spec *spec, int P)
{
    return ae_train_passes(spec->batch, P, spec->accum, spec->micro_batch);
}
static int pass_batch(const ae_spec *spec, int P)
{
    int pm = ae_train_pass_max(spec->batch, spec_passes(spec, P), P);
    /* train.balance: a rank's slice may grow to 5/4 of the equal share */
    return spec->balance && !spec->deterministic ? ae_train_balance_max(pm, P) : pm;
}

#define MIB (1024.0 * 1024.0)

/* The model of spec for a P-rank run, its activations sized for the samples per model call: the
 * per-rank pass, raised towards EVAL_MIN_BATCH for evaluation as far as EVAL_EXTRA_MIB more
 * activations allow (a conv net's 256 samples would take a rank past its memory budget, which counts
 * one pass), and never under accumulation (accum > 1 or micro_batch > 0): the memory bound it asks
 * for holds for evaluation too. */
static ae_status create_model(const ae_spec *spec, const ae_shape *in, int P, ae_model **out, ae_error *err)
{
    int b = pass_batch(spec, P);
    ae_status st = ae_model_create(spec, in, b, out, err);
    if (st || b >= EVAL_MIN_BATCH || spec->accum > 1 || spec->micro_batch > 0) return st;
    double extra = floor(EVAL_EXTRA_MIB * MIB / (double)ae_model_act_bytes_per_sample(*out));
    int e = extra >= EVAL_MIN_BATCH - b ? EVAL_MIN_BATCH : b + (int)extra;
    if (e <= b) return st;
    ae_model_free(*out);
    *out = NULL;
    return ae_model_create(spec, in, e, out, err);
}

/* ---- memory per rank ------------------------------------------------------ */

#define RSS_BASE_MIB 150.0 /* code, libraries, MPI and OpenBLAS buffers: the budget's constant */

/* Bytes of parameters, gradients, optimizer state and non-trainable state
 * (bufs), and of the activations of lb samples (acts). */
static void model_bytes(const ae_model *m, const ae_spec *spec, int lb, double *bufs, double *acts)
{
    size_t n_opt = ae_optim_state_floats(spec->optim.kind, m->n_params);
    *bufs = (double)sizeof(float) * (2.0 * (double)m->n_params + (double)n_opt + (double)m->n_state);
    *acts = (double)ae_model_act_bytes_per_sample(m) * lb;
}

typedef struct mem_report {
    double rss_max, rss_min; /* peak resident MiB over the ranks */
    double data_share;       /* MiB of data per rank: the node's copy over its ranks, or a private copy */
    double model;            /* MiB of bufs + acts of one pass (the local batch, or its accumulation pass) */
    double budget;           /* data_share + 2 * model + RSS_BASE_MIB */
    double allreduce_bytes;  /* gradient bytes each rank sends per step (ring: 2 (P-1)/P of them) */
    int sharing;             /* ranks sharing one copy of the data */
} mem_report;

/* Collective: the maximum and minimum over the ranks of their peak RSS so far (ru_maxrss), MiB. */
static ae_status peak_rss(double *max, double *min, ae_error *err)
{
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss * 1024.0 / MIB; /* Linux reports KiB */
    double mm[2] = {rss, -rss};
    ae_status st = ae_dist_allreduce_max_f64(mm, 2, err);
    *max = mm[0];
    *min = -mm[1];
    return st;
}

/* Collective: the peak RSS of every rank, and the budget. */
static ae_status measure_memory(const ae_model *m, const ae_spec *spec, const data_set *d, mem_report *r,
                                ae_error *err)
{
    ae_status st = peak_rss(&r->rss_max, &r->rss_min, err);
    double bufs, acts;
    model_bytes(m, spec, pass_batch(spec, ae_dist_size()), &bufs, &acts);
    r->sharing = d->shm ? ae_dist_local_size() : 1;
    r->data_share = (double)d->data_bytes / r->sharing / MIB;
    r->model = (bufs + acts) / MIB;
    r->budget = r->data_share + 2 * r->model + RSS_BASE_MIB;
    int P = ae_dist_size();
    r->allreduce_bytes = (double)sizeof(float) * (double)m->n_params * 2.0 * (P - 1) / P;
    return st;
}

/* Train for epochs without checkpoints (the probe, pretraining phases); with
 * a tag, log each epoch's training and validation loss. */
static ae_status plain_epochs(loop *L, int epochs, const ae_dataset *val, float *ebuf, const char *tag,
                              ae_error *err)
{
    ae_status st = AE_OK;
    for (int e = 0; !st && e < epochs; e++) {
        L->epoch = e;
        L->step_in_epoch = 0;
        L->run_sum = L->run_cnt = 0;
        int stop = 0;
        while (!st && L->step_in_epoch < L->steps_per_epoch && !stop) st = loop_step(L, &stop, err);
        if (st) break;
        if (stop) return ae_error_set(err, AE_ERR_INTERRUPTED, "stopped by a signal during %s",
                                      tag ? tag : "the probe");
        if (!tag) continue;
        ae_eval_out ve = {0};
        if (val && val->n && (st = ae_eval_dataset(L->m, val, ebuf, &ve, err))) break;
        ae_report_log("%s epoch %3d/%d  train %.5f  val %.5f", tag, e + 1, epochs,
                      L->run_cnt > 0 ? L->run_sum / L->run_cnt : NAN, val && val->n ? ve.loss : NAN);
    }
    return st;
}

/* Collective: greedy layer-wise pretraining of a symmetric stacked
 * autoencoder. Phase k trains encoder layers 1..k with the mirrored last k
 * decoder layers, all frozen but the newest pair, to reconstruct the input;
 * the parameters move between the phase models and m by layer name. */
static ae_status pretrain_layerwise(ae_model *m, const ae_spec *spec, const data_set *d, float *ebuf, ae_error *err)
{
    int K = spec->n_encoder;
    ae_spec *ps = ae_malloc(sizeof *ps, err);
    if (!ps) return AE_ERR_NOMEM;
    ae_status st = AE_OK;
    for (int k = 1; !st && k <= K; k++) {
        *ps = *spec;
        ps->n_encoder = k;
        ps->n_decoder = k;
        for (int j = 0; j < k; j++) ps->decoder[j] = spec->decoder[K - k + j];
        /* the phase's layers carry the full model's names */
        for (int j = 0; j < 2 * k; j++) {
            ae_layer_spec *ls = j < k ? &ps->encoder[j] : &ps->decoder[j - k];
            const char *full = m->layers[j < k ? j : K + (K - k) + (j - k)].name;
            int a = 0;
            while (a < ls->nargs && strcmp(ls->args[a].key, "name") != 0) a++;
            if (a == ls->nargs && ls->nargs < AE_SPEC_MAX_ARGS) ls->nargs++;
            snprintf(ls->args[a].key, sizeof ls->args[a].key, "name");
            snprintf(ls->args[a].val, sizeof ls->args[a].val, "%s", full);
        }
        ps->pretrain_layerwise = 0;
        ps->freeze = 0;
        ps->epochs = spec->pretrain_epochs;
        ps->max_steps = 0;
        ae_model *pm = NULL;
        loop L;
        memset(&L, 0, sizeof L);
        st = ae_model_create(ps, &m->in, m->max_batch, &pm, err);
        if (!st) {
            char names[512];
            ae_model_copy_layers(pm, m, names, sizeof names);
            for (int i = 0; i < pm->n_layers; i++) pm->layers[i].frozen = i != k - 1 && i != k;
            st = loop_init(&L, pm, ps, &d->train, err);
        }
        char tag[128];
        snprintf(tag, sizeof tag, "pretrain %d/%d (%s + %s)", k, K, pm ? pm->layers[k - 1].name : "",
                 pm ? pm->layers[k].name : "");
        if (!st) st = plain_epochs(&L, ps->epochs, &d->val, ebuf, tag, err);
        if (!st) {
            char names[512];
            ae_model_copy_layers(m, pm, names, sizeof names);
        }
        loop_free(&L);
        ae_model_free(pm);
    }
    free(ps);
    return st;
}

/* Rank 0: start m from the same-named layers of a checkpoint's model. */
static ae_status load_pretrained(ae_model *m, const ae_spec *spec, ae_error *err)
{
    ae_ckpt ck;
    memset(&ck, 0, sizeof ck);
    ae_spec *os = ae_malloc(sizeof *os, err);
    ae_model *om = NULL;
    ae_status st = os ? ae_ckpt_load(spec->pretrained, &ck, err) : AE_ERR_NOMEM;
    if (!st) {
        char origin[AE_SPEC_STR + 16];
        snprintf(origin, sizeof origin, "%s:config", spec->pretrained);
        st = ae_config_parse_string(ck.config_text, origin, os, err);
        if (!st) st = ae_config_validate(os, err);
        if (!st) st = ae_model_create(os, &m->in, 1, &om, err);
        if (!st && (om->n_params != ck.n_params || om->n_state != ck.n_state))
            st = ae_error_set(err, AE_ERR_FORMAT, "%s: its parameters do not match the model its config builds",
                              spec->pretrained);
    }
    if (!st) {
        memcpy(om->params, ck.params, sizeof(float) * om->n_params);
        if (om->n_state) memcpy(om->state, ck.state, sizeof(float) * om->n_state);
        char names[1024];
        int n = ae_model_copy_layers(m, om, names, sizeof names);
        if (n == 0)
            st = ae_error_set(err, AE_ERR_SHAPE, "%s: no layer of the same name and size to load from",
                              spec->pretrained);
        else
            ae_report_log("loaded %d layer%s from %s: %s", n, n == 1 ? "" : "s", spec->pretrained, names);
    }
    ae_model_free(om);
    ae_ckpt_free(&ck);
    free(os);
    return st;
}

/* Build the probe spec: softmax regression on codes. */
static ae_spec *probe_spec(const ae_spec *spec, int nclass, ae_error *err)
{
    ae_spec *ps = ae_malloc(sizeof *ps, err);
    if (!ps) return NULL;
    ae_config_defaults(ps);
    ps->type = AE_MODEL_CLASSIFIER;
    ps->n_encoder = 0;
    ps->n_head = 1;
    ae_layer_spec *h = &ps->head[0];
    memset(h, 0, sizeof *h);
    snprintf(h->kind, sizeof h->kind, "dense");
    h->nargs = 2;
    snprintf(h->args[0].val, sizeof h->args[0].val, "%d", nclass);
    snprintf(h->args[1].val, sizeof h->args[1].val, "softmax");
    snprintf(h->origin, sizeof h->origin, "probe");
    ps->loss = AE_LOSS_CE;
    ps->optim.kind = AE_OPT_ADAM;
    ps->optim.beta1 = 0.9f;
    ps->optim.beta2 = 0.999f;
    ps->optim.eps = 1e-8f;
    ps->lr = spec->probe_lr;
    ps->sched.kind = AE_SCHED_CONSTANT;
    ps->sched.base_lr = spec->probe_lr;
    ps->sched.warmup_epochs = 0;
    ps->batch = spec->probe_batch;
    ps->epochs = spec->probe_epochs;
    ps->max_steps = 0;
    ps->clip_norm = 0;
    ps->l2 = 0;
    ps->l1_activity = 0;
    ps->seed = spec->seed;
    if (snprintf(ps->source, sizeof ps->source, "%s (probe)", spec->source) >= (int)sizeof ps->source)
        snprintf(ps->source, sizeof ps->source, "probe");
    return ps;
}

/* The codes of a dataset for the probe and k-NN, which read every one of them: one copy per node
 * (a node-shared segment), each of the node's ranks encoding a contiguous share of the samples. A
 * 6272-d code of MNIST's 65000 images is 1.6 GB, which every rank used to hold. */
typedef struct node_codes {
    ae_dataset ds;  /* a view of the segment, or a private copy */
    ae_dist_shm *h; /* the segment; NULL for a private copy */
} node_codes;

/* Collective: nc->ds = the codes of ds through the encoder; a private copy with [data] shared = false
 * or on a node without room. */
static ae_status encode_node(ae_model *m, const ae_spec *spec, const ae_dataset *ds, node_codes *nc, ae_error *err)
{
    memset(nc, 0, sizeof *nc);
    size_t cw = m->code_size, bytes = ae_dist_local_rank() == 0 ? ds->n * cw * sizeof(float) : 0;
    void *seg = NULL;
    char why[256] = "";
    ae_status st = ds->n && spec->data_shared ? ae_dist_node_alloc(&bytes, &seg, &nc->h, why, sizeof why, err) : AE_OK;
    if (!st && !seg) { /* the same on every rank of the node */
        if (why[0] && ae_dist_local_rank() == 0) ae_report_warn("codes: %s: one copy per rank", why);
        return ae_dist_agree(ae_eval_encode(m, ds, m->n_encoder, &nc->ds, err), err);
    }
    if (!st) {
        /* a read-only view: the labels stay ds's */
        ae_data_view_float(ds->n, cw, seg, (uint8_t *)ds->y, ds->nclass, &nc->ds);
        size_t L = (size_t)ae_dist_local_size(), j = (size_t)ae_dist_local_rank();
        size_t lo = ds->n * j / L, hi = ds->n * (j + 1) / L;
        st = ae_eval_encode_rows(m, ds, m->n_encoder, lo, hi, (float *)seg + lo * cw, err);
    }
    if ((st = ae_dist_agree(st, err))) return st;
    return ae_dist_node_sync(nc->h, err);
}

/* Collective over the node. */
static void node_codes_free(node_codes *nc)
{
    ae_data_free(&nc->ds);
    ae_dist_node_free(nc->h);
    nc->h = NULL;
}

/* Collective: train softmax regression on the frozen codes of train, report
 * accuracy on test. */
static ae_status run_probe(ae_model *m, const ae_spec *spec, const ae_dataset *train, const ae_dataset *test,
                           double *acc, ae_error *err)
{
    *acc = NAN;
    node_codes ntrain, ntest;
    ae_dataset ctrain = {0}, ctest = {0};
    ae_model *pm = NULL;
    loop L;
    memset(&L, 0, sizeof L);
    float *xbuf = NULL;
    ae_spec *ps = probe_spec(spec, train->nclass > test->nclass ? train->nclass : test->nclass, err);
    ae_status st = ps ? AE_OK : AE_ERR_NOMEM;
    memset(&ntrain, 0, sizeof ntrain);
    memset(&ntest, 0, sizeof ntest);
    if (!st && !(st = encode_node(m, spec, train, &ntrain, err))) ctrain = ntrain.ds;
    if (!st && !(st = encode_node(m, spec, test, &ntest, err))) ctest = ntest.ds;
    ae_shape cs = {(int)m->code_size, 1, 1};
    if (!st) st = create_model(ps, &cs, ae_dist_size(), &pm, err);
    if (!st) {
        ae_model_init_params(pm, spec->seed);
        st = loop_init(&L, pm, ps, &ctrain, err);
    }
    if (!st) st = plain_epochs(&L, ps->epochs, NULL, NULL, NULL, err);
    if (!st && !(xbuf = ae_alloc_floats((size_t)pm->max_batch * ctest.d, err))) st = AE_ERR_NOMEM;
    ae_eval_out eo;
    if (!st) st = ae_eval_dataset(pm, &ctest, xbuf, &eo, err);
    if (!st) *acc = eo.accuracy;
    free(xbuf);
    loop_free(&L);
    ae_model_free(pm);
    node_codes_free(&ntest);
    node_codes_free(&ntrain);
    free(ps);
    return st;
}

/* ---- resume -------------------------------------------------------------- */

/* Collective: rank 0 reads the checkpoint, all ranks receive its state. */
static ae_status load_resume(const char *path, loop *L, const char *config_text, int64_t *bad, double *best,
                             ae_error *err)
{
    ae_ckpt ck;
    memset(&ck, 0, sizeof ck);
    ae_status st = AE_OK;
    ae_model *m = L->m;
    size_t n_opt = ae_optim_state_floats(L->oc.kind, m->n_params);
    if (ae_dist_rank() == 0) {
        st = ae_ckpt_load(path, &ck, err);
        if (!st && ck.meta.arch_hash != m->arch_hash)
            st = ae_error_set(err, AE_ERR_SHAPE,
                              "%s: the checkpoint is of another model (architecture hash %016llx, this config "
                              "builds %016llx)", path, (unsigned long long)ck.meta.arch_hash,
                              (unsigned long long)m->arch_hash);
        if (!st && (ck.n_params != m->n_params || ck.n_state != m->n_state))
            st = ae_error_set(err, AE_ERR_SHAPE, "%s: sizes differ from the model (%zu/%zu params, %zu/%zu state)",
                              path, ck.n_params, m->n_params, ck.n_state, m->n_state);
        if (!st && ck.n_opt != n_opt)
            ae_report_warn("%s: optimizer state does not match the configured optimizer: starting it afresh",
                           path);
        if (!st && strcmp(ck.config_text, config_text) != 0) {
            /* name the first key that changed, when the old config still parses */
            ae_spec *old = ae_malloc(sizeof *old, NULL), *cur = ae_malloc(sizeof *cur, NULL);
            ae_error ignored;
            char diff[128] = "";
            int same = 0;
            if (old && cur && !ae_config_parse_string(ck.config_text, path, old, &ignored) &&
                !ae_config_parse_string(config_text, "config", cur, &ignored))
                same = ae_config_equal(old, cur, diff, sizeof diff);
            /* the same values in other text (a key added since, at its default, or another doc line): no warning */
            if (!same)
                ae_report_warn("resuming with settings that differ from the checkpoint's config%s%s: using the new "
                               "ones", diff[0] ? ", first " : "", diff);
            free(old);
            free(cur);
        }
    }
    st = ae_dist_agree(st, err);
    if (st) {
        ae_ckpt_free(&ck);
        return st;
    }
    ae_ckpt_meta meta;
    int opt_ok = 0;
    if (ae_dist_rank() == 0) {
        meta = ck.meta;
        memcpy(m->params, ck.params, sizeof(float) * m->n_params);
        if (m->n_state) memcpy(m->state, ck.state, sizeof(float) * m->n_state);
        opt_ok = ck.n_opt == n_opt;
        if (opt_ok && n_opt) memcpy(L->opt, ck.opt, sizeof(float) * n_opt);
    }
    ae_ckpt_free(&ck);
    if ((st = ae_dist_bcast(&meta, sizeof meta, 0, err)) || (st = ae_dist_bcast(&opt_ok, sizeof opt_ok, 0, err)) ||
        (st = ae_dist_bcast(m->params, sizeof(float) * m->n_params, 0, err)) ||
        (st = ae_dist_bcast(m->state, sizeof(float) * m->n_state, 0, err)))
        return st;
    if (opt_ok && (st = ae_dist_bcast(L->opt, sizeof(float) * n_opt, 0, err))) return st;
    if (!opt_ok) memset(L->opt, 0, sizeof(float) * n_opt);
    L->epoch = meta.epoch;
    L->step = meta.step;
    L->step_in_epoch = meta.step_in_epoch;
    L->run_sum = meta.run_loss_sum;
    L->run_cnt = meta.run_loss_count;
    if (L->step_in_epoch > L->steps_per_epoch) { /* batch size changed: start the next epoch */
        L->epoch++;
        L->step_in_epoch = 0;
        L->run_sum = L->run_cnt = 0;
    }
    *bad = meta.bad_epochs;
    *best = meta.best_val;
    return AE_OK;
}

/* ---- TensorBoard images ---------------------------------------------------- */

#define TB_MANIFOLD_GRID 10 /* z lattice of the manifold image (a VAE with a 2-d code) */

/* Append png as image tag at step, then free it; st: how making it went (a
 * failure there gets the event file and the tag in front of its message). */
static ae_status tb_put_png(ae_tb *tb, const char *tag, int64_t step, ae_status st, ae_plot_png *png, ae_error *err)
{
    if (st) {
        char msg[AE_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        ae_error_set(err, st, "%s: image '%s' at step %lld: %s", ae_tb_path(tb), tag, (long long)step, msg);
    } else {
        st = ae_tb_image_png(tb, tag, step, png->data, png->size, png->height, png->width, err);
    }
    ae_plot_png_free(png);
    return st;
}

/* The end-of-epoch images of an autoencoder (none for a classifier or when
 * [run] tb_images = 0): the grid of `aetrain plot`'s recon.png for the first
 * tb_images test images that ae_plot_pick chooses, the denoising grid when
 * the encoder starts with a corruption layer, and the manifold of a VAE with
 * a 2-d code. Rank 0 only. Every layer runs in evaluation mode (the denoising
 * grid's corruption in training mode with draws keyed by a fixed context),
 * which writes activations and workspaces only: parameters, batch-norm
 * running statistics and random streams stay as they were, so the ranks stay
 * in agreement. A failure is for the caller to warn about. */
static ae_status tb_images(ae_tb *tb, ae_model *m, const ae_spec *spec, const ae_dataset *test, int64_t step,
                           ae_error *err)
{
    if (spec->tb_images <= 0 || m->type != AE_MODEL_AUTOENCODER || test->n == 0) return AE_OK;
    if (fault_at("tbimage", step))
        return ae_error_set(err, AE_ERR_IO, "%s: injected fault: images of epoch %lld", ae_tb_path(tb),
                            (long long)step);
    uint32_t *idx = ae_malloc(sizeof *idx * (size_t)spec->tb_images, err);
    if (!idx) return AE_ERR_NOMEM;
    int n = ae_plot_pick(test, spec->tb_images, idx), scale = ae_plot_tile_scale(test);
    ae_plot_png png = {0};
    ae_status st = tb_put_png(tb, "reconstructions", step, ae_plot_recon_mem(&png, m, test, idx, n, 0, scale, err),
                              &png, err);
    if (!st && ae_plot_noise_layer(m) == 0)
        st = tb_put_png(tb, "denoising", step, ae_plot_denoise_mem(&png, m, test, idx, n, 0, spec->seed, scale, err),
                        &png, err);
    if (!st && ae_plot_vae2_layer(m) >= 0)
        st = tb_put_png(tb, "manifold", step, ae_plot_manifold_mem(&png, m, TB_MANIFOLD_GRID, 1, err), &png, err);
    free(idx);
    return st;
}

/* ---- train ----------------------------------------------------------------- */

static void fmt_metric(char *buf, size_t cap, const char *name, double v)
{
    if (isfinite(v)) snprintf(buf, cap, "  %s %.5f", name, v);
    else buf[0] = '\0';
}

ae_status ae_train_run(ae_spec *spec, const ae_train_opts *opts, ae_train_result *res, ae_error *err)
{
    memset(res, 0, sizeof *res);
    res->test_acc = res->probe_acc = res->knn_acc = NAN;
    install_signals();
    fault_read();
    /* deterministic mode: one OpenBLAS thread unless told otherwise (results can differ with the count) */
    int threads = ae_train_threads(spec->deterministic && spec->threads == 0 ? 1 : spec->threads);
    openblas_set_num_threads(threads);
    /* this thread runs the model and the optimizer; restored when the run ends */
    int ftz_was = spec->flush_denormals ? ae_cpu_flush_denormals(1) : -2;
    int rank = ae_dist_rank(), P = ae_dist_size();

    run_ctx rc;
    memset(&rc, 0, sizeof rc);
    char resume_path[PATH_CAP] = "";
    data_set d;
    memset(&d, 0, sizeof d);
    ae_model *m = NULL;
    loop L;
    memset(&L, 0, sizeof L);
    float *ebuf = NULL;
    char hosts[4096] = "";
    ae_status st = AE_OK;
    ae_tb *tb = NULL;

    rc.config_text = ae_config_dump(spec, err);
    if (!rc.config_text) st = AE_ERR_NOMEM;
    if (rank == 0 && !st) {
        st = choose_run(spec, opts, rc.dir, resume_path, err);
        snprintf(rc.ckpt_dir, sizeof rc.ckpt_dir, "%s/ckpt", rc.dir);
        if (!st && mkdir_p(rc.ckpt_dir) != 0)
            st = ae_error_set(err, AE_ERR_IO, "%s: cannot create the run folder: %s", rc.dir, strerror(errno));
        if (!st) { /* a save killed mid-write leaves name.tmp: never loaded, removed here */
            char **names;
            int n = ae_ckpt_list(rc.ckpt_dir, "", ".tmp", &names);
            for (int i = 0; i < n; i++) {
                char tmp[2 * PATH_CAP];
                snprintf(tmp, sizeof tmp, "%s/%s", rc.ckpt_dir, names[i]);
                unlink(tmp);
            }
            ae_ckpt_names_free(names, n);
        }
        if (!st) st = ae_report_open(rc.dir, opts->quiet, err);
        if (!st) st = ae_tb_open(rc.dir, &tb, err); /* TensorBoard events: tensorboard --logdir runs */
        if (!st) st = write_text(rc.dir, "config.ini", rc.config_text, err);
    }
    st = ae_dist_agree(st, err);
    if (!st) st = ae_dist_bcast(rc.dir, sizeof rc.dir, 0, err);
    if (!st) st = ae_dist_bcast(rc.ckpt_dir, sizeof rc.ckpt_dir, 0, err);
    if (!st) st = ae_dist_bcast(resume_path, sizeof resume_path, 0, err);
    if (!st) st = ae_dist_hostnames(hosts, sizeof hosts, err);
    if (!st && rank == 0) st = write_record(rc.dir, opts, threads, ftz_was >= 0, hosts, resume_path, err);
    if (!st) st = ae_dist_agree(st, err);
    if (st) goto done;
    snprintf(res->run_dir, sizeof res->run_dir, "%s", rc.dir);

    ae_report_log("aetrain %s (%s): %d rank%s x %d thread%s, OpenBLAS %s, hosts %s", AE_VERSION, AE_GIT_COMMIT, P,
                  P == 1 ? "" : "s", threads, threads == 1 ? "" : "s", openblas_get_corename(), hosts);
    if (ae_cpu_note_warns()) ae_report_warn("%s", ae_cpu_note());
    else if (ae_cpu_note()[0]) ae_report_log("%s", ae_cpu_note());
    if (ftz_was >= 0) ae_report_log("denormal floats flushed to zero (train.flush_denormals)");
    ae_report_log("run folder %s", rc.dir);

    if ((st = ae_dist_watchdog_start(spec->watchdog, err))) goto done;
    if ((st = load_data(spec, 1, &d, err))) goto done;
    ae_shape in = {d.train.c, d.train.h, d.train.w};
    st = create_model(spec, &in, P, &m, err);
    if (!st && spec->type == AE_MODEL_CLASSIFIER && (size_t)d.train.nclass > m->out_size)
        st = ae_error_set(err, AE_ERR_SHAPE, "%s: the head has %zu outputs, the dataset has %d classes", spec->source,
                          m->out_size, d.train.nclass);
    if (!st) st = loop_init(&L, m, spec, &d.train, err);
    if (!st && !(ebuf = ae_alloc_floats((size_t)m->max_batch * d.train.d, err))) st = AE_ERR_NOMEM;
    if (!st && spec->step_times) st = open_step_times(&L, rc.dir, err);
    if ((st = ae_dist_agree(st, err))) goto done;
    if (L.bal_w)
        ae_report_log("balance: each rank's share of a batch follows its measured speed, at most 5/4 of the equal "
                      "share (at most %d samples a pass; train.balance)", pass_batch(spec, P));
    if (m->type == AE_MODEL_AUTOENCODER && m->code_size >= m->in_size)
        ae_report_warn("%s: the code has %zu values, not fewer than the input's %zu: without sparsity, corruption or "
                       "a bottleneck elsewhere the autoencoder can learn the identity", spec->source, m->code_size,
                       m->in_size);
    ae_report_log("data %s: %zu train, %zu validation, %zu test samples of %dx%dx%d", spec->dataset, d.train.n,
                  d.val.n, d.test.n, in.c, in.h, in.w);
    if (d.shm)
        ae_report_log("data memory: %.1f MiB node-shared, one copy for %d rank%s of the node", d.data_bytes / MIB,
                      ae_dist_local_size(), ae_dist_local_size() == 1 ? "" : "s");
    else
        ae_report_log("data memory: %.1f MiB per rank (not shared: %s)", d.data_bytes / MIB,
                      spec->data_shared ? "no room on the node, see the warning" : "[data] shared = false");
    ae_report_log("model: %d layers, %zu parameters, %.3g MFLOP/sample forward; batch %d (%d per rank), "
                  "%lld steps/epoch; evaluation in batches of %d", m->n_layers, m->n_params, m->flops / 1e6,
                  spec->batch, ae_train_pass_max(spec->batch, 1, P), (long long)L.steps_per_epoch, m->max_batch);
    if (L.passes > 1 || spec->micro_batch > 0) {
        char why[64] = "";
        if (spec->micro_batch > 0) snprintf(why, sizeof why, " (micro_batch = %d)", spec->micro_batch);
        ae_report_log("gradient accumulation: accum = %d%s: %d global micro-batch%s of <= %d samples per step, "
                      "<= %d per rank and pass, one allreduce", L.passes, why, L.passes, L.passes == 1 ? "" : "es",
                      ae_train_pass_max(spec->batch, L.passes, 1), pass_batch(spec, P));
    }

    int64_t bad = 0;
    double best = INFINITY;
    ae_model_init_params(m, spec->seed);
    for (int i = 0; i < m->n_layers && i < spec->freeze; i++) m->layers[i].frozen = 1;
    if (spec->pretrained[0] && !resume_path[0]) {
        st = rank == 0 ? load_pretrained(m, spec, err) : AE_OK;
        if ((st = ae_dist_agree(st, err))) goto done;
    }
    if ((st = ae_dist_bcast(m->params, sizeof(float) * m->n_params, 0, err))) goto done;
    if ((st = ae_dist_bcast(m->state, sizeof(float) * m->n_state, 0, err))) goto done;
    if (spec->freeze > 0)
        ae_report_log("frozen: the first %d layer%s (%s%s)", spec->freeze, spec->freeze == 1 ? "" : "s",
                      m->layers[0].name, spec->freeze > 1 ? ", ..." : "");
    if (spec->pretrain_layerwise && !resume_path[0]) {
        if ((st = pretrain_layerwise(m, spec, &d, ebuf, err))) goto done;
    }
    if (resume_path[0]) {
        if ((st = load_resume(resume_path, &L, rc.config_text, &bad, &best, err))) goto done;
        ae_report_log("resumed from %s at epoch %lld, step %lld", resume_path, (long long)L.epoch + 1,
                      (long long)L.step);
    } else if (opts->resume) {
        ae_report_log("no checkpoint to resume in %s: starting afresh", rc.dir);
    }

    int is_ae = m->type == AE_MODEL_AUTOENCODER;
    int has_kl = 0;
    for (int i = 0; i < m->n_layers; i++) has_kl |= strcmp(m->layers[i].kind->name, "sample") == 0;
    if ((st = loop_share(&L, spec, err))) goto done;
    double total_train_time = 0, total_samples = 0, t_train0 = ae_dist_time();
    int stopped_early = 0, interrupted = 0, reached_target = 0;
    ae_eval_out te = {0};
    int have_te = 0;
    int64_t last_saved_step = -1;
    while (L.epoch < spec->epochs && L.step < L.total_steps) {
        double te0 = ae_dist_time();
        L.t_steps = L.t_allreduce = L.t_overlap = 0;
        double last_prog = 0;
        int64_t first_step = L.step_in_epoch;
        while (L.step_in_epoch < L.steps_per_epoch && L.step < L.total_steps) {
            int stop = 0;
            if ((st = loop_step(&L, &stop, err))) goto done;
            double now = ae_dist_time();
            if (now - last_prog > PROGRESS_PERIOD_S) {
                last_prog = now;
                double per_step = L.t_steps / (double)(L.step_in_epoch - first_step);
                double eta = per_step * (double)(L.total_steps - L.step);
                ae_report_progress("epoch %lld/%d  step %lld/%lld  loss %.5f  %.0f samples/s  ETA %02d:%02d:%02d "
                                   "(training steps)",
                                   (long long)L.epoch + 1, spec->epochs, (long long)L.step_in_epoch,
                                   (long long)L.steps_per_epoch, L.run_cnt > 0 ? L.run_sum / L.run_cnt : 0.0,
                                   per_step > 0 ? spec->batch / per_step : 0.0, (int)(eta / 3600),
                                   (int)(eta / 60) % 60, (int)eta % 60);
            }
            if (stop) {
                interrupted = 1;
                break;
            }
            if (spec->checkpoint_steps > 0 && L.step % spec->checkpoint_steps == 0 &&
                L.step_in_epoch < L.steps_per_epoch) {
                if ((st = save_ckpt(&rc, &L, spec, bad, best, 0, err))) goto done;
                last_saved_step = L.step;
            }
        }
        if (interrupted) break;
        int epoch_done = L.step_in_epoch >= L.steps_per_epoch;
        size_t s_first = (size_t)first_step * (size_t)spec->batch;
        size_t s_last = (size_t)L.step_in_epoch * (size_t)spec->batch;
        if (s_last > d.train.n) s_last = d.train.n;
        double epoch_samples = s_last > s_first ? (double)(s_last - s_first) : 0.0;
        total_train_time += L.t_steps;
        total_samples += epoch_samples;

        ae_metrics_row row = {.epoch = L.epoch + 1, .step = L.step, .val_loss = NAN, .test_loss = NAN,
                              .test_mse = NAN, .test_bce = NAN, .test_acc = NAN, .test_kl = NAN};
        row.train_loss = L.run_cnt > 0 ? L.run_sum / L.run_cnt : NAN;
        row.lr = L.lr;
        row.samples_per_s = L.t_steps > 0 ? epoch_samples / L.t_steps : 0;
        if ((st = step_shares(&L, &row, err))) goto done;
        ae_eval_out ve;
        if (d.val.n > 0) {
            if ((st = ae_eval_dataset(m, &d.val, ebuf, &ve, err))) goto done;
            row.val_loss = ve.loss;
        }
        int last_epoch = L.epoch + 1 >= spec->epochs || L.step >= L.total_steps;
        if ((spec->eval_every > 0 && (L.epoch + 1) % spec->eval_every == 0) || last_epoch) {
            if ((st = ae_eval_dataset(m, &d.test, ebuf, &te, err))) goto done;
            have_te = 1;
            row.test_loss = te.loss;
            if (is_ae) {
                row.test_mse = te.mse;
                row.test_bce = te.bce;
                if (has_kl) row.test_kl = te.penalty;
            } else {
                row.test_acc = te.accuracy;
            }
        }
        row.epoch_s = ae_dist_time() - te0;
        char vs[48], ts[48], ms[48], bs[48], as[48], ks[48];
        fmt_metric(vs, sizeof vs, "val", row.val_loss);
        fmt_metric(ts, sizeof ts, "test", row.test_loss);
        fmt_metric(ms, sizeof ms, "mse", is_ae ? row.test_mse : NAN);
        fmt_metric(bs, sizeof bs, "bce", is_ae ? row.test_bce : NAN);
        fmt_metric(as, sizeof as, "acc", row.test_acc);
        fmt_metric(ks, sizeof ks, "kl", row.test_kl);
        ae_report_log("epoch %3lld/%d  train %.5f%s%s%s%s%s%s  lr %.3g  %.0f samples/s  allreduce %.1f%% (waiting "
                      "%.1f%%)  %.1fs", (long long)L.epoch + 1, spec->epochs, row.train_loss, vs, ts, ks, ms, bs, as,
                      row.lr, row.samples_per_s, 100 * row.allreduce_frac, 100 * row.wait_frac, row.epoch_s);
        if (ae_report_metrics(&row, err) != AE_OK) ae_report_warn("%s", err->msg);
        if (tb) {
            const struct {
                const char *tag;
                double v;
            } sc[] = {{"loss/train", row.train_loss},
                      {"loss/validation", row.val_loss},
                      {"loss/test", row.test_loss},
                      {"test/mse", row.test_mse},
                      {"test/bce", row.test_bce},
                      {"test/accuracy", row.test_acc},
                      {"test/kl", row.test_kl},
                      {"train/lr", row.lr},
                      {"speed/samples_per_s", row.samples_per_s},
                      {"speed/allreduce_share", row.allreduce_frac}};
            for (size_t k = 0; k < sizeof sc / sizeof sc[0] && tb; k++) {
                if (!isfinite(sc[k].v)) continue;
                ae_error tberr;
                if (ae_tb_scalar(tb, sc[k].tag, row.epoch, (float)sc[k].v, &tberr) != AE_OK) {
                    ae_report_warn("%s (TensorBoard events stop here)", tberr.msg);
                    ae_tb_close(tb);
                    tb = NULL;
                }
            }
            ae_error tberr;
            if (tb && tb_images(tb, m, spec, &d.test, row.epoch, &tberr) != AE_OK) {
                ae_report_warn("TensorBoard images: %s (TensorBoard events stop here)", tberr.msg);
                ae_tb_close(tb);
                tb = NULL;
            }
        }
        if (!epoch_done) break; /* max_steps reached mid-epoch */

        /* the position is now the start of the next epoch */
        int64_t finished = L.epoch + 1;
        L.epoch = finished;
        L.step_in_epoch = 0;
        L.run_sum = L.run_cnt = 0;
        if (d.val.n > 0) {
            if (ve.loss < best) {
                best = ve.loss;
                bad = 0;
                if ((st = save_ckpt(&rc, &L, spec, bad, best, 1, err))) goto done;
            } else if (++bad >= spec->patience && spec->patience > 0) {
                stopped_early = 1;
            }
        }
        /* the watched loss is the same number on every rank (reduced), so all ranks stop together */
        double watched = d.val.n > 0 ? row.val_loss : row.train_loss;
        if (spec->target_loss > 0 && isfinite(watched) && watched <= spec->target_loss) {
            reached_target = 1;
            res->target_epoch = finished;
            res->target_step = L.step;
            res->time_to_target_s = ae_dist_time() - t_train0;
            res->train_time_to_target_s = total_train_time;
        }
        int periodic = spec->checkpoint_epochs > 0 && finished % spec->checkpoint_epochs == 0;
        if (periodic || stopped_early || reached_target) {
            if ((st = save_ckpt(&rc, &L, spec, bad, best, 0, err))) goto done;
            last_saved_step = L.step;
        }
        if (stopped_early) {
            ae_report_log("early stop: validation loss has not improved for %d epochs (best %.5f)", spec->patience,
                          best);
            break;
        }
        if (reached_target) {
            ae_report_log("target reached: %s loss %.6g <= %g at epoch %lld (step %lld) after %.2f s (%.2f s in "
                          "training steps)", d.val.n > 0 ? "validation" : "training", watched,
                          (double)spec->target_loss, (long long)res->target_epoch, (long long)res->target_step,
                          res->time_to_target_s, res->train_time_to_target_s);
            break;
        }
    }
    if (L.step != last_saved_step) {
        if ((st = save_ckpt(&rc, &L, spec, bad, best, 0, err))) goto done;
    }
    loop_unshare(&L);
    if (interrupted) {
        ae_report_log("stopped by signal after step %lld: checkpoint written in %s, resume with --resume auto",
                      (long long)L.step, rc.ckpt_dir);
        st = ae_error_set(err, AE_ERR_INTERRUPTED, "stopped by a signal at step %lld; checkpointed in %s",
                          (long long)L.step, rc.ckpt_dir);
        goto done;
    }
    if (!have_te && (st = ae_eval_dataset(m, &d.test, ebuf, &te, err))) goto done;
    res->test_loss = te.loss;
    res->test_mse = is_ae ? te.mse : NAN;
    res->test_bce = is_ae ? te.bce : NAN;
    res->test_acc = is_ae ? NAN : te.accuracy;
    res->steps = L.step;
    res->samples_per_s = total_train_time > 0 ? total_samples / total_train_time : 0;
    /* the training's memory, against its budget; the probe's and k-NN's codes come after */
    mem_report mem;
    if ((st = measure_memory(m, spec, &d, &mem, err))) goto done;
    ae_report_log("memory per rank: peak RSS %.1f MiB (min %.1f over %d rank%s); budget %.1f MiB = data %.1f + "
                  "2 x model %.1f + %.0f; allreduce %.3g MB per step and rank", mem.rss_max, mem.rss_min, P,
                  P == 1 ? "" : "s", mem.budget, mem.data_share, mem.model, RSS_BASE_MIB, mem.allreduce_bytes / 1e6);
    int want_probe = is_ae && spec->probe && spec->probe_epochs > 0 && d.train.y && d.test.y;
    int want_knn = is_ae && spec->knn > 0 && d.train.y && d.test.y;
    double codes_mib = want_probe || want_knn
                           ? (double)(d.train.n + d.test.n) * (double)m->code_size * sizeof(float) / MIB : 0.0;
    double codes_rss[2] = {-1.0, -1.0};
    if (want_probe) {
        if ((st = run_probe(m, spec, &d.train, &d.test, &res->probe_acc, err))) goto done;
    }
    if (want_knn) {
        node_codes ctrain, ctest;
        memset(&ctest, 0, sizeof ctest);
        st = encode_node(m, spec, &d.train, &ctrain, err);
        if (!st) st = encode_node(m, spec, &d.test, &ctest, err);
        if (!st) st = ae_eval_knn(&ctrain.ds, &ctest.ds, spec->knn, &res->knn_acc, err);
        node_codes_free(&ctest);
        node_codes_free(&ctrain);
        if (st) goto done;
    }
    if (codes_mib > 0 && (st = peak_rss(&codes_rss[0], &codes_rss[1], err))) goto done;
    if (is_ae) {
        ae_report_log("test reconstruction: mse %.6f  bce %.6f per pixel; mean code activation %.4f", te.mse, te.bce,
                      te.code_mean);
        if (has_kl)
            ae_report_log("test -ELBO %.4f per sample = reconstruction %.4f + KL %.4f", te.loss + te.penalty, te.loss,
                          te.penalty);
        if (isfinite(res->knn_acc))
            ae_report_log("test accuracy of %d-NN on the %zu-d code: %.2f%%", spec->knn, m->code_size,
                          100 * res->knn_acc);
        if (isfinite(res->probe_acc))
            ae_report_log("test accuracy of a softmax probe on the %zu-d code: %.2f%%", m->code_size,
                          100 * res->probe_acc);
    } else {
        ae_report_log("test accuracy: %.2f%%  (loss %.5f)", 100 * te.accuracy, te.loss);
    }
    ae_report_log("throughput: %.0f samples/s (%d rank%s), %lld steps", res->samples_per_s, P, P == 1 ? "" : "s",
                  (long long)L.step);
    double share_hi = L.bal_steps ? L.bal_share_hi / (double)L.bal_steps : 1.0;
    double share_lo = L.bal_steps ? L.bal_share_lo / (double)L.bal_steps : 1.0;
    if (L.bal_w)
        ae_report_log("balance: over %lld balanced steps the largest rank's share of a batch was %.3f of the equal "
                      "share on average, the smallest %.3f", (long long)L.bal_steps, share_hi, share_lo);
    if (spec->target_loss > 0 && !reached_target)
        ae_report_log("target not reached: the %s loss stayed above %g", d.val.n > 0 ? "validation" : "training",
                      (double)spec->target_loss);
    if (codes_mib > 0)
        ae_report_log("memory with the codes of the probe / k-NN: peak RSS %.1f MiB (min %.1f); the node holds the "
                      "%.1f MiB of codes once, each rank's RSS counts the pages it read", codes_rss[0], codes_rss[1],
                      codes_mib);
    if (rank == 0) {
        char text[1536];
        snprintf(text, sizeof text,
                 "{\"test_loss\": %.9g, \"test_mse\": %.9g, \"test_bce\": %.9g, \"test_acc\": %.9g, "
                 "\"probe_acc\": %.9g, \"knn_acc\": %.9g, \"code_mean\": %.9g, "
                 "\"test_penalty\": %.9g, \"samples_per_s\": %.6g, \"steps\": %lld, "
                 "\"ranks\": %d, \"peak_rss_mb\": %.1f, \"peak_rss_mb_min\": %.1f, \"memory_budget_mb\": %.1f, "
                 "\"peak_rss_mb_codes\": %.1f, \"codes_mb\": %.4g, "
                 "\"data_bytes\": %zu, \"data_shared_ranks\": %d, \"allreduce_bytes_per_step\": %.0f, "
                 "\"target_loss\": %.9g, \"target_epoch\": %lld, \"target_step\": %lld, "
                 "\"time_to_target_s\": %.6g, \"train_time_to_target_s\": %.6g, \"global_batch\": %d, "
                 "\"balance_share_max\": %.4f, \"balance_share_min\": %.4f}\n",
                 res->test_loss, is_ae ? te.mse : -1.0, is_ae ? te.bce : -1.0, is_ae ? -1.0 : te.accuracy,
                 isfinite(res->probe_acc) ? res->probe_acc : -1.0, isfinite(res->knn_acc) ? res->knn_acc : -1.0,
                 is_ae ? te.code_mean : -1.0, te.penalty,
                 res->samples_per_s,
                 (long long)L.step, P, mem.rss_max, mem.rss_min, mem.budget, codes_rss[0], codes_mib, d.data_bytes,
                 mem.sharing,
                 mem.allreduce_bytes, (double)spec->target_loss, (long long)res->target_epoch,
                 (long long)res->target_step, res->target_epoch ? res->time_to_target_s : -1.0,
                 res->target_epoch ? res->train_time_to_target_s : -1.0, spec->batch, share_hi, share_lo);
        if ((st = write_text(rc.dir, "result.json", text, err))) ae_report_warn("%s", err->msg);
        st = AE_OK;
    }
done:
    if (ftz_was >= 0) ae_cpu_flush_denormals(ftz_was);
    ae_tb_close(tb);
    ae_dist_watchdog_stop();
    free(ebuf);
    loop_free(&L);
    ae_model_free(m);
    data_free(&d);
    free(rc.config_text);
    ae_report_close();
    return st;
}

/* ---- eval and check ----------------------------------------------------------- */

ae_status ae_train_eval_ckpt(const char *path, int probe, int quiet, ae_error *err)
{
    ae_ckpt ck;
    memset(&ck, 0, sizeof ck);
    ae_spec *spec = ae_malloc(sizeof *spec, err);
    ae_status st = spec ? AE_OK : AE_ERR_NOMEM;
    /* every rank reads the checkpoint: eval is read-only and small */
    if (!st) st = ae_ckpt_load(path, &ck, err);
    if (!st) {
        ae_config_defaults(spec);
        char origin[PATH_CAP + 16];
        snprintf(origin, sizeof origin, "%s:config", path);
        st = ae_config_parse_string(ck.config_text, origin, spec, err);
        if (!st) st = ae_config_validate(spec, err);
    }
    st = ae_dist_agree(st, err);
    if (st) {
        ae_ckpt_free(&ck);
        free(spec);
        return st;
    }
    openblas_set_num_threads(ae_train_threads(spec->threads));
    (void)quiet;
    data_set d;
    ae_model *m = NULL;
    float *ebuf = NULL;
    st = load_data(spec, probe, &d, err);
    if (st) {
        ae_ckpt_free(&ck);
        free(spec);
        return st;
    }
    ae_shape in = {d.test.c, d.test.h, d.test.w};
    st = create_model(spec, &in, ae_dist_size(), &m, err);
    if (!st && (ck.meta.arch_hash != m->arch_hash || ck.n_params != m->n_params || ck.n_state != m->n_state))
        st = ae_error_set(err, AE_ERR_FORMAT, "%s: its parameters do not match the model its config builds", path);
    if (!st) {
        memcpy(m->params, ck.params, sizeof(float) * m->n_params);
        if (m->n_state) memcpy(m->state, ck.state, sizeof(float) * m->n_state);
        if (!(ebuf = ae_alloc_floats((size_t)m->max_batch * d.test.d, err))) st = AE_ERR_NOMEM;
    }
    st = ae_dist_agree(st, err);
    ae_eval_out te;
    if (!st) st = ae_eval_dataset(m, &d.test, ebuf, &te, err);
    if (!st && ae_dist_rank() == 0) {
        printf("checkpoint %s: epoch %lld, step %lld\n", path, (long long)ck.meta.epoch, (long long)ck.meta.step);
        if (m->type == AE_MODEL_AUTOENCODER)
            printf("test reconstruction (%zu samples): mse %.6f  bce %.6f per pixel\n", te.n, te.mse, te.bce);
        else
            printf("test accuracy (%zu samples): %.2f%%  loss %.5f\n", te.n, 100 * te.accuracy, te.loss);
    }
    if (!st && probe && m->type == AE_MODEL_AUTOENCODER && d.train.y) {
        double acc;
        st = run_probe(m, spec, &d.train, &d.test, &acc, err);
        if (!st && ae_dist_rank() == 0)
            printf("test accuracy of a softmax probe on the %zu-d code: %.2f%%\n", m->code_size, 100 * acc);
    }
    free(ebuf);
    ae_model_free(m);
    data_free(&d);
    ae_ckpt_free(&ck);
    free(spec);
    return st;
}

ae_status ae_train_check(ae_spec *spec, int nranks, ae_error *err)
{
    /* MNIST-family input unless the data is there to say otherwise */
    ae_shape in = {1, 28, 28};
    ae_dataset probe_ds;
    memset(&probe_ds, 0, sizeof probe_ds);
    ae_error ignored;
    size_t n_train = 60000, n_test = 10000;
    if (ae_data_load_named(spec->dataset, spec->data_dir, 1, &probe_ds, &ignored) == AE_OK) {
        in = (ae_shape){probe_ds.c, probe_ds.h, probe_ds.w};
        n_test = probe_ds.n;
        ae_data_free(&probe_ds);
    }
    if (nranks < 1) nranks = 1;
    /* the activations of the largest pass: the per-rank batch, or its part under gradient accumulation */
    int lb = ae_train_pass_max(spec->batch, 1, nranks), passes = spec_passes(spec, nranks);
    int pb = pass_batch(spec, nranks);
    ae_model *m;
    ae_status st = ae_model_create(spec, &in, pb, &m, err);
    if (st) return st;
    ae_model_print(m, stdout);
    size_t n_opt = ae_optim_state_floats(spec->optim.kind, m->n_params);
    double mib = MIB, buf_bytes, act_bytes;
    model_bytes(m, spec, pb, &buf_bytes, &act_bytes);
    double data_bytes = (double)(n_train + n_test) * (double)ae_shape_size(&in);
    printf("\nparameters        %zu (%.2f MiB)\n", m->n_params, 4.0 * (double)m->n_params / mib);
    printf("non-trainable     %zu\n", m->n_state);
    printf("optimizer state   %zu floats\n", n_opt);
    printf("FLOPs per sample  %.4g forward, ~%.4g per training step (forward + backward)\n", m->flops, 3 * m->flops);
    printf("architecture hash %016llx\n", (unsigned long long)m->arch_hash);
    char acc[96] = "";
    if (passes > 1) snprintf(acc, sizeof acc, " in %d accumulation passes of <= %d", passes, pb);
    printf("memory per rank   %.1f MiB at P = %d (batch %d per rank%s): params+grads+optimizer %.1f, activations "
           "%.1f, data %.1f (uint8)\n", (buf_bytes + act_bytes + data_bytes) / mib, nranks, lb, acc, buf_bytes / mib,
           act_bytes / mib, data_bytes / mib);
    ae_model_free(m);
    return AE_OK;
}

/* ---- pca and encode ------------------------------------------------------------- */

ae_status ae_train_pca(ae_spec *spec, const int *ks, int nk, ae_error *err)
{
    openblas_set_num_threads(ae_train_threads(spec->threads));
    data_set d;
    ae_status st = load_data(spec, 1, &d, err);
    if (st) return st;
    int kmax = 0;
    for (int i = 0; i < nk; i++) kmax = ks[i] > kmax ? ks[i] : kmax;
    ae_pca p;
    double t0 = ae_dist_time();
    st = ae_pca_fit(&d.train, (size_t)kmax, &p, err);
    if (!st) {
        printf("PCA of %s: fitted on %zu training samples of %zu features in %.1f s\n", spec->dataset, d.train.n,
               d.train.d, ae_dist_time() - t0);
        printf("%10s %14s %14s %14s\n", "components", "test MSE", "train MSE", "variance kept");
        for (int i = 0; i < nk; i++) {
            double kept = 0.0;
            for (int c = 0; c < ks[i]; c++) kept += p.var[c];
            printf("%10d %14.6f %14.6f %13.2f%%\n", ks[i], ae_pca_mse(&p, &d.test, (size_t)ks[i]),
                   ae_pca_mse(&p, &d.train, (size_t)ks[i]), 100.0 * kept / p.total_var);
        }
        ae_pca_free(&p);
    }
    data_free(&d);
    return st;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* NPY format 1.0: magic, header length, a dict padded to 64 bytes. */
static ae_status write_npy(const char *path, const char *descr, size_t rows, size_t cols, const void *data,
                           size_t elem, ae_error *err)
{
    char hdr[256];
    int len = cols ? snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                              descr, rows, cols)
                   : snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }",
                              descr, rows);
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return ae_error_set(err, AE_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    unsigned short hl = (unsigned short)(len + (int)pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 0xff, f);
    fputc(hl >> 8, f);
    fwrite(hdr, 1, (size_t)len, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t count = rows * (cols ? cols : 1);
    size_t wr = fwrite(data, elem, count, f);
    if (fclose(f) != 0 || wr != count) return ae_error_set(err, AE_ERR_IO, "%s: write failed", path);
    return AE_OK;
}

ae_status ae_train_encode(const char *ckpt, const char *out, int train_split, ae_error *err)
{
    ae_ckpt ck;
    memset(&ck, 0, sizeof ck);
    ae_spec *spec = ae_malloc(sizeof *spec, err);
    ae_status st = spec ? ae_ckpt_load(ckpt, &ck, err) : AE_ERR_NOMEM;
    if (!st) {
        char origin[PATH_CAP + 16];
        snprintf(origin, sizeof origin, "%s:config", ckpt);
        st = ae_config_parse_string(ck.config_text, origin, spec, err);
        if (!st) st = ae_config_validate(spec, err);
    }
    data_set d;
    memset(&d, 0, sizeof d);
    ae_model *m = NULL;
    ae_dataset codes = {0};
    if (!st) st = load_data(spec, train_split, &d, err);
    const ae_dataset *ds = train_split ? &d.train : &d.test;
    if (!st) {
        ae_shape in = {ds->c, ds->h, ds->w};
        st = ae_model_create(spec, &in, EVAL_MIN_BATCH, &m, err);
    }
    if (!st && (ck.n_params != m->n_params || ck.n_state != m->n_state))
        st = ae_error_set(err, AE_ERR_FORMAT, "%s: its parameters do not match the model its config builds", ckpt);
    if (!st) {
        memcpy(m->params, ck.params, sizeof(float) * m->n_params);
        if (m->n_state) memcpy(m->state, ck.state, sizeof(float) * m->n_state);
        st = ae_eval_encode(m, ds, m->n_encoder, &codes, err);
    }
    if (!st && ends_with(out, ".npy")) {
        st = write_npy(out, "<f4", codes.n, codes.d, codes.xf, sizeof(float), err);
        char stem[PATH_CAP], path[PATH_CAP + 128];
        snprintf(stem, sizeof stem, "%.*s", (int)(strlen(out) - 4), out);
        if (!st && ds->y) {
            snprintf(path, sizeof path, "%s_labels.npy", stem);
            st = write_npy(path, "|u1", ds->n, 0, ds->y, 1, err);
        }
        for (int i = 0; !st && i < m->n_encoder; i++) {
            const ae_layer *l = &m->layers[i];
            if (!l->W || l->tied) continue;
            size_t nw = ae_layer_n_weights(l);
            snprintf(path, sizeof path, "%s_%s_W.npy", stem, l->name);
            st = write_npy(path, "<f4", l->in_size, nw / l->in_size, l->W, sizeof(float), err);
            if (!st && l->b) {
                snprintf(path, sizeof path, "%s_%s_b.npy", stem, l->name);
                st = write_npy(path, "<f4", (size_t)l->units, 0, l->b, sizeof(float), err);
            }
        }
    } else if (!st) {
        FILE *f = fopen(out, "w");
        if (!f) st = ae_error_set(err, AE_ERR_IO, "%s: cannot write: %s", out, strerror(errno));
        for (size_t i = 0; !st && i < codes.n; i++) {
            fprintf(f, "%d", ds->y ? ds->y[i] : -1);
            for (size_t j = 0; j < codes.d; j++) fprintf(f, ",%.7g", codes.xf[i * codes.d + j]);
            fputc('\n', f);
        }
        if (f && fclose(f) != 0 && !st) st = ae_error_set(err, AE_ERR_IO, "%s: write failed", out);
    }
    if (!st) printf("wrote %zu codes of %zu values (%s split) to %s\n", codes.n, codes.d,
                    train_split ? "train" : "test", out);
    ae_data_free(&codes);
    ae_model_free(m);
    data_free(&d);
    ae_ckpt_free(&ck);
    free(spec);
    return st;
}
