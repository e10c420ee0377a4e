// Training on the CUDA engine (issue 14), llm.c's arrangement:
//  - full fine-tuning: fp32 master weights, fp32 gradients and fp32 AdamW
//    moments on the device, each in one flat array in the "train layout" of
//    src/engine/cuda_plan.h (every Hugging Face tensor one contiguous range,
//    the fused q|k|v and gate|up gradients single matrices); the BF16 copies
//    the matmuls read are the engine's weight buffers, refreshed by the AdamW
//    kernel; fp32 norms and biases are read straight from the master array;
//  - LoRA: the base frozen in BF16 (the scoring engine's buffers), adapters
//    A, B with their master, gradient and moments in fp32 (flat, in
//    model_params order) plus BF16 copies for the rank-r products:
//    y += (alpha / r) (x A^T) B^T on the fused outputs' column blocks.
// Activations: every layer's input residual (fp32) and, per layer (or one
// set with recomputation, refilled in backward by running the layer again),
// the normed inputs, the raw and post-RoPE q|k|v, attention output and
// log-sum-exp, x_mid, gate|up and the SwiGLU output. The gradient enters at
// each sequence's last row through the final norm (and the head rows).
// Host code in plain C style; cuBLASLt for every matrix product.
#include "cuda/engine_cuda.cuh"

static int lora_name(const char *name, int *layer, int *slot, int *is_b) {
    return cuda_lora_name(name, layer, slot, is_b);
}

static int mode_of(const Model *m, const EngineOptions *opt, CudaTrainMode *md, OprmError *err) {
    char msg[512];
    if (cuda_train_mode_of((Model *)m, opt->recompute, md, msg, sizeof msg)) return oprm_fail(err, "%s", msg);
    return 0;
}

int cuda_train_fits(CudaEngine *c, const Model *m, const EngineOptions *opt, OprmError *err) {
    CudaTrainMode md;
    if (mode_of(m, opt, &md, err)) return -1;
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot query the GPU's memory");
    char dev[320], msg[2048];
    snprintf(dev, sizeof dev, "cuda:%d (%s, %.1f GiB)", c->dev, c->name, total_b / GIB);
    // The plan's pools plus a little alignment slack per buffer.
    size_t slack = (size_t)256 * (64 * (size_t)c->cfg.n_layers + 256);
    if (cuda_train_plan_check(&c->cfg, c->max_tokens, &md, free_b > slack ? free_b - slack : 0, dev, msg, sizeof msg))
        return oprm_fail(err, "%s", msg);
    CudaTrainPlan p;
    cuda_train_plan(&c->cfg, c->max_tokens, &md, &p);
    cuda_train_plan_describe(&p, &md, c->max_tokens, msg, sizeof msg);
    fprintf(stderr, "oprm: CUDA training plan on %s: %s (%.2f GiB free)\n", dev, msg, free_b / GIB);
    return 0;
}

static void *ttake(TrainState *t, size_t bytes) {
    size_t off = (t->pool_used + 255) & ~(size_t)255;
    t->pool_used = off + bytes;
    return t->pool_used <= t->pool_size ? t->pool + off : NULL;
}

static TrainActs *acts_of(CudaEngine *c, int l) {
    return c->tr.recompute ? &c->tr.acts[0] : &c->tr.acts[l];
}

// Gradient of a device buffer region (full fine-tuning), NULL when frozen.
static float *G(CudaEngine *c, int layer, CudaWeightKind k) {
    if (!c->tr.on || c->tr.lora || cuda_weight_numel(&c->cfg, k) == 0) return NULL;
    return c->tr.grad + cuda_train_region(&c->cfg, layer, k);
}
static float *M(CudaEngine *c, int layer, CudaWeightKind k) {
    if (cuda_weight_numel(&c->cfg, k) == 0) return NULL;
    return c->tr.master + cuda_train_region(&c->cfg, layer, k);
}

int cuda_train_init(CudaEngine *c, const Model *m, const EngineOptions *opt, OprmError *err) {
    TrainState *t = &c->tr;
    const ModelConfig *k = &c->cfg;
    CudaTrainMode md;
    if (mode_of(m, opt, &md, err)) return -1;
    t->on = 1;
    t->lora = md.lora_rank > 0;
    t->rank = md.lora_rank;
    t->recompute = md.recompute;
    t->lora_scale = t->lora ? (float)(model_lora_alpha(m) / md.lora_rank) : 0.0f;
    int np = 0;
    ModelParam *ps = model_params((Model *)m, &np);
    size_t n = 0;
    for (int i = 0; i < np; i++)
        if (ps[i].grad) n += ps[i].numel;
    if (!t->lora && n != cuda_train_numel(k))
        return oprm_fail(err, "internal: %zu trainable elements, the CUDA train layout has %zu", n,
                         cuda_train_numel(k));
    t->n = n;
    CudaTrainPlan plan;
    cuda_train_plan(k, c->max_tokens, &md, &plan);
    t->pool_size = plan.master + plan.grads + plan.optimizer + plan.saved + plan.scratch +
                   (size_t)256 * (64 * (size_t)k->n_layers + 256);
    cudaError_t e = cudaMalloc((void **)&t->pool, t->pool_size);
    if (e != cudaSuccess) {
        t->pool = NULL;
        return oprm_fail(err, "out of memory on cuda:%d (%s): cannot allocate %.2f GiB (%zu bytes) for training "
                              "(%s); lower --max_tokens_per_batch, use --gradient_checkpointing or LoRA",
                         c->dev, c->name, t->pool_size / GIB, t->pool_size, cudaGetErrorString(e));
    }
    size_t D = k->hidden, F = k->ffn, H = k->n_heads, hd = k->head_dim, Q = H * hd, W = cuda_qkv_width(k),
           KV = k->n_kv_heads, T = (size_t)c->max_tokens;
    t->master = (float *)ttake(t, 4 * n);
    t->grad = (float *)ttake(t, 4 * n);
    t->m = (float *)ttake(t, 4 * n);
    t->v = (float *)ttake(t, 4 * n);
    if (t->lora) t->lora_bf16 = (bf16 *)ttake(t, 2 * n);
    t->x_in = (float **)xcalloc((size_t)k->n_layers, sizeof *t->x_in);
    for (int l = 0; l < k->n_layers; l++) t->x_in[l] = (float *)ttake(t, 4 * T * D);
    int nsets = t->recompute ? 1 : k->n_layers;
    t->acts = (TrainActs *)xcalloc((size_t)nsets, sizeof *t->acts);
    for (int l = 0; l < nsets; l++) { // the order of cuda_train_layer_bytes
        TrainActs *a = &t->acts[l];
        a->h1 = (bf16 *)ttake(t, 2 * T * D);
        a->rstd1 = (float *)ttake(t, 4 * T);
        a->qkv_raw = (bf16 *)ttake(t, 2 * T * W);
        a->qkv = (bf16 *)ttake(t, 2 * T * W);
        a->att = (bf16 *)ttake(t, 2 * T * Q);
        a->lse = (float *)ttake(t, 4 * T * H);
        a->x_mid = (float *)ttake(t, 4 * T * D);
        a->h2 = (bf16 *)ttake(t, 2 * T * D);
        a->rstd2 = (float *)ttake(t, 4 * T);
        a->gu = (bf16 *)ttake(t, 4 * T * F);
        a->a = (bf16 *)ttake(t, 2 * T * F);
    }
    t->dx = (float *)ttake(t, 4 * T * D);
    t->dres = (bf16 *)ttake(t, 2 * T * D);
    t->dhb = (bf16 *)ttake(t, 2 * T * D);
    t->dqkv_f = (float *)ttake(t, 4 * T * W);
    t->dqkv = (bf16 *)ttake(t, 2 * T * W);
    t->datt = (bf16 *)ttake(t, 2 * T * Q);
    t->Di = (float *)ttake(t, 4 * T * H);
    t->dgu = (bf16 *)ttake(t, 4 * T * F);
    t->da = (bf16 *)ttake(t, 2 * T * F);
    if (k->qk_norm) t->prod = (float *)ttake(t, 4 * T * (H + KV) * hd);
    if (t->lora) {
        t->xa = (bf16 *)ttake(t, 2 * T * (size_t)t->rank);
        t->dxa = (bf16 *)ttake(t, 2 * T * (size_t)t->rank);
    }
    t->dh = (float *)ttake(t, 4 * T * D);
    t->dlogits = (float *)ttake(t, 4 * T * 16);
    int max_tiles = cuda_attn_tiles_max(c->max_tokens, c->max_tokens);
    t->tiles_bwd = (CudaAttnTile *)ttake(t, sizeof(CudaAttnTile) * (size_t)max_tiles);
    t->ktiles = (CudaAttnKTile *)ttake(t, sizeof(CudaAttnKTile) * (size_t)max_tiles);
    t->pre_last = (float *)ttake(t, 4 * T * D);
    t->sq = (double *)ttake(t, 8);
    if (!t->sq) return oprm_fail(err, "internal: the CUDA training plan is short by %zu bytes", t->pool_used - t->pool_size);
    t->h_tiles_bwd = (CudaAttnTile *)xmalloc(sizeof(CudaAttnTile) * (size_t)max_tiles);
    t->h_ktiles = (CudaAttnKTile *)xmalloc(sizeof(CudaAttnKTile) * (size_t)max_tiles);
    if (t->lora) t->lora_of = (DevLora *)xcalloc((size_t)k->n_layers * N_LORA_SLOTS, sizeof *t->lora_of);

    // The trainable tensors, in model_params order: master <- host fp32 (exact).
    t->tt = (TrainTensor *)xcalloc((size_t)np, sizeof *t->tt);
    size_t run = 0;
    for (int i = 0; i < np; i++) {
        const ModelParam *p = &ps[i];
        if (!p->grad) continue;
        TrainTensor *tt = &t->tt[t->n_tt++];
        snprintf(tt->name, sizeof tt->name, "%s", p->name);
        tt->numel = p->numel;
        if (t->lora) {
            int l, s, b;
            if (lora_name(p->name, &l, &s, &b) || l < 0 || l >= k->n_layers)
                return oprm_fail(err, "internal: \"%s\" is not an adapter of this model", p->name);
            DevLora *d = &t->lora_of[l * N_LORA_SLOTS + s];
            d->on = 1;
            if (b) {
                d->b_off = run;
                d->out = (int)p->shape[0];
            } else {
                d->a_off = run;
                d->in = (int)p->shape[1];
            }
            tt->off = run;
            tt->copy = t->lora_bf16 + run;
            run += p->numel;
        } else {
            CudaWeightSlot w;
            if (cuda_weight_slot(k, p->name, &w))
                return oprm_fail(err, "the CUDA engine has no place for tensor \"%s\"", p->name);
            tt->off = cuda_train_region(k, w.layer, w.kind) + w.offset;
            tt->copy = w.bf16 ? (bf16 *)slot_base(c, &w) + w.offset : NULL;
        }
        if (tt->off + tt->numel > n) return oprm_fail(err, "internal: \"%s\" falls outside the train layout", p->name);
        if (!p->data) return oprm_fail(err, "CUDA training: trainable \"%s\" has no fp32 data on the host", p->name);
        e = cudaMemcpy(t->master + tt->off, p->data, 4 * p->numel, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot copy the master weights to the GPU");
        if (t->lora) {
            launch_to_bf16(tt->copy, t->master + tt->off, tt->numel, c->st);
            KCHECK(c, "to_bf16 (the adapters' BF16 copies)");
        }
    }
    // Full fine-tuning: the forward reads the fp32 norms and biases from the master copy (AdamW updates it).
    if (!t->lora) {
        for (int l = 0; l < k->n_layers; l++) {
            DevLayer *L = &c->L[l];
            if (L->bqkv) L->bqkv = M(c, l, CW_QKV_BIAS);
            if (L->qn) L->qn = M(c, l, CW_Q_NORM);
            if (L->kn) L->kn = M(c, l, CW_K_NORM);
            L->n1 = M(c, l, CW_NORM1);
            L->n2 = M(c, l, CW_NORM2);
        }
        c->final_norm = M(c, -1, CW_FINAL_NORM);
    }
    e = cudaGetLastError(); // the BF16 copies' launches above
    if (e == cudaSuccess) e = cudaMemsetAsync(t->grad, 0, 4 * n, c->st);
    if (e == cudaSuccess) e = cudaMemsetAsync(t->m, 0, 4 * n, c->st);
    if (e == cudaSuccess) e = cudaMemsetAsync(t->v, 0, 4 * n, c->st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot set up the training state");
    attention_backward_setup(k->head_dim);
    if (c->attn_wmma) attention_bwd_wmma_setup(k->head_dim); // attention_wmma_supported == attention_bwd_wmma_supported
    return 0;
}

void cuda_train_free(CudaEngine *c) {
    TrainState *t = &c->tr;
    if (t->pool) cudaFree(t->pool);
    free(t->x_in);
    free(t->acts);
    free(t->tt);
    free(t->lora_of);
    free(t->h_tiles_bwd);
    free(t->h_ktiles);
    memset(t, 0, sizeof *t);
}

// Every cuBLASLt call of the training passes: the call's text names it in the debug mode's message.
#define LT(x)                                     \
    do {                                          \
        s = (x);                                  \
        LTCHECK(c, s, "cuBLASLt " #x);            \
        if (s != CUBLAS_STATUS_SUCCESS) return s; \
    } while (0)

// Y[:, cols] += scale (X A^T) B^T for adapter (l, slot) where there is one.
static cublasStatus_t lora_fwd(CudaEngine *c, int l, int slot, const bf16 *X, int T, bf16 *Y, int ldy) {
    TrainState *t = &c->tr;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (!t->lora) return s;
    const DevLora *d = &t->lora_of[l * N_LORA_SLOTS + slot];
    if (!d->on) return s;
    const bf16 *A = t->lora_bf16 + d->a_off, *B = t->lora_bf16 + d->b_off;
    int r = t->rank;
    LT(gemm_ex(&c->gemm, 0, 1, T, r, d->in, 1.0f, X, d->in, A, d->in, 0.0f, t->xa, 0, r, c->st));
    LT(gemm_ex(&c->gemm, 0, 1, T, d->out, r, t->lora_scale, t->xa, r, B, r, 1.0f, Y, 0, ldy, c->st));
    return s;
}

// Adapter backward from dY (ldy) with the layer input X: dB, dA and, where dX
// is not NULL, dX += scale (dY B) A. x A^T is recomputed (T x r, cheap).
static cublasStatus_t lora_bwd(CudaEngine *c, int l, int slot, const bf16 *dY, int ldy, const bf16 *X, int T,
                               bf16 *dX) {
    TrainState *t = &c->tr;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (!t->lora) return s;
    const DevLora *d = &t->lora_of[l * N_LORA_SLOTS + slot];
    if (!d->on) return s;
    const bf16 *A = t->lora_bf16 + d->a_off, *B = t->lora_bf16 + d->b_off;
    float *dA = t->grad + d->a_off, *dB = t->grad + d->b_off;
    int r = t->rank, in = d->in, out = d->out;
    LT(gemm_ex(&c->gemm, 0, 1, T, r, in, 1.0f, X, in, A, in, 0.0f, t->xa, 0, r, c->st));
    LT(gemm_ex(&c->gemm, 1, 0, out, r, T, t->lora_scale, dY, ldy, t->xa, r, 1.0f, dB, 1, r, c->st));
    LT(gemm_ex(&c->gemm, 0, 0, T, r, out, t->lora_scale, dY, ldy, B, r, 0.0f, t->dxa, 0, r, c->st));
    LT(gemm_ex(&c->gemm, 1, 0, r, in, T, 1.0f, t->dxa, r, X, in, 1.0f, dA, 1, in, c->st));
    if (dX) LT(gemm_ex(&c->gemm, 0, 0, T, in, r, 1.0f, t->dxa, r, A, in, 1.0f, dX, 0, in, c->st));
    return s;
}

// One layer forward from x_in[l] into a (down: also y = a Wdown^T, the input of the next residual add).
static cublasStatus_t layer_forward(CudaEngine *c, int l, TrainActs *a, int T, int down) {
    const ModelConfig *k = &c->cfg;
    const DevLayer *L = &c->L[l];
    TrainState *t = &c->tr;
    int D = k->hidden, H = k->n_heads, KV = k->n_kv_heads, hd = k->head_dim, F = k->ffn, W = (int)cuda_qkv_width(k),
        Q = H * hd, Kd = KV * hd;
    float eps = (float)k->rms_eps;
    cudaStream_t st = c->st;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    launch_rmsnorm_fwd(a->h1, a->rstd1, t->x_in[l], L->n1, eps, T, D, st);
    KCHECK(c, "rmsnorm_fwd (norm1)");
    LT(gemm_bf16(&c->gemm, a->qkv_raw, a->h1, L->wqkv, T, W, D, st));
    LT(lora_fwd(c, l, 0, a->h1, T, a->qkv_raw, W));
    LT(lora_fwd(c, l, 1, a->h1, T, a->qkv_raw + Q, W));
    LT(lora_fwd(c, l, 2, a->h1, T, a->qkv_raw + Q + Kd, W));
    launch_qkv_post(a->qkv, a->qkv_raw, L->bqkv, L->qn, L->kn, eps, c->pos, c->inv_freq, T, H, KV, hd, st);
    KCHECK(c, "qkv_post (training)");
    if (c->attn_wmma) launch_attention_wmma(a->att, a->lse, a->qkv, c->tiles, t->n_tiles, H, KV, hd, st);
    else launch_attention(a->att, a->lse, a->qkv, c->tiles, t->n_tiles, H, KV, hd, st);
    KCHECK(c, c->attn_wmma ? "attention_wmma (training, with lse)" : "attention (tiled; training, with lse)");
    LT(gemm_bf16(&c->gemm, c->y, a->att, L->wo, T, D, Q, st));
    LT(lora_fwd(c, l, 3, a->att, T, c->y, D));
    launch_add_residual(a->x_mid, t->x_in[l], c->y, (size_t)T * D, st);
    KCHECK(c, "add_residual (x_mid)");
    launch_rmsnorm_fwd(a->h2, a->rstd2, a->x_mid, L->n2, eps, T, D, st);
    KCHECK(c, "rmsnorm_fwd (norm2)");
    LT(gemm_bf16(&c->gemm, a->gu, a->h2, L->wgu, T, 2 * F, D, st));
    LT(lora_fwd(c, l, 4, a->h2, T, a->gu, 2 * F));
    LT(lora_fwd(c, l, 5, a->h2, T, a->gu + F, 2 * F));
    launch_swiglu(a->a, a->gu, T, F, st);
    KCHECK(c, "swiglu (training)");
    if (down) {
        LT(gemm_bf16(&c->gemm, c->y, a->a, L->wdown, T, D, F, st));
        LT(lora_fwd(c, l, 6, a->a, T, c->y, D));
    }
    return s;
}

static int train_forward(void *impl, const SeqBatch *b, float *h_last, OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    TrainState *t = &c->tr;
    const ModelConfig *k = &c->cfg;
    int D = k->hidden, nseq = b->nseq;
    float eps = (float)k->rms_eps;
    t->forwarded = 0;
    int T = cuda_stage_batch(c, b, err);
    if (T < 0) return -1;
    cudaStream_t st = c->st;
    t->n_tiles_bwd = cuda_attn_tiles_qt(b->lens, nseq, CUDA_ATTN_QT, t->h_tiles_bwd);
    t->n_ktiles = cuda_attn_ktiles(b->lens, nseq, c->attn_wmma ? CUDA_ATTN_KT_BWD_WMMA : CUDA_ATTN_KT_BWD, t->h_ktiles);
    cudaError_t e = cudaMemcpyAsync(t->tiles_bwd, t->h_tiles_bwd, sizeof(CudaAttnTile) * (size_t)t->n_tiles_bwd,
                                    cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(t->ktiles, t->h_ktiles, sizeof(CudaAttnKTile) * (size_t)t->n_ktiles,
                            cudaMemcpyHostToDevice, st);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot copy the batch to the GPU");
    t->T = T;
    launch_embed(t->x_in[0], c->embed, c->ids, T, D, st);
    KCHECK(c, "embed (training)");
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    for (int l = 0; l < k->n_layers && s == CUBLAS_STATUS_SUCCESS; l++) {
        c->dbg_layer = l;
        if (l) {
            launch_add_residual(t->x_in[l], acts_of(c, l - 1)->x_mid, c->y, (size_t)T * D, st);
            KCHECK(c, "add_residual (layer input)");
        }
        s = layer_forward(c, l, acts_of(c, l), T, 1);
    }
    c->dbg_layer = -1;
    if (s != CUBLAS_STATUS_SUCCESS) return fail_lt(err, c, s, "a cuBLASLt matrix product of the training forward failed");
    launch_final_norm_last(acts_of(c, k->n_layers - 1)->x_mid, c->y, c->last, c->final_norm, eps, c->h_last,
                           t->pre_last, nseq, D, st);
    KCHECK(c, "final_norm_last (training)");
    e = cudaGetLastError();
    if (e == cudaSuccess && h_last)
        e = cudaMemcpyAsync(h_last, c->h_last, 4 * (size_t)nseq * D, cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "the training forward pass failed");
    c->nseq = nseq;
    t->forwarded = 1;
    return 0;
}

// Backward of layer l; t->dx holds dL/d(output of layer l) and leaves with
// dL/d(input of layer l) (unless nothing below needs it).
static cublasStatus_t layer_backward(CudaEngine *c, int l, int T) {
    const ModelConfig *k = &c->cfg;
    const DevLayer *L = &c->L[l];
    TrainState *t = &c->tr;
    int D = k->hidden, H = k->n_heads, KV = k->n_kv_heads, hd = k->head_dim, F = k->ffn, W = (int)cuda_qkv_width(k),
        Q = H * hd, Kd = KV * hd;
    float eps = (float)k->rms_eps;
    cudaStream_t st = c->st;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    TrainActs *a = acts_of(c, l);
    if (t->recompute && l != k->n_layers - 1) LT(layer_forward(c, l, a, T, 0)); // the last layer's set is still there
    // MLP: x_out = x_mid + down(swiglu(gate|up(h2)))
    launch_to_bf16(t->dres, t->dx, (size_t)T * D, st);
    KCHECK(c, "to_bf16 (dL/dout of the MLP)");
    LT(gemm_ex(&c->gemm, 0, 0, T, F, D, 1.0f, t->dres, D, L->wdown, F, 0.0f, t->da, 0, F, st));
    if (G(c, l, CW_DOWN)) LT(gemm_ex(&c->gemm, 1, 0, D, F, T, 1.0f, t->dres, D, a->a, F, 1.0f, G(c, l, CW_DOWN), 1, F, st));
    LT(lora_bwd(c, l, 6, t->dres, D, a->a, T, t->da));
    launch_swiglu_backward(t->dgu, t->da, a->gu, T, F, st);
    KCHECK(c, "swiglu_backward");
    LT(gemm_ex(&c->gemm, 0, 0, T, D, 2 * F, 1.0f, t->dgu, 2 * F, L->wgu, D, 0.0f, t->dhb, 0, D, st));
    if (G(c, l, CW_GATE_UP))
        LT(gemm_ex(&c->gemm, 1, 0, 2 * F, D, T, 1.0f, t->dgu, 2 * F, a->h2, D, 1.0f, G(c, l, CW_GATE_UP), 1, D, st));
    LT(lora_bwd(c, l, 4, t->dgu, 2 * F, a->h2, T, t->dhb));
    LT(lora_bwd(c, l, 5, t->dgu + F, 2 * F, a->h2, T, t->dhb));
    launch_rmsnorm_backward(t->dx, G(c, l, CW_NORM2), t->dhb, a->x_mid, L->n2, a->rstd2, T, D, st); // dL/dx_mid
    KCHECK(c, "rmsnorm_backward (norm2)");
    // Attention: x_mid = x_in + o(att)
    launch_to_bf16(t->dres, t->dx, (size_t)T * D, st);
    KCHECK(c, "to_bf16 (dL/dx_mid)");
    LT(gemm_ex(&c->gemm, 0, 0, T, Q, D, 1.0f, t->dres, D, L->wo, Q, 0.0f, t->datt, 0, Q, st));
    if (G(c, l, CW_O)) LT(gemm_ex(&c->gemm, 1, 0, D, Q, T, 1.0f, t->dres, D, a->att, Q, 1.0f, G(c, l, CW_O), 1, Q, st));
    LT(lora_bwd(c, l, 3, t->dres, D, a->att, T, t->datt));
    launch_attention_rowdot(t->Di, t->datt, a->att, T, H, hd, st);
    KCHECK(c, "attention_rowdot");
    if (c->attn_wmma) { // tensor cores, as the forward (OPRM_CUDA_ATTENTION picks both)
        launch_attention_backward_dq_wmma(t->dqkv_f, a->qkv, t->datt, a->lse, t->Di, c->tiles, t->n_tiles, H, KV, hd,
                                          st);
        KCHECK(c, "attention_backward_dq_wmma");
        launch_attention_backward_dkdv_wmma(t->dqkv_f, a->qkv, t->datt, a->lse, t->Di, t->ktiles, t->n_ktiles, H, KV,
                                            hd, st);
        KCHECK(c, "attention_backward_dkdv_wmma");
    } else {
        launch_attention_backward_dq(t->dqkv_f, a->qkv, t->datt, a->lse, t->Di, t->tiles_bwd, t->n_tiles_bwd, H, KV,
                                     hd, st);
        KCHECK(c, "attention_backward_dq (tiled)");
        launch_attention_backward_dkdv(t->dqkv_f, a->qkv, t->datt, a->lse, t->Di, t->ktiles, t->n_ktiles, H, KV, hd,
                                       st);
        KCHECK(c, "attention_backward_dkdv (tiled)");
    }
    launch_qkv_post_backward(t->dqkv_f, t->dqkv, t->prod, a->qkv_raw, L->bqkv, L->qn, L->kn, eps, c->pos,
                             c->inv_freq, T, H, KV, hd, st);
    KCHECK(c, "qkv_post_backward");
    if (G(c, l, CW_QKV_BIAS)) {
        launch_colsum(G(c, l, CW_QKV_BIAS), t->dqkv_f, T, W, W, W, st);
        KCHECK(c, "colsum (qkv bias gradient)");
    }
    if (G(c, l, CW_Q_NORM)) {
        launch_colsum(G(c, l, CW_Q_NORM), t->prod, T, H * hd, (H + KV) * hd, hd, st);
        KCHECK(c, "colsum (q_norm gradient)");
        launch_colsum(G(c, l, CW_K_NORM), t->prod + (size_t)H * hd, T, KV * hd, (H + KV) * hd, hd, st);
        KCHECK(c, "colsum (k_norm gradient)");
    }
    if (G(c, l, CW_QKV))
        LT(gemm_ex(&c->gemm, 1, 0, W, D, T, 1.0f, t->dqkv, W, a->h1, D, 1.0f, G(c, l, CW_QKV), 1, D, st));
    // With a frozen embedding nothing needs dL/d(input of layer 0).
    int need_dx = l > 0 || G(c, -1, CW_EMBED);
    bf16 *dh = need_dx ? t->dhb : NULL;
    if (need_dx) LT(gemm_ex(&c->gemm, 0, 0, T, D, W, 1.0f, t->dqkv, W, L->wqkv, D, 0.0f, t->dhb, 0, D, st));
    LT(lora_bwd(c, l, 0, t->dqkv, W, a->h1, T, dh));
    LT(lora_bwd(c, l, 1, t->dqkv + Q, W, a->h1, T, dh));
    LT(lora_bwd(c, l, 2, t->dqkv + Q + Kd, W, a->h1, T, dh));
    if (need_dx) {
        launch_rmsnorm_backward(t->dx, G(c, l, CW_NORM1), t->dhb, t->x_in[l], L->n1, a->rstd1, T, D, st);
        KCHECK(c, "rmsnorm_backward (norm1)");
    }
    return s;
}

// From t->dh (device, [nseq, D]) = dL/dh_last.
static int backward_dev(CudaEngine *c, OprmError *err) {
    TrainState *t = &c->tr;
    const ModelConfig *k = &c->cfg;
    int T = t->T, D = k->hidden;
    cudaStream_t st = c->st;
    cudaError_t e = cudaMemsetAsync(t->dx, 0, 4 * (size_t)T * D, st);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "the backward pass failed");
    launch_final_norm_backward(t->dx, G(c, -1, CW_FINAL_NORM), t->dh, t->pre_last, c->last, c->final_norm,
                               (float)k->rms_eps, c->nseq, D, st);
    KCHECK(c, "final_norm_backward");
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    for (int l = k->n_layers - 1; l >= 0 && s == CUBLAS_STATUS_SUCCESS; l--) {
        c->dbg_layer = l;
        s = layer_backward(c, l, T);
    }
    c->dbg_layer = -1;
    if (s != CUBLAS_STATUS_SUCCESS) return fail_lt(err, c, s, "a cuBLASLt matrix product of the backward failed");
    if (G(c, -1, CW_EMBED)) {
        launch_embed_backward(G(c, -1, CW_EMBED), t->dx, c->ids, T, D, st);
        KCHECK(c, "embed_backward");
    }
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    return e == cudaSuccess ? 0 : fail_cuda(err, c, e, "the backward pass failed");
}

static int train_ready(CudaEngine *c, const char *what, OprmError *err) {
    if (c->tr.forwarded && c->nseq > 0) return 0;
    return oprm_fail(err, "%s: no training forward to go back through", what);
}

static int train_backward(void *impl, const float *dh_last, OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    if (train_ready(c, "engine_backward", err)) return -1;
    cudaSetDevice(c->dev);
    if (cuda_take_pending(c, err)) return -1;
    cudaError_t e = cudaMemcpyAsync(c->tr.dh, dh_last, 4 * (size_t)c->nseq * c->cfg.hidden, cudaMemcpyHostToDevice,
                                    c->st);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot copy dL/dh to the GPU");
    return backward_dev(c, err);
}

static int train_head_backward(void *impl, const int32_t *rows, int nrows, const float *dlogits, OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    TrainState *t = &c->tr;
    if (train_ready(c, "engine_head_backward", err)) return -1;
    if (nrows < 1 || nrows > HEAD_ROWS_MAX)
        return oprm_fail(err, "engine_head_backward: %d rows (the CUDA engine reads 1..%d)", nrows, HEAD_ROWS_MAX);
    cudaSetDevice(c->dev);
    if (cuda_take_pending(c, err)) return -1;
    cudaError_t e = cudaMemcpyAsync(c->rows, rows, 4 * (size_t)nrows, cudaMemcpyHostToDevice, c->st);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(t->dlogits, dlogits, 4 * (size_t)c->nseq * nrows, cudaMemcpyHostToDevice, c->st);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot copy dL/dlogits to the GPU");
    // Tied embeddings: the head rows are embedding rows, their gradient goes there.
    float *dW = c->cfg.tie_embeddings ? G(c, -1, CW_EMBED) : G(c, -1, CW_LM_HEAD);
    launch_head_rows_backward(t->dh, dW, t->dlogits, c->h_last, c->lm_head, c->rows, c->nseq, nrows, c->cfg.hidden,
                              c->st);
    KCHECK(c, "head_rows_backward");
    return backward_dev(c, err);
}

static int train_grad_sqnorm(void *impl, double *sq, OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    TrainState *t = &c->tr;
    cudaSetDevice(c->dev);
    if (cuda_take_pending(c, err)) return -1;
    cudaError_t e = cudaMemsetAsync(t->sq, 0, sizeof(double), c->st);
    if (e == cudaSuccess) {
        launch_sqnorm(t->sq, t->grad, t->n, c->st);
        KCHECK(c, "sqnorm");
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpyAsync(sq, t->sq, sizeof(double), cudaMemcpyDeviceToHost, c->st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
    return e == cudaSuccess ? 0 : fail_cuda(err, c, e, "the gradient norm failed");
}

static int train_adamw_step(void *impl, const EngineAdamWStep *s, OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    TrainState *t = &c->tr;
    if (s->step < 1) return oprm_fail(err, "engine_adamw_step: step %lld (1-based)", (long long)s->step);
    cudaSetDevice(c->dev);
    if (cuda_take_pending(c, err)) return -1;
    DmAdamW k = dm_adamw_consts(s->lr, s->beta1, s->beta2, s->eps, (long long)s->step);
    float decay_mul = (float)(1.0 - s->lr * s->weight_decay);
    for (int i = 0; i < t->n_tt; i++) {
        const TrainTensor *tt = &t->tt[i];
        launch_adamw(t->master + tt->off, t->grad + tt->off, t->m + tt->off, t->v + tt->off, tt->copy, tt->numel,
                     (float)s->grad_scale, s->decay && s->decay[i] ? decay_mul : 1.0f, k, c->st);
        if (c->sync) {
            char what[200];
            snprintf(what, sizeof what, "adamw (tensor %d \"%s\", %zu values)", i, tt->name, tt->numel);
            cuda_dbg_check(c, what, __FILE__, __LINE__);
        }
    }
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
    return e == cudaSuccess ? 0 : fail_cuda(err, c, e, "the AdamW step failed");
}

// The engine's zero_grad returns nothing: an error is kept and fails the next call (cuda_take_pending).
static void train_zero_grad(void *impl) {
    CudaEngine *c = (CudaEngine *)impl;
    cudaSetDevice(c->dev);
    cudaError_t e = cudaMemsetAsync(c->tr.grad, 0, 4 * c->tr.n, c->st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
    if (e == cudaSuccess || c->pending[0]) return;
    OprmError tmp;
    fail_cuda(&tmp, c, e, "zeroing the gradients (engine_zero_grad) failed");
    snprintf(c->pending, sizeof c->pending, "%s", tmp.msg);
}

static int check_params(CudaEngine *c, const ModelParam *p, int n, OprmError *err) {
    TrainState *t = &c->tr;
    if (n != t->n_tt)
        return oprm_fail(err, "engine parameters: %d tensors given, the CUDA engine trains %d", n, t->n_tt);
    for (int i = 0; i < n; i++) {
        if (strcmp(p[i].name, t->tt[i].name) || p[i].numel != t->tt[i].numel)
            return oprm_fail(err, "engine parameters: tensor %d is \"%s\" (%zu values), the CUDA engine has \"%s\" (%zu)",
                             i, p[i].name, p[i].numel, t->tt[i].name, t->tt[i].numel);
        if (!p[i].data) return oprm_fail(err, "engine parameters: \"%s\" has no fp32 host array", p[i].name);
    }
    return 0;
}

static int train_download(void *impl, ModelParam *p, int n, float *const *m1, float *const *v1, OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    TrainState *t = &c->tr;
    if (check_params(c, p, n, err)) return -1;
    cudaSetDevice(c->dev);
    if (cuda_take_pending(c, err)) return -1;
    cudaError_t e = cudaStreamSynchronize(c->st);
    for (int i = 0; i < n && e == cudaSuccess; i++) {
        size_t o = t->tt[i].off, b = 4 * t->tt[i].numel;
        e = cudaMemcpy(p[i].data, t->master + o, b, cudaMemcpyDeviceToHost);
        if (e == cudaSuccess && m1 && m1[i]) e = cudaMemcpy(m1[i], t->m + o, b, cudaMemcpyDeviceToHost);
        if (e == cudaSuccess && v1 && v1[i]) e = cudaMemcpy(v1[i], t->v + o, b, cudaMemcpyDeviceToHost);
    }
    return e == cudaSuccess ? 0 : fail_cuda(err, c, e, "cannot copy the parameters from the GPU");
}

static int train_upload(void *impl, const ModelParam *p, int n, const float *const *m1, const float *const *v1,
                        OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    TrainState *t = &c->tr;
    if (check_params(c, p, n, err)) return -1;
    cudaSetDevice(c->dev);
    if (cuda_take_pending(c, err)) return -1;
    cudaError_t e = cudaStreamSynchronize(c->st);
    for (int i = 0; i < n && e == cudaSuccess; i++) {
        size_t o = t->tt[i].off, b = 4 * t->tt[i].numel;
        e = cudaMemcpy(t->master + o, p[i].data, b, cudaMemcpyHostToDevice);
        if (e == cudaSuccess && m1 && m1[i]) e = cudaMemcpy(t->m + o, m1[i], b, cudaMemcpyHostToDevice);
        if (e == cudaSuccess && v1 && v1[i]) e = cudaMemcpy(t->v + o, v1[i], b, cudaMemcpyHostToDevice);
        if (e == cudaSuccess && t->tt[i].copy) {
            launch_to_bf16(t->tt[i].copy, t->master + o, t->tt[i].numel, c->st);
            KCHECK(c, "to_bf16 (uploaded parameters' BF16 copies)");
        }
    }
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
    return e == cudaSuccess ? 0 : fail_cuda(err, c, e, "cannot copy the parameters to the GPU");
}

const EngineOps CUDA_TRAIN_OPS = {train_forward,    cuda_head_rows,     train_backward,    cuda_free_impl,
                                  train_head_backward, 0,               train_grad_sqnorm, train_adamw_step,
                                  train_zero_grad,  train_download,     train_upload};

// For the device check (tests/cuda/cuda_check.c) only: the gradients of the
// trainable tensors (model_params order) into g[i] (params[i].numel floats).
extern "C" int cuda_engine_grad_download(Engine *e, const ModelParam *p, int n, float *const *g, OprmError *err) {
    if (e->ops != &CUDA_TRAIN_OPS) return oprm_fail(err, "cuda_engine_grad_download: not a CUDA training engine");
    CudaEngine *c = (CudaEngine *)e->impl;
    if (check_params(c, p, n, err)) return -1;
    cudaSetDevice(c->dev);
    cudaError_t ce = cudaStreamSynchronize(c->st);
    for (int i = 0; i < n && ce == cudaSuccess; i++)
        ce = cudaMemcpy(g[i], c->tr.grad + c->tr.tt[i].off, 4 * c->tr.tt[i].numel, cudaMemcpyDeviceToHost);
    return ce == cudaSuccess ? 0 : fail_cuda(err, c, ce, "cannot copy the gradients from the GPU");
}
