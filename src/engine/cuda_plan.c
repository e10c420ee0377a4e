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

void cuda_gemm_map(int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc, CudaLtCall *o) {
    o->op1 = tb;
    o->op2 = ta;
    o->m = N;
    o->n = M;
    o->k = K;
    o->rows1 = tb ? K : N; /* B^T is [N, K]: stored [K, N] row-major = [N, K] column-major, or transposed */
    o->cols1 = tb ? N : K;
    o->ld1 = ldb;
    o->rows2 = ta ? M : K;
    o->cols2 = ta ? K : M;
    o->ld2 = lda;
    o->rowsc = N;
    o->colsc = M;
    o->ldc = ldc;
}

/* ---- Training plan ---- */

static const CudaWeightKind LAYER_KINDS[] = {CW_QKV, CW_QKV_BIAS, CW_O, CW_Q_NORM, CW_K_NORM,
                                             CW_GATE_UP, CW_DOWN, CW_NORM1, CW_NORM2};
#define N_LAYER_KINDS (sizeof LAYER_KINDS / sizeof LAYER_KINDS[0])

static size_t layer_numel(const ModelConfig *c) {
    size_t n = 0;
    for (size_t i = 0; i < N_LAYER_KINDS; i++) n += cuda_weight_numel(c, LAYER_KINDS[i]);
    return n;
}

size_t cuda_train_region(const ModelConfig *c, int layer, CudaWeightKind k) {
    if (layer >= 0) {
        size_t off = (size_t)layer * layer_numel(c);
        for (size_t i = 0; i < N_LAYER_KINDS && LAYER_KINDS[i] != k; i++) off += cuda_weight_numel(c, LAYER_KINDS[i]);
        return off;
    }
    size_t off = (size_t)c->n_layers * layer_numel(c);
    if (k == CW_EMBED) return off;
    off += cuda_weight_numel(c, CW_EMBED);
    if (k == CW_LM_HEAD) return off;
    return off + cuda_weight_numel(c, CW_LM_HEAD);
}

size_t cuda_train_numel(const ModelConfig *c) {
    return cuda_train_region(c, -1, CW_FINAL_NORM) + cuda_weight_numel(c, CW_FINAL_NORM);
}

#define AL(x) ((((size_t)(x)) + 255) & ~(size_t)255)

size_t cuda_train_layer_bytes(const ModelConfig *c, int T_) {
    size_t T = (size_t)T_, D = c->hidden, F = c->ffn, H = c->n_heads, Q = H * c->head_dim, W = cuda_qkv_width(c);
    return AL(2 * T * D) + AL(4 * T) + AL(2 * T * W) + AL(2 * T * W) + AL(2 * T * Q) + AL(4 * T * H) +
           AL(4 * T * D) + AL(2 * T * D) + AL(4 * T) + AL(4 * T * F) + AL(2 * T * F);
}

size_t cuda_train_scratch_bytes(const ModelConfig *c, int T_, int lora_rank) {
    size_t T = (size_t)T_, D = c->hidden, F = c->ffn, H = c->n_heads, hd = c->head_dim, Q = H * hd,
           W = cuda_qkv_width(c), KV = c->n_kv_heads;
    size_t b = AL(4 * T * D) + AL(2 * T * D) + AL(2 * T * D) + AL(4 * T * W) + AL(2 * T * W) + AL(2 * T * Q) +
               AL(4 * T * H) + AL(4 * T * F) + AL(2 * T * F);
    if (c->qk_norm) b += AL(4 * T * (H + KV) * hd);
    if (lora_rank > 0) b += 2 * AL(2 * T * (size_t)lora_rank);
    b += AL(4 * T * D) + AL(4 * T * 16);                          /* dh_last, dlogits (nseq <= T) */
    b += AL(sizeof(CudaAttnTile) * (size_t)cuda_attn_tiles_max(T_, T_)); /* the backward's 16-query tiles */
    b += AL(sizeof(CudaAttnKTile) * (size_t)cuda_attn_tiles_max(T_, T_));
    b += AL(4 * T * D) + 256; /* pre_last (nseq <= T) and the norm's double */
    return b;
}

/* Adapter elements: per layer and target, A [r, in] + B [out, r]. */
static size_t lora_numel(const ModelConfig *c, int r, unsigned targets) {
    size_t D = c->hidden, F = c->ffn, Q = (size_t)c->n_heads * c->head_dim, K = (size_t)c->n_kv_heads * c->head_dim;
    size_t in[7] = {D, D, D, Q, D, D, F}, out[7] = {Q, K, K, D, F, F, D}, n = 0;
    for (int s = 0; s < 7; s++)
        if (targets & (1u << s)) n += (size_t)r * (in[s] + out[s]);
    return n * (size_t)c->n_layers;
}

void cuda_train_plan(const ModelConfig *c, int max_tokens, const CudaTrainMode *m, CudaTrainPlan *p) {
    memset(p, 0, sizeof *p);
    cuda_mem_plan(c, max_tokens, &p->base);
    size_t n = m->lora_rank > 0 ? lora_numel(c, m->lora_rank, m->lora_targets) : cuda_train_numel(c);
    int ranks = m->zero_ranks > 1 ? m->zero_ranks : 1;
    p->trainable = n;
    p->master = AL(4 * n) + (m->lora_rank > 0 ? AL(2 * n) : 0); /* full FT: the BF16 copies are the weights */
    p->grads = AL(4 * n);
    p->optimizer = 2 * AL(4 * ((n + (size_t)ranks - 1) / (size_t)ranks));
    p->layer_set = cuda_train_layer_bytes(c, max_tokens);
    size_t xin = AL(4 * (size_t)max_tokens * c->hidden);
    p->saved = (size_t)c->n_layers * xin + (m->recompute ? 1 : (size_t)c->n_layers) * p->layer_set;
    p->scratch = cuda_train_scratch_bytes(c, max_tokens, m->lora_rank);
    p->total = p->base.total + p->master + p->grads + p->optimizer + p->saved + p->scratch;
}

#define GIB_ (1024.0 * 1024.0 * 1024.0)

void cuda_train_plan_describe(const CudaTrainPlan *p, const CudaTrainMode *m, int max_tokens, char *out, size_t n) {
    snprintf(out, n,
             "%s%s, %zu trainable parameters, --max_tokens_per_batch %d: weights %.2f GiB, master weights %.2f GiB, "
             "gradients %.2f GiB, AdamW moments %.2f GiB, activations kept for backward %.2f GiB%s, forward "
             "buffers %.2f GiB, backward scratch %.2f GiB, workspace %.2f GiB; total %.2f GiB",
             m->lora_rank > 0 ? "LoRA" : "full fine-tuning", m->recompute ? " with recomputation" : "", p->trainable,
             max_tokens, p->base.weights / GIB_, p->master / GIB_, p->grads / GIB_, p->optimizer / GIB_,
             p->saved / GIB_, m->recompute ? " (layer inputs + one layer)" : "",
             (p->base.activations + p->base.index) / GIB_, p->scratch / GIB_, p->base.workspace / GIB_,
             p->total / GIB_);
}

int cuda_train_plan_check(const ModelConfig *c, int max_tokens, const CudaTrainMode *m, size_t avail,
                          const char *device, char *msg, size_t n) {
    CudaTrainPlan p;
    cuda_train_plan(c, max_tokens, m, &p);
    if (p.total <= avail) return 0;
    char alt[1024] = "";
    size_t used = 0;
#define ALT(...)                                                                            \
    do {                                                                                    \
        if (used < sizeof alt) used += (size_t)snprintf(alt + used, sizeof alt - used, __VA_ARGS__); \
    } while (0)
    /* A smaller token budget: the largest multiple of 256 that fits. */
    int lo = 0;
    for (int t = max_tokens - 256; t >= 256; t -= 256) {
        CudaTrainPlan q;
        cuda_train_plan(c, t, m, &q);
        if (q.total <= avail) {
            lo = t;
            break;
        }
    }
    if (lo > 0) {
        CudaTrainPlan q;
        cuda_train_plan(c, lo, m, &q);
        ALT("; --max_tokens_per_batch %d (a smaller --per_device_train_batch_size or --max-len; %.2f GiB)", lo,
            q.total / GIB_);
    }
    if (!m->recompute) {
        CudaTrainMode r = *m;
        r.recompute = 1;
        CudaTrainPlan q;
        cuda_train_plan(c, max_tokens, &r, &q);
        if (q.total <= avail) ALT("; --gradient_checkpointing (%.2f GiB)", q.total / GIB_);
    }
    if (m->lora_rank == 0) {
        CudaTrainMode r = *m;
        r.lora_rank = 16;
        r.lora_targets = 127;
        r.zero_ranks = 0;
        CudaTrainPlan q;
        cuda_train_plan(c, max_tokens, &r, &q);
        if (q.total <= avail) ALT("; LoRA (--lora-rank 16 on all projections: %.2f GiB)", q.total / GIB_);
        /* ZeRO-1 shards the AdamW moments; with recomputation too where that alone is not enough. */
        for (int k = m->zero_ranks > 1 ? m->zero_ranks * 2 : 2; k <= 64; k *= 2) {
            r = *m;
            r.zero_ranks = k;
            cuda_train_plan(c, max_tokens, &r, &q);
            int with_rc = 0;
            if (q.total > avail && !m->recompute) {
                r.recompute = with_rc = 1;
                cuda_train_plan(c, max_tokens, &r, &q);
            }
            if (q.total <= avail) {
                ALT("; --zero with %d ranks%s (AdamW moments sharded over %d GPUs: %.2f GiB each)", k,
                    with_rc ? " and --gradient_checkpointing" : "", k, q.total / GIB_);
                break;
            }
        }
    }
#undef ALT
    snprintf(msg, n,
             "the training plan does not fit on %s: it needs %.2f GiB (%zu bytes) and %.2f GiB (%zu bytes) are "
             "available (%s%s, %zu trainable parameters: weights %.2f GiB, master + gradients + AdamW %.2f GiB, "
             "activations %.2f GiB for --max_tokens_per_batch %d, backward scratch %.2f GiB); %s%s",
             device, p.total / GIB_, p.total, avail / GIB_, avail, m->lora_rank > 0 ? "LoRA" : "full fine-tuning",
             m->recompute ? " with recomputation" : "", p.trainable, p.base.weights / GIB_,
             (p.master + p.grads + p.optimizer) / GIB_, (p.saved + p.base.activations) / GIB_, max_tokens,
             p.scratch / GIB_, alt[0] ? "what would fit: " : "none of a smaller --max_tokens_per_batch, "
                                                           "--gradient_checkpointing, LoRA or --zero fits on its own; "
                                                           "use a GPU with more memory",
             alt[0] ? alt + 2 : "");
    return -1;
}

static const char *LORA_MODULE[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                     "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

int cuda_lora_name(const char *name, int *layer, int *slot, int *is_b) {
    int l, n = 0;
    if (sscanf(name, "base_model.model.model.layers.%d.%n", &l, &n) != 1 || n == 0) return -1;
    for (int s = 0; s < 7; s++) {
        size_t k = strlen(LORA_MODULE[s]);
        if (strncmp(name + n, LORA_MODULE[s], k)) continue;
        const char *rest = name + n + k;
        if (!strcmp(rest, ".lora_A.weight") || !strcmp(rest, ".lora_B.weight")) {
            *layer = l;
            *slot = s;
            *is_b = rest[6] == 'B';
            return 0;
        }
    }
    return -1;
}

int cuda_train_mode_of(Model *model, int recompute, CudaTrainMode *md, char *msg, size_t n) {
    int np = 0, n_lora = 0, n_base_tr = 0, n_base = 0;
    ModelParam *ps = model_params(model, &np);
    memset(md, 0, sizeof *md);
    md->recompute = recompute != 0;
    for (int i = 0; i < np; i++) {
        int l, s, b;
        if (cuda_lora_name(ps[i].name, &l, &s, &b) == 0) {
            n_lora++;
            if (!ps[i].grad) {
                snprintf(msg, n, "CUDA training: adapter \"%s\" has no gradient", ps[i].name);
                return -1;
            }
            if (!b) md->lora_rank = (int)ps[i].shape[0];
            md->lora_targets |= 1u << s;
        } else {
            n_base++;
            n_base_tr += ps[i].grad != NULL;
        }
    }
    if (n_lora == 0 && n_base_tr == 0)
        snprintf(msg, n, "CUDA training: the model has no trainable tensor (loaded for inference only)");
    else if (n_lora > 0 && n_base_tr > 0)
        snprintf(msg, n, "CUDA training: LoRA adapters beside a trainable base are not supported (the CUDA engine "
                         "trains either every tensor or the adapters alone); use --device cpu");
    else if (n_lora == 0 && n_base_tr != n_base)
        snprintf(msg, n, "CUDA training: %d of %d base tensors are frozen; the CUDA engine trains all of them or LoRA "
                         "adapters (use --device cpu)", n_base - n_base_tr, n_base);
    else
        return 0;
    return -1;
}
