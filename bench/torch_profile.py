"""Where PyTorch's time goes on the same workload as `oprm bench` (the shared
../shared/bench/torch_oprm_ref.py, run unchanged): torch.profiler around the whole
script, self CPU time per operator added up into the categories bench/profile.sh
uses for oprm, plus the GEMM shapes. The script's warmup step and its score steps
are inside the window too (the script is not edited), so the shares are of the
train-heavy mix of both. The profiler adds a fixed cost to every operator call
(with record_shapes the script ran at about 40% of its unprofiled speed), which
inflates the many small non-GEMM operators: read the shares as upper bounds for
them and lower bounds for the GEMMs.
With TORCH_AUTOCAST=bf16 the script runs under torch.autocast("cpu", bfloat16).
usage: python bench/torch_profile.py SCRIPT CONFIG SEQ STEPS THREADS"""
import contextlib, io, os, re, runpy, sys
import torch
from torch.profiler import ProfilerActivity, profile

script = sys.argv[1]
sys.argv = sys.argv[1:]
ctx = torch.autocast("cpu", dtype=torch.bfloat16) if os.environ.get("TORCH_AUTOCAST") == "bf16" \
    else contextlib.nullcontext()
out = io.StringIO()
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof, contextlib.redirect_stdout(out), ctx:
    runpy.run_path(script, run_name="__main__")
print(out.getvalue().strip().splitlines()[-1])

def category(name):
    if re.search(r"aten::(mm|addmm|bmm|matmul|linear|_weight_int|baddbmm)$", name): return "GEMM (mm/addmm/bmm)"
    if re.search(r"softmax|masked_fill|_softmax|triu", name): return "attention softmax/mask"
    if re.search(r"_foreach|adamw|addcdiv|addcmul|lerp|_fused_adam", name): return "optimizer (AdamW)"
    if re.search(r"silu|mul|add|rsqrt|pow|mean|sub|neg|cat|cos|sin|div|sum", name): return "elementwise (norms, rope, SwiGLU, residual)"
    if re.search(r"copy_|clone|contiguous|repeat_interleave|index|embedding|to$|_to_copy|fill_|zero_|empty|view|reshape|transpose|permute|expand|t$|select|slice|unsqueeze|as_strided", name):
        return "copies, layout, casts (repeat_interleave, transposes, dtype casts)"
    return "other (autograd engine, dispatch)"

cats, gemm = {}, {}
total = 0
for e in prof.key_averages(group_by_input_shape=True):
    t = e.self_cpu_time_total
    total += t
    c = category(e.key)
    cats[c] = cats.get(c, 0) + t
    if c.startswith("GEMM"):
        k = (e.key, str(e.input_shapes))
        gemm[k] = gemm.get(k, 0) + t
print("\n| category | share of self CPU time |\n|---|---|")
for c, t in sorted(cats.items(), key=lambda x: -x[1]): print(f"| {c} | {100 * t / total:.1f}% |")
print("\n| GEMM op | input shapes | share |\n|---|---|---|")
for (k, s), t in sorted(gemm.items(), key=lambda x: -x[1])[:12]: print(f"| {k} | {s} | {100 * t / total:.1f}% |")
