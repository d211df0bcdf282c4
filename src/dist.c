/* dist.c - MPI wrapper: init, collectives with checked return codes, error
 * agreement across ranks. */
#define _GNU_SOURCE
#include "ae/dist.h"

#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define HOST_MAX 256
#define CHUNK ((size_t)1 << 30)

static struct {
    int inited_here;
    int active;
    int rank, size;
    int local_rank, local_size;
    int thread_level; /* what MPI_Init_thread provided */
    MPI_Comm comm;
} g = {0, 0, 0, 1, 0, 1, MPI_THREAD_SINGLE, MPI_COMM_NULL};

/* Watchdog: the main thread marks entry into and exit from collectives. */
#define WATCHDOG_EXIT 9
static struct {
    _Atomic(double) since; /* time of entry into the current collective, 0 when outside */
    _Atomic(const char *) what;
    _Atomic(int64_t) step;
    atomic_int stop;
    double timeout;
    pthread_t thread;
    int running;
} wd;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void coll_enter(const char *what)
{
    atomic_store(&wd.what, what);
    atomic_store(&wd.since, now_s());
}

static void coll_leave(void) { atomic_store(&wd.since, 0.0); }

static void *watchdog_main(void *arg)
{
    (void)arg;
    struct timespec nap = {0, 200 * 1000 * 1000};
    while (!atomic_load(&wd.stop)) {
        nanosleep(&nap, NULL);
        double since = atomic_load(&wd.since);
        if (since > 0 && now_s() - since > wd.timeout) {
            fprintf(stderr,
                    "aetrain: error: rank %d waited %.0f s in %s at step %lld: another rank has failed or "
                    "stalled; ending the job (train.watchdog = %g s)\n",
                    g.rank, now_s() - since, atomic_load(&wd.what), (long long)atomic_load(&wd.step), wd.timeout);
            fflush(stderr);
            _exit(WATCHDOG_EXIT);
        }
    }
    return NULL;
}

ae_status ae_dist_watchdog_start(double timeout_s, ae_error *err)
{
    if (timeout_s <= 0 || wd.running) return AE_OK;
    wd.timeout = timeout_s;
    atomic_store(&wd.stop, 0);
    if (pthread_create(&wd.thread, NULL, watchdog_main, NULL) != 0)
        return ae_error_set(err, AE_ERR_NOMEM, "cannot start the watchdog thread");
    wd.running = 1;
    return AE_OK;
}

void ae_dist_watchdog_stop(void)
{
    if (!wd.running) return;
    atomic_store(&wd.stop, 1);
    pthread_join(wd.thread, NULL);
    wd.running = 0;
}

void ae_dist_set_step(int64_t step) { atomic_store(&wd.step, step); }

static ae_status mpi_fail(int rc, const char *what, ae_error *err)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return ae_error_set(err, AE_ERR_MPI, "%s failed: %s", what, msg);
}

ae_status ae_dist_init(int *argc, char ***argv, int thread_multiple, ae_error *err)
{
    if (g.active) return AE_OK;
    int flag = 0;
    MPI_Initialized(&flag);
    if (!flag) {
        int want = thread_multiple ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED;
        int rc = MPI_Init_thread(argc, argv, want, &g.thread_level);
        if (rc != MPI_SUCCESS) return ae_error_set(err, AE_ERR_MPI, "MPI_Init failed (code %d)", rc);
        g.inited_here = 1;
    } else {
        MPI_Query_thread(&g.thread_level);
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &g.comm);
    MPI_Comm_set_errhandler(g.comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(g.comm, &g.rank);
    MPI_Comm_size(g.comm, &g.size);
    MPI_Comm local;
    MPI_Comm_split_type(g.comm, MPI_COMM_TYPE_SHARED, g.rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &g.local_rank);
    MPI_Comm_size(local, &g.local_size);
    MPI_Comm_free(&local);
    g.active = 1;
    return AE_OK;
}

/* The bucketed allreduce's communication threads still running (below). */
static ae_dist_reqs *live_threads;
static void comm_stop(ae_dist_reqs *q);

void ae_dist_finalize(void)
{
    /* a communication thread still alive (its requests not freed) ends before MPI does; its
     * drain is still watched */
    while (live_threads) comm_stop(live_threads);
    ae_dist_watchdog_stop();
    if (!g.active) return;
    MPI_Comm_free(&g.comm);
    g.active = 0;
    if (g.inited_here) MPI_Finalize();
}

int ae_dist_rank(void) { return g.rank; }
int ae_dist_size(void) { return g.size; }
int ae_dist_local_size(void) { return g.local_size; }
int ae_dist_local_rank(void) { return g.local_rank; }

ae_status ae_dist_hostnames(char *buf, size_t cap, ae_error *err)
{
    char host[HOST_MAX] = {0};
    gethostname(host, sizeof host - 1);
    if (!g.active) {
        snprintf(buf, cap, "%s", host);
        return AE_OK;
    }
    char *all = ae_malloc((size_t)g.size * HOST_MAX, err);
    if (!all) return AE_ERR_NOMEM;
    coll_enter("MPI_Allgather(hostnames)");
    int rc = MPI_Allgather(host, HOST_MAX, MPI_CHAR, all, HOST_MAX, MPI_CHAR, g.comm);
    coll_leave();
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_fail(rc, "MPI_Allgather(hostnames)", err);
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int r = 0; r < g.size; r++) {
        const char *h = all + (size_t)r * HOST_MAX;
        int seen = 0;
        for (int q = 0; q < r && !seen; q++) seen = strcmp(h, all + (size_t)q * HOST_MAX) == 0;
        if (seen) continue;
        int w = snprintf(buf + len, len < cap ? cap - len : 0, "%s%s", len ? "," : "", h);
        if (w > 0) len += (size_t)w;
    }
    free(all);
    return AE_OK;
}

/* In-place MPI_Allreduce over comm, in pieces of at most CHUNK elements. */
static ae_status allreduce_on(MPI_Comm comm, void *buf, size_t n, MPI_Datatype type, size_t elem, MPI_Op op,
                              const char *what, ae_error *err)
{
    char *p = buf;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t cnt = n - off < CHUNK ? n - off : CHUNK;
        coll_enter(what);
        int rc = MPI_Allreduce(MPI_IN_PLACE, p + off * elem, (int)cnt, type, op, comm);
        coll_leave();
        if (rc != MPI_SUCCESS) return mpi_fail(rc, what, err);
    }
    return AE_OK;
}

static ae_status allreduce(void *buf, size_t n, MPI_Datatype type, size_t elem, MPI_Op op, const char *what,
                           ae_error *err)
{
    if (!g.active || g.size == 1) return AE_OK;
    return allreduce_on(g.comm, buf, n, type, elem, op, what, err);
}

ae_status ae_dist_allreduce_sum(float *buf, size_t n, ae_error *err)
{
    return allreduce(buf, n, MPI_FLOAT, sizeof(float), MPI_SUM, "MPI_Allreduce(sum)", err);
}

ae_status ae_dist_allreduce_sum_f64(double *buf, size_t n, ae_error *err)
{
    return allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM, "MPI_Allreduce(sum)", err);
}

/* The ordered sum's pipeline: chunks small enough that a chunk of the prefix
 * and of every piece stay in cache while the rank adds them. */
#define CHAIN_CHUNK ((size_t)1 << 15)
#define CHAIN_TAG 7401
/* Broadcasts of finished chunks in flight at once (the total travels back
 * while later chunks are still moving along the chain). */
#define CHAIN_WINDOW 16

/* s = (((s + p[0]) + p[1]) + ...) over [off, off + cnt), piece by piece:
 * each pass vectorizes, and the chunk is still in cache for the next one. */
static void chain_add(float *restrict s, float *const *p, int from, int k, size_t off, size_t cnt)
{
    for (int q = from; q < k; q++) {
        const float *restrict pq = p[q] + off;
        for (size_t i = 0; i < cnt; i++) s[i] += pq[i];
    }
}

ae_status ae_dist_ordered_sum(float *const *pieces, int k, float *out, size_t n, ae_error *err)
{
    int P = g.active ? g.size : 1, r = g.active ? g.rank : 0, rc;
    MPI_Request req[CHAIN_WINDOW];
    size_t c = 0;
    for (size_t off = 0; off < n; off += CHAIN_CHUNK, c++) {
        size_t cnt = n - off < CHAIN_CHUNK ? n - off : CHAIN_CHUNK;
        int from = 0;
        if (r > 0) {
            coll_enter("MPI_Recv(ordered sum)");
            rc = MPI_Recv(out + off, (int)cnt, MPI_FLOAT, r - 1, CHAIN_TAG, g.comm, MPI_STATUS_IGNORE);
            coll_leave();
            if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Recv(ordered sum)", err);
        } else if (k == 0) {
            for (size_t i = 0; i < cnt; i++) out[off + i] = -0.0f;
        } else {
            if (pieces[0] != out) memcpy(out + off, pieces[0] + off, cnt * sizeof(float));
            from = 1;
        }
        chain_add(out + off, pieces, from, k, off, cnt);
        if (r < P - 1) {
            coll_enter("MPI_Send(ordered sum)");
            rc = MPI_Send(out + off, (int)cnt, MPI_FLOAT, r + 1, CHAIN_TAG, g.comm);
            coll_leave();
            if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Send(ordered sum)", err);
        }
        if (P == 1) continue;
        /* the chunk is final on the last rank and no longer used on the others: broadcast it now */
        coll_enter("MPI_Ibcast(ordered sum)");
        rc = c >= CHAIN_WINDOW ? MPI_Wait(&req[c % CHAIN_WINDOW], MPI_STATUS_IGNORE) : MPI_SUCCESS;
        if (rc == MPI_SUCCESS)
            rc = MPI_Ibcast(out + off, (int)cnt, MPI_FLOAT, P - 1, g.comm, &req[c % CHAIN_WINDOW]);
        coll_leave();
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Ibcast(ordered sum)", err);
    }
    if (P == 1 || c == 0) return AE_OK;
    coll_enter("MPI_Waitall(ordered sum)");
    rc = MPI_Waitall(c < CHAIN_WINDOW ? (int)c : CHAIN_WINDOW, req, MPI_STATUSES_IGNORE);
    coll_leave();
    return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, "MPI_Waitall(ordered sum)", err);
}

ae_status ae_dist_allgather_i64(int64_t mine, int64_t *all, ae_error *err)
{
    if (!g.active || g.size == 1) {
        all[0] = mine;
        return AE_OK;
    }
    coll_enter("MPI_Allgather(step times)");
    int rc = MPI_Allgather(&mine, 1, MPI_INT64_T, all, 1, MPI_INT64_T, g.comm);
    coll_leave();
    return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, "MPI_Allgather(step times)", err);
}

ae_status ae_dist_allreduce_max_f64(double *buf, size_t n, ae_error *err)
{
    return allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_MAX, "MPI_Allreduce(max)", err);
}

/* The bucketed allreduce's requests. Two modes, chosen at creation:
 * - MPI_Testall mode: each sum is an MPI_Iallreduce on g.comm; it moves only inside MPI calls of
 *   the main thread (this MPI has no asynchronous progress), i.e. ae_dist_progress and the wait.
 * - thread mode: a communication thread of q, with its own duplicate of the communicator, runs the
 *   queued sums in order with blocking MPI_Allreduce while the main thread goes on with backward
 *   (and its own collectives on g.comm, e.g. synchronized batch norm: MPI_THREAD_MULTIPLE). The
 *   thread never marks the watchdog (one marker, the main thread's): a stalled peer shows as the
 *   main thread's wait for the queue. */
struct sum_job {
    float *buf;
    int n;
};

struct ae_dist_reqs {
    int cap, n;
    MPI_Request *req;
    /* thread mode (threaded, thread and comm are set by the main thread before any job is queued;
     * the queue fields from job on are guarded by mu) */
    int threaded;
    pthread_t thread;
    MPI_Comm comm;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    struct sum_job *job; /* (cap) jobs [head, n) are queued, job head is running when run_since > 0 */
    int head, stop;
    int rc;           /* the first failing MPI_Allreduce's code (then the rest are skipped) */
    double busy_s;    /* seconds in MPI_Allreduce since the last wait */
    double run_since; /* start of the running MPI_Allreduce, 0 when idle */
    double hidden_s;  /* busy seconds before the last wait began */
    double blocked_s; /* seconds the main thread waited in ae_dist_wait_first since the last drain */
    ae_dist_reqs *next_live; /* the list of running threads that ae_dist_finalize stops */
};

#define THREAD_WAIT_WHAT "the wait for the communication thread's MPI_Allreduce(sum)"

static void *comm_main(void *arg)
{
    ae_dist_reqs *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stop && q->head == q->n) pthread_cond_wait(&q->work, &q->mu);
        if (q->head == q->n) break; /* stopped, queue drained */
        struct sum_job j = q->job[q->head];
        q->run_since = now_s();
        if (q->rc == MPI_SUCCESS) {
            pthread_mutex_unlock(&q->mu);
            int rc = MPI_Allreduce(MPI_IN_PLACE, j.buf, j.n, MPI_FLOAT, MPI_SUM, q->comm);
            pthread_mutex_lock(&q->mu);
            q->rc = rc;
        }
        q->busy_s += now_s() - q->run_since;
        q->run_since = 0;
        ++q->head;
        pthread_cond_broadcast(&q->idle); /* ae_dist_wait_first waits for a prefix of the queue */
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* Wait (watchdog-marked) until the thread has run every queued sum. */
static int comm_drain(ae_dist_reqs *q)
{
    pthread_mutex_lock(&q->mu);
    q->hidden_s = q->busy_s + (q->run_since > 0 ? now_s() - q->run_since : 0) - q->blocked_s;
    if (q->hidden_s < 0) q->hidden_s = 0;
    q->blocked_s = 0;
    if (q->head < q->n) {
        coll_enter(THREAD_WAIT_WHAT);
        while (q->head < q->n) pthread_cond_wait(&q->idle, &q->mu);
        coll_leave();
    }
    q->head = q->n = 0;
    q->busy_s = 0;
    int rc = q->rc;
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* Drain, end and join q's thread and free its communicator (idempotent). */
static void comm_stop(ae_dist_reqs *q)
{
    if (!q->threaded) return;
    comm_drain(q);
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->work);
    pthread_cond_destroy(&q->idle);
    pthread_mutex_destroy(&q->mu);
    if (q->comm != MPI_COMM_NULL) MPI_Comm_free(&q->comm);
    q->threaded = 0;
    for (ae_dist_reqs **p = &live_threads; *p; p = &(*p)->next_live)
        if (*p == q) {
            *p = q->next_live;
            break;
        }
}

/* Thread mode for q when every rank can have it (same mode on all ranks, or the sums would not
 * match): MPI_THREAD_MULTIPLE and a started thread. */
static ae_status comm_start(ae_dist_reqs *q, ae_error *err)
{
    int ok = g.thread_level >= MPI_THREAD_MULTIPLE, all = 0;
    q->comm = MPI_COMM_NULL;
    /* plain calloc: without memory for the queue this rank only falls back to the other mode */
    if (ok && !(q->job = calloc((size_t)q->cap, sizeof *q->job))) ok = 0;
    if (ok) {
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->work, NULL);
        pthread_cond_init(&q->idle, NULL);
        q->rc = MPI_SUCCESS;
        /* signals (SIGUSR1 from a scheduler, SIGINT) stay with the main thread, as without the thread */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        ok = pthread_create(&q->thread, NULL, comm_main, q) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (ok) {
            q->threaded = 1;
            q->next_live = live_threads;
            live_threads = q;
        } else {
            pthread_cond_destroy(&q->work);
            pthread_cond_destroy(&q->idle);
            pthread_mutex_destroy(&q->mu);
        }
    }
    coll_enter("MPI_Allreduce(communication thread)");
    int rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, g.comm);
    if (rc == MPI_SUCCESS && all) rc = MPI_Comm_dup(g.comm, &q->comm);
    coll_leave();
    if (rc == MPI_SUCCESS && all) {
        MPI_Comm_set_errhandler(q->comm, MPI_ERRORS_RETURN);
        return AE_OK;
    }
    comm_stop(q); /* the thread has nothing queued: it ends at once */
    return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, "MPI_Comm_dup(communication thread)", err);
}

ae_status ae_dist_reqs_create(int cap, int thread, ae_dist_reqs **out, ae_error *err)
{
    *out = NULL;
    ae_dist_reqs *q = ae_calloc(1, sizeof *q, err);
    if (!q) return AE_ERR_NOMEM;
    q->cap = cap > 0 ? cap : 1;
    if (!(q->req = ae_calloc((size_t)q->cap, sizeof(MPI_Request), err))) {
        free(q);
        return AE_ERR_NOMEM;
    }
    ae_status st = thread && g.active && g.size > 1 ? comm_start(q, err) : AE_OK;
    if (st) {
        ae_dist_reqs_free(q);
        return st;
    }
    *out = q;
    return AE_OK;
}

void ae_dist_reqs_free(ae_dist_reqs *q)
{
    if (!q) return;
    comm_stop(q);
    free(q->job);
    free(q->req);
    free(q);
}

int ae_dist_reqs_threaded(const ae_dist_reqs *q) { return q && q->threaded; }

double ae_dist_reqs_hidden_s(const ae_dist_reqs *q) { return q && q->threaded ? q->hidden_s : 0.0; }

int ae_dist_thread_multiple(void) { return g.thread_level >= MPI_THREAD_MULTIPLE; }

static ae_status enqueue(ae_dist_reqs *q, float *buf, int n, ae_error *err)
{
    pthread_mutex_lock(&q->mu);
    int full = q->n >= q->cap;
    if (!full) {
        q->job[q->n++] = (struct sum_job){buf, n};
        pthread_cond_signal(&q->work);
    }
    pthread_mutex_unlock(&q->mu);
    return full ? ae_error_set(err, AE_ERR_ARG, "MPI_Allreduce(sum): more than %d sums queued", q->cap) : AE_OK;
}

ae_status ae_dist_iallreduce_sum(ae_dist_reqs *q, float *buf, size_t n, ae_error *err)
{
    if (!g.active || g.size == 1) return AE_OK;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t cnt = n - off < CHUNK ? n - off : CHUNK;
        if (q->threaded) {
            ae_status st = enqueue(q, buf + off, (int)cnt, err);
            if (st) return st;
            continue;
        }
        if (q->n >= q->cap)
            return ae_error_set(err, AE_ERR_ARG, "MPI_Iallreduce(sum): more than %d requests outstanding", q->cap);
        coll_enter("MPI_Iallreduce(sum)");
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)cnt, MPI_FLOAT, MPI_SUM, g.comm, &q->req[q->n]);
        coll_leave();
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Iallreduce(sum)", err);
        q->n++;
    }
    return AE_OK;
}

ae_status ae_dist_progress(ae_dist_reqs *q, ae_error *err)
{
    if (q->threaded || !q->n) return AE_OK; /* the thread needs no driving */
    int done = 0;
    coll_enter("MPI_Testall(sum)");
    int rc = MPI_Testall(q->n, q->req, &done, MPI_STATUSES_IGNORE);
    coll_leave();
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Testall(sum)", err);
    if (done) q->n = 0; /* all requests are MPI_REQUEST_NULL now */
    return AE_OK;
}

int ae_dist_reqs_started(ae_dist_reqs *q)
{
    if (!q->threaded) return q->n;
    pthread_mutex_lock(&q->mu);
    int n = q->n;
    pthread_mutex_unlock(&q->mu);
    return n;
}

ae_status ae_dist_wait_first(ae_dist_reqs *q, int k, ae_error *err)
{
    if (!q->threaded) return ae_dist_wait_all(q, err);
    pthread_mutex_lock(&q->mu);
    if (k > q->n) k = q->n;
    if (q->head < k) {
        double t0 = now_s();
        coll_enter(THREAD_WAIT_WHAT);
        while (q->head < k) pthread_cond_wait(&q->idle, &q->mu);
        coll_leave();
        q->blocked_s += now_s() - t0;
    }
    int rc = q->rc;
    pthread_mutex_unlock(&q->mu);
    return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, "MPI_Allreduce(sum) on the communication thread", err);
}

ae_status ae_dist_wait_all(ae_dist_reqs *q, ae_error *err)
{
    if (q->threaded) {
        int rc = comm_drain(q);
        return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, "MPI_Allreduce(sum) on the communication thread", err);
    }
    if (!q->n) return AE_OK;
    coll_enter("MPI_Waitall(sum)");
    int rc = MPI_Waitall(q->n, q->req, MPI_STATUSES_IGNORE);
    coll_leave();
    q->n = 0;
    return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, "MPI_Waitall(sum)", err);
}

ae_status ae_dist_bcast(void *buf, size_t bytes, int root, ae_error *err)
{
    if (!g.active || g.size == 1) return AE_OK;
    char *p = buf;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t cnt = bytes - off < CHUNK ? bytes - off : CHUNK;
        coll_enter("MPI_Bcast");
        int rc = MPI_Bcast(p + off, (int)cnt, MPI_BYTE, root, g.comm);
        coll_leave();
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast", err);
    }
    return AE_OK;
}

ae_status ae_dist_barrier(ae_error *err)
{
    if (!g.active || g.size == 1) return AE_OK;
    coll_enter("MPI_Barrier");
    int rc = MPI_Barrier(g.comm);
    coll_leave();
    return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, "MPI_Barrier", err);
}

ae_status ae_dist_agree(ae_status local, ae_error *err)
{
    if (!g.active || g.size == 1) return local;
    /* lowest failing rank wins: minimize (failed ? rank : size) */
    int mine = local != AE_OK ? g.rank : g.size, first = g.size;
    coll_enter("MPI_Allreduce(agree)");
    int rc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, g.comm);
    coll_leave();
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce(agree)", err);
    if (first == g.size) return AE_OK;
    struct {
        int code;
        char msg[AE_ERROR_MSG_MAX];
    } pkt;
    memset(&pkt, 0, sizeof pkt);
    if (g.rank == first) {
        pkt.code = (int)local;
        if (err) memcpy(pkt.msg, err->msg, sizeof pkt.msg);
    }
    coll_enter("MPI_Bcast(agree)");
    rc = MPI_Bcast(&pkt, (int)sizeof pkt, MPI_BYTE, first, g.comm);
    coll_leave();
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast(agree)", err);
    pkt.msg[sizeof pkt.msg - 1] = '\0';
    if (g.rank == first) return local;
    return ae_error_set(err, (ae_status)pkt.code, "rank %d: %s", first, pkt.msg);
}

struct ae_dist_shm {
    MPI_Comm node;
    MPI_Win win;
    void *heap; /* the malloc fallback without MPI */
};

/* Where Open MPI's shared windows keep their backing files (osc/sm's
 * default on Linux, or the user's MCA setting). */
#define SHM_DIR_DEFAULT "/dev/shm"
#define SHM_WHY_MAX 256

/* Can the node's leader create a backing file of `bytes`? Open MPI fails
 * inside MPI_Win_allocate_shared on the leader alone when it cannot (the
 * file-size limit, a full /dev/shm), and the other ranks then wait in the
 * window's collective for ever; so the leader checks first and the node
 * agrees on the answer. 1 = room, 0 = none (why says what is short). */
static int node_room(size_t bytes, char *why, size_t cap)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (size_t)rl.rlim_cur < bytes) {
        snprintf(why, cap, "the file-size limit (ulimit -f, %llu bytes) is below the %zu bytes of the segment",
                 (unsigned long long)rl.rlim_cur, bytes);
        return 0;
    }
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    if (!dir || !*dir) dir = SHM_DIR_DEFAULT;
    struct statvfs vs;
    if (statvfs(dir, &vs) == 0 && (double)vs.f_bavail * (double)vs.f_frsize < (double)bytes) {
        snprintf(why, cap, "%s has %.1f MiB free, the segment needs %.1f MiB", dir,
                 (double)vs.f_bavail * (double)vs.f_frsize / 1048576.0, (double)bytes / 1048576.0);
        return 0;
    }
    return 1;
}

/* An empty handle: no communicator, no window. */
static ae_dist_shm *shm_new(ae_error *err)
{
    ae_dist_shm *h = ae_calloc(1, sizeof *h, err);
    if (h) {
        h->node = MPI_COMM_NULL;
        h->win = MPI_WIN_NULL;
    }
    return h;
}

/* Split off the node's communicator into h->node and allocate this rank's
 * `mine` bytes of one shared window, once the node's first rank has found
 * room for `room` bytes (the whole node's). No room: AE_OK with h->win still
 * MPI_WIN_NULL and why saying what is short (the same on every rank of the
 * node). label names the window in messages. */
static ae_status node_window(ae_dist_shm *h, size_t mine, size_t room, const char *label, void **base, char *why,
                             size_t why_cap, ae_error *err)
{
    char what[96];
    snprintf(what, sizeof what, "MPI_Comm_split_type(shared)");
    coll_enter("MPI_Comm_split_type(shared)");
    int rc = MPI_Comm_split_type(g.comm, MPI_COMM_TYPE_SHARED, g.rank, MPI_INFO_NULL, &h->node);
    /* the leader's verdict (1 = room) and its reason, the same on every rank of the node */
    struct {
        int ok;
        char why[SHM_WHY_MAX];
    } verdict = {1, ""};
    if (rc == MPI_SUCCESS && room > 0) verdict.ok = node_room(room, verdict.why, sizeof verdict.why);
    if (rc == MPI_SUCCESS) {
        snprintf(what, sizeof what, "MPI_Bcast(node verdict)");
        rc = MPI_Bcast(&verdict, (int)sizeof verdict, MPI_BYTE, 0, h->node);
    }
    if (rc == MPI_SUCCESS && !verdict.ok) {
        coll_leave();
        if (why_cap) snprintf(why, why_cap, "%s", verdict.why);
        return AE_OK;
    }
    if (rc == MPI_SUCCESS) {
        snprintf(what, sizeof what, "MPI_Win_allocate_shared(%s)", label);
        rc = MPI_Win_allocate_shared((MPI_Aint)mine, 1, MPI_INFO_NULL, h->node, base, &h->win);
    }
    coll_leave();
    return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, what, err);
}

ae_status ae_dist_node_alloc(size_t *bytes, void **ptr, ae_dist_shm **handle, char *why, size_t why_cap,
                             ae_error *err)
{
    *ptr = NULL;
    *handle = NULL;
    if (why_cap) why[0] = '\0';
    ae_dist_shm *h = shm_new(err);
    if (!h) return AE_ERR_NOMEM;
    if (!g.active) {
        if (!(h->heap = ae_malloc(*bytes ? *bytes : 1, err))) {
            free(h);
            return AE_ERR_NOMEM;
        }
        *ptr = h->heap;
        *handle = h;
        return AE_OK;
    }
    void *base = NULL;
    ae_status st = node_window(h, *bytes, *bytes, "dataset", &base, why, why_cap, err);
    if (!st && h->win == MPI_WIN_NULL) {
        ae_dist_node_free(h);
        return AE_OK; /* *ptr stays NULL: no shared segment on this node */
    }
    MPI_Aint size = 0;
    int disp = 1, rc = MPI_SUCCESS;
    if (!st) {
        coll_enter("MPI_Win_shared_query(dataset)");
        rc = MPI_Win_shared_query(h->win, 0, &size, &disp, ptr);
        coll_leave();
        if (rc != MPI_SUCCESS) st = mpi_fail(rc, "MPI_Win_shared_query(dataset)", err);
    }
    if (st) {
        ae_dist_node_free(h);
        *ptr = NULL;
        return st;
    }
    *bytes = (size_t)size;
    *handle = h;
    return AE_OK;
}

/* A barrier over the node's ranks that orders every store before it on every
 * rank before every load after it. */
static ae_status node_barrier(ae_dist_shm *h, const char *what, ae_error *err)
{
    if (!h || h->node == MPI_COMM_NULL) return AE_OK;
    atomic_thread_fence(memory_order_seq_cst);
    coll_enter(what);
    int rc = MPI_Barrier(h->node);
    coll_leave();
    atomic_thread_fence(memory_order_seq_cst);
    return rc == MPI_SUCCESS ? AE_OK : mpi_fail(rc, what, err);
}

ae_status ae_dist_node_sync(ae_dist_shm *h, ae_error *err)
{
    /* the segment is written once, before this barrier, and only read after it */
    return node_barrier(h, "MPI_Barrier(node)", err);
}

void ae_dist_node_free(ae_dist_shm *h)
{
    if (!h) return;
    coll_enter("MPI_Win_free(node)");
    if (h->win != MPI_WIN_NULL) MPI_Win_free(&h->win);
    if (h->node != MPI_COMM_NULL) MPI_Comm_free(&h->node);
    coll_leave();
    free(h->heap);
    free(h);
}

/* ---- the node-shared gradient sum ---------------------------------------- */

struct ae_dist_nodesum {
    ae_dist_shm *shm; /* the node's window: every rank's buffer of n floats, page-aligned */
    float **peer;     /* peer[q]: the buffer of the node's rank q */
    int lr, L;        /* this rank's index on its node, the node's ranks */
    MPI_Comm rail;    /* the ranks of this local index on every node (MPI_COMM_NULL on one node) */
    size_t n, lo, hi; /* this rank's chunk of the sum: [lo, hi) */
    size_t tail;      /* the last `tail` floats: in every buffer after an owned sum too */
};

/* Floats summed at a time: the node's L blocks and the result stay in L1/L2. */
#define NS_BLOCK 2048
#define NS_ALIGN 16 /* chunk boundaries on 64-byte cache lines, so no two ranks write one line */

/* Rank q's chunk [*lo, *hi) of the n floats: boundaries on cache lines, the tail in the last. */
static void chunk_of(const ae_dist_nodesum *s, int q, size_t *lo, size_t *hi)
{
    *lo = (s->n * (size_t)q / (size_t)s->L) & ~(size_t)(NS_ALIGN - 1);
    *hi = q == s->L - 1 ? s->n : (s->n * (size_t)(q + 1) / (size_t)s->L) & ~(size_t)(NS_ALIGN - 1);
}

ae_status ae_dist_nodesum_create(size_t n, size_t tail, ae_dist_nodesum **out, float **buf, char *why,
                                 size_t why_cap, ae_error *err)
{
    *out = NULL;
    *buf = NULL;
    if (why_cap) why[0] = '\0';
    if (!g.active || g.size == 1) {
        if (why_cap) snprintf(why, why_cap, "one rank");
        return AE_OK;
    }
    int mm[2] = {g.local_size, -g.local_size};
    coll_enter("MPI_Allreduce(ranks per node)");
    int rc = MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_INT, MPI_MAX, g.comm);
    coll_leave();
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce(ranks per node)", err);
    if (mm[0] == 1) {
        if (why_cap) snprintf(why, why_cap, "every node holds one rank");
        return AE_OK;
    }
    if (mm[0] != -mm[1]) {
        if (why_cap)
            snprintf(why, why_cap, "the nodes hold different numbers of ranks (%d to %d)", -mm[1], mm[0]);
        return AE_OK;
    }
    ae_dist_nodesum *s = ae_calloc(1, sizeof *s, err);
    if (!s) return AE_ERR_NOMEM;
    s->rail = MPI_COMM_NULL;
    s->n = n;
    s->tail = tail < n ? tail : n;
    ae_status st = AE_OK;
    size_t bytes = (n * sizeof(float) + 4095) & ~(size_t)4095;
    void *base = NULL;
    if (!(s->shm = shm_new(err))) st = AE_ERR_NOMEM;
    if (!st) {
        st = node_window(s->shm, bytes, bytes * (size_t)g.local_size, "gradients", &base, why, why_cap, err);
    }
    if (!st && s->shm->win == MPI_WIN_NULL) {
        ae_dist_nodesum_free(s);
        return AE_OK; /* why says what is short */
    }
    if (!st) {
        MPI_Comm_rank(s->shm->node, &s->lr);
        MPI_Comm_size(s->shm->node, &s->L);
        if (!(s->peer = ae_calloc((size_t)s->L, sizeof *s->peer, err))) st = AE_ERR_NOMEM;
    }
    for (int q = 0; !st && q < s->L; q++) {
        MPI_Aint size = 0;
        int disp = 1;
        rc = MPI_Win_shared_query(s->shm->win, q, &size, &disp, &s->peer[q]);
        if (rc != MPI_SUCCESS) st = mpi_fail(rc, "MPI_Win_shared_query(gradients)", err);
    }
    if (!st && g.size > s->L) {
        coll_enter("MPI_Comm_split(rails)");
        rc = MPI_Comm_split(g.comm, s->lr, g.rank, &s->rail);
        coll_leave();
        if (rc != MPI_SUCCESS) st = mpi_fail(rc, "MPI_Comm_split(rails)", err);
        else MPI_Comm_set_errhandler(s->rail, MPI_ERRORS_RETURN);
    }
    if (st) {
        ae_dist_nodesum_free(s);
        return st;
    }
    chunk_of(s, s->lr, &s->lo, &s->hi);
    *out = s;
    *buf = s->peer[s->lr];
    return AE_OK;
}

int ae_dist_nodesum_ranks(const ae_dist_nodesum *s) { return s ? s->L : 0; }

/* t = ((p[0] + p[1]) + p[2]) + ... over [off, off + cnt): the node's ranks in order. */
static void node_block_sum(float *restrict t, float *const *p, int L, size_t off, size_t cnt)
{
    const float *restrict p0 = p[0] + off;
    for (size_t i = 0; i < cnt; i++) t[i] = p0[i];
    for (int q = 1; q < L; q++) {
        const float *restrict pq = p[q] + off;
        for (size_t i = 0; i < cnt; i++) t[i] += pq[i];
    }
}

ae_status ae_dist_nodesum_run(ae_dist_nodesum *s, int owned, ae_error *err)
{
    if (!s) return AE_OK;
    /* every rank's buffer is complete: each sums its chunk over the node and writes the sum into
     * every buffer, or (owned) into its own and the tail into every one (no rank reads a chunk but
     * its owner, so no barrier is needed in between) */
    ae_status st = node_barrier(s->shm, "MPI_Barrier(node gradient sum)", err);
    if (st) return st;
    float t[NS_BLOCK] __attribute__((aligned(64)));
    float *mine = s->peer[s->lr];
    int one_node = s->rail == MPI_COMM_NULL;
    size_t everywhere = owned ? s->n - s->tail : s->lo; /* from here on the sum goes into every buffer */
    if (everywhere < s->lo) everywhere = s->lo;
    for (size_t off = s->lo, cnt; off < s->hi; off += cnt) {
        size_t end = off < everywhere && everywhere < s->hi ? everywhere : s->hi;
        cnt = end - off < NS_BLOCK ? end - off : NS_BLOCK;
        node_block_sum(t, s->peer, s->L, off, cnt);
        if (!one_node || off < everywhere) {
            memcpy(mine + off, t, cnt * sizeof(float));
            continue;
        }
        for (int q = 0; q < s->L; q++) memcpy(s->peer[q] + off, t, cnt * sizeof(float));
    }
    if (!one_node) {
        /* the chunk's node sums, summed between the nodes, then written into the node's buffers */
        st = allreduce_on(s->rail, mine + s->lo, s->hi - s->lo, MPI_FLOAT, sizeof(float), MPI_SUM,
                          "MPI_Allreduce(sum between nodes)", err);
        if (st) return st;
        for (int q = 0; q < s->L && everywhere < s->hi; q++)
            if (q != s->lr)
                memcpy(s->peer[q] + everywhere, mine + everywhere, (s->hi - everywhere) * sizeof(float));
    }
    /* every chunk (owned: the tail) is in every buffer; owned, the caller's agreement is the barrier */
    return owned ? AE_OK : node_barrier(s->shm, "MPI_Barrier(node gradient sum)", err);
}

void ae_dist_nodesum_chunk(const ae_dist_nodesum *s, size_t *lo, size_t *hi)
{
    *lo = s ? s->lo : 0;
    *hi = s ? s->hi : 0;
}

ae_status ae_dist_nodesum_agree(ae_dist_nodesum *s, int *flag, ae_error *err)
{
    if (!s) return AE_OK;
    atomic_thread_fence(memory_order_seq_cst);
    ae_status st = allreduce_on(s->shm->node, flag, 1, MPI_INT, sizeof(int), MPI_MAX,
                                "MPI_Allreduce(node gradient check)", err);
    atomic_thread_fence(memory_order_seq_cst);
    return st;
}

void ae_dist_nodesum_gather(ae_dist_nodesum *s)
{
    if (!s) return;
    for (int q = 0; q < s->L; q++) {
        size_t lo, hi;
        chunk_of(s, q, &lo, &hi);
        if (q != s->lr && lo < hi) memcpy(s->peer[s->lr] + lo, s->peer[q] + lo, (hi - lo) * sizeof(float));
    }
}

void ae_dist_nodesum_free(ae_dist_nodesum *s)
{
    if (!s) return;
    if (s->rail != MPI_COMM_NULL) {
        coll_enter("MPI_Comm_free(rails)");
        MPI_Comm_free(&s->rail);
        coll_leave();
    }
    ae_dist_node_free(s->shm);
    free(s->peer);
    free(s);
}

void ae_dist_abort(int code)
{
    if (g.active) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

double ae_dist_time(void)
{
    if (g.active) return MPI_Wtime();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
