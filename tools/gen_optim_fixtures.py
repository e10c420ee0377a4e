#!/usr/bin/python3
"""Reference AdamW trajectories from PyTorch for tests/test_train_adamw.c.

Run with Debian's torch:  /usr/bin/python3 tools/gen_optim_fixtures.py
Writes tests/fixtures/optim/adamw.json: for each case a few small tensors with
Hugging Face names, the micro-batch gradients of each step, and after each step
torch.optim.AdamW's parameters (plus the final moments), the learning rate
used and clip_grad_norm_'s returned norm. Param groups follow the HF Trainer:
no weight decay for biases and norm weights.
"""
import json
import math
import os

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "optim", "adamw.json")


def decays(name):
    return not (name.endswith("bias") or "norm" in name)


def lr_lambda(kind, warmup, total):
    # transformers' get_*_schedule_with_warmup, written from their definitions.
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if kind == "constant":
            return 1.0
        progress = float(step - warmup) / float(max(1, total - warmup))
        if kind == "linear":
            return max(0.0, float(total - step) / float(max(1, total - warmup)))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    return f


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def run_case(name, seed, lr, betas, eps, wd, max_norm, sched, accum, steps, grad_scale):
    g = torch.Generator().manual_seed(seed)
    shapes = [
        ("model.layers.0.self_attn.q_proj.weight", [4, 5]),
        ("model.layers.0.self_attn.q_proj.bias", [4]),
        ("model.layers.0.input_layernorm.weight", [5]),
        ("lm_head.weight", [3, 5]),
    ]
    params = [torch.nn.Parameter(torch.randn(*s, generator=g) * 0.5) for _, s in shapes]
    init = [flat(p) for p in params]
    groups = [
        {"params": [p for (n, _), p in zip(shapes, params) if decays(n)], "weight_decay": wd},
        {"params": [p for (n, _), p in zip(shapes, params) if not decays(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=wd, foreach=False)
    kind, warmup, total = sched
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(kind, warmup, total))
    out_steps = []
    for _ in range(steps):
        opt.zero_grad()
        micro = []
        for _ in range(accum):
            mg = [torch.randn(*s, generator=g) * grad_scale for _, s in shapes]
            micro.append([flat(x) for x in mg])
            for p, x in zip(params, mg):
                # HF scales each micro-batch loss by 1/accum.
                p.grad = x / accum if p.grad is None else p.grad + x / accum
        used_lr = opt.param_groups[0]["lr"]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if max_norm > 0 else None
        opt.step()
        scheduler.step()
        out_steps.append({
            "micro_grads": micro,
            "lr": used_lr,
            "pre_clip_norm": float(norm) if norm is not None else None,
            "params_after": [flat(p) for p in params],
        })
    st = [opt.state[p] for p in params]
    return {
        "name": name, "lr": lr, "beta1": betas[0], "beta2": betas[1], "eps": eps, "weight_decay": wd,
        "max_grad_norm": max_norm, "schedule": kind, "warmup_steps": warmup, "total_steps": total,
        "accum": accum,
        "params": [{"name": n, "numel": int(p.numel()), "init": i} for (n, _), p, i in zip(shapes, params, init)],
        "steps": out_steps,
        "final_m": [flat(s["exp_avg"]) for s in st],
        "final_v": [flat(s["exp_avg_sq"]) for s in st],
        "final_step": int(st[0]["step"]),
    }


def main():
    cases = [
        run_case("weight_decay", 1, 1e-2, (0.9, 0.999), 1e-8, 0.1, 0.0, ("constant", 0, 5), 1, 5, 1.0),
        run_case("clipping", 2, 3e-3, (0.9, 0.95), 1e-6, 0.01, 1.0, ("constant", 0, 4), 1, 4, 3.0),
        run_case("cosine_accum", 3, 5e-2, (0.8, 0.99), 1e-8, 0.05, 0.5, ("cosine", 2, 6), 2, 6, 1.0),
        run_case("linear_noclip", 4, 2e-2, (0.9, 0.999), 1e-8, 0.0, 100.0, ("linear", 1, 4), 1, 4, 1e-3),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
