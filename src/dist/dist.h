/* Data-parallel communication: the only place in oprm that knows about MPI.
 * Built with -DOPRM_MPI (the Makefile does so when mpicc exists) it talks to
 * Open MPI; otherwise, and whenever the process was not started by a launcher
 * (mpirun, srun), it is one process of one: rank 0 of size 1, every
 * collective a copy or a no-op. The rest of oprm calls these functions
 * unconditionally and has no #ifdef. Design and costs: docs/distributed.md.
 *
 * All collectives must be called by every rank in the same order (MPI's
 * rule). Only the main thread calls them (MPI_THREAD_FUNNELED). */
#ifndef OPRM_DIST_DIST_H
#define OPRM_DIST_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Joins the job when a launcher started this process (Open MPI's
 * OMPI_COMM_WORLD_SIZE, PMIx or SLURM variables); otherwise stays single and
 * never loads the network stack. Call once, early, from main. */
void dist_init(int *argc, char ***argv);
/* Leaves the job (MPI_Finalize). Call once after the command returned with
 * its exit code: a failure the other ranks did not agree on (they may be
 * waiting for this rank in a collective) aborts the whole job instead. */
void dist_finalize(int exit_code);

int dist_rank(void);
int dist_size(void);
/* "mpi" when more than one rank runs, else "single". */
const char *dist_backend(void);

/* Element-wise sum over ranks, in place, the same result on every rank.
 * Buffers of any length (split into INT_MAX-sized MPI calls). */
void dist_allreduce_sum_f32(float *buf, size_t n);
void dist_allreduce_sum_f64(double *buf, size_t n);
/* Maximum over ranks, in place. */
void dist_allreduce_max_i64(int64_t *buf, size_t n);

/* Reduce-scatter of float sums: send holds the pieces for rank 0, 1, ... back
 * to back (counts[r] floats each); recv (counts[rank] floats) gets the sum of
 * every rank's piece for this rank. */
void dist_reduce_scatter_sum_f32(const float *send, float *recv, const size_t *counts);
/* All-gather: every rank contributes counts[rank] floats from mine; all gets
 * every rank's piece back to back. */
void dist_allgather_f32(const float *mine, float *all, const size_t *counts);

/* Waits until every rank reaches it; returns the seconds waited (how far
 * this rank was ahead of the slowest). */
double dist_barrier(void);

/* Copies root's bytes to every rank. */
void dist_bcast(void *buf, size_t bytes, int root);

/* Rank 0 receives every rank's bytes (rank order, back to back) in a fresh
 * buffer (*out, *out_len; NULL on other ranks); each rank sends len bytes. */
void dist_gather_bytes(const void *buf, size_t len, char **out, size_t *out_len);

/* Point of agreement: every rank passes its status (0 or -1 with err set);
 * returns -1 on every rank if any failed, with err holding the message of
 * the lowest failing rank prefixed "rank R: " (when more than one rank
 * runs), so that a failure on one rank stops all of them with its message. */
int dist_agree(int rc, OprmError *err);

/* A stop decision: the maximum of v over ranks. Non-zero means every rank
 * stops here (e.g. a signal number), which makes a non-zero exit agreed. */
int64_t dist_agree_stop(int64_t v);

/* Stops the whole job now: prints msg (with the rank) and calls MPI_Abort
 * (exit(code) when single). For failures the other ranks cannot learn of at
 * a point of agreement. */
void dist_abort(int code, const char *msg) __attribute__((noreturn));

/* Seconds spent inside collectives since the start (communication time). */
double dist_comm_seconds(void);

#endif
