// The CUDA engine (scoring): weights on the GPU in BF16, BF16 activations,
// fp32 residual stream, accumulation and statistics; cuBLASLt GEMMs on the
// packed [tokens, hidden] matrix and the kernels of src/cuda/*.cu. Host code
// in plain C style (llm.c); the rest of oprm reaches it only through
// src/engine/engine.h.
//
// Memory: one device allocation sized by cuda_mem_plan for the weights and a
// batch of max_tokens_per_batch tokens, carved at load; a forward allocates
// nothing, so running out of memory can only happen at load, where the
// message names the device, the bytes needed and what to do.
#include "cuda/engine_cuda.cuh"



static int take_dbg(OprmError *err, CudaEngine *c, const char *what) {
    oprm_fail(err, "%s on cuda:%d (%s): %s", what, c->dev, c->name, c->dbg_msg);
    c->dbg_msg[0] = 0;
    return -1;
}

int fail_cuda(OprmError *err, CudaEngine *c, cudaError_t e, const char *what) {
    if (c->dbg_msg[0]) return take_dbg(err, c, what);
    return oprm_fail(err, "%s on cuda:%d (%s): %s [%s]%s", what, c->dev, c->name, cudaGetErrorString(e),
                     cudaGetErrorName(e),
                     // after a batch, where kernels ran (not at start-up)
                     !c->sync && c->dbg_T >= 0 ? " (OPRM_CUDA_SYNC=1 names the kernel)" : "");
}
int fail_lt(OprmError *err, CudaEngine *c, cublasStatus_t s, const char *what) {
    if (c->dbg_msg[0]) return take_dbg(err, c, what);
    // A CUDA error still pending may come from an earlier kernel, not from the product.
    cudaError_t e = cudaPeekAtLastError();
    if (e != cudaSuccess)
        return oprm_fail(err, "%s on cuda:%d (%s): cuBLASLt status %d, with a CUDA error pending (%s [%s]) that an "
                              "earlier kernel may have left; OPRM_CUDA_SYNC=1 names the kernel",
                         what, c->dev, c->name, (int)s, cudaGetErrorString(e), cudaGetErrorName(e));
    return oprm_fail(err, "%s on cuda:%d (%s): cuBLASLt status %d", what, c->dev, c->name, (int)s);
}

static void dbg_record(CudaEngine *c, const char *what, const char *file, int line, const char *error) {
    if (c->dbg_msg[0]) return; // the first failure is the informative one
    const ModelConfig *k = &c->cfg;
    CudaDbgSite site = {c->dbg_layer, c->dbg_T, k->hidden, k->n_heads, k->n_kv_heads, k->head_dim};
    cuda_dbg_format(c->dbg_msg, sizeof c->dbg_msg, what, &site, file, line, error);
    if (c->sync) fprintf(stderr, "oprm: OPRM_CUDA_SYNC: %s\n", c->dbg_msg);
}

int cuda_dbg_check(CudaEngine *c, const char *what, const char *file, int line) {
    cudaError_t e = cudaStreamSynchronize(c->st);
    if (e == cudaSuccess) e = cudaPeekAtLastError();
    if (e == cudaSuccess) return 0;
    char es[256];
    snprintf(es, sizeof es, "%s [%s]", cudaGetErrorString(e), cudaGetErrorName(e));
    dbg_record(c, what, file, line, es);
    return 1;
}

int cuda_dbg_lt(CudaEngine *c, cublasStatus_t s, const char *what, const char *file, int line) {
    if (c->sync && cuda_dbg_check(c, what, file, line)) return 1;
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    char es[320];
    cudaError_t e = cudaPeekAtLastError(); // not this call's when an earlier kernel left it
    if (e != cudaSuccess)
        snprintf(es, sizeof es, "cuBLASLt status %d, with a CUDA error pending (%s [%s]) that an earlier kernel may "
                                "have left; OPRM_CUDA_SYNC=1 names the kernel", (int)s, cudaGetErrorString(e),
                 cudaGetErrorName(e));
    else
        snprintf(es, sizeof es, "cuBLASLt status %d", (int)s);
    dbg_record(c, what, file, line, es);
    return 1;
}

int cuda_take_pending(CudaEngine *c, OprmError *err) {
    if (!c->pending[0]) return 0;
    oprm_fail(err, "%s", c->pending);
    c->pending[0] = 0;
    return -1;
}

// Visible GPUs, or 0 with the reason in words.
static int device_count(char *why, size_t n) {
    int count = 0, drv = 0, rt = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaSuccess && count > 0) return count;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    if (!why) return 0;
    if (e == cudaSuccess || e == cudaErrorNoDevice)
        snprintf(why, n, "no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
    else if (drv == 0)
        snprintf(why, n, "no NVIDIA driver is installed (libcuda.so was not found)");
    else if (e == cudaErrorInsufficientDriver || drv < rt)
        snprintf(why, n, "the NVIDIA driver is too old: it supports CUDA %d.%d, this oprm was built with CUDA %d.%d "
                         "(update the driver)", drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    else
        snprintf(why, n, "CUDA cannot start: %s", cudaGetErrorString(e));
    return 0;
}

extern "C" int cuda_built(void) {
    return 1;
}

extern "C" int cuda_device_count(char *why, size_t why_n) {
    return device_count(why, why_n);
}

static void *take(CudaEngine *c, size_t bytes) {
    size_t off = (c->pool_used + 255) & ~(size_t)255;
    c->pool_used = off + bytes;
    return c->pool_used <= c->pool_size ? c->pool + off : NULL;
}

void cuda_free_impl(void *impl) {
    CudaEngine *c = (CudaEngine *)impl;
    if (!c) return;
    if (c->pool || c->st) cudaSetDevice(c->dev);
    cuda_train_free(c);
    gemm_free(&c->gemm);
    if (c->pool) cudaFree(c->pool);
    if (c->st) cudaStreamDestroy(c->st);
    free(c->L);
    free(c->h_pos);
    free(c->h_lastidx);
    free(c->h_tiles);
    free(c);
}

// Copies one host tensor (fp32 or BF16 bits) into device BF16 at dst.
static cudaError_t put_bf16(bf16 *dst, const ModelParam *p) {
    if (p->data_bf16) return cudaMemcpy(dst, p->data_bf16, p->numel * 2, cudaMemcpyHostToDevice);
    uint16_t *tmp = (uint16_t *)xmalloc(p->numel * 2);
    for (size_t i = 0; i < p->numel; i++) tmp[i] = dm_f32_to_bf16(p->data[i]);
    cudaError_t e = cudaMemcpy(dst, tmp, p->numel * 2, cudaMemcpyHostToDevice);
    free(tmp);
    return e;
}
static cudaError_t put_f32(float *dst, const ModelParam *p) {
    if (p->data) return cudaMemcpy(dst, p->data, p->numel * 4, cudaMemcpyHostToDevice);
    float *tmp = (float *)xmalloc(p->numel * 4);
    for (size_t i = 0; i < p->numel; i++) tmp[i] = dm_bf16_to_f32(p->data_bf16[i]);
    cudaError_t e = cudaMemcpy(dst, tmp, p->numel * 4, cudaMemcpyHostToDevice);
    free(tmp);
    return e;
}

void *slot_base(CudaEngine *c, const CudaWeightSlot *w) {
    if (w->layer < 0) return w->kind == CW_EMBED ? (void *)c->embed : w->kind == CW_LM_HEAD ? (void *)c->lm_head
                                                                                           : (void *)c->final_norm;
    DevLayer *L = &c->L[w->layer];
    switch (w->kind) {
    case CW_QKV: return L->wqkv;
    case CW_QKV_BIAS: return L->bqkv;
    case CW_O: return L->wo;
    case CW_Q_NORM: return L->qn;
    case CW_K_NORM: return L->kn;
    case CW_GATE_UP: return L->wgu;
    case CW_DOWN: return L->wdown;
    case CW_NORM1: return L->n1;
    case CW_NORM2: return L->n2;
    default: return NULL;
    }
}

// Places one named Hugging Face tensor where cuda_weight_slot says (the
// layout is host code, tested on the CPU); 1 if placed, 0 if it has no
// place, -1 on a CUDA error.
static int place(CudaEngine *c, const ModelParam *p, cudaError_t *e) {
    CudaWeightSlot w;
    *e = cudaSuccess;
    if (cuda_weight_slot(&c->cfg, p->name, &w) != 0) return 0;
    if (w.offset + p->numel > cuda_weight_numel(&c->cfg, w.kind)) return 0;
    void *base = slot_base(c, &w);
    *e = w.bf16 ? put_bf16((bf16 *)base + w.offset, p) : put_f32((float *)base + w.offset, p);
    return *e == cudaSuccess ? 1 : -1;
}

static int open_device(CudaEngine *c, int index, OprmError *err) {
    char why[512];
    int count = device_count(why, sizeof why);
    if (count == 0) return oprm_fail(err, "--device cuda:%d: %s; use --device cpu", index, why);
    if (index >= count) {
        if (count == 1) return oprm_fail(err, "--device cuda:%d: only one GPU is visible (cuda:0); use --device cuda:0 "
                                              "or --device cpu", index);
        return oprm_fail(err, "--device cuda:%d: %d GPUs are visible (cuda:0 .. cuda:%d); pick one of them or use "
                              "--device cpu", index, count, count - 1);
    }
    c->dev = index;
    cudaError_t e = cudaSetDevice(index);
    cudaDeviceProp prop;
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, index);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot open the GPU");
    snprintf(c->name, sizeof c->name, "%s", prop.name);
    if (prop.major < 8)
        return oprm_fail(err, "cuda:%d (%s) has compute capability %d.%d; the CUDA engine needs 8.0 or newer "
                              "(BF16 tensor cores: A100, H100, H200, ...); use --device cpu",
                         index, c->name, prop.major, prop.minor);
    return 0;
}

static int alloc_all(CudaEngine *c, const CudaMemPlan *plan, OprmError *err) {
    const ModelConfig *k = &c->cfg;
    size_t free_b = 0, total_b = 0;
    cudaError_t me = cudaMemGetInfo(&free_b, &total_b);
    if (me != cudaSuccess) return fail_cuda(err, c, me, "cannot query the GPU's memory");
    if (plan->weights > total_b)
        return oprm_fail(err, "the model does not fit on cuda:%d (%s): its BF16 weights alone need %.2f GiB (%zu bytes) "
                              "and the GPU has %.2f GiB in all; use a GPU with more memory or --device cpu",
                         c->dev, c->name, plan->weights / GIB, plan->weights, total_b / GIB);
    c->pool_size = plan->total + (size_t)256 * (16 * (size_t)k->n_layers + 64);
    if (c->pool_size > free_b)
        return oprm_fail(err, "out of memory on cuda:%d (%s): scoring needs %.2f GiB (%zu bytes: weights %.2f GiB, "
                              "activations %.2f GiB for --max_tokens_per_batch %d, workspace %.2f GiB) and %.2f GiB of "
                              "%.2f GiB are free; lower --max_tokens_per_batch (activations scale with it), free the "
                              "GPU, or use --device cpu",
                         c->dev, c->name, c->pool_size / GIB, c->pool_size, plan->weights / GIB,
                         (plan->activations + plan->index) / GIB, c->max_tokens, plan->workspace / GIB, free_b / GIB,
                         total_b / GIB);
    cudaError_t e = cudaMalloc((void **)&c->pool, c->pool_size);
    if (e != cudaSuccess) {
        c->pool = NULL;
        return oprm_fail(err, "out of memory on cuda:%d (%s): cannot allocate %.2f GiB (%zu bytes) for weights and "
                              "activations (%s); lower --max_tokens_per_batch or use --device cpu",
                         c->dev, c->name, c->pool_size / GIB, c->pool_size, cudaGetErrorString(e));
    }
    size_t D = k->hidden, F = k->ffn, V = k->vocab, hd = k->head_dim, Q = (size_t)k->n_heads * hd,
           W = cuda_qkv_width(k), T = (size_t)c->max_tokens;
    c->L = (DevLayer *)xcalloc((size_t)k->n_layers, sizeof *c->L);
    for (int l = 0; l < k->n_layers; l++) {
        DevLayer *L = &c->L[l];
        L->wqkv = (bf16 *)take(c, 2 * W * D);
        L->wo = (bf16 *)take(c, 2 * D * Q);
        L->wgu = (bf16 *)take(c, 2 * 2 * F * D);
        L->wdown = (bf16 *)take(c, 2 * D * F);
        L->bqkv = k->qkv_bias ? (float *)take(c, 4 * W) : NULL;
        L->qn = k->qk_norm ? (float *)take(c, 4 * hd) : NULL;
        L->kn = k->qk_norm ? (float *)take(c, 4 * hd) : NULL;
        L->n1 = (float *)take(c, 4 * D);
        L->n2 = (float *)take(c, 4 * D);
    }
    c->embed = (bf16 *)take(c, 2 * V * D);
    c->lm_head = k->tie_embeddings ? c->embed : (bf16 *)take(c, 2 * V * D);
    c->final_norm = (float *)take(c, 4 * D);
    c->inv_freq = (double *)take(c, 8 * (hd / 2));
    c->x = (float *)take(c, 4 * T * D);
    c->h = (bf16 *)take(c, 2 * T * D);
    c->qkv = (bf16 *)take(c, 2 * T * W);
    c->att = (bf16 *)take(c, 2 * T * Q);
    c->y = (bf16 *)take(c, 2 * T * D);
    c->gu = (bf16 *)take(c, 2 * T * 2 * F);
    c->a = (bf16 *)take(c, 2 * T * F);
    int max_tiles = cuda_attn_tiles_max(c->max_tokens, c->max_tokens);
    c->ids = (int32_t *)take(c, 4 * T);
    c->pos = (int32_t *)take(c, 4 * T);
    c->last = (int32_t *)take(c, 4 * T);
    c->tiles = (CudaAttnTile *)take(c, sizeof(CudaAttnTile) * (size_t)max_tiles);
    c->h_last = (float *)take(c, 4 * T * D);
    c->logits = (float *)take(c, 4 * T * HEAD_ROWS_MAX);
    c->rows = (int32_t *)take(c, 4 * HEAD_ROWS_MAX);
    void *ws = take(c, plan->workspace);
    if (!ws) return oprm_fail(err, "internal: the CUDA memory plan is short by %zu bytes", c->pool_used - c->pool_size);
    cublasStatus_t s = gemm_init(&c->gemm, ws, plan->workspace);
    if (s != CUBLAS_STATUS_SUCCESS) return fail_lt(err, c, s, "cannot start cuBLASLt");
    c->h_pos = (int32_t *)xmalloc(4 * T);
    c->h_lastidx = (int32_t *)xmalloc(4 * T);
    c->h_tiles = (CudaAttnTile *)xmalloc(sizeof(CudaAttnTile) * (size_t)max_tiles);
    return 0;
}

static int upload(CudaEngine *c, const Model *m, int train, OprmError *err) {
    const ModelConfig *k = &c->cfg;
    int np = 0, placed = 0;
    ModelParam *ps = model_params((Model *)m, &np);
    for (int i = 0; i < np; i++) {
        cudaError_t e;
        int r = place(c, &ps[i], &e);
        if (r < 0) return fail_cuda(err, c, e, "cannot copy the weights to the GPU");
        if (r == 0 && !strstr(ps[i].name, ".lora_"))
            return oprm_fail(err, "the CUDA engine has no place for tensor \"%s\"", ps[i].name);
        if (strstr(ps[i].name, ".lora_") && train) continue; // the adapters: cuda_train_init
        if (strstr(ps[i].name, ".lora_"))
            return oprm_fail(err, "the CUDA engine scores merged models only: \"%s\" is a LoRA adapter (merge it, or "
                                  "use --device cpu)", ps[i].name);
        placed += r;
    }
    int want = cuda_weight_count(k);
    if (placed != want)
        return oprm_fail(err, "internal: %d of the %d tensors of this %s reached the GPU", placed, want, k->architecture);
    int half = k->head_dim / 2;
    double *f = (double *)xmalloc(sizeof(double) * (size_t)half);
    for (int i = 0; i < half; i++)
        f[i] = dm_rope_inv_freq(i, k->head_dim, k->rope_theta, k->rope_factor, k->rope_low_freq_factor,
                                k->rope_high_freq_factor, k->rope_original_max_pos);
    cudaError_t e = cudaMemcpy(c->inv_freq, f, sizeof(double) * (size_t)half, cudaMemcpyHostToDevice);
    free(f);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot copy the rotary table to the GPU");
    return 0;
}

int cuda_stage_batch(CudaEngine *c, const SeqBatch *b, OprmError *err) {
    const ModelConfig *k = &c->cfg;
    int nseq = b->nseq;
    c->nseq = 0;
    if (cuda_take_pending(c, err)) return -1;
    cudaSetDevice(c->dev); // engines on several GPUs may share a thread
    for (int s = 0; s < nseq; s++)
        if (b->lens[s] <= 0) return oprm_fail(err, "engine_forward: sequence %d has length %d", s, b->lens[s]);
    int T = cuda_pack_index(b->lens, nseq, c->h_pos, c->h_lastidx);
    for (int i = 0; i < T; i++)
        if (b->ids[i] < 0 || b->ids[i] >= k->vocab)
            return oprm_fail(err, "engine_forward: token id %d at position %d is outside the vocabulary [0, %d)",
                             b->ids[i], i, k->vocab);
    int n_tiles = cuda_attn_tiles_qt(b->lens, nseq, c->attn_wmma ? CUDA_ATTN_QT_WMMA : CUDA_ATTN_QT, c->h_tiles);
    cudaStream_t st = c->st;
    cudaError_t e = cudaMemcpyAsync(c->ids, b->ids, 4 * (size_t)T, cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess) e = cudaMemcpyAsync(c->pos, c->h_pos, 4 * (size_t)T, cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess) e = cudaMemcpyAsync(c->last, c->h_lastidx, 4 * (size_t)nseq, cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(c->tiles, c->h_tiles, sizeof(CudaAttnTile) * (size_t)n_tiles, cudaMemcpyHostToDevice, st);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "cannot copy the batch to the GPU");
    c->tr.n_tiles = n_tiles;
    c->dbg_T = T;
    return T;
}

static int cuda_forward(void *impl, const SeqBatch *b, float *h_last, OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    const ModelConfig *k = &c->cfg;
    int D = k->hidden, H = k->n_heads, KV = k->n_kv_heads, hd = k->head_dim, F = k->ffn, nseq = b->nseq;
    int W = (int)cuda_qkv_width(k), Q = H * hd;
    float eps = (float)k->rms_eps;
    int T = cuda_stage_batch(c, b, err);
    if (T < 0) return -1;
    int n_tiles = c->tr.n_tiles;
    cudaStream_t st = c->st;
    cudaError_t e;

    launch_embed(c->x, c->embed, c->ids, T, D, st);
    KCHECK(c, "embed");
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
#define FWD_LT(x, name)      \
    do {                     \
        s = (x);             \
        LTCHECK(c, s, name); \
    } while (0)
    for (int l = 0; l < k->n_layers && s == CUBLAS_STATUS_SUCCESS; l++) {
        const DevLayer *L = &c->L[l];
        c->dbg_layer = l;
        // x += y (the previous layer's MLP output; none before layer 0), h = norm1(x)
        launch_residual_rmsnorm(c->x, l ? c->y : NULL, L->n1, eps, c->h, T, D, st);
        KCHECK(c, "residual_rmsnorm (norm1)");
        FWD_LT(gemm_bf16(&c->gemm, c->qkv, c->h, L->wqkv, T, W, D, st), "gemm_bf16 qkv");
        if (s != CUBLAS_STATUS_SUCCESS) break;
        launch_qkv_post(c->qkv, c->qkv, L->bqkv, L->qn, L->kn, eps, c->pos, c->inv_freq, T, H, KV, hd, st);
        KCHECK(c, "qkv_post");
        if (c->attn_wmma) launch_attention_wmma(c->att, NULL, c->qkv, c->tiles, n_tiles, H, KV, hd, st);
        else launch_attention(c->att, NULL, c->qkv, c->tiles, n_tiles, H, KV, hd, st);
        KCHECK(c, c->attn_wmma ? "attention_wmma" : "attention (tiled)");
        FWD_LT(gemm_bf16(&c->gemm, c->y, c->att, L->wo, T, D, Q, st), "gemm_bf16 o");
        if (s != CUBLAS_STATUS_SUCCESS) break;
        launch_residual_rmsnorm(c->x, c->y, L->n2, eps, c->h, T, D, st);
        KCHECK(c, "residual_rmsnorm (norm2)");
        FWD_LT(gemm_bf16(&c->gemm, c->gu, c->h, L->wgu, T, 2 * F, D, st), "gemm_bf16 gate|up");
        if (s != CUBLAS_STATUS_SUCCESS) break;
        launch_swiglu(c->a, c->gu, T, F, st);
        KCHECK(c, "swiglu");
        FWD_LT(gemm_bf16(&c->gemm, c->y, c->a, L->wdown, T, D, F, st), "gemm_bf16 down");
    }
#undef FWD_LT
    c->dbg_layer = -1;
    if (s != CUBLAS_STATUS_SUCCESS) return fail_lt(err, c, s, "a cuBLASLt matrix product failed");
    // Only the last position of each sequence goes through the final norm.
    launch_final_norm_last(c->x, c->y, c->last, c->final_norm, eps, c->h_last, NULL, nseq, D, st);
    KCHECK(c, "final_norm_last");
    e = cudaGetLastError();
    if (e == cudaSuccess && h_last)
        e = cudaMemcpyAsync(h_last, c->h_last, 4 * (size_t)nseq * D, cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    if (e != cudaSuccess) return fail_cuda(err, c, e, "the forward pass failed");
    c->nseq = nseq;
    return 0;
}

int cuda_head_rows(void *impl, const int32_t *rows, int nrows, float *logits, OprmError *err) {
    CudaEngine *c = (CudaEngine *)impl;
    if (nrows < 1 || nrows > HEAD_ROWS_MAX)
        return oprm_fail(err, "engine_head_rows: %d rows (the CUDA engine reads 1..%d)", nrows, HEAD_ROWS_MAX);
    cudaSetDevice(c->dev);
    if (cuda_take_pending(c, err)) return -1;
    cudaError_t e = cudaMemcpyAsync(c->rows, rows, 4 * (size_t)nrows, cudaMemcpyHostToDevice, c->st);
    if (e == cudaSuccess) {
        launch_head_rows(c->logits, c->h_last, c->lm_head, c->rows, c->nseq, nrows, c->cfg.hidden, c->st);
        KCHECK(c, "head_rows");
        e = cudaGetLastError();
    }
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(logits, c->logits, 4 * (size_t)c->nseq * nrows, cudaMemcpyDeviceToHost, c->st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
    return e == cudaSuccess ? 0 : fail_cuda(err, c, e, "the head rows failed");
}

// Scoring; a training engine (EngineOptions.train) gets CUDA_TRAIN_OPS (train_cuda.cu).
static const EngineOps CUDA_OPS = {cuda_forward, cuda_head_rows, NULL, cuda_free_impl, NULL, 0, NULL, NULL, NULL, NULL,
                                   NULL};

extern "C" int engine_cuda_init(Engine *e, const Model *m, const EngineOptions *opt, OprmError *err) {
    CudaEngine *c = (CudaEngine *)xcalloc(1, sizeof *c);
    c->cfg = *model_config(m);
    c->dbg_layer = c->dbg_T = -1;
    c->max_tokens = opt->max_tokens_per_batch > 0 ? opt->max_tokens_per_batch : 8192;
    char msg[256];
    if (cuda_shape_check(&c->cfg, msg, sizeof msg)) {
        oprm_fail(err, "%s", msg);
        goto fail;
    }
    {
        char why[128];
        c->sync = cuda_sync_mode_parse(getenv("OPRM_CUDA_SYNC"), why, sizeof why);
        if (c->sync < 0) {
            oprm_fail(err, "%s", why);
            goto fail;
        }
    }
    {
        /* The tensor-core attention where the shape allows; OPRM_CUDA_ATTENTION=tiled|wmma overrides (the
         * device check runs both). */
        const char *ak = getenv("OPRM_CUDA_ATTENTION");
        c->attn_wmma = attention_wmma_supported(c->cfg.head_dim);
        if (ak && !strcmp(ak, "tiled")) c->attn_wmma = 0;
        else if (ak && !strcmp(ak, "wmma") && !c->attn_wmma) {
            oprm_fail(err, "OPRM_CUDA_ATTENTION=wmma needs head_dim at most 128 (got %d)",
                      c->cfg.head_dim);
            goto fail;
        } else if (ak && *ak && strcmp(ak, "tiled") && strcmp(ak, "wmma")) {
            oprm_fail(err, "OPRM_CUDA_ATTENTION must be tiled or wmma, got '%s'", ak);
            goto fail;
        }
    }
    if (open_device(c, opt->device.index, err)) goto fail;
    {
        cudaError_t ce = cudaStreamCreate(&c->st);
        if (ce != cudaSuccess) {
            fail_cuda(err, c, ce, "cannot create a stream");
            goto fail;
        }
        CudaMemPlan plan;
        cuda_mem_plan(&c->cfg, c->max_tokens, &plan);
        if (opt->train && cuda_train_fits(c, m, opt, err)) goto fail;
        if (alloc_all(c, &plan, err) || upload(c, m, opt->train, err)) goto fail;
        cudaGetLastError(); // the setups below report through it (their cudaFuncSetAttribute results)
        if (opt->train && cuda_train_init(c, m, opt, err)) goto fail;
        attention_setup(c->cfg.head_dim);
        if (c->attn_wmma) attention_wmma_setup(c->cfg.head_dim);
        ce = cudaGetLastError();
        if (ce != cudaSuccess) {
            fail_cuda(err, c, ce, "cannot raise the attention kernels' shared-memory limit (cudaFuncSetAttribute)");
            goto fail;
        }
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        e->ops = opt->train ? &CUDA_TRAIN_OPS : &CUDA_OPS;
        e->impl = c;
        e->cfg = c->cfg;
        e->max_tokens = c->max_tokens;
        snprintf(e->desc, sizeof e->desc, "cuda:%d %.120s (%.1f GiB; %.2f GiB used by oprm, batches up to %d tokens, %s attention%s)",
                 c->dev, c->name, total_b / GIB, (c->pool_size + c->tr.pool_size) / GIB, c->max_tokens,
                 c->attn_wmma ? "wmma" : "tiled",
                 !opt->train ? "" : c->tr.lora ? (c->tr.recompute ? ", LoRA training, recomputation" : ", LoRA training")
                                               : (c->tr.recompute ? ", full training, recomputation" : ", full training"));
        return 0;
    }
fail:
    cuda_free_impl(c);
    return -1;
}
