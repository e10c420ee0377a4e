/* BF16 weights packed once for the kernel (scoring with BF16 compute).
 *
 * Every forward GEMM of a linear layer is x . W^T with W a frozen BF16 matrix;
 * bf16_gemm would repack W into its 32-column panels on every call. An
 * inference-only model packs each matrix once instead, IN PLACE (the packed
 * panels take exactly out x in values when out is a multiple of 32 and in is
 * even, which every real shape is), so scoring memory does not grow.
 * Whoever reads the stored tensors gets them back in their plain layout:
 * model_params() and model_save() unpack first (the next scoring forward
 * packs again). OPRM_BF16_PREPACK=0 turns it off (same results bit for bit:
 * the kernel sees the same packed panels either way). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/bf16_gemm.h"
#include "model/model_internal.h"

static int can_pack(const Model *m) {
    if (!m->bf16 || !m->inference_only || m->lora || bf16_gemm_backend() != BF16_OPRM) return 0;
    const char *env = getenv("OPRM_BF16_PREPACK");
    if (env && !strcmp(env, "0")) return 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int s = 0; s < N_SLOTS; s++) {
            int in, out;
            slot_dims(&m->cfg, s, &in, &out);
            if (!m->wb[l].m[s] || !bf16_pack_b_same_size(out, in)) return 0;
        }
    return 1;
}

/* pack = 1: plain -> packed; 0: back. One matrix per task, each its own copy buffer. */
static void convert_all(Model *m, int pack) {
    int n = m->cfg.n_layers * N_SLOTS;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < n; t++) {
        int l = t / N_SLOTS, s = t % N_SLOTS, in, out;
        slot_dims(&m->cfg, s, &in, &out);
        uint16_t *w = (uint16_t *)m->wb[l].m[s], *tmp = xmalloc((size_t)in * out * sizeof *tmp);
        /* B = W^T: B(k, j) = w[k + j * in] */
        if (pack) bf16_pack_b(tmp, out, in, (GemmOp){w, 1, 1, in});
        else bf16_unpack_b(tmp, 1, in, w, out, in);
        memcpy(w, tmp, (size_t)in * out * sizeof *tmp);
        free(tmp);
    }
}

int model_bf16_prepack(Model *m) {
    if (m->bf16_packed) return 1;
    if (!can_pack(m)) return 0;
    convert_all(m, 1);
    m->bf16_packed = 1;
    return 1;
}

void model_bf16_unpack(Model *m) {
    if (!m->bf16_packed) return;
    convert_all(m, 0);
    m->bf16_packed = 0;
}
