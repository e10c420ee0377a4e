#!/usr/bin/python3
"""Reference fixtures for the C engine (tests/test_model*.c), computed in plain PyTorch (float64).

For each tiny random model (Llama with GQA and an untied head, Qwen2 with q/k/v biases and tied
embeddings stored in BF16, Qwen3 with q/k norm and head_dim != hidden/heads, Llama with Llama-3
rope scaling) it writes a Hugging Face directory tests/fixtures/engine/<name>/ (config.json +
model.safetensors) and tests/fixtures/engine/<name>/expected.safetensors with, for two
chosen/rejected pairs (lengths [1, 70] and [5, 33]): the token ids, the nine digit logits at the
last position of each sequence, the OPRM pair loss -log sum_{i>j} p_c(i) p_r(j) and the gradient
of every parameter tensor ("caseK.grad.<HF name>").

LoRA (tests/fixtures/engine/lora_qwen2/): a Qwen2 base (biases, tied embeddings) whose weights are
bf16-representable but stored as F32, a PEFT-style adapter in lora_qwen2/adapter/ (r 4, alpha 6,
all seven target modules, NON-zero B so every gradient flows) and expected.safetensors with the
logits, loss and the gradients of every lora_A / lora_B tensor (PEFT names), computed with the
effective weights W + (alpha/r) B A.

It also writes tests/fixtures/engine/story_llama_greedy.json: the token ids of "Once upon a time"
under ../shared/data/models/story-llama/tokenizer.json (SentencePiece-style BPE, done here from
the vocab and merges) and the 32 ids that greedy decoding with PyTorch (float32) produces.

Usage: /usr/bin/python3 tools/gen_engine_fixtures.py   (from the repo root; torch 1.13, no
transformers, no safetensors package needed: the format is written and read here by hand)."""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

OUT = "tests/fixtures/engine"
DIGITS = list(range(16, 25))
CASES = [[1, 70], [5, 33]]  # [chosen length, rejected length]

# ---------------------------------------------------------------- safetensors by hand

def st_write(path, tensors, metadata=None):
    """tensors: list of (name, np.ndarray) with dtype float32/int32, or (name, ('BF16', uint16 array, shape))."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors:
        if isinstance(arr, tuple):
            dtype, data, shape = arr
            raw = data.astype("<u2").tobytes()
        else:
            dtype = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[arr.dtype]
            shape = list(arr.shape)
            raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_read(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        raw = buf[8 + n + b:8 + n + en]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(e["dtype"])
        out[name] = torch.from_numpy(a.reshape(e["shape"]).copy())
    return out, meta

# ---------------------------------------------------------------- the model in plain torch

def inv_freq_of(cfg):
    hd = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":  # HF _compute_llama3_parameters
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / lo, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def last_hidden(P, cfg, ids):
    """Final-normed hidden state at the last position of one sequence."""
    D, L, H = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim", D // H)
    eps = cfg.get("rms_norm_eps", 1e-6)
    arch = cfg["architectures"][0]
    T = len(ids)
    x = P["model.embed_tokens.weight"][torch.tensor(ids)]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq_of(cfg)[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1).to(x.dtype), torch.cat([ang.sin()] * 2, -1).to(x.dtype)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(L):
        p = lambda n: P.get("model.layers.%d.%s" % (l, n))
        h = rms(x, p("input_layernorm.weight"), eps)
        def lin(n, t):
            y = t @ p(n + ".weight").T
            b = p(n + ".bias")
            return y + b if b is not None else y
        q = lin("self_attn.q_proj", h).view(T, H, hd)
        k = lin("self_attn.k_proj", h).view(T, KV, hd)
        v = lin("self_attn.v_proj", h).view(T, KV, hd)
        if arch == "Qwen3ForCausalLM":
            q = rms(q, p("self_attn.q_norm.weight"), eps)
            k = rms(k, p("self_attn.k_norm.weight"), eps)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [heads, T, hd]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, 0)
        v = v.repeat_interleave(H // KV, 0)
        a = ((q @ k.transpose(-1, -2)) / math.sqrt(hd)).masked_fill(mask, float("-inf")).softmax(-1)
        x = x + lin("self_attn.o_proj", (a @ v).transpose(0, 1).reshape(T, H * hd))
        h = rms(x, p("post_attention_layernorm.weight"), eps)
        x = x + lin("mlp.down_proj", torch.nn.functional.silu(lin("mlp.gate_proj", h)) * lin("mlp.up_proj", h))
    return rms(x[-1], P["model.norm.weight"], eps)


def head_weight(P, cfg):
    return P["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else P["lm_head.weight"]


def param_names(cfg):
    arch = cfg["architectures"][0]
    names = ["model.embed_tokens.weight"]
    for l in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % l
        for n in ["q", "k", "v"]:
            names.append(pre + "self_attn.%s_proj.weight" % n)
            if arch == "Qwen2ForCausalLM":
                names.append(pre + "self_attn.%s_proj.bias" % n)
        names.append(pre + "self_attn.o_proj.weight")
        if arch == "Qwen3ForCausalLM":
            names += [pre + "self_attn.q_norm.weight", pre + "self_attn.k_norm.weight"]
        names += [pre + "mlp.gate_proj.weight", pre + "mlp.up_proj.weight", pre + "mlp.down_proj.weight",
                  pre + "input_layernorm.weight", pre + "post_attention_layernorm.weight"]
    names.append("model.norm.weight")
    if not cfg.get("tie_word_embeddings", False):
        names.append("lm_head.weight")
    return names


def param_shape(cfg, name):
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim", D // H)
    F, V = cfg["intermediate_size"], cfg["vocab_size"]
    table = {"embed_tokens.weight": [V, D], "lm_head.weight": [V, D], "q_proj.weight": [H * hd, D],
             "q_proj.bias": [H * hd], "k_proj.weight": [KV * hd, D], "k_proj.bias": [KV * hd],
             "v_proj.weight": [KV * hd, D], "v_proj.bias": [KV * hd], "o_proj.weight": [D, H * hd],
             "q_norm.weight": [hd], "k_norm.weight": [hd], "gate_proj.weight": [F, D], "up_proj.weight": [F, D],
             "down_proj.weight": [D, F], "input_layernorm.weight": [D], "post_attention_layernorm.weight": [D],
             "norm.weight": [D]}
    for k, v in table.items():
        if name.endswith(k):
            return v
    raise KeyError(name)

# ---------------------------------------------------------------- tiny models and their fixtures

MODELS = {
    "llama_gqa": ({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "intermediate_size": 48, "vocab_size": 48, "max_position_embeddings": 128,
                   "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
                   "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}, "F32", True),
    "qwen2_tied_bf16": ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 32,
                         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                         "intermediate_size": 48, "vocab_size": 48, "max_position_embeddings": 128,
                         "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
                         "sliding_window": 4096, "use_sliding_window": False, "hidden_act": "silu",
                         "torch_dtype": "bfloat16"}, "BF16", True),
    "qwen3_qknorm": ({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 32,
                      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 12,
                      "intermediate_size": 48, "vocab_size": 48, "max_position_embeddings": 128,
                      "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
                      "attention_bias": False, "hidden_act": "silu", "torch_dtype": "float32"}, "F32", True),
    "llama3_rope": ({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "intermediate_size": 32, "vocab_size": 32, "max_position_embeddings": 128,
                     "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
                     "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
                     "hidden_act": "silu", "torch_dtype": "float32"}, "F32", False),
}


def random_params(cfg, gen):
    P = {}
    for n in param_names(cfg):
        shape = param_shape(cfg, n)
        if n.endswith("norm.weight"):
            t = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        elif n.endswith(".bias"):
            t = 0.3 * torch.randn(shape, generator=gen)
        elif "embed_tokens" in n:
            t = torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen) / math.sqrt(shape[1]) * 1.2
        P[n] = t.float()
    return P


def bf16_bits(t):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16)."""
    u = t.float().numpy().view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def pair_loss(lc, lr):
    pc, pr = lc.softmax(-1), lr.softmax(-1)
    tri = torch.tril(torch.ones(9, 9, dtype=lc.dtype), -1)  # tri[i, j] = 1 for i > j
    return -torch.log(pc @ tri @ pr)


def make_model(name, cfg, dtype, with_grads, seed):
    gen = torch.Generator().manual_seed(seed)
    P32 = random_params(cfg, gen)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if dtype == "BF16":
        bits = {n: bf16_bits(t) for n, t in P32.items()}
        st_write(os.path.join(d, "model.safetensors"), [(n, ("BF16", bits[n].reshape(-1), list(P32[n].shape))) for n in P32],
                 {"format": "pt"})
        P32 = {n: torch.from_numpy((bits[n].astype(np.uint32) << 16).view(np.float32).reshape(P32[n].shape).copy())
               for n in P32}
    else:
        st_write(os.path.join(d, "model.safetensors"), [(n, t.numpy()) for n, t in P32.items()], {"format": "pt"})
    out = [("digits", np.array(DIGITS, dtype=np.int32))]
    for ci, lens in enumerate(CASES):
        ids = torch.randint(0, cfg["vocab_size"], (sum(lens),), generator=gen).tolist()
        P = {n: t.double().requires_grad_(True) for n, t in P32.items()}
        W = head_weight(P, cfg)[torch.tensor(DIGITS)]
        seqs = [ids[:lens[0]], ids[lens[0]:]]
        hl = [last_hidden(P, cfg, s) for s in seqs]
        logits = torch.stack([h @ W.T for h in hl])
        loss = pair_loss(logits[0], logits[1])
        loss.backward()
        pre = "case%d." % ci
        out += [(pre + "lens", np.array(lens, dtype=np.int32)), (pre + "ids", np.array(ids, dtype=np.int32)),
                (pre + "h_last", torch.stack(hl).detach().float().numpy()),
                (pre + "logits", logits.detach().float().numpy()),
                (pre + "loss", np.array([loss.item()], dtype=np.float32))]
        if with_grads:
            out += [(pre + "grad." + n, P[n].grad.float().numpy()) for n in param_names(cfg)]
        print("%s case %d lens %s loss %.6f" % (name, ci, lens, loss.item()))
    st_write(os.path.join(d, "expected.safetensors"), out)

# ---------------------------------------------------------------- LoRA

LORA_R, LORA_ALPHA = 4, 6.0
LORA_MODULES = [("self_attn.q_proj", "q_proj"), ("self_attn.k_proj", "k_proj"), ("self_attn.v_proj", "v_proj"),
                ("self_attn.o_proj", "o_proj"), ("mlp.gate_proj", "gate_proj"), ("mlp.up_proj", "up_proj"),
                ("mlp.down_proj", "down_proj")]


def make_lora(seed):
    cfg = dict(MODELS["qwen2_tied_bf16"][0])
    cfg["torch_dtype"] = "float32"
    gen = torch.Generator().manual_seed(seed)
    P32 = random_params(cfg, gen)
    # bf16-representable values stored as F32: loading with BF16 storage must not change them
    P32 = {n: torch.from_numpy((bf16_bits(t).astype(np.uint32) << 16).view(np.float32).reshape(t.shape).copy())
           for n, t in P32.items()}
    d = os.path.join(OUT, "lora_qwen2")
    ad = os.path.join(d, "adapter")
    os.makedirs(ad, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    st_write(os.path.join(d, "model.safetensors"), [(n, t.numpy()) for n, t in P32.items()], {"format": "pt"})
    AB = {}
    for l in range(cfg["num_hidden_layers"]):
        for mod, _ in LORA_MODULES:
            out_dim, in_dim = param_shape(cfg, "model.layers.%d.%s.weight" % (l, mod))
            pre = "base_model.model.model.layers.%d.%s." % (l, mod)
            AB[pre + "lora_A.weight"] = (torch.rand(LORA_R, in_dim, generator=gen) * 2 - 1) / math.sqrt(in_dim)
            AB[pre + "lora_B.weight"] = torch.randn(out_dim, LORA_R, generator=gen) * 0.3
    with open(os.path.join(ad, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "lora_qwen2",
                   "r": LORA_R, "lora_alpha": LORA_ALPHA, "lora_dropout": 0.0, "bias": "none",
                   "target_modules": [m for _, m in LORA_MODULES], "fan_in_fan_out": False}, f, indent=2)
    st_write(os.path.join(ad, "adapter_model.safetensors"), [(n, t.float().numpy()) for n, t in AB.items()],
             {"format": "pt"})
    scale = LORA_ALPHA / LORA_R
    out = [("digits", np.array(DIGITS, dtype=np.int32))]
    for ci, lens in enumerate(CASES):
        ids = torch.randint(0, cfg["vocab_size"], (sum(lens),), generator=gen).tolist()
        base = {n: t.double() for n, t in P32.items()}
        ab = {n: t.double().requires_grad_(True) for n, t in AB.items()}
        P = dict(base)
        for l in range(cfg["num_hidden_layers"]):
            for mod, _ in LORA_MODULES:
                pre = "base_model.model.model.layers.%d.%s." % (l, mod)
                w = "model.layers.%d.%s.weight" % (l, mod)
                P[w] = base[w] + scale * ab[pre + "lora_B.weight"] @ ab[pre + "lora_A.weight"]
        W = head_weight(P, cfg)[torch.tensor(DIGITS)]
        seqs = [ids[:lens[0]], ids[lens[0]:]]
        hl = [last_hidden(P, cfg, s) for s in seqs]
        logits = torch.stack([h @ W.T for h in hl])
        loss = pair_loss(logits[0], logits[1])
        loss.backward()
        pre = "case%d." % ci
        out += [(pre + "lens", np.array(lens, dtype=np.int32)), (pre + "ids", np.array(ids, dtype=np.int32)),
                (pre + "h_last", torch.stack(hl).detach().float().numpy()),
                (pre + "logits", logits.detach().float().numpy()),
                (pre + "loss", np.array([loss.item()], dtype=np.float32))]
        out += [(pre + "grad." + n, t.grad.float().numpy()) for n, t in ab.items()]
        print("lora_qwen2 case %d lens %s loss %.6f" % (ci, lens, loss.item()))
    st_write(os.path.join(d, "expected.safetensors"), out)

# ---------------------------------------------------------------- story-llama: tokenizer + greedy decoding

def sp_bpe_encode(tok, text):
    """SentencePiece-style BPE as tokenizer.json describes it: Prepend "▁", spaces -> "▁",
    then merges by rank over the whole string (no pre-tokenizer); BOS from the template."""
    model = tok["model"]
    vocab = model["vocab"]
    ranks = {}
    for i, m in enumerate(model["merges"]):
        a, b = m.split(" ") if isinstance(m, str) else m
        ranks[(a, b)] = i
    s = "\u2581" + text.replace(" ", "\u2581")
    parts = list(s)
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get((parts[i], parts[i + 1]))
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
    ids = []
    for p in parts:
        if p in vocab:
            ids.append(vocab[p])
        else:  # byte fallback
            ids += [vocab["<0x%02X>" % b] for b in p.encode()]
    return [1] + ids


def story_llama_greedy(model_dir, steps=32):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    tok = json.load(open(os.path.join(model_dir, "tokenizer.json")))
    P, meta = st_read(os.path.join(model_dir, "model.safetensors"))
    if "model.embed_tokens.weight" not in P:
        P["model.embed_tokens.weight"] = P[meta.get("model.embed_tokens.weight", "lm_head.weight")]
    prompt = "Once upon a time"
    ids = sp_bpe_encode(tok, prompt)
    prompt_ids = list(ids)
    gen, margins = [], []
    with torch.no_grad():
        for _ in range(steps):
            h = last_hidden(P, cfg, ids)
            logits = head_weight(P, cfg) @ h
            top2 = logits.topk(2).values
            nxt = int(logits.argmax())
            gen.append(nxt)
            margins.append(float(top2[0] - top2[1]))
            ids.append(nxt)
    inv = {v: k for k, v in tok["model"]["vocab"].items()}
    return {"prompt": prompt, "prompt_ids": prompt_ids, "generated_ids": gen,
            "generated_text": "".join(inv[i] for i in gen).replace("\u2581", " "),
            "min_top2_margin": min(margins),
            "note": "torch float32 greedy decoding, full forward each step; made by tools/gen_engine_fixtures.py"}


def main():
    torch.manual_seed(0)
    for i, (name, (cfg, dtype, with_grads)) in enumerate(MODELS.items()):
        make_model(name, cfg, dtype, with_grads, 1234 + i)
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
