/* The CUDA engine's debug mode, host side (plain C, tested without a GPU):
 * OPRM_CUDA_SYNC=1 makes the engine synchronize after every kernel launch and
 * cuBLASLt call and name the failing one, with the layer and the shapes,
 * instead of only the phase ("the forward pass failed"). Slow; for the device
 * check's correctness runs and for chasing a crash. */
#ifndef OPRM_ENGINE_CUDA_DEBUG_H
#define OPRM_ENGINE_CUDA_DEBUG_H

#include <stddef.h>

/* The value of OPRM_CUDA_SYNC: NULL, "" or "0" -> 0, "1" -> 1; anything else
 * is refused (-1, msg says what is accepted). */
int cuda_sync_mode_parse(const char *value, char *msg, size_t n);

/* Where a launch happened and on what. layer < 0: not inside a layer; T < 0:
 * no batch staged yet. */
typedef struct {
    int layer, T, D, H, KV, hd;
} CudaDbgSite;

/* "WHAT (layer L, T=.., D=.., H=.., KV=.., hd=..; FILE:LINE): ERROR".
 * file may be NULL (then no FILE:LINE); only its last path component is printed. */
void cuda_dbg_format(char *buf, size_t n, const char *what, const CudaDbgSite *s, const char *file, int line,
                     const char *error);

/* The naive GEMM fallback's grid (src/cuda/gemm.cu): x covers N columns in
 * blocks of `block` threads, y is min(M, 65535) (CUDA's limit on grid y; the
 * kernel strides rows by it), at least 1 each. */
typedef struct {
    int x, y;
} CudaGrid2;
CudaGrid2 cuda_naive_gemm_grid(int M, int N, int block);

#endif
