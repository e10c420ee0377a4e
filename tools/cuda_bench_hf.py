#!/usr/bin/env python3
"""Hugging Face transformers scoring throughput for tools/cuda_check.sh (GPU only).

Random weights from a config.json, bf16, sdpa attention; nseq sequences of seq
random tokens (equal lengths: no padding), one forward of the whole batch with
logits_to_keep=1 (the last position's logits only, the cheapest a reward-model
user can ask for). Prints one JSON line: tokens/s over 5 timed forwards after 2
warm-ups. --peak instead prints the measured BF16 matmul rate in TFLOP/s
(8192^3 torch.matmul), the denominator of the 60%-of-peak goal."""
import argparse, json, time

import torch


def peak():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    n = 20
    for _ in range(n):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * n / (time.perf_counter() - t) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--nseq", type=int, default=8)
    ap.add_argument("--peak", action="store_true")
    a = ap.parse_args()
    if a.peak:
        print(f"{peak():.1f}")
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(a.config)
    cfg._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    model.eval()
    ids = torch.randint(0, cfg.vocab_size, (a.nseq, a.seq), device="cuda")
    with torch.inference_mode():
        for _ in range(2):
            model(input_ids=ids, logits_to_keep=1)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(5):
            model(input_ids=ids, logits_to_keep=1)
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / 5
    print(json.dumps({"impl": "transformers-sdpa-bf16", "seq": a.seq, "nseq": a.nseq,
                      "tokens_per_s": a.seq * a.nseq / dt, "step_ms": dt * 1e3}))


if __name__ == "__main__":
    main()
