/* NCCL communicator for the CUDA engine (docs/distributed.md, "NCCL"): one
 * rank per GPU, bootstrapped through the MPI job of src/dist (rank 0 makes
 * the ncclUniqueId, dist_bcast sends it to every rank). Buffers are device
 * pointers; calls are enqueued on the given CUDA stream (NULL = default).
 * Compiled only with -DOPRM_NCCL (the Makefile does so when the CUDA toolkit
 * and nccl.h are present); NOT USED YET and never run on this project's
 * machines, which have no GPU: the CUDA engine will call it. */
#ifndef OPRM_DIST_DIST_NCCL_H
#define OPRM_DIST_DIST_NCCL_H

#include <stddef.h>

#include "util/err.h"

typedef struct DistNccl DistNccl;

/* Selects GPU (local rank % device count) and joins the NCCL clique of all
 * dist_size() ranks. Collective over the MPI job. */
DistNccl *dist_nccl_new(OprmError *err);
void dist_nccl_free(DistNccl *c);

/* In-place sum of n floats over ranks (ring/tree all-reduce). */
int dist_nccl_allreduce_sum_f32(DistNccl *c, float *dev_buf, size_t n, void *cuda_stream, OprmError *err);
/* ZeRO-1: send holds dist_size() pieces of n floats; recv gets this rank's
 * summed piece. Then all-gather n floats per rank from mine into all. */
int dist_nccl_reduce_scatter_sum_f32(DistNccl *c, const float *send, float *recv, size_t n, void *cuda_stream,
                                     OprmError *err);
int dist_nccl_allgather_f32(DistNccl *c, const float *mine, float *all, size_t n, void *cuda_stream,
                            OprmError *err);
/* Waits for the enqueued collectives of the stream. */
int dist_nccl_sync(DistNccl *c, void *cuda_stream, OprmError *err);

#endif
