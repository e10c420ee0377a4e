#include "engine/cuda_plan.h"

#include <stdio.h>
#include <string.h>

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

int cuda_attn_ktiles(const int32_t *lens, int nseq, int kt, CudaAttnKTile *tiles) {
    int n = 0, row = 0;
    for (int s = 0; s < nseq; s++) {
        for (int k = 0; k < lens[s]; k += kt) tiles[n++] = (CudaAttnKTile){row, k, lens[s] - k < kt ? lens[s] - k : kt, lens[s]};
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

size_t cuda_weight_numel(const ModelConfig *c, CudaWeightKind k) {
    size_t D = c->hidden, F = c->ffn, V = c->vocab, hd = c->head_dim, Q = (size_t)c->n_heads * hd,
           W = cuda_qkv_width(c);
    switch (k) {
    case CW_EMBED: return V * D;
    case CW_LM_HEAD: return c->tie_embeddings ? 0 : V * D;
    case CW_FINAL_NORM: return D;
    case CW_QKV: return W * D;
    case CW_QKV_BIAS: return c->qkv_bias ? W : 0;
    case CW_O: return D * Q;
    case CW_Q_NORM:
    case CW_K_NORM: return c->qk_norm ? hd : 0;
    case CW_GATE_UP: return 2 * F * D;
    case CW_DOWN: return D * F;
    case CW_NORM1:
    case CW_NORM2: return D;
    default: return 0;
    }
}

int cuda_weight_count(const ModelConfig *c) {
    return c->n_layers * (9 + (c->qkv_bias ? 3 : 0) + (c->qk_norm ? 2 : 0)) + 2 + (c->tie_embeddings ? 0 : 1);
}

int cuda_weight_slot(const ModelConfig *c, const char *name, CudaWeightSlot *out) {
    size_t D = c->hidden, F = c->ffn, hd = c->head_dim, Q = (size_t)c->n_heads * hd, K = (size_t)c->n_kv_heads * hd;
    static const struct {
        const char *suffix;
        CudaWeightKind kind;
        int part; /* 0: start, 1: after q, 2: after q and k, 3: after gate */
        int bf16;
    } layer_tensors[] = {
        {"self_attn.q_proj.weight", CW_QKV, 0, 1},      {"self_attn.k_proj.weight", CW_QKV, 1, 1},
        {"self_attn.v_proj.weight", CW_QKV, 2, 1},      {"self_attn.q_proj.bias", CW_QKV_BIAS, 0, 0},
        {"self_attn.k_proj.bias", CW_QKV_BIAS, 1, 0},   {"self_attn.v_proj.bias", CW_QKV_BIAS, 2, 0},
        {"self_attn.o_proj.weight", CW_O, 0, 1},        {"self_attn.q_norm.weight", CW_Q_NORM, 0, 0},
        {"self_attn.k_norm.weight", CW_K_NORM, 0, 0},   {"mlp.gate_proj.weight", CW_GATE_UP, 0, 1},
        {"mlp.up_proj.weight", CW_GATE_UP, 3, 1},       {"mlp.down_proj.weight", CW_DOWN, 0, 1},
        {"input_layernorm.weight", CW_NORM1, 0, 0},     {"post_attention_layernorm.weight", CW_NORM2, 0, 0},
    };
    CudaWeightSlot s = {CW_EMBED, -1, 0, 1};
    int l, n = 0;
    if (!strcmp(name, "model.embed_tokens.weight")) s.kind = CW_EMBED;
    else if (!strcmp(name, "lm_head.weight") && !c->tie_embeddings) s.kind = CW_LM_HEAD;
    else if (!strcmp(name, "model.norm.weight")) s = (CudaWeightSlot){CW_FINAL_NORM, -1, 0, 0};
    else if (sscanf(name, "model.layers.%d.%n", &l, &n) == 1 && n > 0 && l >= 0 && l < c->n_layers) {
        size_t k;
        for (k = 0; k < sizeof layer_tensors / sizeof layer_tensors[0]; k++)
            if (!strcmp(name + n, layer_tensors[k].suffix)) break;
        if (k == sizeof layer_tensors / sizeof layer_tensors[0]) return -1;
        s.kind = layer_tensors[k].kind;
        s.layer = l;
        s.bf16 = layer_tensors[k].bf16;
        if (cuda_weight_numel(c, s.kind) == 0) return -1; /* e.g. a bias the config does not have */
        size_t row = layer_tensors[k].part == 1 ? Q : layer_tensors[k].part == 2 ? Q + K : layer_tensors[k].part == 3 ? F : 0;
        s.offset = s.bf16 ? row * D : row; /* matrices: rows of D; biases: elements */
    } else {
        return -1;
    }
    *out = s;
    return 0;
}
