#include "dist/dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef OPRM_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static double g_comm_s = 0;

#ifdef OPRM_MPI
static int g_mpi = 0;            /* MPI_Init was called */
static int g_agreed_failure = 0; /* a dist_agree returned -1: every rank knows */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

/* A process started by hand never calls MPI_Init: Open MPI's singleton mode
 * would spawn a runtime daemon and probe the network for every `oprm score`. */
static int launched_by_launcher(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

void dist_init(int *argc, char ***argv) {
#ifdef OPRM_MPI
    if (g_mpi || !launched_by_launcher()) return;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "oprm: MPI_Init failed\n");
        exit(1);
    }
    g_mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
#else
    (void)argc;
    (void)argv;
    if (launched_by_launcher() && getenv("OMPI_COMM_WORLD_SIZE") && atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1 &&
        (!getenv("OMPI_COMM_WORLD_RANK") || atoi(getenv("OMPI_COMM_WORLD_RANK")) == 0))
        fprintf(stderr, "oprm: started by mpirun, but this oprm was built without MPI (no mpicc at build "
                        "time): every rank runs the whole job alone\n");
#endif
}

void dist_finalize(int exit_code) {
#ifdef OPRM_MPI
    if (g_mpi && g_size > 1 && exit_code != 0 && !g_agreed_failure) {
        char msg[128];
        snprintf(msg, sizeof msg, "exited with status %d on its own (the other ranks may be waiting for it)",
                 exit_code);
        dist_abort(exit_code, msg);
    }
    if (g_mpi) MPI_Finalize();
    g_mpi = 0;
#else
    (void)exit_code;
#endif
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
const char *dist_backend(void) { return g_size > 1 ? "mpi" : "single"; }
double dist_comm_seconds(void) { return g_comm_s; }

/* MPI counts are int: large buffers go in pieces of at most this many. */
#define DIST_PIECE ((size_t)1 << 28)

void dist_allreduce_sum_f32(float *buf, size_t n) {
#ifdef OPRM_MPI
    if (g_size < 2) return;
    double t0 = now_s();
    for (size_t o = 0; o < n; o += DIST_PIECE) {
        size_t len = n - o < DIST_PIECE ? n - o : DIST_PIECE;
        MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    g_comm_s += now_s() - t0;
#else
    (void)buf;
    (void)n;
#endif
}

void dist_allreduce_sum_f64(double *buf, size_t n) {
#ifdef OPRM_MPI
    if (g_size < 2) return;
    double t0 = now_s();
    for (size_t o = 0; o < n; o += DIST_PIECE) {
        size_t len = n - o < DIST_PIECE ? n - o : DIST_PIECE;
        MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)len, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
    g_comm_s += now_s() - t0;
#else
    (void)buf;
    (void)n;
#endif
}

void dist_allreduce_max_i64(int64_t *buf, size_t n) {
#ifdef OPRM_MPI
    if (g_size < 2) return;
    double t0 = now_s();
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    g_comm_s += now_s() - t0;
#else
    (void)buf;
    (void)n;
#endif
}

#ifdef OPRM_MPI
static void int_counts(const size_t *counts, int *ic, int *displs) {
    size_t off = 0;
    for (int r = 0; r < g_size; r++) {
        if (counts[r] > INT_MAX || off > INT_MAX) dist_abort(1, "a communication bucket exceeds INT_MAX elements");
        ic[r] = (int)counts[r];
        displs[r] = (int)off;
        off += counts[r];
    }
}
#endif

void dist_reduce_scatter_sum_f32(const float *send, float *recv, const size_t *counts) {
#ifdef OPRM_MPI
    if (g_size > 1) {
        double t0 = now_s();
        int *ic = xmalloc((size_t)g_size * sizeof *ic), *displs = xmalloc((size_t)g_size * sizeof *displs);
        int_counts(counts, ic, displs);
        MPI_Reduce_scatter(send, recv, ic, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        free(ic);
        free(displs);
        g_comm_s += now_s() - t0;
        return;
    }
#endif
    if (recv != send) memmove(recv, send, counts[0] * sizeof *recv);
}

void dist_allgather_f32(const float *mine, float *all, const size_t *counts) {
#ifdef OPRM_MPI
    if (g_size > 1) {
        double t0 = now_s();
        int *ic = xmalloc((size_t)g_size * sizeof *ic), *displs = xmalloc((size_t)g_size * sizeof *displs);
        int_counts(counts, ic, displs);
        MPI_Allgatherv(mine, ic[g_rank], MPI_FLOAT, all, ic, displs, MPI_FLOAT, MPI_COMM_WORLD);
        free(ic);
        free(displs);
        g_comm_s += now_s() - t0;
        return;
    }
#endif
    if (all != mine) memmove(all, mine, counts[0] * sizeof *all);
}

double dist_barrier(void) {
#ifdef OPRM_MPI
    if (g_size < 2) return 0;
    double t0 = now_s();
    MPI_Barrier(MPI_COMM_WORLD);
    return now_s() - t0;
#else
    return 0;
#endif
}

void dist_bcast(void *buf, size_t bytes, int root) {
#ifdef OPRM_MPI
    if (g_size < 2) return;
    double t0 = now_s();
    for (size_t o = 0; o < bytes; o += DIST_PIECE) {
        size_t len = bytes - o < DIST_PIECE ? bytes - o : DIST_PIECE;
        MPI_Bcast((char *)buf + o, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
    }
    g_comm_s += now_s() - t0;
#else
    (void)buf;
    (void)bytes;
    (void)root;
#endif
}

void dist_gather_bytes(const void *buf, size_t len, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
#ifdef OPRM_MPI
    if (g_size > 1) {
        double t0 = now_s();
        if (len > INT_MAX) dist_abort(1, "a gathered output exceeds 2 GiB on one rank");
        int mine = (int)len;
        int *lens = g_rank == 0 ? xmalloc((size_t)g_size * sizeof *lens) : NULL;
        int *displs = g_rank == 0 ? xmalloc((size_t)g_size * sizeof *displs) : NULL;
        MPI_Gather(&mine, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
        size_t total = 0;
        if (g_rank == 0) {
            for (int r = 0; r < g_size; r++) {
                if (total > INT_MAX) dist_abort(1, "a gathered output exceeds 2 GiB");
                displs[r] = (int)total;
                total += (size_t)lens[r];
            }
            *out = xmalloc(total + 1);
            *out_len = total;
        }
        MPI_Gatherv(buf, mine, MPI_BYTE, *out, lens, displs, MPI_BYTE, 0, MPI_COMM_WORLD);
        free(lens);
        free(displs);
        g_comm_s += now_s() - t0;
        return;
    }
#endif
    *out = xmalloc(len + 1);
    if (len) memcpy(*out, buf, len);
    *out_len = len;
}

int dist_agree(int rc, OprmError *err) {
#ifdef OPRM_MPI
    if (g_size > 1) {
        double t0 = now_s();
        /* The lowest failing rank: min over ranks of (failed ? rank : size). */
        int mine = rc ? g_rank : g_size, first = g_size;
        MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (first == g_size) {
            g_comm_s += now_s() - t0;
            return 0;
        }
        OprmError e;
        memset(&e, 0, sizeof e);
        if (g_rank == first && err) snprintf(e.msg, sizeof e.msg, "rank %d: %.1000s", first, err->msg);
        if (g_rank == first && !err) snprintf(e.msg, sizeof e.msg, "rank %d failed", first);
        MPI_Bcast(e.msg, (int)sizeof e.msg, MPI_CHAR, first, MPI_COMM_WORLD);
        e.msg[sizeof e.msg - 1] = 0;
        if (err) *err = e;
        g_comm_s += now_s() - t0;
        g_agreed_failure = 1;
        return -1;
    }
#endif
    (void)err;
    return rc ? -1 : 0;
}

int64_t dist_agree_stop(int64_t v) {
#ifdef OPRM_MPI
    if (g_size > 1) {
        dist_allreduce_max_i64(&v, 1);
        if (v) g_agreed_failure = 1;
    }
#endif
    return v;
}

void dist_abort(int code, const char *msg) {
    if (g_size > 1)
        fprintf(stderr, "oprm: rank %d of %d: %s; stopping every rank\n", g_rank, g_size, msg);
    else
        fprintf(stderr, "oprm: %s\n", msg);
    fflush(stderr);
#ifdef OPRM_MPI
    if (g_mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}
