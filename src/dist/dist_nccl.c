/* NCCL variant of the data-parallel collectives (see dist_nccl.h). Without
 * -DOPRM_NCCL this file compiles to nothing, so builds without CUDA are
 * unaffected. */
#ifdef OPRM_NCCL
#include "dist/dist_nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

struct DistNccl {
    ncclComm_t comm;
    int device;
};

static int nccl_fail(OprmError *err, const char *what, ncclResult_t r) {
    return oprm_fail(err, "NCCL %s failed: %s", what, ncclGetErrorString(r));
}

/* The rank's GPU: the launcher's local rank (one rank per GPU on a node). */
static int local_rank(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return atoi(getenv(vars[i]));
    return dist_rank();
}

DistNccl *dist_nccl_new(OprmError *err) {
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    /* Every rank must reach the broadcast below, so the CUDA check is agreed. */
    int rc = 0;
    if (ce != cudaSuccess || ndev < 1)
        rc = oprm_fail(err, "NCCL needs a CUDA device: %s", ce != cudaSuccess ? cudaGetErrorString(ce) : "none found");
    if (dist_agree(rc, err)) return NULL;
    DistNccl *c = xcalloc(1, sizeof *c);
    c->device = local_rank() % ndev;
    ce = cudaSetDevice(c->device);
    if (ce != cudaSuccess) rc = oprm_fail(err, "cudaSetDevice(%d): %s", c->device, cudaGetErrorString(ce));
    /* The llm.c bootstrap: rank 0 makes the id, MPI carries it to the rest. */
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rc == 0 && dist_rank() == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) rc = nccl_fail(err, "ncclGetUniqueId", r);
    }
    if (dist_agree(rc, err)) {
        free(c);
        return NULL;
    }
    dist_bcast(&id, sizeof id, 0);
    ncclResult_t r = ncclCommInitRank(&c->comm, dist_size(), id, dist_rank());
    if (r != ncclSuccess) rc = nccl_fail(err, "ncclCommInitRank", r);
    if (dist_agree(rc, err)) {
        if (rc == 0) ncclCommDestroy(c->comm);
        free(c);
        return NULL;
    }
    return c;
}

void dist_nccl_free(DistNccl *c) {
    if (!c) return;
    ncclCommDestroy(c->comm);
    free(c);
}

int dist_nccl_allreduce_sum_f32(DistNccl *c, float *dev_buf, size_t n, void *stream, OprmError *err) {
    ncclResult_t r = ncclAllReduce(dev_buf, dev_buf, n, ncclFloat32, ncclSum, c->comm, (cudaStream_t)stream);
    return r == ncclSuccess ? 0 : nccl_fail(err, "ncclAllReduce", r);
}

int dist_nccl_reduce_scatter_sum_f32(DistNccl *c, const float *send, float *recv, size_t n, void *stream,
                                     OprmError *err) {
    ncclResult_t r = ncclReduceScatter(send, recv, n, ncclFloat32, ncclSum, c->comm, (cudaStream_t)stream);
    return r == ncclSuccess ? 0 : nccl_fail(err, "ncclReduceScatter", r);
}

int dist_nccl_allgather_f32(DistNccl *c, const float *mine, float *all, size_t n, void *stream, OprmError *err) {
    ncclResult_t r = ncclAllGather(mine, all, n, ncclFloat32, c->comm, (cudaStream_t)stream);
    return r == ncclSuccess ? 0 : nccl_fail(err, "ncclAllGather", r);
}

int dist_nccl_sync(DistNccl *c, void *stream, OprmError *err) {
    (void)c;
    cudaError_t ce = cudaStreamSynchronize((cudaStream_t)stream);
    return ce == cudaSuccess ? 0 : oprm_fail(err, "cudaStreamSynchronize: %s", cudaGetErrorString(ce));
}
#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int oprm_dist_nccl_not_built;
#endif
