/* An executable description of the CUDA forward, run on the host: the same
 * data flow, layouts and schedule as src/cuda/engine_cuda.cu (fused q|k|v and
 * gate|up matrices placed by cuda_weight_slot, the residual add fused into the
 * next RMSNorm, bias + q/k norm + RoPE per head on pairs (i, i + hd/2) with
 * dm_rope_inv_freq, attention over the cuda_attn_tiles_qt work list with keys
 * in tiles merged by dm_online_softmax_merge, only the last rows through the
 * final norm), with BF16 rounding at the points the GPU stores BF16. Checked
 * against the CPU engine: without rounding it must agree to fp32 precision
 * (the schedule is the same computation), with rounding within BF16 error.
 * This checks the design the kernels implement; the kernels themselves only
 * run on a GPU (tools/cuda_check.sh). */
#include <stdint.h>

#include "engine/cuda_plan.h"
#include "engine/devmath.h"
#include "model/model.h"
#include "cuda_replay_testutil.h"
#include "test.h"

static void res_norm(float *x, const float *y, const float *w, float eps, float *out, int T, int D) {
    for (int t = 0; t < T; t++) {
        float *xr = x + (size_t)t * D, ss = 0;
        for (int j = 0; j < D; j++) {
            if (y) xr[j] += y[(size_t)t * D + j];
            ss += xr[j] * xr[j];
        }
        float r = 1.0f / sqrtf(ss / D + eps);
        for (int j = 0; j < D; j++) out[(size_t)t * D + j] = rb(xr[j] * r * w[j]);
    }
}

static void forward(const ModelConfig *c, Weights *W, const SeqBatch *b, float *h_last) {
    int D = c->hidden, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, F = c->ffn, half = hd / 2;
    int Wd = (int)cuda_qkv_width(c), Q = H * hd, T = 0;
    float eps = (float)c->rms_eps;
    for (int s = 0; s < b->nseq; s++) T += b->lens[s];
    int32_t *pos = malloc(4 * T), *last = malloc(4 * b->nseq);
    cuda_pack_index(b->lens, b->nseq, pos, last);
    CudaAttnTile *tiles = malloc(sizeof *tiles * cuda_attn_tiles_max(T, b->nseq));
    int nt = cuda_attn_tiles_qt(b->lens, b->nseq, CUDA_ATTN_QT_WMMA, tiles);
    double *inv = malloc(sizeof(double) * half);
    for (int i = 0; i < half; i++)
        inv[i] = dm_rope_inv_freq(i, hd, c->rope_theta, c->rope_factor, c->rope_low_freq_factor,
                                  c->rope_high_freq_factor, c->rope_original_max_pos);
    float *x = calloc((size_t)T * D, 4), *h = calloc((size_t)T * D, 4), *qkv = calloc((size_t)T * Wd, 4),
          *att = calloc((size_t)T * Q, 4), *y = calloc((size_t)T * D, 4), *gu = calloc((size_t)T * 2 * F, 4),
          *a = calloc((size_t)T * F, 4);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < D; j++) x[(size_t)t * D + j] = W->buf[0][CW_EMBED][(size_t)b->ids[t] * D + j];
    for (int l = 0; l < c->n_layers; l++) {
        float **L = W->buf[l + 1];
        res_norm(x, l ? y : NULL, L[CW_NORM1], eps, h, T, D);
        gemm_nt(qkv, h, L[CW_QKV], T, Wd, D);
        for (int t = 0; t < T; t++) /* qkv_post: one head at a time, pairs (i, i + half) */
            for (int hh = 0; hh < H + 2 * KV; hh++) {
                float *v = qkv + (size_t)t * Wd + (size_t)hh * hd, ss = 0;
                int is_v = hh >= H + KV;
                const float *bias = L[CW_QKV_BIAS], *nw = hh < H ? L[CW_Q_NORM] : L[CW_K_NORM];
                for (int i = 0; i < hd; i++) {
                    if (bias) v[i] += bias[(size_t)hh * hd + i];
                    ss += v[i] * v[i];
                }
                float r = (!is_v && nw) ? 1.0f / sqrtf(ss / hd + eps) : 1.0f;
                for (int i = 0; i < half; i++) {
                    float p = v[i], q = v[i + half];
                    if (!is_v) {
                        if (nw) p *= r * nw[i], q *= r * nw[i + half];
                        double sn = sin(pos[t] * inv[i]), cs = cos(pos[t] * inv[i]);
                        float p2 = p * (float)cs - q * (float)sn, q2 = q * (float)cs + p * (float)sn;
                        p = p2, q = q2;
                    }
                    v[i] = rb(p), v[i + half] = rb(q);
                }
            }
        for (int ti = 0; ti < nt; ti++) /* attention over the work list, 64-key tiles */
            for (int hh = 0; hh < H; hh++)
                for (int qi = 0; qi < tiles[ti].q_n; qi++) {
                    int qpos = tiles[ti].q_pos + qi, kh = hh / (H / KV);
                    const float *base = qkv + (size_t)tiles[ti].seq_row * Wd;
                    const float *q = base + (size_t)qpos * Wd + (size_t)hh * hd;
                    float m = -INFINITY, lsum = 0, acc[256] = {0};
                    for (int k0 = 0; k0 <= qpos; k0 += 64) {
                        float s[64], bm = -INFINITY, bl = 0;
                        int kn = qpos - k0 + 1 < 64 ? qpos - k0 + 1 : 64;
                        for (int j = 0; j < kn; j++) {
                            const float *k = base + (size_t)(k0 + j) * Wd + Q + (size_t)kh * hd;
                            float d = 0;
                            for (int e = 0; e < hd; e++) d += q[e] * k[e];
                            s[j] = d / sqrtf((float)hd);
                            bm = fmaxf(bm, s[j]);
                        }
                        for (int j = 0; j < kn; j++) bl += expf(s[j] - bm);
                        float cf = dm_online_softmax_merge(&m, &lsum, bm, bl), pb = expf(bm - m);
                        for (int e = 0; e < hd; e++) acc[e] *= cf;
                        for (int j = 0; j < kn; j++) {
                            const float *v = base + (size_t)(k0 + j) * Wd + Q + (size_t)KV * hd + (size_t)kh * hd;
                            float p = rb(expf(s[j] - bm) * pb);
                            for (int e = 0; e < hd; e++) acc[e] += p * v[e];
                        }
                    }
                    float *o = att + (size_t)(tiles[ti].seq_row + qpos) * Q + (size_t)hh * hd;
                    for (int e = 0; e < hd; e++) o[e] = rb(acc[e] / lsum);
                }
        gemm_nt(y, att, L[CW_O], T, D, Q);
        res_norm(x, y, L[CW_NORM2], eps, h, T, D);
        gemm_nt(gu, h, L[CW_GATE_UP], T, 2 * F, D);
        for (int t = 0; t < T; t++)
            for (int f = 0; f < F; f++)
                a[(size_t)t * F + f] = rb(dm_swiglu(gu[(size_t)t * 2 * F + f], gu[(size_t)t * 2 * F + F + f]));
        gemm_nt(y, a, L[CW_DOWN], T, D, F);
    }
    for (int s = 0; s < b->nseq; s++) { /* final_norm_last */
        float v[1024], ss = 0;
        for (int j = 0; j < D; j++) {
            v[j] = x[(size_t)last[s] * D + j] + y[(size_t)last[s] * D + j];
            ss += v[j] * v[j];
        }
        float r = 1.0f / sqrtf(ss / D + eps);
        for (int j = 0; j < D; j++) h_last[(size_t)s * D + j] = v[j] * r * W->buf[0][CW_FINAL_NORM][j];
    }
    free(pos), free(last), free(tiles), free(inv), free(x), free(h), free(qkv), free(att), free(y), free(gu), free(a);
}

static void check_arch(ModelArch arch, int llama3) {
    ModelConfig c = {0};
    c.arch = arch;
    snprintf(c.architecture, sizeof c.architecture, "test");
    c.hidden = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.ffn = 96, c.vocab = 50;
    c.max_pos = 512, c.rope_theta = 10000, c.rms_eps = 1e-6, c.tie_embeddings = arch != ARCH_LLAMA;
    c.qkv_bias = arch == ARCH_QWEN2, c.qk_norm = arch == ARCH_QWEN3, c.bos_id = c.eos_id = -1;
    if (llama3) c.rope_factor = 8, c.rope_low_freq_factor = 1, c.rope_high_freq_factor = 4, c.rope_original_max_pos = 32;
    OprmError err = {{0}};
    Model *m = model_new_random(&c, NULL, 11, &err);
    CHECK(m != NULL);
    if (!m) return;
    /* Larger weights than the default 0.02 so attention is not uniform. */
    int np;
    ModelParam *ps = model_params(m, &np);
    for (int i = 0; i < np; i++)
        if (ps[i].ndim == 2)
            for (size_t j = 0; j < ps[i].numel; j++) ps[i].data[j] *= 10.0f;
    int32_t lens[] = {70, 3, 130, 1}, N = 204, rows[9];
    int32_t *ids = malloc(4 * N);
    for (int i = 0; i < N; i++) ids[i] = (i * 37 + 11) % c.vocab;
    for (int k = 0; k < 9; k++) rows[k] = 10 + k;
    SeqBatch b = {ids, lens, 4, NULL};
    float ref[4 * 64], got[4 * 64], lr[36], lg[36];
    CHECK(model_forward(m, &b, 0, ref, &err) == 0);
    model_head_rows_forward(m, ref, 4, rows, 9, lr);
    for (ROUND = 0; ROUND < 2; ROUND++) {
        Weights W = place_all(m, &c);
        forward(&c, &W, &b, got);
        double dh = 0, dl = 0;
        for (int i = 0; i < 4 * 64; i++) dh = fmax(dh, fabs(got[i] - ref[i]));
        for (int s = 0; s < 4; s++) /* head rows in fp32 on the (rounded) lm_head */
            for (int k = 0; k < 9; k++) {
                float acc = 0;
                for (int j = 0; j < 64; j++) acc += got[s * 64 + j] * W.buf[0][CW_LM_HEAD][(size_t)rows[k] * 64 + j];
                lg[s * 9 + k] = acc;
                dl = fmax(dl, fabs(lg[s * 9 + k] - lr[s * 9 + k]));
            }
        fprintf(stderr, "  arch %d llama3 %d bf16 %d: max |dh| %.2e, max |dlogit| %.2e\n", arch, llama3, ROUND, dh, dl);
        /* fp32 schedule = the CPU computation up to summation order; BF16 within its error. */
        CHECK(dh < (ROUND ? 0.15 : 2e-4));
        CHECK(dl < (ROUND ? 0.15 : 2e-4));
        for (int l = 0; l <= REPLAY_MAX_LAYERS; l++)
            for (int k = 0; k < CW_N_KINDS; k++)
                if (!(l == 0 && k == CW_LM_HEAD && c.tie_embeddings)) free(W.buf[l][k]);
    }
    free(ids);
    model_free(m);
}

static void test_cuda_schedule_qwen2(void) { check_arch(ARCH_QWEN2, 0); }
static void test_cuda_schedule_qwen3(void) { check_arch(ARCH_QWEN3, 0); }
static void test_cuda_schedule_llama3(void) { check_arch(ARCH_LLAMA, 1); }

int main(void) {
    RUN(test_cuda_schedule_qwen2);
    RUN(test_cuda_schedule_qwen3);
    RUN(test_cuda_schedule_llama3);
    return test_summary();
}
