"""Runs ../shared/bench/torch_oprm_ref.py unchanged and adds CPU-time throughput.
The script times its loops with time.time(); this wrapper lets those calls return
wall time as before but also records the process CPU time at each call, then
prints the script's JSON line with train_tokens_per_cpu_s / score_tokens_per_cpu_s
added (tokens per CPU-second of all threads: for a 1-thread run on a machine
shared with other work, what the step would do alone).
With TORCH_AUTOCAST=bf16 the whole script runs under torch.autocast("cpu",
dtype=torch.bfloat16) (what HF TrainingArguments(bf16=True) does on a CPU): matmuls
in BF16, fp32 master weights and AdamW; the JSON line then says "autocast": "bf16".
usage: python3 bench/torch_cputime.py SCRIPT CONFIG SEQ STEPS [THREADS]"""
import contextlib, io, json, os, runpy, sys, time

script = sys.argv[1]
sys.argv = sys.argv[1:]
marks = []
wall = time.time
def patched():
    w = wall()
    marks.append((w, time.process_time()))
    return w
time.time = patched
out = io.StringIO()
autocast = os.environ.get("TORCH_AUTOCAST", "")
if autocast not in ("", "bf16"):
    sys.exit("TORCH_AUTOCAST must be bf16 or empty")
ctx = contextlib.nullcontext()
if autocast:
    import torch
    ctx = torch.autocast("cpu", dtype=torch.bfloat16)
with contextlib.redirect_stdout(out), ctx:
    runpy.run_path(script, run_name="__main__")
res = json.loads(out.getvalue().strip().splitlines()[-1])
seq, steps = int(sys.argv[2]), int(sys.argv[3])
# The script's last 4 time.time() calls: train start/end, score start/end. The wall
# times they give must reproduce the script's own numbers (checks the pairing).
m = marks[-4:]
for k, a in (("train", 0), ("score", 2)):
    w = 2 * seq * steps / (m[a + 1][0] - m[a][0])
    assert abs(w - res[k + "_tokens_per_s"]) <= 0.01 * w + 0.1, (k, w, res)
    res[k + "_tokens_per_cpu_s"] = round(2 * seq * steps / (m[a + 1][1] - m[a][1]), 1)
if autocast:
    res["autocast"] = autocast
print(json.dumps(res))
