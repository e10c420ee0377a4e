#include "synth/init_model.h"

#include <stdio.h>
#include <string.h>

#include "io/fileio.h"
#include "synth/bpe.h"
#include "synth/task.h"

void init_default_options(InitOptions *o, ModelArch arch) {
    memset(o, 0, sizeof *o);
    o->arch = arch;
    o->hidden = 64;
    o->layers = 2;
    o->heads = 4;
    o->max_pos = 512;
    o->rope_theta = 10000.0;
    o->rms_eps = 1e-6;
    o->seed = 1;
    o->tokenizer_seed = 1;
}

int init_parse_arch(const char *name, ModelArch *out, OprmError *err) {
    static const char *const names[] = {"llama", "mistral", "qwen2", "qwen3"};
    static const ModelArch archs[] = {ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_QWEN3};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) {
            *out = archs[i];
            return 0;
        }
    return oprm_fail(err, "unknown --arch '%s' (expected llama, mistral, qwen2 or qwen3)", name);
}

int init_model_dir(const char *dir, const InitOptions *o, size_t *n_params, OprmError *err) {
    static const char *const arch_names[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                             "Qwen3ForCausalLM"};
    if (o->hidden <= 0 || o->layers <= 0 || o->heads <= 0 || o->max_pos <= 0)
        return oprm_fail(err, "init: --hidden, --layers, --heads and --max-pos must be positive");
    int kv = o->kv_heads ? o->kv_heads : o->heads;
    if (kv <= 0 || o->heads % kv)
        return oprm_fail(err, "init: --heads (%d) must be a multiple of --kv-heads (%d)", o->heads, kv);
    int head_dim = o->head_dim ? o->head_dim : o->hidden / o->heads;
    if (!o->head_dim && o->hidden % o->heads)
        return oprm_fail(err, "init: --hidden (%d) is not divisible by --heads (%d); give --head-dim", o->hidden,
                         o->heads);
    if (head_dim <= 0 || head_dim % 2)
        return oprm_fail(err, "init: the head dimension (%d) must be positive and even (rotary embeddings)", head_dim);
    if (o->ffn < 0 || o->vocab < 0) return oprm_fail(err, "init: --ffn and --vocab must not be negative");
    if (make_dirs(dir, err)) return -1;
    int tok_vocab = 0;
    if (synth_write_tokenizer(dir, o->tokenizer_seed, o->merges, &tok_vocab, err))
        return oprm_prefix(err, "init: writing the tokenizer into %s: ", dir);
    if (o->vocab && o->vocab < tok_vocab)
        return oprm_fail(err, "init: --vocab %d is smaller than the tokenizer's %d tokens", o->vocab, tok_vocab);

    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.arch = o->arch;
    snprintf(c.architecture, sizeof c.architecture, "%s", arch_names[o->arch]);
    c.hidden = o->hidden;
    c.n_layers = o->layers;
    c.n_heads = o->heads;
    c.n_kv_heads = kv;
    c.head_dim = head_dim;
    c.ffn = o->ffn ? o->ffn : 3 * o->hidden;
    c.vocab = o->vocab ? o->vocab : tok_vocab;
    c.max_pos = o->max_pos;
    c.rope_theta = o->rope_theta;
    c.rms_eps = o->rms_eps;
    c.tie_embeddings = o->tie_embeddings;
    c.qkv_bias = o->arch == ARCH_QWEN2;
    c.qk_norm = o->arch == ARCH_QWEN3;
    c.bos_id = -1;                 /* ChatML needs no BOS */
    c.eos_id = tok_vocab - 1;      /* <|im_end|>, the last added token */
    Model *m = model_new_random(&c, NULL, o->seed, err);
    if (!m) return oprm_prefix(err, "init: ");
    int rc = model_save(m, dir, err);
    if (!rc && n_params) *n_params = model_num_params(m, 0);
    model_free(m);
    return rc ? oprm_prefix(err, "init: saving the model into %s: ", dir) : 0;
}
