#!/usr/bin/env python3
"""Hugging Face transformers scoring throughput for tools/cuda_check.sh (GPU only).

Random weights from a config.json, bf16, sdpa attention; nseq sequences of seq
random tokens (equal lengths: no padding), one forward of the whole batch with
logits_to_keep=1 (the last position's logits only, the cheapest a reward-model
user can ask for). Prints one JSON line: tokens/s over 5 timed forwards after 2
warm-ups. --peak instead prints the measured BF16 matmul rate in TFLOP/s
(8192^3 torch.matmul), the denominator of the 60%-of-peak goal.
--device cpu (tools/cuda_check.sh --dry-run): the same code on the CPU, for a
tiny config, so that an API difference shows before the GPU run. Keywords as
transformers 5.x spells them (dtype=, attn_implementation=)."""
import argparse, json, time

import torch


def sync(dev):
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def peak(dev, n=8192, reps=20):
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(dev)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--nseq", type=int, default=8)
    ap.add_argument("--peak", action="store_true")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    dev = a.device
    if a.peak:
        print(f"{peak(dev) if dev.startswith('cuda') else peak(dev, 512, 3):.4f}")
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(a.config)
    cfg._attn_implementation = "sdpa"
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.eval()
    ids = torch.randint(0, cfg.vocab_size, (a.nseq, a.seq), device=dev)
    with torch.inference_mode():
        for _ in range(2):
            model(input_ids=ids, logits_to_keep=1)
        sync(dev)
        t = time.perf_counter()
        for _ in range(5):
            model(input_ids=ids, logits_to_keep=1)
        sync(dev)
        dt = (time.perf_counter() - t) / 5
    print(json.dumps({"impl": "transformers-sdpa-bf16", "seq": a.seq, "nseq": a.nseq,
                      "tokens_per_s": a.seq * a.nseq / dt, "step_ms": dt * 1e3,
                      "torch": torch.__version__, "device": dev}), flush=True)


if __name__ == "__main__":
    main()
