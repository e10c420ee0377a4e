/* Parameter layout, loading from Hugging Face directories, random init,
 * saving. All parameters live in one fp32 buffer and all gradients in a
 * second one with the same layout. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "io/safetensors.h"
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

/* Walks the parameter tensors in HF order. The first pass (assign = 0) only
 * counts tensors and floats; the second names them and points the weight and
 * gradient pointers at their slots in the two buffers. */
typedef struct {
    Model *m;
    int assign, np;
    size_t off;
} Layout;

static void add(Layout *L, float **data, float **grad, int ndim, int64_t s0, int64_t s1, const char *name_fmt,
                int layer) {
    size_t numel = (size_t)s0 * (ndim == 2 ? (size_t)s1 : 1);
    if (L->assign) {
        ModelParam *p = &L->m->params[L->np];
        char name[160];
        snprintf(name, sizeof name, name_fmt, layer);
        p->name = xstrdup(name);
        p->data = L->m->param_buf + L->off;
        p->grad = L->m->grad_buf + L->off;
        p->ndim = ndim;
        p->shape[0] = s0;
        p->shape[1] = ndim == 2 ? s1 : 0;
        p->numel = numel;
        *data = p->data;
        *grad = p->grad;
    }
    L->np++;
    L->off += numel;
}

static size_t layout(Model *m, int assign) {
    const ModelConfig *c = &m->cfg;
    Layout L = {m, assign, 0, 0};
    int D = c->hidden, Hq = c->n_heads * c->head_dim, Hk = c->n_kv_heads * c->head_dim, F = c->ffn, hd = c->head_dim;
    add(&L, &m->embed, &m->d_embed, 2, c->vocab, D, "model.embed_tokens.weight", 0);
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights unused_w, unused_g; /* first pass: pointers land here and are dropped */
        LayerWeights *w = assign ? &m->w[l] : &unused_w, *g = assign ? &m->gw[l] : &unused_g;
        add(&L, &w->wq, &g->wq, 2, Hq, D, "model.layers.%d.self_attn.q_proj.weight", l);
        if (c->qkv_bias) add(&L, &w->bq, &g->bq, 1, Hq, 0, "model.layers.%d.self_attn.q_proj.bias", l);
        add(&L, &w->wk, &g->wk, 2, Hk, D, "model.layers.%d.self_attn.k_proj.weight", l);
        if (c->qkv_bias) add(&L, &w->bk, &g->bk, 1, Hk, 0, "model.layers.%d.self_attn.k_proj.bias", l);
        add(&L, &w->wv, &g->wv, 2, Hk, D, "model.layers.%d.self_attn.v_proj.weight", l);
        if (c->qkv_bias) add(&L, &w->bv, &g->bv, 1, Hk, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        add(&L, &w->wo, &g->wo, 2, D, Hq, "model.layers.%d.self_attn.o_proj.weight", l);
        if (c->qk_norm) {
            add(&L, &w->q_norm, &g->q_norm, 1, hd, 0, "model.layers.%d.self_attn.q_norm.weight", l);
            add(&L, &w->k_norm, &g->k_norm, 1, hd, 0, "model.layers.%d.self_attn.k_norm.weight", l);
        }
        add(&L, &w->gate, &g->gate, 2, F, D, "model.layers.%d.mlp.gate_proj.weight", l);
        add(&L, &w->up, &g->up, 2, F, D, "model.layers.%d.mlp.up_proj.weight", l);
        add(&L, &w->down, &g->down, 2, D, F, "model.layers.%d.mlp.down_proj.weight", l);
        add(&L, &w->norm1, &g->norm1, 1, D, 0, "model.layers.%d.input_layernorm.weight", l);
        add(&L, &w->norm2, &g->norm2, 1, D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
    }
    add(&L, &m->final_norm, &m->d_final_norm, 1, D, 0, "model.norm.weight", 0);
    if (c->tie_embeddings) { /* one tensor, listed once; its gradient gets both uses */
        m->lm_head = m->embed;
        m->d_lm_head = m->d_embed;
    } else {
        add(&L, &m->lm_head, &m->d_lm_head, 2, c->vocab, D, "lm_head.weight", 0);
    }
    m->n_params = L.np;
    return L.off;
}

static Model *model_alloc(const ModelConfig *cfg, const ModelOptions *opt, OprmError *err) {
    if (opt && (opt->lora_rank > 0 || opt->frozen_storage != WEIGHTS_F32)) {
        oprm_fail(err, "LoRA and BF16 weight storage are not implemented yet (use full fp32 fine-tuning)");
        return NULL;
    }
    Model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->w = xcalloc((size_t)cfg->n_layers, sizeof *m->w);
    m->gw = xcalloc((size_t)cfg->n_layers, sizeof *m->gw);
    m->n_floats = layout(m, 0);
    m->params = xcalloc((size_t)m->n_params, sizeof *m->params);
    m->param_buf = xmalloc(m->n_floats * sizeof(float));
    m->grad_buf = xcalloc(m->n_floats, sizeof(float));
    layout(m, 1);
    return m;
}

void model_free(Model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) free((char *)m->params[i].name);
    free(m->params);
    free(m->param_buf);
    free(m->grad_buf);
    free(m->w);
    free(m->gw);
    if (m->config_json) json_decref(m->config_json);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->arena);
    free(m->ids);
    free(m->pos);
    free(m->off);
    free(m->len);
    free(m->last_row);
    free(m->last_pos);
    free(m->seq_index);
    free(m->ones);
    free(m->acts);
    free(m->bwd);
    free(m);
}

ModelParam *model_params(Model *m, int *count) {
    *count = m->n_params;
    return m->params;
}

void model_zero_grad(Model *m) { memset(m->grad_buf, 0, m->n_floats * sizeof(float)); }

size_t model_num_params(const Model *m, int trainable_only) { return m->n_floats; }

/* ---- random init ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

Model *model_new_random(const ModelConfig *cfg, const ModelOptions *opt, uint64_t seed, OprmError *err) {
    Model *m = model_alloc(cfg, opt, err);
    if (!m) return NULL;
    uint64_t s = seed;
    for (int i = 0; i < m->n_params; i++) {
        ModelParam *p = &m->params[i];
        int is_norm = strstr(p->name, "norm") != NULL, is_bias = strstr(p->name, ".bias") != NULL;
        for (size_t j = 0; j < p->numel; j++) {
            if (is_norm) p->data[j] = 1.0f;
            else if (is_bias) p->data[j] = 0.0f;
            else p->data[j] = (float)(0.02 * sqrt(-2 * log(uniform01(&s))) * cos(2 * M_PI * uniform01(&s)));
        }
    }
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
        const StFile *f = NULL;
        const StTensor *t = i == 0 ? find_embedding(&ss, &cfg, &f) : shards_find(&ss, p->name, &f);
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
        rc = st_to_f32(f, t, p->data, err);
    }
    shards_free(&ss);
    free(cfg_path);
    if (rc != 0) {
        model_free(m);
        return NULL;
    }
    return m;
}

/* ---- saving ---- */

int model_save(const Model *m, const char *dir, OprmError *err) {
    if (make_dirs(dir, err) != 0) return -1;
    json_t *cfg = m->config_json ? json_deep_copy(m->config_json) : model_config_to_json(&m->cfg);
    json_object_set_new(cfg, "torch_dtype", json_string("float32"));
    char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(cfg);
    char *cfg_path = path_join(dir, "config.json");
    int rc = write_file_atomic(cfg_path, text, strlen(text), err);
    free(cfg_path);
    free(text);
    if (rc != 0) return -1;
    StWriteTensor *t = xcalloc((size_t)m->n_params, sizeof *t);
    for (int i = 0; i < m->n_params; i++) {
        t[i].name = m->params[i].name;
        t[i].data = m->params[i].data;
        t[i].ndim = m->params[i].ndim;
        t[i].shape[0] = m->params[i].shape[0];
        t[i].shape[1] = m->params[i].shape[1];
    }
    static const char *const meta[] = {"format", "pt"};
    char *st_path = path_join(dir, "model.safetensors");
    rc = st_write_f32(st_path, t, m->n_params, meta, 1, err);
    free(st_path);
    free(t);
    return rc;
}

int model_save_adapter(const Model *m, const char *dir, OprmError *err) {
    return oprm_fail(err, "model_save_adapter: this model has no LoRA adapter (LoRA is not implemented yet)");
}
