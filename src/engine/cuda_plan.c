#include "engine/cuda_plan.h"

#include <stdio.h>

size_t cuda_qkv_width(const ModelConfig *c) {
    return (size_t)(c->n_heads + 2 * c->n_kv_heads) * (size_t)c->head_dim;
}

void cuda_mem_plan(const ModelConfig *c, int max_tokens, CudaMemPlan *p) {
    size_t D = (size_t)c->hidden, F = (size_t)c->ffn, V = (size_t)c->vocab, hd = (size_t)c->head_dim;
    size_t Q = (size_t)c->n_heads * hd, W = cuda_qkv_width(c), L = (size_t)c->n_layers, T = (size_t)max_tokens;
    size_t per_layer = W * D + D * Q + 2 * F * D + D * F;
    p->weights_bf16 = 2 * (L * per_layer + V * D * (c->tie_embeddings ? 1 : 2));
    size_t f32 = L * (2 * D + (c->qkv_bias ? W : 0) + (c->qk_norm ? 2 * hd : 0)) + D;
    p->weights_f32 = 4 * f32 + 8 * (hd / 2); /* + the rotary frequencies (double) */
    p->weights = p->weights_bf16 + p->weights_f32;
    /* x (fp32) + h, qkv, att, y, gu, a (BF16). */
    p->activations = T * (4 * D + 2 * (D + W + Q + D + 2 * F + F));
    /* ids, pos, last, tiles; h_last and logits per sequence (nseq <= T). */
    size_t tiles = (size_t)cuda_attn_tiles_max(max_tokens, max_tokens);
    p->index = 4 * (3 * T) + sizeof(CudaAttnTile) * tiles + 4 * T * D + 4 * T * 16;
    p->workspace = CUDA_GEMM_WORKSPACE;
    p->total = p->weights + p->activations + p->index + p->workspace;
}

int cuda_shape_check(const ModelConfig *c, char *msg, size_t n) {
    if (c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > CUDA_MAX_HEAD_DIM) {
        snprintf(msg, n, "head_dim %d is not supported by the CUDA engine (even, at most %d)", c->head_dim,
                 CUDA_MAX_HEAD_DIM);
        return -1;
    }
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads) {
        snprintf(msg, n, "num_attention_heads %d is not a multiple of num_key_value_heads %d", c->n_heads,
                 c->n_kv_heads);
        return -1;
    }
    return 0;
}

int cuda_attn_tiles_max(int total_tokens, int nseq) {
    return total_tokens / CUDA_ATTN_QT + nseq;
}

int cuda_attn_tiles(const int32_t *lens, int nseq, CudaAttnTile *tiles) {
    return cuda_attn_tiles_qt(lens, nseq, CUDA_ATTN_QT, tiles);
}

int cuda_attn_tiles_qt(const int32_t *lens, int nseq, int qt, CudaAttnTile *tiles) {
    int n = 0, row = 0;
    for (int s = 0; s < nseq; s++) {
        for (int q = 0; q < lens[s]; q += qt) {
            int k = lens[s] - q < qt ? lens[s] - q : qt;
            tiles[n++] = (CudaAttnTile){row, q, k};
        }
        row += lens[s];
    }
    return n;
}

int cuda_pack_index(const int32_t *lens, int nseq, int32_t *pos, int32_t *last) {
    int row = 0;
    for (int s = 0; s < nseq; s++) {
        for (int t = 0; t < lens[s]; t++) pos[row + t] = t;
        row += lens[s];
        last[s] = row - 1;
    }
    return row;
}
