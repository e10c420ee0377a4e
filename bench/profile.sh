#!/usr/bin/env bash
# Where the time of the OPRM train step (and of scoring) goes: samples `oprm bench`
# with perf, keeps only the timed steps (the bench prints their CLOCK_MONOTONIC
# window; perf records with the same clock), and adds self time up by category.
#
# usage: bench/profile.sh CONFIG SEQ [STEPS] [THREADS] [train|score]
#   e.g. bench/profile.sh ../shared/bench/configs/qwen2-small.json 256 3 1
# Env: OPRM_BIN (default build/release/oprm), PERF_FREQ (default 999 Hz),
#      TOP (symbols listed, default 25), OPRM_EXTRA (more `oprm bench` flags, e.g.
#      "--compute bf16" or "--weights bf16": the BF16 kernel and its packing are their
#      own category).
# The release build has no frame pointers, so this is flat self time per symbol
# (no call graph): GEMMs are found by their OpenBLAS symbols, whoever called them.
set -euo pipefail
cfg=${1:?usage: bench/profile.sh CONFIG SEQ [STEPS] [THREADS] [train|score]}
seq=$2; steps=${3:-3}; threads=${4:-1}; mode=${5:-train}
bin=${OPRM_BIN:-build/release/oprm}
mkdir -p build/bench
data=build/bench/perf-$mode-$(basename "$cfg" .json)-$seq-t$threads.data
json=$(perf record -q -k CLOCK_MONOTONIC -F "${PERF_FREQ:-999}" -o "$data" -- \
       "$bin" bench --config "$cfg" --seq "$seq" --steps "$steps" --threads "$threads" --mode "$mode" ${OPRM_EXTRA:-} 2>/dev/null | tail -n1)
echo "$json"
win=$(printf '%s' "$json" | /usr/bin/python3 -c "import json,sys; w=json.load(sys.stdin)['${mode}_window_s']; print(f'{w[0]:.6f},{w[1]:.6f}')")
perf report -i "$data" --stdio --no-children --sort dso,sym --time "$win" 2>/dev/null |
  /usr/bin/python3 -c '
import re, sys
top = int(sys.argv[1])
rows = []
for line in sys.stdin:
    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
    if m: rows.append((float(m.group(1)), m.group(2), m.group(4)))
def category(dso, sym):
    if "openblas" in dso: return "GEMM (OpenBLAS kernels + packing)"
    if re.search(r"bf16_kernel|gemm_oprm|gemm_multi|pack_(kcontig|rcontig|scalar|block|a_block|b_panel|rows_f32)|bf16_pack", sym):
        return "GEMM (oprm BF16 kernel + packing)"
    if "gomp" in dso: return "OpenMP runtime (barriers, spinning, fork/join)"
    if re.search(r"attention|block_probs|expf|exp@|__exp|__ieee754_log", sym): return "attention (incl. softmax expf)"
    if re.search(r"rmsnorm|rope|swiglu|linear_(forward|backward)|model_(forward|backward)|head_rows", sym):
        return "norms, rope, SwiGLU, bias, embedding (elementwise)"
    if re.search(r"update_tensor|adamw|grad_|sqrt", sym): return "optimizer (AdamW update)"
    if re.search(r"memset|memcpy|memmove", sym): return "memset/memcpy (zero_grad, residual copies, dx clears)"
    if dso.startswith("[kernel"): return "kernel (page faults, scheduling)"
    return "other"
cats = {}
for pct, dso, sym in rows: cats[category(dso, sym)] = cats.get(category(dso, sym), 0) + pct
tot = sum(cats.values()) or 1
print("\n| category | share of samples in the timed steps |\n|---|---|")
for c, p in sorted(cats.items(), key=lambda x: -x[1]): print(f"| {c} | {100*p/tot:.1f}% |")
print("\n| symbol | dso | self |\n|---|---|---|")
for pct, dso, sym in rows[:top]: print(f"| `{sym}` | {dso} | {100*pct/tot:.1f}% |")
' "${TOP:-25}"
