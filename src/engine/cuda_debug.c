#include "engine/cuda_debug.h"

#include <stdio.h>
#include <string.h>

int cuda_sync_mode_parse(const char *value, char *msg, size_t n) {
    if (!value || !*value || !strcmp(value, "0")) return 0;
    if (!strcmp(value, "1")) return 1;
    snprintf(msg, n, "OPRM_CUDA_SYNC must be 0 or 1, got '%.60s'", value);
    return -1;
}

void cuda_dbg_format(char *buf, size_t n, const char *what, const CudaDbgSite *s, const char *file, int line,
                     const char *error) {
    char lay[32] = "", shp[96] = "", at[96] = "";
    if (s->layer >= 0) snprintf(lay, sizeof lay, "layer %d, ", s->layer);
    if (s->T >= 0) snprintf(shp, sizeof shp, "T=%d, ", s->T);
    size_t k = strlen(shp);
    snprintf(shp + k, sizeof shp - k, "D=%d, H=%d, KV=%d, hd=%d", s->D, s->H, s->KV, s->hd);
    if (file) {
        const char *b = strrchr(file, '/');
        snprintf(at, sizeof at, "; %s:%d", b ? b + 1 : file, line);
    }
    snprintf(buf, n, "%s (%s%s%s): %s", what, lay, shp, at, error);
}

CudaGrid2 cuda_naive_gemm_grid(int M, int N, int block) {
    CudaGrid2 g = {(N + block - 1) / block, M < 65535 ? M : 65535};
    if (g.x < 1) g.x = 1;
    if (g.y < 1) g.y = 1;
    return g;
}
