/* Parameter layout, loading from Hugging Face directories, random init,
 * saving. All parameters live in one fp32 buffer and all gradients in a
 * second one with the same layout. */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "io/safetensors.h"
#include "model/bf16_gemm.h"
#include "model/model.h"
#include "model/model_internal.h"

/* Implemented in OpenBLAS (not declared by every cblas.h). */
void openblas_set_num_threads(int num_threads);

void model_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

const ModelConfig *model_config(const Model *m) { return &m->cfg; }
const char *model_base_path(const Model *m) { return m->base_dir; }
double model_lora_alpha(const Model *m) { return m->lora_rank > 0 ? m->lora_alpha : 0.0; }

static const char *const slot_module[N_SLOTS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                  "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                  "mlp.down_proj"};

void slot_dims(const ModelConfig *c, int s, int *in, int *out) {
    int D = c->hidden, Hq = c->n_heads * c->head_dim, Hk = c->n_kv_heads * c->head_dim, F = c->ffn;
    static const int pick_in[N_SLOTS] = {0, 0, 0, 1, 0, 0, 2}, pick_out[N_SLOTS] = {1, 3, 3, 0, 2, 2, 0};
    int dims[4] = {D, Hq, F, Hk};
    *in = dims[pick_in[s]];
    *out = dims[pick_out[s]];
}

static float *slot_ptr(LayerWeights *w, int s) {
    float **p[N_SLOTS] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->gate, &w->up, &w->down};
    return *p[s];
}

void bf16_widen(float *dst, const uint16_t *src, size_t n) {
    #pragma omp parallel for schedule(static) if (n > 4 * OMP_MIN_WORK)
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

int model_bf16_compute(const Model *m) { return m->bf16; }

void layer_weight_raw(const Model *m, int l, int s, const float **f, const uint16_t **b) {
    *f = slot_ptr(&m->w[l], s);
    *b = *f ? NULL : m->wb[l].m[s];
}

const float *layer_weight(Model *m, int l, int s) {
    const float *w = slot_ptr(&m->w[l], s);
    if (w) return w;
    model_bf16_unpack(m); /* only the BF16 kernel reads packed panels */
    int in, out;
    slot_dims(&m->cfg, s, &in, &out);
    bf16_widen(m->wide, m->wb[l].m[s], (size_t)in * out);
    return m->wide;
}

/* Walks the tensors in order. The first pass (assign = 0) only counts tensors
 * and floats per buffer; the second names them and points the weight and
 * gradient pointers at their slots. */
typedef struct {
    Model *m;
    int assign, np;
    size_t off_train, off_frozen, off_bf16;
} Layout;

/* bf: where a 2-D base tensor's BF16 pointer goes (NULL for 1-D tensors). */
static void add(Layout *L, float **data, const uint16_t **bf, float **grad, int trainable, int ndim, int64_t s0,
                int64_t s1, const char *name_fmt, int layer) {
    Model *m = L->m;
    size_t numel = (size_t)s0 * (ndim == 2 ? (size_t)s1 : 1);
    int in_bf16 = !trainable && bf && m->storage == WEIGHTS_BF16;
    if (L->assign) {
        ModelParam *p = &m->params[L->np];
        char name[200];
        snprintf(name, sizeof name, name_fmt, layer);
        p->name = xstrdup(name);
        p->data = NULL;
        p->data_bf16 = NULL;
        p->grad = NULL;
        if (trainable) {
            p->data = m->param_buf + L->off_train;
            p->grad = m->grad_buf + L->off_train;
        } else if (in_bf16) {
            p->data_bf16 = m->bf16_buf + L->off_bf16;
        } else {
            p->data = m->frozen_buf + L->off_frozen;
        }
        p->ndim = ndim;
        p->shape[0] = s0;
        p->shape[1] = ndim == 2 ? s1 : 0;
        p->numel = numel;
        *data = p->data;
        *grad = p->grad;
        if (bf) *bf = p->data_bf16;
    }
    L->np++;
    if (trainable) L->off_train += numel;
    else if (in_bf16) L->off_bf16 += numel;
    else L->off_frozen += numel;
}

static void layout(Model *m, int assign) {
    const ModelConfig *c = &m->cfg;
    Layout L = {m, assign, 0, 0, 0, 0};
    int D = c->hidden, Hq = c->n_heads * c->head_dim, Hk = c->n_kv_heads * c->head_dim, F = c->ffn, hd = c->head_dim;
    int tr = !m->frozen_base;
    float *unused_f;
    /* Adapters first (PEFT names). */
    if (m->lora_rank > 0) {
        int r = m->lora_rank;
        for (int l = 0; l < c->n_layers; l++)
            for (int s = 0; s < N_SLOTS; s++) {
                if (!(m->lora_targets & (1u << s))) continue;
                int in, out;
                slot_dims(c, s, &in, &out);
                LoraPair *lp = assign ? &m->lora[l * N_SLOTS + s] : NULL;
                char fmt[160];
                snprintf(fmt, sizeof fmt, "base_model.model.model.layers.%%d.%s.lora_A.weight", slot_module[s]);
                add(&L, lp ? &lp->a : &unused_f, NULL, lp ? &lp->da : &unused_f, 1, 2, r, in, fmt, l);
                snprintf(fmt, sizeof fmt, "base_model.model.model.layers.%%d.%s.lora_B.weight", slot_module[s]);
                add(&L, lp ? &lp->b : &unused_f, NULL, lp ? &lp->db : &unused_f, 1, 2, out, r, fmt, l);
            }
    }
    add(&L, &m->embed, &m->embed_bf16, &m->d_embed, tr, 2, c->vocab, D, "model.embed_tokens.weight", 0);
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights unused_w, unused_g; /* first pass: pointers land here and are dropped */
        LayerBf16 unused_bw;
        LayerWeights *w = assign ? &m->w[l] : &unused_w, *g = assign ? &m->gw[l] : &unused_g;
        const uint16_t **b = assign ? m->wb[l].m : unused_bw.m;
        add(&L, &w->wq, &b[SLOT_Q], &g->wq, tr, 2, Hq, D, "model.layers.%d.self_attn.q_proj.weight", l);
        if (c->qkv_bias) add(&L, &w->bq, NULL, &g->bq, tr, 1, Hq, 0, "model.layers.%d.self_attn.q_proj.bias", l);
        add(&L, &w->wk, &b[SLOT_K], &g->wk, tr, 2, Hk, D, "model.layers.%d.self_attn.k_proj.weight", l);
        if (c->qkv_bias) add(&L, &w->bk, NULL, &g->bk, tr, 1, Hk, 0, "model.layers.%d.self_attn.k_proj.bias", l);
        add(&L, &w->wv, &b[SLOT_V], &g->wv, tr, 2, Hk, D, "model.layers.%d.self_attn.v_proj.weight", l);
        if (c->qkv_bias) add(&L, &w->bv, NULL, &g->bv, tr, 1, Hk, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        add(&L, &w->wo, &b[SLOT_O], &g->wo, tr, 2, D, Hq, "model.layers.%d.self_attn.o_proj.weight", l);
        if (c->qk_norm) {
            add(&L, &w->q_norm, NULL, &g->q_norm, tr, 1, hd, 0, "model.layers.%d.self_attn.q_norm.weight", l);
            add(&L, &w->k_norm, NULL, &g->k_norm, tr, 1, hd, 0, "model.layers.%d.self_attn.k_norm.weight", l);
        }
        add(&L, &w->gate, &b[SLOT_GATE], &g->gate, tr, 2, F, D, "model.layers.%d.mlp.gate_proj.weight", l);
        add(&L, &w->up, &b[SLOT_UP], &g->up, tr, 2, F, D, "model.layers.%d.mlp.up_proj.weight", l);
        add(&L, &w->down, &b[SLOT_DOWN], &g->down, tr, 2, D, F, "model.layers.%d.mlp.down_proj.weight", l);
        add(&L, &w->norm1, NULL, &g->norm1, tr, 1, D, 0, "model.layers.%d.input_layernorm.weight", l);
        add(&L, &w->norm2, NULL, &g->norm2, tr, 1, D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
    }
    add(&L, &m->final_norm, NULL, &m->d_final_norm, tr, 1, D, 0, "model.norm.weight", 0);
    if (c->tie_embeddings) { /* one tensor, listed once; its gradient gets both uses */
        m->lm_head = m->embed;
        m->lm_head_bf16 = m->embed_bf16;
        m->d_lm_head = m->d_embed;
    } else {
        add(&L, &m->lm_head, &m->lm_head_bf16, &m->d_lm_head, tr, 2, c->vocab, D, "lm_head.weight", 0);
    }
    m->n_params = L.np;
    m->n_floats = L.off_train;
    m->n_frozen = L.off_frozen;
    m->n_bf16 = L.off_bf16;
}

static Model *model_alloc(const ModelConfig *cfg, const ModelOptions *opt, OprmError *err) {
    ModelOptions o = {0};
    if (opt) o = *opt;
    if (o.frozen_storage != WEIGHTS_F32 && o.frozen_storage != WEIGHTS_BF16)
        return oprm_fail(err, "model options: unknown frozen_storage %d", (int)o.frozen_storage), NULL;
    if (o.lora_rank < 0 || o.lora_rank > 65536)
        return oprm_fail(err, "model options: LoRA rank %d out of range", o.lora_rank), NULL;
    if (o.lora_rank > 0 && o.inference_only)
        return oprm_fail(err, "model options: inference_only excludes LoRA (lora_rank %d)", o.lora_rank), NULL;
    if (o.lora_rank > 0) {
        if ((o.lora_targets & 127u) == 0 || (o.lora_targets & ~127u))
            return oprm_fail(err, "model options: LoRA targets 0x%x must be a non-empty set of q,k,v,o,gate,up,down",
                             o.lora_targets), NULL;
        if (!(o.lora_alpha > 0) || !isfinite(o.lora_alpha))
            return oprm_fail(err, "model options: lora_alpha %g must be positive", o.lora_alpha), NULL;
    }
    Model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->lora_rank = o.lora_rank;
    m->lora_alpha = o.lora_alpha;
    m->lora_targets = o.lora_rank > 0 ? o.lora_targets : 0;
    /* BF16 storage without LoRA can only mean frozen weights: scoring. */
    m->inference_only = o.inference_only != 0 || (o.lora_rank == 0 && o.frozen_storage == WEIGHTS_BF16);
    m->frozen_base = o.lora_rank > 0 || m->inference_only;
    m->storage = m->frozen_base ? o.frozen_storage : WEIGHTS_F32;
    if (o.bf16_compute) {
        m->bf16 = bf16_gemm_backend() != BF16_NONE;
        if (!m->bf16) fprintf(stderr, "oprm: BF16 compute %s; computing in fp32\n", bf16_gemm_describe());
    }
    m->w = xcalloc((size_t)cfg->n_layers, sizeof *m->w);
    m->gw = xcalloc((size_t)cfg->n_layers, sizeof *m->gw);
    m->wb = xcalloc((size_t)cfg->n_layers, sizeof *m->wb);
    if (m->lora_rank > 0) m->lora = xcalloc((size_t)cfg->n_layers * N_SLOTS, sizeof *m->lora);
    layout(m, 0);
    m->params = xcalloc((size_t)m->n_params, sizeof *m->params);
    m->param_buf = m->n_floats ? xmalloc(m->n_floats * sizeof(float)) : NULL;
    m->grad_buf = m->n_floats ? xcalloc(m->n_floats, sizeof(float)) : NULL;
    m->frozen_buf = m->n_frozen ? xmalloc(m->n_frozen * sizeof(float)) : NULL;
    m->bf16_buf = m->n_bf16 ? xmalloc(m->n_bf16 * sizeof(uint16_t)) : NULL;
    layout(m, 1);
    if (m->storage == WEIGHTS_BF16) {
        size_t most = 0;
        for (int s = 0; s < N_SLOTS; s++) {
            int in, out;
            slot_dims(cfg, s, &in, &out);
            if ((size_t)in * out > most) most = (size_t)in * out;
        }
        m->wide = xmalloc(most * sizeof(float));
        m->wide_cap = most;
    }
    return m;
}

void model_free(Model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) free((char *)m->params[i].name);
    free(m->params);
    free(m->param_buf);
    free(m->grad_buf);
    free(m->frozen_buf);
    free(m->bf16_buf);
    free(m->w);
    free(m->gw);
    free(m->wb);
    free(m->lora);
    free(m->wide);
    free(m->lora_tmp);
    free(m->base_dir);
    if (m->config_json) json_decref(m->config_json);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->arena);
    free(m->ids);
    free(m->pos);
    free(m->plan);
    free(m->acts);
    free(m->bwd);
    free(m);
}

ModelParam *model_params(Model *m, int *count) {
    model_bf16_unpack(m); /* callers read the stored layout */
    *count = m->n_params;
    return m->params;
}

void model_zero_grad(Model *m) {
    if (m->n_floats) memset(m->grad_buf, 0, m->n_floats * sizeof(float));
}

size_t model_num_params(const Model *m, int trainable_only) {
    if (trainable_only) return m->n_floats;
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].numel;
    return n;
}

/* ---- random init ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* Values of one tensor in independent chunks, each seeded by (seed, tensor,
 * chunk): parallel, and the same whatever the thread count. kind 0: normal(0,
 * scale), 1: uniform(-scale, scale), 2: the constant scale. */
#define INIT_CHUNK 65536
static void fill_tensor(ModelParam *p, int kind, double scale, uint64_t seed, int tensor) {
    size_t nchunks = (p->numel + INIT_CHUNK - 1) / INIT_CHUNK;
    uint16_t *bf = (uint16_t *)p->data_bf16;
    #pragma omp parallel for schedule(static) if (p->numel > OMP_MIN_WORK)
    for (size_t c = 0; c < nchunks; c++) {
        uint64_t s = seed ^ ((uint64_t)tensor << 40) ^ (c * 0xd1342543de82ef95ULL);
        splitmix64(&s);
        size_t j0 = c * INIT_CHUNK, j1 = j0 + INIT_CHUNK < p->numel ? j0 + INIT_CHUNK : p->numel;
        for (size_t j = j0; j < j1; j += 2) {
            float v[2];
            if (kind == 0) { /* Box-Muller: both values of a pair */
                double r = scale * sqrt(-2 * log(uniform01(&s))), t = 2 * M_PI * uniform01(&s);
                v[0] = (float)(r * cos(t));
                v[1] = (float)(r * sin(t));
            } else if (kind == 1) {
                v[0] = (float)(scale * (2 * uniform01(&s) - 1));
                v[1] = (float)(scale * (2 * uniform01(&s) - 1));
            } else {
                v[0] = v[1] = (float)scale;
            }
            for (int k = 0; k < 2 && j + k < j1; k++) {
                if (bf) bf[j + k] = f32_to_bf16(v[k]);
                else p->data[j + k] = v[k];
            }
        }
    }
}

/* PEFT's default: A kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in),
 * 1/sqrt(in)); B zero, so a fresh adapter leaves the model unchanged. */
static void init_adapters(Model *m, uint64_t seed) {
    for (int i = 0; i < m->n_params; i++) {
        ModelParam *p = &m->params[i];
        if (!strstr(p->name, ".lora_")) continue;
        if (strstr(p->name, ".lora_A.")) fill_tensor(p, 1, 1.0 / sqrt((double)p->shape[1]), seed ^ 0x10aULL, i);
        else memset(p->data, 0, p->numel * sizeof(float));
    }
}

Model *model_new_random(const ModelConfig *cfg, const ModelOptions *opt, uint64_t seed, OprmError *err) {
    Model *m = model_alloc(cfg, opt, err);
    if (!m) return NULL;
    for (int i = 0; i < m->n_params; i++) {
        ModelParam *p = &m->params[i];
        if (strstr(p->name, ".lora_")) continue;
        int is_norm = strstr(p->name, "norm") != NULL, is_bias = strstr(p->name, ".bias") != NULL;
        fill_tensor(p, is_norm || is_bias ? 2 : 0, is_norm ? 1.0 : is_bias ? 0.0 : 0.02, seed, i);
    }
    init_adapters(m, opt ? opt->lora_seed : 0);
    return m;
}

/* ---- loading ---- */

typedef struct {
    StFile **files;
    int n;
} ShardSet;

static void shards_free(ShardSet *ss) {
    for (int i = 0; i < ss->n; i++) st_close(ss->files[i]);
    free(ss->files);
}

static int shards_open(const char *dir, ShardSet *ss, OprmError *err) {
    memset(ss, 0, sizeof *ss);
    char *single = path_join(dir, "model.safetensors");
    if (file_exists(single)) {
        ss->files = xmalloc(sizeof(StFile *));
        ss->files[0] = st_open(single, err);
        free(single);
        if (!ss->files[0]) return -1;
        ss->n = 1;
        return 0;
    }
    free(single);
    char *index = path_join(dir, "model.safetensors.index.json");
    if (!file_exists(index)) {
        oprm_fail(err, "%s: no model.safetensors or model.safetensors.index.json", dir);
        free(index);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_load_file(index, 0, &jerr);
    json_t *map = root ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(map)) {
        oprm_fail(err, "%s: %s", index, root ? "no \"weight_map\" object" : jerr.text);
        json_decref(root);
        free(index);
        return -1;
    }
    ss->files = xcalloc(json_object_size(map) + 1, sizeof(StFile *));
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(map, key, v) {
        if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
            rc = oprm_fail(err, "%s: weight_map entry \"%s\" is not a plain file name", index, key);
            break;
        }
        char *path = path_join(dir, json_string_value(v));
        int seen = 0;
        for (int i = 0; i < ss->n; i++) seen |= strcmp(ss->files[i]->path, path) == 0;
        if (!seen) {
            ss->files[ss->n] = st_open(path, err);
            if (!ss->files[ss->n]) rc = -1;
            else ss->n++;
        }
        free(path);
        if (rc) break;
    }
    json_decref(root);
    free(index);
    return rc;
}

static const StTensor *shards_find(const ShardSet *ss, const char *name, const StFile **file) {
    for (int i = 0; i < ss->n; i++) {
        const StTensor *t = st_find(ss->files[i], name);
        if (t) {
            *file = ss->files[i];
            return t;
        }
    }
    return NULL;
}

/* The embedding of a tied model may be stored only as lm_head.weight, with
 * __metadata__ naming the alias (as torch's save_model does for shared tensors). */
static const StTensor *find_embedding(const ShardSet *ss, const ModelConfig *c, const StFile **file) {
    const char *name = "model.embed_tokens.weight";
    const StTensor *t = shards_find(ss, name, file);
    if (t) return t;
    for (int i = 0; i < ss->n; i++) {
        const char *alias = st_meta(ss->files[i], name);
        if (alias && (t = shards_find(ss, alias, file))) return t;
    }
    if (c->tie_embeddings) return shards_find(ss, "lm_head.weight", file);
    return NULL;
}

/* A stored tensor into BF16: BF16 bits as they are, others rounded once
 * (F32 in chunks, so no full fp32 copy of a large tensor is made). */
static int st_to_bf16(const StFile *f, const StTensor *t, uint16_t *dst, OprmError *err) {
    if (t->dtype == ST_BF16) {
        memcpy(dst, t->data, t->numel * 2);
        return 0;
    }
    if (t->dtype == ST_F32) {
        #pragma omp parallel for schedule(static) if (t->numel > OMP_MIN_WORK)
        for (size_t c = 0; c < (t->numel + 4095) / 4096; c++) {
            float buf[4096];
            size_t j0 = c * 4096, n = t->numel - j0 < 4096 ? t->numel - j0 : 4096;
            memcpy(buf, t->data + j0 * 4, n * 4);
            for (size_t j = 0; j < n; j++) dst[j0 + j] = f32_to_bf16(buf[j]);
        }
        return 0;
    }
    float *tmp = xmalloc(t->numel * sizeof(float));
    int rc = st_to_f32(f, t, tmp, err);
    if (rc == 0)
        for (size_t j = 0; j < t->numel; j++) dst[j] = f32_to_bf16(tmp[j]);
    free(tmp);
    return rc;
}

Model *model_load(const char *dir, const ModelOptions *opt, OprmError *err) {
    char *cfg_path = path_join(dir, "config.json");
    json_error_t jerr;
    json_t *root = json_load_file(cfg_path, 0, &jerr);
    if (!root) {
        oprm_fail(err, "%s: cannot read config: %s (line %d)", cfg_path, jerr.text, jerr.line);
        free(cfg_path);
        return NULL;
    }
    ModelConfig cfg;
    if (model_config_from_json(root, cfg_path, &cfg, err) != 0) {
        json_decref(root);
        free(cfg_path);
        return NULL;
    }
    Model *m = model_alloc(&cfg, opt, err);
    if (!m) {
        json_decref(root);
        free(cfg_path);
        return NULL;
    }
    m->config_json = root;
    m->base_dir = xstrdup(dir);
    ShardSet ss;
    if (shards_open(dir, &ss, err) != 0) {
        shards_free(&ss);
        free(cfg_path);
        model_free(m);
        return NULL;
    }
    int rc = 0;
    for (int i = 0; i < m->n_params && rc == 0; i++) {
        ModelParam *p = &m->params[i];
        if (strstr(p->name, ".lora_")) continue;
        const StFile *f = NULL;
        const StTensor *t = !strcmp(p->name, "model.embed_tokens.weight") ? find_embedding(&ss, &cfg, &f)
                                                                          : shards_find(&ss, p->name, &f);
        if (!t) {
            rc = oprm_fail(err, "%s: missing tensor \"%s\" required by %s (config %s)",
                           ss.n == 1 ? ss.files[0]->path : dir, p->name, cfg.architecture, cfg_path);
            break;
        }
        int same = t->ndim == p->ndim && t->shape[0] == p->shape[0] && (p->ndim == 1 || t->shape[1] == p->shape[1]);
        if (!same) {
            char got[96] = "", want[64];
            size_t n = 0;
            for (int d = 0; d < t->ndim && n < sizeof got - 24; d++)
                n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            if (p->ndim == 2) snprintf(want, sizeof want, "%lld, %lld", (long long)p->shape[0], (long long)p->shape[1]);
            else snprintf(want, sizeof want, "%lld", (long long)p->shape[0]);
            rc = oprm_fail(err, "%s: tensor \"%s\" has shape [%s] but %s implies [%s]", f->path, t->name, got,
                           cfg_path, want);
            break;
        }
        rc = p->data ? st_to_f32(f, t, p->data, err) : st_to_bf16(f, t, (uint16_t *)p->data_bf16, err);
    }
    if (rc == 0) init_adapters(m, opt ? opt->lora_seed : 0);
    shards_free(&ss);
    free(cfg_path);
    if (rc != 0) {
        model_free(m);
        return NULL;
    }
    return m;
}

/* ---- saving ---- */

static int write_config(const Model *m, const char *dir, OprmError *err) {
    if (make_dirs(dir, err) != 0) return -1;
    json_t *cfg = m->config_json ? json_deep_copy(m->config_json) : model_config_to_json(&m->cfg);
    json_object_set_new(cfg, "torch_dtype", json_string("float32"));
    char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(cfg);
    char *cfg_path = path_join(dir, "config.json");
    int rc = write_file_atomic(cfg_path, text, strlen(text), err);
    free(cfg_path);
    free(text);
    return rc;
}

/* The layer and slot of a base projection weight's name, or -1. */
static int base_slot(const char *name, int *layer) {
    int l, n = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &n) != 1 || n == 0) return -1;
    for (int s = 0; s < N_SLOTS; s++) {
        size_t k = strlen(slot_module[s]);
        if (!strncmp(name + n, slot_module[s], k) && !strcmp(name + n + k, ".weight")) {
            *layer = l;
            return s;
        }
    }
    return -1;
}

int model_save(const Model *m, const char *dir, OprmError *err) {
    model_bf16_unpack((Model *)m); /* the stored layout (the model owns its buffers) */
    if (write_config(m, dir, err) != 0) return -1;
    StWriteTensor *t = xcalloc((size_t)m->n_params, sizeof *t);
    float **owned = xcalloc((size_t)m->n_params, sizeof *owned);
    int n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ModelParam *p = &m->params[i];
        if (strstr(p->name, ".lora_")) continue;
        const float *data = p->data;
        int l, s = base_slot(p->name, &l);
        const LoraPair *lp = s >= 0 && m->lora && m->lora[l * N_SLOTS + s].a ? &m->lora[l * N_SLOTS + s] : NULL;
        if (!data || lp) { /* materialise: widen BF16 and/or merge W + (alpha/r) B A */
            float *w = owned[i] = xmalloc(p->numel * sizeof(float));
            if (p->data) memcpy(w, p->data, p->numel * sizeof(float));
            else bf16_widen(w, p->data_bf16, p->numel);
            if (lp)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->shape[0], (int)p->shape[1],
                            m->lora_rank, (float)(m->lora_alpha / m->lora_rank), lp->b, m->lora_rank, lp->a,
                            (int)p->shape[1], 1.0f, w, (int)p->shape[1]);
            data = w;
        }
        t[n].name = p->name;
        t[n].data = data;
        t[n].ndim = p->ndim;
        t[n].shape[0] = p->shape[0];
        t[n].shape[1] = p->shape[1];
        n++;
    }
    static const char *const meta[] = {"format", "pt"};
    char *st_path = path_join(dir, "model.safetensors");
    int rc = st_write_f32(st_path, t, n, meta, 1, err);
    free(st_path);
    for (int i = 0; i < m->n_params; i++) free(owned[i]);
    free(owned);
    free(t);
    return rc;
}

static const char *const peft_module[N_SLOTS] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"};

int model_save_adapter(const Model *m, const char *dir, OprmError *err) {
    if (m->lora_rank <= 0) return oprm_fail(err, "model_save_adapter: this model has no LoRA adapter");
    if (make_dirs(dir, err) != 0) return -1;
    json_t *cfg = json_object(), *targets = json_array();
    for (int s = 0; s < N_SLOTS; s++)
        if (m->lora_targets & (1u << s)) json_array_append_new(targets, json_string(peft_module[s]));
    json_object_set_new(cfg, "peft_type", json_string("LORA"));
    json_object_set_new(cfg, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(cfg, "base_model_name_or_path", json_string(m->base_dir ? m->base_dir : ""));
    json_object_set_new(cfg, "r", json_integer(m->lora_rank));
    json_object_set_new(cfg, "lora_alpha", json_real(m->lora_alpha));
    json_object_set_new(cfg, "lora_dropout", json_real(0.0));
    json_object_set_new(cfg, "bias", json_string("none"));
    json_object_set_new(cfg, "target_modules", targets);
    json_object_set_new(cfg, "fan_in_fan_out", json_false());
    json_object_set_new(cfg, "inference_mode", json_true());
    char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(cfg);
    char *cfg_path = path_join(dir, "adapter_config.json");
    int rc = write_file_atomic(cfg_path, text, strlen(text), err);
    free(cfg_path);
    free(text);
    if (rc != 0) return -1;
    StWriteTensor *t = xcalloc((size_t)m->n_params, sizeof *t);
    int n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ModelParam *p = &m->params[i];
        if (!strstr(p->name, ".lora_")) continue;
        t[n].name = p->name;
        t[n].data = p->data;
        t[n].ndim = 2;
        t[n].shape[0] = p->shape[0];
        t[n].shape[1] = p->shape[1];
        n++;
    }
    static const char *const meta[] = {"format", "pt"};
    char *st_path = path_join(dir, "adapter_model.safetensors");
    rc = st_write_f32(st_path, t, n, meta, 1, err);
    free(st_path);
    free(t);
    return rc;
}

int model_load_adapter(Model *m, const char *dir, OprmError *err) {
    if (m->lora_rank <= 0)
        return oprm_fail(err, "%s: the model was loaded without LoRA (set lora_rank and lora_targets)", dir);
    char *cfg_path = path_join(dir, "adapter_config.json");
    json_error_t jerr;
    json_t *root = json_load_file(cfg_path, 0, &jerr);
    int rc = 0;
    if (!root) {
        rc = oprm_fail(err, "%s: cannot read: %s (line %d)", cfg_path, jerr.text, jerr.line);
        goto done;
    }
    const char *ptype = json_string_value(json_object_get(root, "peft_type"));
    json_t *jr = json_object_get(root, "r"), *ja = json_object_get(root, "lora_alpha"),
           *jt = json_object_get(root, "target_modules");
    const char *bias = json_string_value(json_object_get(root, "bias"));
    if (ptype && strcmp(ptype, "LORA")) {
        rc = oprm_fail(err, "%s: peft_type \"%s\" is not LORA", cfg_path, ptype);
        goto done;
    }
    if (bias && strcmp(bias, "none")) {
        rc = oprm_fail(err, "%s: bias \"%s\" is not supported (only \"none\")", cfg_path, bias);
        goto done;
    }
    if (!json_is_integer(jr) || json_integer_value(jr) != m->lora_rank) {
        rc = oprm_fail(err, "%s: \"r\" must be the model's LoRA rank %d", cfg_path, m->lora_rank);
        goto done;
    }
    if (!json_is_number(ja) || !(json_number_value(ja) > 0)) {
        rc = oprm_fail(err, "%s: \"lora_alpha\" missing or not positive", cfg_path);
        goto done;
    }
    unsigned mask = 0;
    for (size_t i = 0; json_is_array(jt) && i < json_array_size(jt); i++) {
        const char *name = json_string_value(json_array_get(jt, i));
        int s = 0;
        while (s < N_SLOTS && (!name || strcmp(name, peft_module[s]))) s++;
        if (s == N_SLOTS) {
            rc = oprm_fail(err, "%s: target module \"%s\" is not one of q,k,v,o,gate,up,down_proj", cfg_path,
                           name ? name : "(not a string)");
            goto done;
        }
        mask |= 1u << s;
    }
    if (mask != m->lora_targets) {
        rc = oprm_fail(err, "%s: target_modules (mask 0x%x) differ from the model's LoRA targets (0x%x)", cfg_path,
                       mask, m->lora_targets);
        goto done;
    }
    char *st_path = path_join(dir, "adapter_model.safetensors");
    StFile *f = st_open(st_path, err);
    free(st_path);
    if (!f) {
        rc = -1;
        goto done;
    }
    for (int i = 0; i < m->n_params && rc == 0; i++) {
        ModelParam *p = &m->params[i];
        if (!strstr(p->name, ".lora_")) continue;
        const StTensor *t = st_find(f, p->name);
        if (!t) rc = oprm_fail(err, "%s: missing tensor \"%s\"", f->path, p->name);
        else if (t->ndim != 2 || t->shape[0] != p->shape[0] || t->shape[1] != p->shape[1])
            rc = oprm_fail(err, "%s: tensor \"%s\" should have shape [%lld, %lld]", f->path, p->name,
                           (long long)p->shape[0], (long long)p->shape[1]);
        else rc = st_to_f32(f, t, p->data, err);
    }
    st_close(f);
    if (rc == 0) m->lora_alpha = json_number_value(ja);
done:
    json_decref(root);
    free(cfg_path);
    return rc;
}
