#!/usr/bin/env python3
"""The round trips a Hugging Face user makes with oprm (run by tools/hf_check.sh, not by make test).

1. oprm-trained checkpoints (full fine-tuning and merged LoRA, on ../shared/data/models/story-llama)
   load in transformers; the ten lines of docs/huggingface.md (executed from that file, exactly as
   written there) give the digit distribution `oprm score` gives, within 1e-4.
2. The same for tiny random transformers models with real chat tokenizers and templates (Qwen3 +
   qwen3: chatml; Llama with Llama-3 rope scaling + llama3: llama3; Mistral + the mistral tokenizer
   and Mixtral-Instruct's template: mistral; Llama + the same tokenizer and Llama-2-chat's template:
   llama2), trained three steps by oprm.
3. oprm's PEFT adapter loads with peft.PeftModel.from_pretrained on the base, and
   merge_and_unload() equals oprm's merged save within 1e-5; the PEFT model scores as oprm does.

Prints one line per check with its numbers and PASS/FAIL; exit status 1 if any check failed."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("OPRM_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
OPRM = os.environ.get("OPRM_BIN", os.path.join(ROOT, "build", "release", "oprm"))
TOL_P, TOL_W = 1e-4, 1e-5
results = []


def report(name, value, tol, extra=""):
    ok = value <= tol
    results.append(ok)
    print("%-4s %-62s %.3g (tolerance %g)%s" % ("PASS" if ok else "FAIL", name, value, tol, extra), flush=True)


def doc_snippet():
    """The code block after <!-- hf_check:score --> in docs/huggingface.md."""
    text = open(os.path.join(ROOT, "docs", "huggingface.md")).read()
    m = re.search(r"<!-- hf_check:score -->\s*```python\n(.*?)```", text, re.S)
    if not m:
        sys.exit("docs/huggingface.md: no python block after <!-- hf_check:score -->")
    ns = {}
    exec(compile(m.group(1), "docs/huggingface.md", "exec"), ns)
    return ns["oprm_score"], m.group(1).count("\n")


def sh(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("%s failed (%d):\n%s" % (" ".join(map(str, args)), r.returncode, r.stderr[-3000:]))
    return r.stdout


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


ITEMS = [
    {"prompt": "What is the capital of France?", "response": "Paris is the capital of France."},
    {"prompt": "Tell me a story about a cat.", "response": "Once upon a time, a little cat named Tom lived in a big house."},
    {"prompt": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello, how can I help?"},
                {"role": "user", "content": "Say something nice."}], "response": "You are doing great today!"},
    {"prompt": "  Spaces, \u00e9l\u00e8ve, \u65e5\u672c and \U0001F642 emoji \n", "response": " ok "},
]


def pairs_from_shared(n):
    rows = []
    with open(os.path.join(SHARED, "prefs", "hhh.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if isinstance(r["prompt"], str) and len(r["prompt"]) + len(r["chosen"]) + len(r["rejected"]) < 900:
                rows.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
            if len(rows) == n:
                break
    return rows


def oprm_scores(model_dir, data):
    out = sh(OPRM, "score", "--model", model_dir, "--data", data)
    recs = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert not any(r.get("truncated") for r in recs), "a check prompt was truncated"
    return [torch.tensor(r["distribution"], dtype=torch.float64) for r in recs]


def check_scores(label, model_dir, data, oprm_score, model=None):
    want = oprm_scores(model_dir, data)
    worst = 0.0
    for item, w in zip(ITEMS, want):
        if model is None:
            p = oprm_score(model_dir, item["prompt"], item["response"])
        else:
            p = model(item["prompt"], item["response"])
        worst = max(worst, float((p.double() - w).abs().max()))
    mean = float((want[0] * torch.arange(1, 10)).sum())
    report("%s: transformers vs oprm score, max |dp| over %d prompts" % (label, len(ITEMS)), worst, TOL_P,
           "  (oprm reward of the first: %.4f)" % mean)


def train(base, data, out, *extra):
    sh(OPRM, "train", "--model", base, "--data", data, "--output", out, "--max_steps", 3,
       "--per_device_train_batch_size", 2, "--max_length", 512, "--quiet", "--no-progress", "--seed", 1, *extra)


# kind: (tokenizer in ../shared/data/tokenizers, tokenizer_config.json with the family's template)
TINY = {"qwen3": ("qwen3", None), "llama3": ("llama3", None),
        "mistral": ("mistral", "tests/fixtures/hf/templates/mistral-instruct"),
        "llama2": ("mistral", "tests/fixtures/hf/templates/llama2-chat")}


def tiny_random(kind, work):
    """A tiny random transformers model with a real chat tokenizer (all of its embedding rows)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    tokname, cfgdir = TINY[kind]
    tokdir = os.path.join(SHARED, "tokenizers", tokname)
    vocab = json.load(open(os.path.join(tokdir, "tokenizer.json")))
    n = max([v for v in vocab["model"]["vocab"].values()] + [t["id"] for t in vocab["added_tokens"]]) + 1
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=64, vocab_size=n, max_position_embeddings=1024)
    if kind == "qwen3":
        cfg = AutoConfig.for_model("qwen3", head_dim=16, tie_word_embeddings=True,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **common)
    elif kind == "mistral":
        cfg = AutoConfig.for_model("mistral", head_dim=16, sliding_window=None, tie_word_embeddings=False,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **common)
    elif kind == "llama2":
        cfg = AutoConfig.for_model("llama", tie_word_embeddings=False,
                                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **common)
    else:
        cfg = AutoConfig.for_model("llama", tie_word_embeddings=False, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, **common)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith("norm.weight"):
                p.normal_(0, 0.5 if "embed" in name else 0.3)
    d = os.path.join(work, "tiny-" + kind)
    model.save_pretrained(d)
    shutil.copy(os.path.join(tokdir, "tokenizer.json"), d)
    shutil.copy(os.path.join(os.path.join(ROOT, cfgdir) if cfgdir else tokdir, "tokenizer_config.json"), d)
    return d


def main():
    import transformers, peft
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    print("transformers %s, peft %s, torch %s; oprm %s" % (transformers.__version__, peft.__version__,
                                                          torch.__version__, OPRM), flush=True)
    oprm_score, nlines = doc_snippet()
    print("docs/huggingface.md snippet: %d lines" % nlines)
    work = tempfile.mkdtemp(prefix="oprm-hf-check-")
    try:
        data, items = os.path.join(work, "pairs.jsonl"), os.path.join(work, "items.jsonl")
        write_jsonl(data, pairs_from_shared(8))
        write_jsonl(items, ITEMS)
        story = os.path.join(SHARED, "models", "story-llama")

        full, lora = os.path.join(work, "full"), os.path.join(work, "lora")
        train(story, data, full, "--learning_rate", "1e-3")
        check_scores("story-llama full fine-tuning", full, items, oprm_score)
        train(story, data, lora, "--learning_rate", "1e-2", "--lora-rank", 4, "--lora-alpha", 8)
        check_scores("story-llama LoRA, merged save", lora, items, oprm_score)

        base = AutoModelForCausalLM.from_pretrained(story, dtype=torch.float32)
        pm = peft.PeftModel.from_pretrained(base, os.path.join(lora, "adapter"))
        pm.eval()
        ours = load_file(os.path.join(lora, "model.safetensors"))

        # PEFT model (unmerged) scores through the same lines, with the model swapped in
        def peft_score(prompt, response):
            real = AutoModelForCausalLM.from_pretrained
            AutoModelForCausalLM.from_pretrained = staticmethod(lambda *a, **k: pm)
            try:
                return oprm_score(lora, prompt, response)
            finally:
                AutoModelForCausalLM.from_pretrained = real
        check_scores("story-llama LoRA, PEFT adapter on the base (unmerged)", lora, items, oprm_score, peft_score)

        merged = pm.merge_and_unload().state_dict()
        tied = "lm_head.weight" not in ours
        worst, n = 0.0, 0
        for name, w in merged.items():
            if tied and name == "lm_head.weight":
                continue
            key = name if name in ours else ("lm_head.weight" if name == "model.embed_tokens.weight" else name)
            worst = max(worst, float((w.float() - ours[key].float()).abs().max()))
            n += 1
        report("PEFT merge_and_unload() vs oprm merged save, max |dw| over %d tensors" % n, worst, TOL_W)
        changed = max(float((ours[k] - v).abs().max()) for k, v in load_file(
            os.path.join(story, "model.safetensors")).items() if k in ours)
        print("     (LoRA training moved the merged weights by up to %.3g)" % changed)

        for kind in ("qwen3", "llama3", "mistral", "llama2"):
            d = tiny_random(kind, work)
            out = os.path.join(work, "rm-" + kind)
            train(d, data, out, "--learning_rate", "1e-3")
            fmt = json.load(open(os.path.join(out, "oprm.json")))["scoring"]["chat_format"]
            check_scores("tiny random %s model, %s format, full fine-tuning" % (kind, fmt), out, items, oprm_score)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d/%d checks passed" % (sum(results), len(results)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
