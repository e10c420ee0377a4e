#!/usr/bin/env python3
"""Reference fixtures for the C engine (tests/test_model*.c), computed by Hugging Face transformers
itself (and PEFT for LoRA): the code our users run, not a re-implementation of it.

For each tiny random model built with AutoModelForCausalLM.from_config -- LlamaForCausalLM with GQA
and an untied head, Qwen2ForCausalLM with q/k/v biases and tied embeddings stored in BF16,
Qwen3ForCausalLM with q/k norm and head_dim != hidden/heads, LlamaForCausalLM with Llama-3 rope
scaling and tied embeddings, MistralForCausalLM with GQA, head_dim != hidden/heads and no sliding
window -- it writes, with save_pretrained, a Hugging Face directory tests/fixtures/engine/<name>/
(config.json as transformers writes it, i.e. with "rope_parameters", + model.safetensors) and
tests/fixtures/engine/<name>/expected.safetensors with, for two chosen/rejected pairs (lengths
[1, 70] and [5, 33]): the token ids, the final-normed hidden state and the nine digit logits at the
last position of each sequence, the OPRM pair loss -log sum_{i>j} p_c(i) p_r(j) and the gradient
of every parameter tensor ("caseK.grad.<HF name>").

The stored weights are fp32 (BF16 for the bf16 fixture); the expected values come from the same
transformers modules cast to float64 (so the reference error is far below the tests' tolerances),
and the script prints how far transformers' own fp32 run is from them.

LoRA (tests/fixtures/engine/lora_qwen2/): a Qwen2 base (biases, tied embeddings) whose weights are
bf16-representable but stored as F32, an adapter made by peft.get_peft_model + save_pretrained in
lora_qwen2/adapter/ (r 4, alpha 6, all seven target modules, NON-zero B so every gradient flows)
and expected.safetensors with the logits, loss and the gradients of every lora_A / lora_B tensor
(named as in adapter_model.safetensors).

It also writes tests/fixtures/engine/story_llama_greedy.json: the ids of "Once upon a time" from
the `tokenizers` library on ../shared/data/models/story-llama/tokenizer.json and the 32 ids that
transformers' greedy generate() produces (float32).

The earlier hand-written PyTorch model is gone: transformers checks everything it checked (same
architectures, same cases) and is the implementation oprm must agree with.

Usage: python3 tools/gen_engine_fixtures.py (from the repo root, in an environment with torch,
transformers, peft, safetensors; e.g. /work/venv-hf). Deterministic for given library versions."""
import copy
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

OUT = "tests/fixtures/engine"
DIGITS = list(range(16, 25))
CASES = [[1, 70], [5, 33]]  # [chosen length, rejected length]

COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=48, vocab_size=48, max_position_embeddings=128, hidden_act="silu",
              bos_token_id=1, eos_token_id=2)

# name: (model_type, config overrides, stored dtype, write gradients)
MODELS = {
    "llama_gqa": ("llama", dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                rms_norm_eps=1e-5, tie_word_embeddings=False), "F32", True),
    "qwen2_tied_bf16": ("qwen2", dict(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                                      rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False),
                        "BF16", True),
    "qwen3_qknorm": ("qwen3", dict(head_dim=12, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                                   rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False), "F32", True),
    "llama3_rope": ("llama", dict(num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                  intermediate_size=32, vocab_size=32, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                  rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 32}), "F32", True),
    "mistral_gqa": ("mistral", dict(head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                    rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None), "F32", True),
}


def build(model_type, overrides):
    kw = dict(COMMON)
    kw.update(overrides)
    cfg = AutoConfig.for_model(model_type, **kw)
    cfg._attn_implementation = "eager"
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def randomize(model, gen):
    """Weights far from transformers' init (norms 1 + noise, biases, O(1) activations), so that a
    wrong norm weight, bias or scale changes the logits by much more than the tolerance."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                t = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
            elif n.endswith(".bias"):
                t = 0.3 * torch.randn(p.shape, generator=gen)
            elif "embed_tokens" in n:
                t = torch.randn(p.shape, generator=gen)
            elif "lora_" in n:
                continue
            else:
                t = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]) * 1.2
            p.copy_(t)


def round_bf16(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def pair_loss(lc, lr):
    pc, pr = lc.softmax(-1), lr.softmax(-1)
    tri = torch.tril(torch.ones(9, 9, dtype=lc.dtype), -1)  # tri[i, j] = 1 for i > j
    return -torch.log(pc @ tri @ pr)


def run_case(model, ids, lens):
    """Digit logits, last hidden states and loss of one pair through the transformers model."""
    seqs = [ids[:lens[0]], ids[lens[0]:]]
    hl, ll = [], []
    for s in seqs:
        out = model(input_ids=torch.tensor([s]), output_hidden_states=True)
        hl.append(out.hidden_states[-1][0, -1])  # after the final norm
        ll.append(out.logits[0, -1, DIGITS])
    logits = torch.stack(ll)
    return torch.stack(hl), logits, pair_loss(logits[0], logits[1])


def grads_by_name(model, prefix_map=None):
    out = {}
    for n, p in model.named_parameters():
        if p.grad is not None:
            out[prefix_map(n) if prefix_map else n] = p.grad.detach().float().contiguous()
    return out


def case_tensors(ci, lens, ids, h, logits, loss, grads):
    pre = "case%d." % ci
    t = {pre + "lens": torch.tensor(lens, dtype=torch.int32), pre + "ids": torch.tensor(ids, dtype=torch.int32),
         pre + "h_last": h.detach().float().contiguous(), pre + "logits": logits.detach().float().contiguous(),
         pre + "loss": torch.tensor([loss.item()], dtype=torch.float32)}
    for n, g in (grads or {}).items():
        t[pre + "grad." + n] = g
    return t


def fp32_gap(model32, model64, ids, lens):
    with torch.no_grad():
        _, l32, _ = run_case(model32, ids, lens)
        _, l64, _ = run_case(model64, ids, lens)
    return float((l32.double() - l64).abs().max())


def make_model(name, model_type, overrides, dtype, with_grads, seed):
    gen = torch.Generator().manual_seed(seed)
    model = build(model_type, overrides)
    randomize(model, gen)
    if dtype == "BF16":
        round_bf16(model)  # the reference uses exactly the stored bf16 values
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    saved = copy.deepcopy(model).to(torch.bfloat16) if dtype == "BF16" else model
    saved.save_pretrained(d, safe_serialization=True)
    gcfg = os.path.join(d, "generation_config.json")
    if os.path.exists(gcfg):
        os.remove(gcfg)  # not needed by oprm; keeps the fixture small
    m64 = copy.deepcopy(model).double()
    out = {"digits": torch.tensor(DIGITS, dtype=torch.int32)}
    for ci, lens in enumerate(CASES):
        ids = torch.randint(0, model.config.vocab_size, (sum(lens),), generator=gen).tolist()
        m64.zero_grad()
        h, logits, loss = run_case(m64, ids, lens)
        loss.backward()
        out.update(case_tensors(ci, lens, ids, h, logits, loss, grads_by_name(m64) if with_grads else None))
        print("%s case %d lens %s loss %.6f (transformers fp32 vs fp64 logits: %.2g)"
              % (name, ci, lens, loss.item(), fp32_gap(model, m64, ids, lens)))
    save_file(out, os.path.join(d, "expected.safetensors"))


LORA_R, LORA_ALPHA = 4, 6.0
LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_lora(seed):
    import peft
    gen = torch.Generator().manual_seed(seed)
    _, overrides, _, _ = MODELS["qwen2_tied_bf16"]
    base = build("qwen2", overrides)
    randomize(base, gen)
    round_bf16(base)  # bf16-representable values stored as F32: loading with BF16 storage must not change them
    d = os.path.join(OUT, "lora_qwen2")
    ad = os.path.join(d, "adapter")
    os.makedirs(ad, exist_ok=True)
    base.save_pretrained(d, safe_serialization=True)
    if os.path.exists(os.path.join(d, "generation_config.json")):
        os.remove(os.path.join(d, "generation_config.json"))
    lcfg = peft.LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, bias="none",
                           target_modules=LORA_MODULES, task_type="CAUSAL_LM")
    pm = peft.get_peft_model(base, lcfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_A" in n:
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) / math.sqrt(p.shape[1]))
            elif "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)  # non-zero: every gradient flows
    pm.save_pretrained(ad, safe_serialization=True)
    for extra in ("README.md",):
        if os.path.exists(os.path.join(ad, extra)):
            os.remove(os.path.join(ad, extra))
    saved = load_file(os.path.join(ad, "adapter_model.safetensors"))
    # in memory "...lora_A.default.weight"; in the file "...lora_A.weight"
    rename = lambda n: n.replace(".default.", ".")
    m64 = copy.deepcopy(pm).double()
    out = {"digits": torch.tensor(DIGITS, dtype=torch.int32)}
    for ci, lens in enumerate(CASES):
        ids = torch.randint(0, base.config.vocab_size, (sum(lens),), generator=gen).tolist()
        m64.zero_grad()
        h, logits, loss = run_case(m64, ids, lens)
        loss.backward()
        g = grads_by_name(m64, rename)
        assert set(g) == set(saved), (sorted(set(g) ^ set(saved)))[:4]
        out.update(case_tensors(ci, lens, ids, h, logits, loss, g))
        print("lora_qwen2 case %d lens %s loss %.6f (%d adapter tensors)" % (ci, lens, loss.item(), len(g)))
    save_file(out, os.path.join(d, "expected.safetensors"))


def story_llama_greedy(model_dir, steps=32):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    prompt = "Once upon a time"
    prompt_ids = tok.encode(prompt, add_special_tokens=True).ids
    if prompt_ids[:1] != [1]:
        prompt_ids = [1] + prompt_ids  # BOS <|start_story|> (add_bos_token in tokenizer_config.json)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=steps, do_sample=False,
                             output_scores=True, return_dict_in_generate=True, eos_token_id=None)
    gen = out.sequences[0, len(prompt_ids):].tolist()
    margins = [float((s[0].topk(2).values[0] - s[0].topk(2).values[1])) for s in out.scores]
    return {"prompt": prompt, "prompt_ids": prompt_ids, "generated_ids": gen,
            "generated_text": tok.decode(gen), "min_top2_margin": min(margins),
            "note": "transformers %s float32 greedy generate(); tokenizers %s; made by tools/gen_engine_fixtures.py"
                    % (transformers.__version__, __import__("tokenizers").__version__)}


def main():
    torch.manual_seed(0)
    for i, (name, (mt, ov, dtype, with_grads)) in enumerate(MODELS.items()):
        make_model(name, mt, ov, dtype, with_grads, 1234 + i)
    make_lora(4321)
    story = os.path.join("..", "shared", "data", "models", "story-llama")
    if os.path.isdir(story):
        g = story_llama_greedy(story)
        with open(os.path.join(OUT, "story_llama_greedy.json"), "w") as f:
            json.dump(g, f, indent=1)
        print("story-llama:", g["prompt_ids"], g["generated_ids"], repr(g["generated_text"]), g["min_top2_margin"])
    else:
        print("story-llama not found at", story, file=sys.stderr)


if __name__ == "__main__":
    main()
