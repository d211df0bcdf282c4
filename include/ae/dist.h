/* dist.h - the only module that speaks MPI. Rank/size, the gradient
 * allreduce, broadcasts, and error agreement, so that a failure on one rank
 * ends every rank with the same message instead of a hang. Works with one
 * process, with or without mpirun (MPI singleton init). */
#ifndef AE_DIST_H
#define AE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "ae/status.h"

/* Initialize MPI (once), asking for MPI_THREAD_MULTIPLE when thread_multiple
 * (a communication thread will be wanted: ae_dist_reqs_create), else
 * MPI_THREAD_FUNNELED. Errors from MPI calls afterwards are returned as
 * AE_ERR_MPI, not fatal. */
ae_status ae_dist_init(int *argc, char ***argv, int thread_multiple, ae_error *err);
/* Finalize MPI if ae_dist_init initialized it; communication threads still
 * running are drained and joined first. */
void ae_dist_finalize(void);
int ae_dist_rank(void);
int ae_dist_size(void);
/* Ranks sharing this rank's node, and this rank's index among them. */
int ae_dist_local_size(void);
int ae_dist_local_rank(void);
/* Comma-separated distinct host names of all ranks (collective). */
ae_status ae_dist_hostnames(char *buf, size_t cap, ae_error *err);

/* In-place sum over ranks of n floats (chunked above INT_MAX). */
ae_status ae_dist_allreduce_sum(float *buf, size_t n, ae_error *err);
ae_status ae_dist_allreduce_sum_f64(double *buf, size_t n, ae_error *err);
/* Ordered chain sum over ranks (deterministic mode's gradients): with
 * p_0, p_1, ... the pieces of rank 0 in order, then those of rank 1, and so
 * on, every rank gets out = (((p_0 + p_1) + p_2) + ...) elementwise in float.
 * Every addition of that chain is done by exactly one rank, in that order,
 * so the result is bitwise the same for any split of the same piece
 * sequence over any number of ranks. Rank r receives the prefix from rank
 * r - 1 in chunks, adds its k pieces and passes it on (pipelined); the last
 * rank broadcasts each finished chunk (nonblocking, overlapping the chain).
 * k may be 0 (the rank only forwards; when rank 0 has none the chain starts
 * from -0.0f, the exact identity of float addition). pieces[0] may be out on rank 0 (the first piece is then not
 * copied); pieces[1..k) must not overlap out; the pieces are read only.
 * NaN and infinities propagate. Collective, also with one process. */
ae_status ae_dist_ordered_sum(float *const *pieces, int k, float *out, size_t n, ae_error *err);
ae_status ae_dist_allreduce_max_f64(double *buf, size_t n, ae_error *err);
/* all[q] = rank q's `mine`, for every rank q (all holds ae_dist_size() values). Collective. */
ae_status ae_dist_allgather_i64(int64_t mine, int64_t *all, ae_error *err);

/* Nonblocking in-place sums (the bucketed gradient allreduce): a set of
 * requests, created and freed in pairs (free accepts NULL). Every rank must
 * start the same sums in the same order, and the caller must not touch a
 * started buffer until ae_dist_wait_all. Two modes:
 * - MPI_Testall mode: each sum is an MPI_Iallreduce. This MPI has no
 *   asynchronous progress, so the caller drives the started sums with
 *   ae_dist_progress (e.g. between layers of backward).
 * - thread mode: a communication thread of the set, with its own duplicate
 *   of the communicator, runs the sums one after the other, in the order they
 *   were started, with blocking MPI_Allreduce while the caller computes (and
 *   calls other collectives: needs MPI_THREAD_MULTIPLE); ae_dist_progress
 *   does nothing.
 * With one process (or none under mpirun) the calls do nothing. */
typedef struct ae_dist_reqs ae_dist_reqs;
/* Room for up to cap outstanding requests (a sum of more than 2^30 floats
 * takes one request per 2^30). thread != 0 asks for thread mode; the set
 * gets it when every rank has MPI_THREAD_MULTIPLE and could start its thread
 * (one small allreduce decides, so the ranks agree), else MPI_Testall mode:
 * ae_dist_reqs_threaded says which. Collective when thread != 0 and P > 1.
 * Free drains and joins the thread (watchdog-guarded). */
ae_status ae_dist_reqs_create(int cap, int thread, ae_dist_reqs **out, ae_error *err);
void ae_dist_reqs_free(ae_dist_reqs *q);
/* 1 when q's sums run on a communication thread. */
int ae_dist_reqs_threaded(const ae_dist_reqs *q);
/* 1 when MPI provided MPI_THREAD_MULTIPLE. */
int ae_dist_thread_multiple(void);
/* Start the in-place sum over ranks of buf[0..n) (MPI_Iallreduce, or queue it
 * for the thread). AE_ERR_ARG when q is full. */
ae_status ae_dist_iallreduce_sum(ae_dist_reqs *q, float *buf, size_t n, ae_error *err);
/* MPI_Testall mode: one MPI_Testall over the outstanding requests, which lets
 * MPI move the started sums along. Thread mode: nothing. */
ae_status ae_dist_progress(ae_dist_reqs *q, ae_error *err);
/* Wait for all started sums (watchdog-guarded); q is empty afterwards. In
 * thread mode the first failed MPI_Allreduce's error (the sums after it are
 * skipped). */
ae_status ae_dist_wait_all(ae_dist_reqs *q, ae_error *err);
/* Thread mode: the number of sums queued since the last wait_all, a mark for
 * ae_dist_wait_first. */
int ae_dist_reqs_started(ae_dist_reqs *q);
/* Thread mode: wait (watchdog-guarded) until the first k sums queued since
 * the last wait_all are done, in the order they were queued; the others go
 * on. MPI_Testall mode (whose requests MPI_Testall may retire in a body, so
 * that no prefix is kept): ae_dist_wait_all, more than asked, never less. */
ae_status ae_dist_wait_first(ae_dist_reqs *q, int k, ae_error *err);
/* Thread mode: seconds the thread spent in MPI_Allreduce from the previous
 * wait_all to the start of the last one, less the time the caller was blocked
 * in ae_dist_wait_first meanwhile (the communication hidden behind the
 * caller's work); 0 in MPI_Testall mode. */
double ae_dist_reqs_hidden_s(const ae_dist_reqs *q);

/* Broadcast bytes from root. */
ae_status ae_dist_bcast(void *buf, size_t bytes, int root, ae_error *err);
ae_status ae_dist_barrier(ae_error *err);

/* Collective: every rank passes its local status (and err with its
 * message). If any rank failed, every rank gets the failure of the lowest
 * failing rank, its message prefixed with "rank R: " when R != this rank,
 * and returns that status; otherwise AE_OK. */
ae_status ae_dist_agree(ae_status local, ae_error *err);

/* Memory shared by the ranks of one node (MPI-3 shared window over the
 * ranks MPI_COMM_TYPE_SHARED groups with this one). Collective over all
 * ranks: the node's first rank passes *bytes > 0 and allocates, the others
 * pass 0; every rank gets that segment in *ptr and its size in *bytes.
 * Without MPI (or before ae_dist_init) the segment is plain malloc. */
typedef struct ae_dist_shm ae_dist_shm;
/* When the node cannot hold the segment (the leader finds the file-size
 * limit or the free space of the backing directory too small), every rank
 * of the node returns AE_OK with *ptr and *handle NULL and the reason in
 * why (why_cap bytes); the caller then keeps private copies. */
ae_status ae_dist_node_alloc(size_t *bytes, void **ptr, ae_dist_shm **handle, char *why, size_t why_cap,
                             ae_error *err);
/* Barrier over the node's ranks (the leader has filled the segment). */
ae_status ae_dist_node_sync(ae_dist_shm *h, ae_error *err);
/* Collective over the node's ranks; accepts NULL. */
void ae_dist_node_free(ae_dist_shm *h);

/* The gradient sum through node-shared memory (train.allreduce = node):
 * each rank's buffer of n floats lives in one MPI-3 shared window of its
 * node. A sum: a node barrier; rank q of the node adds chunk q of every
 * buffer, in the node's rank order ((b_0 + b_1) + b_2) + ..., and writes the
 * result into every buffer (with several nodes: into its own, then an
 * MPI_Allreduce of the chunk between the ranks of index q on every node,
 * then into the others); a node barrier. Each rank reads and writes its
 * share of the buffers once, with no copy through MPI's queues. Needs every
 * node to hold the same number of ranks, at least 2: otherwise, or when the
 * node's shared-memory directory has no room, *out and *buf stay NULL and
 * why says why (AE_OK). Create, run and free are collective over all ranks. */
typedef struct ae_dist_nodesum ae_dist_nodesum;
/* The chunks cut n floats over the node's ranks, on 64-byte boundaries; the
 * last `tail` floats (the step's scalars) fall in the last rank's chunk. */
ae_status ae_dist_nodesum_create(size_t n, size_t tail, ae_dist_nodesum **out, float **buf, char *why,
                                 size_t why_cap, ae_error *err);
/* In-place sum of every rank's buffer (NULL: nothing). owned: each rank's
 * own buffer gets the sum of its own chunk only, and every buffer the sum of
 * the tail (the node-sharded optimizer step: a rank steps its chunk); the
 * caller then calls ae_dist_nodesum_agree, the barrier after which the tail
 * may be read. */
ae_status ae_dist_nodesum_run(ae_dist_nodesum *s, int owned, ae_error *err);
/* This rank's chunk [*lo, *hi). */
void ae_dist_nodesum_chunk(const ae_dist_nodesum *s, size_t *lo, size_t *hi);
/* Over the node's ranks: *flag = the maximum of every rank's *flag, and a
 * barrier (stores before it on any rank are seen by loads after it). */
ae_status ae_dist_nodesum_agree(ae_dist_nodesum *s, int *flag, ae_error *err);
/* After an owned sum and the agreement: copy every other rank's chunk into
 * this rank's buffer, which then holds the whole sum (an error's report). */
void ae_dist_nodesum_gather(ae_dist_nodesum *s);
/* Ranks summing through one node's memory (0 for NULL). */
int ae_dist_nodesum_ranks(const ae_dist_nodesum *s);
void ae_dist_nodesum_free(ae_dist_nodesum *s);

/* Abort the whole job (MPI_Abort) with an exit code. */
void ae_dist_abort(int code) __attribute__((noreturn));

/* Start a watchdog thread: when this rank has been inside one collective
 * for more than timeout_s seconds (another rank failed alone or stalled),
 * it prints the collective and the step to stderr and ends the process
 * (exit code 9), which makes mpirun end the job. timeout_s <= 0: off. */
ae_status ae_dist_watchdog_start(double timeout_s, ae_error *err);
void ae_dist_watchdog_stop(void);
/* The training step named in watchdog messages. */
void ae_dist_set_step(int64_t step);

/* Wall-clock seconds (MPI_Wtime, or a monotonic clock before init). */
double ae_dist_time(void);

#endif
