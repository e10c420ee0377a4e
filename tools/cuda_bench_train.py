#!/usr/bin/env python3
"""PyTorch + transformers reward-model TRAINING step, the side-by-side of
`oprm bench --device cuda --mode train` in tools/cuda_check.sh (GPU only).

The same workload as oprm's bench: random weights from a config.json; nseq
sequences of seq random tokens (equal lengths: no padding), sequence 2p the
chosen and 2p + 1 the rejected of pair p; the final-normed hidden state of the
last position through the nine digit rows 16..24 of the LM head; the OPRM pair
loss -log sum_{i>j} p_c(i) p_r(j), mean over pairs; backward; AdamW (fused,
lr 1e-5, betas 0.9/0.999, eps 1e-8, weight decay 0.01).

Precision as `TrainingArguments(bf16=True)`: fp32 master weights, autocast to
bf16 (the arrangement oprm's CUDA engine uses: BF16 matmuls, fp32 weights,
gradients and AdamW). --lora R: PEFT LoRA of rank R (alpha 2R) on all seven
projections, the frozen base held in bf16, adapters fp32. sdpa attention.
--gradient_checkpointing: model.gradient_checkpointing_enable().

Prints one JSON line: tokens/s over --steps timed steps after 2 warm-ups,
step ms, the FLOPs of a step by oprm bench's convention (6 x non-embedding
params x tokens + 3 x causal attention) and TFLOP/s, peak GPU memory."""
import argparse, json, time

import torch


def oprm_loss(z):  # z [nseq, 9] -> mean pair loss
    p = torch.softmax(z.float(), dim=-1)
    pc, pr = p[0::2], p[1::2]
    cdf_r = torch.cumsum(pr, dim=-1) - pr  # P(r < i) = sum_{j < i} p_r(j)
    return -torch.log((pc * cdf_r).sum(-1)).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--nseq", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--lora", type=int, default=0)
    ap.add_argument("--gradient_checkpointing", action="store_true")
    a = ap.parse_args()
    assert a.nseq % 2 == 0, "--nseq counts chosen and rejected sequences: even"
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(a.config)
    cfg._attn_implementation = "sdpa"
    dtype = torch.bfloat16 if a.lora else torch.float32
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=dtype, attn_implementation="sdpa")
    total = sum(p.numel() for p in model.parameters())
    table = cfg.vocab_size * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
    if a.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if a.lora:
        import peft
        lc = peft.LoraConfig(r=a.lora, lora_alpha=2 * a.lora, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = peft.get_peft_model(model, lc)
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.data = p.data.float()
        if a.gradient_checkpointing:
            model.enable_input_require_grads()
    base = model.get_base_model() if a.lora else model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (a.nseq, a.seq), device="cuda")
    rows = torch.arange(16, 25, device="cuda")
    model.train()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            h = base.model(input_ids=ids).last_hidden_state[:, -1]  # final-normed, last position
            w = base.lm_head.weight[rows]
            z = h.float() @ w.float().t()
        loss = oprm_loss(z)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / a.steps
    n = a.seq * a.nseq
    attn = 2.0 * cfg.num_hidden_layers * cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads) \
        * a.seq * (a.seq + 1) * a.nseq
    if getattr(cfg, "head_dim", None):
        attn = attn / (cfg.hidden_size // cfg.num_attention_heads) * cfg.head_dim
    flops = 6.0 * (total - table) * n + 3.0 * attn
    print(json.dumps({"impl": "transformers-sdpa-bf16-autocast" + ("-peft-lora" if a.lora else ""),
                      "seq": a.seq, "nseq": a.nseq, "lora": a.lora, "gradient_checkpointing": a.gradient_checkpointing,
                      "tokens_per_s": n / dt, "step_ms": dt * 1e3, "train_flops_per_step": flops,
                      "tflops": flops / dt / 1e12, "loss": float(loss), "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}))


if __name__ == "__main__":
    main()
