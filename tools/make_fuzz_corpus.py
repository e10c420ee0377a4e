#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets into fuzz/corpus/<target>/
from ../shared/data and hand-written cases (the test suite's shapes). Seeds are
kept small (a few KB each, < 1 MB in all). Usage: tools/make_fuzz_corpus.py
(from the repo root; OPRM_SHARED_DATA overrides ../shared/data).
fuzz/corpus/fuzz_checkpoint/ comes from the harness itself (it saves a real
checkpoint): OPRM_FUZZ_WRITE_SEEDS=fuzz/corpus/fuzz_checkpoint build/fuzz/fuzz_checkpoint -runs=0"""
import hashlib, json, os, shutil, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("OPRM_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def st_file(tensors, meta=None, pad_to=8):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, off, blob = {}, 0, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % pad_to)
    return struct.pack("<Q", len(h)) + h + blob


def safetensors_seeds():
    f32 = lambda *v: struct.pack("<%df" % len(v), *v)
    put("fuzz_safetensors", st_file([("w", "F32", [2, 2], f32(1, 2, 3, 4))]))
    put("fuzz_safetensors", st_file([("w", "F32", [3], f32(1, -2, 0.5)), ("b", "BF16", [2], b"\x80\x3f\x00\x40"),
                                     ("h", "F16", [2], b"\x00\x3c\x00\xc0")], {"format": "pt"}))
    put("fuzz_safetensors", st_file([("e", "F32", [0], b""), ("s", "F32", [], f32(7))]))
    put("fuzz_safetensors", st_file([("i", "I64", [2], struct.pack("<2q", 1, -1)), ("u", "U8", [3], b"abc"),
                                     ("z", "BOOL", [1], b"\x01"), ("f8", "F8_E4M3", [2], b"\x01\x02"),
                                     ("d", "F64", [1], struct.pack("<d", 2.5)), ("i32", "I32", [1], b"\0\0\0\1")]))
    put("fuzz_safetensors", st_file([], {"a": "b"}))
    put("fuzz_safetensors", st_file([("x", "F32", [1, 1, 1, 1, 1, 1, 1, 1], f32(1))], pad_to=1))
    # the story-llama header with every tensor shrunk to a few elements
    path = os.path.join(SHARED, "models", "story-llama", "model.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    small = []
    for name, v in list(hdr.items())[:12]:
        if name == "__metadata__":
            continue
        small.append((name, v["dtype"], [2] if len(v["shape"]) == 1 else [2, 2],
                      b"\0" * (8 if len(v["shape"]) == 1 else 16) if v["dtype"] == "F32" else b"\0" * 8))
    put("fuzz_safetensors", st_file(small, hdr.get("__metadata__")))
    # the real header alone (its data block is missing: refused)
    with open(path, "rb") as f:
        put("fuzz_safetensors", f.read(8 + n)[:4096])


def config_seeds():
    with open(os.path.join(SHARED, "models", "story-llama", "config.json")) as f:
        put("fuzz_config", f.read())
    eng = os.path.join(ROOT, "tests", "fixtures", "engine")
    for d in sorted(os.listdir(eng)):
        p = os.path.join(eng, d, "config.json")
        if os.path.exists(p):
            with open(p) as f:
                put("fuzz_config", f.read())
    base = {"architectures": ["MistralForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100,
            "sliding_window": None, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 1e6,
            "bos_token_id": [1, 2], "eos_token_id": 2, "tie_word_embeddings": True, "head_dim": 16}
    put("fuzz_config", json.dumps(base))
    put("fuzz_config", json.dumps(dict(base, architectures=["Qwen3ForCausalLM"], use_sliding_window=False,
                                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 8192})))


def mini_tokenizer(path, n_vocab=300):
    """The real tokenizer's pipeline with the vocabulary cut to its first
    n_vocab ids and the merges that stay inside it."""
    with open(path) as f:
        tj = json.load(f)
    m = tj["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < n_vocab}
    merges = []
    for mg in m.get("merges", []):
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    tj["added_tokens"] = tj.get("added_tokens", [])[:6]
    return json.dumps(tj, ensure_ascii=False, separators=(",", ":"))


def tokenizer_seeds():
    srcs = [os.path.join(SHARED, "models", "story-llama")] + \
           [os.path.join(SHARED, "tokenizers", t) for t in ("qwen3", "llama3", "mistral")]
    for d in srcs:
        tj = mini_tokenizer(os.path.join(d, "tokenizer.json"))
        put("fuzz_tokenizer_load", b"\x00" + tj.encode())
        cfg_path = os.path.join(d, "tokenizer_config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg.pop("added_tokens_decoder", None)
        if isinstance(cfg.get("chat_template"), str):
            cfg["chat_template"] = cfg["chat_template"][:300]
        put("fuzz_tokenizer_load", b"\x01" + tj.encode() + b"\xff" + json.dumps(cfg).encode())
    put("fuzz_tokenizer_load", b'\x00{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}')

    texts = []
    for name in ("ggml-vocab-llama-spm.gguf.inp", "ggml-vocab-qwen2.gguf.inp"):
        with open(os.path.join(SHARED, "tokenizers", "vectors", name), encoding="utf-8") as f:
            texts += [t for t in f.read().split("\n__ggml_vocab_test__\n") if t]
    texts += ["<|im_start|>user\nRate this.<|im_end|>\nScore: 7", "<s>Once upon a time</s>", "caf\u00e9 \u65e5\u672c \U0001F600",
              "e\u0301 \u212b \ufb01", "  leading spaces\t\ttabs\r\n", "\x00nul\x01"]
    for i, t in enumerate(texts[:40]):
        put("fuzz_tokenizer_encode", bytes([i % 4]) + t.encode("utf-8")[:1000])
    put("fuzz_tokenizer_encode", b"\x00bad \xff\xfe utf8 \xc3")


def first_lines(path, n, limit=1500):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(line) <= limit:
                out.append(line)
            if len(out) == n:
                break
    return out


def data_seeds():
    for sub in ("prefs", "labels"):
        d = os.path.join(SHARED, sub)
        for name in sorted(os.listdir(d)):
            lines = first_lines(os.path.join(d, name), 3)
            if not lines:
                continue
            put("fuzz_data", b"\x00" + "".join(lines).encode())  # JSONL, auto kind, indexed
            put("fuzz_data", b"\x14" + ("[" + ",".join(l.strip() for l in lines) + "]").encode())  # array, skip, whole
    hand = [
        '{"prompt": "Write a haiku.", "chosen": "a", "rejected": "b", "chosen_label": "good", "rejected_label": 3}\n',
        '{"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "response": "r", "label": "7"}\n',
        '{"prompt": "p", "best": "b", "others": ["x", "y"], "id": 12, "subset": "s"}\n',
        '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: yes", "rejected": "\\n\\nHuman: hi\\n\\nAssistant: no"}\r\n',
        '\ufeff{"conversations": [{"from": "human", "value": "x"}], "chosen": {"role": "assistant", "content": "a"}, "rejected": [{"role": "assistant", "content": "b"}]}\n\n{"prompt": "p", "response": "r", "label": 7.0}\n',
    ]
    for i, h in enumerate(hand):
        put("fuzz_data", bytes([i * 5 % 32]) + h.encode())


def serve_seeds():
    bodies = [
        (0, {"query": ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there<|im_end|>", "Q: why? A: because</s>"]}),
        (0, {"query": ["abc", "def"], "prompts": ["abc", "xyz"]}),
        (0, {"query": ["<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>"]}),
        (1, {"model": "my-rm", "messages": ["first text", "second"], "max_length": 512}),
        (1, {"model": "m", "messages": [[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]]}),
        (2, {"items": [{"prompt": "Tell me a story.", "response": "Once upon a time."},
                       {"prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": "Hi"}],
                        "response": "yo"}, {"prompt": "\u00e9t\u00e9", "response": ""}]}),
        (2, {"items": []}),
        (3, {"prompt": "Which?", "a": "Answer A", "b": "Answer B"}),
        (3, {"prompt": [{"role": "user", "content": "Which?"}], "a": "A", "b": "B"}),
    ]
    for route, b in bodies:
        put("fuzz_serve_request", bytes([route]) + json.dumps(b).encode())


def main():
    for t in ("fuzz_safetensors", "fuzz_config", "fuzz_tokenizer_load", "fuzz_tokenizer_encode", "fuzz_data",
              "fuzz_serve_request"):
        shutil.rmtree(os.path.join(OUT, t), ignore_errors=True)
    safetensors_seeds()
    config_seeds()
    tokenizer_seeds()
    data_seeds()
    serve_seeds()
    total = 0
    for t in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, t))
        size = sum(os.path.getsize(os.path.join(OUT, t, f)) for f in files)
        total += size
        print("%-24s %3d seeds %8d bytes" % (t, len(files), size))
    print("total %d bytes" % total)
    if total > 1 << 20:
        sys.exit("corpus over 1 MB")


if __name__ == "__main__":
    main()
