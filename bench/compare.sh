#!/usr/bin/env bash
# The whole side-by-side speed comparison in one command, one table:
# oprm fp32, oprm bf16, PyTorch fp32, PyTorch bf16 (autocast on the CPU), the OpenBLAS
# sgemm ceiling (../shared/bench/sgemm_peak.c, compiled here at run time: it stays the
# team's shared anchor, not a copy in the repo) and the fraction of it oprm reaches,
# for the train step and for scoring.
#
# usage: bench/compare.sh CONFIG SEQ STEPS [ROUNDS]
#   e.g. bench/compare.sh ../shared/bench/configs/qwen2-small.json 256 3
# Each round runs, back to back (interleaved, so load from other processes hits every
# side alike): sgemm_peak with 2 and 1 threads, then for each thread count in THREADS
# (default "1 2"): torch fp32, oprm fp32, torch bf16, oprm bf16. PyTorch is
# ../shared/bench/torch_oprm_ref.py run unchanged through bench/torch_cputime.py (which
# adds CPU-time throughput and, with TORCH_AUTOCAST=bf16, runs it under
# torch.autocast("cpu", bfloat16)). oprm bf16 is `--compute bf16 --mode train` (BF16
# GEMMs, fp32 master weights and AdamW) and `--weights bf16 --mode score` (BF16
# weights, BF16 GEMMs). For each side the best tokens/s over thread counts and rounds
# is kept ("PyTorch's best thread setting", as the bench README says).
# Wall-clock tokens/s is the README's measure. On a machine shared with other work it
# also counts time the scheduler gave to other processes, so the 1-thread runs are also
# compared in tokens per CPU-second (process CPU time), which such load barely moves.
# Env: OPRM_BIN (default build/release/oprm), CORES (taskset list, default 0,1),
#      PYTHON (default /work/venv-hf/bin/python if present, else python3),
#      SHARED_BENCH (default ../shared/bench), THREADS (default "1 2"),
#      OPRM_EXTRA (extra `oprm bench` flags, e.g. "--warmup 2").
set -euo pipefail
cfg=${1:?usage: bench/compare.sh CONFIG SEQ STEPS [ROUNDS]}
seq=${2:?seq}; steps=${3:?steps}; rounds=${4:-1}
bin=${OPRM_BIN:-build/release/oprm}
cores=${CORES:-0,1}
py=${PYTHON:-$( [ -x /work/venv-hf/bin/python ] && echo /work/venv-hf/bin/python || echo python3 )}
shared=${SHARED_BENCH:-../shared/bench}
threads=${THREADS:-1 2}
extra=${OPRM_EXTRA:-}
[ -x "$bin" ] || { echo "compare.sh: $bin not built (run make)" >&2; exit 1; }
"$py" -c "import torch" 2>/dev/null || { echo "compare.sh: $py has no torch (pip install torch into a venv, set PYTHON)" >&2; exit 1; }
mkdir -p build/bench
peak_bin=build/bench/sgemm_peak
cc -O2 -I/usr/include/x86_64-linux-gnu/openblas-openmp "$shared/sgemm_peak.c" -o "$peak_bin" -lopenblas
out=build/bench/compare-$(basename "$cfg" .json)-$seq-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: > "$out"

pin() { taskset -c "$cores" "$@"; }
record() { # tag json
  local line; line=$(printf '%s' "$2" | tail -n1)
  [ -n "$line" ] || { echo "compare.sh: $1 printed nothing" >&2; exit 1; }
  echo "$1 $line"; echo "{\"run\": \"$1\", \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", \"result\": $line}" >> "$out"
}
torch_run() { # threads autocast
  env ${2:+TORCH_AUTOCAST=$2} OMP_NUM_THREADS=$1 taskset -c "$cores" "$py" bench/torch_cputime.py "$shared/torch_oprm_ref.py" \
    "$cfg" "$seq" "$steps" "$1"
}
oprm_run() { # threads flags...
  local t=$1; shift
  pin "$bin" bench --config "$cfg" --seq "$seq" --steps "$steps" --threads "$t" $extra "$@"
}
merge() { "$py" -c 'import json,sys; a=json.loads(sys.argv[1]); a.update(json.loads(sys.argv[2])); print(json.dumps(a))' "$1" "$2"; }
echo "# $(date -u +%FT%TZ) $(hostname) cores=$cores nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# config=$cfg seq=$seq steps=$steps rounds=$rounds bin=$bin ($(git rev-parse --short HEAD 2>/dev/null || echo ?)) torch=$("$py" -c 'import torch; print(torch.__version__)')"
for r in $(seq 1 "$rounds"); do
  record "sgemm_peak_t2" "$(OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 pin "$peak_bin")"
  record "sgemm_peak_t1" "$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 pin "$peak_bin")"
  for t in $threads; do
    record "torch_f32_t$t" "$(torch_run "$t" "")"
    record "oprm_f32_t$t" "$(oprm_run "$t")"
    record "torch_bf16_t$t" "$(torch_run "$t" bf16)"
    record "oprm_bf16_t$t" "$(merge "$(oprm_run "$t" --compute bf16 --mode train | tail -n1)" \
      "$(oprm_run "$t" --weights bf16 --mode score | tail -n1)")"
  done
done
echo "# end $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py" - "$out" "$cfg" "$seq" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ceil = {}
for r in rows:  # each round starts with its sgemm_peak runs: remember them for the runs that follow
    if r["run"].startswith("sgemm_peak_"): ceil[r["run"][-2:]] = r["result"]["sgemm_gflops"]
    else: r["ceiling"] = ceil.get(r["run"][-2:], float("nan"))
def best(prefix, key):
    c = [(r["result"][key], r["run"]) for r in rows if r["run"].startswith(prefix) and key in r["result"]]
    return max(c) if c else (float("nan"), "-")
peak, prun = max(best("sgemm_peak_t2", "sgemm_gflops"), best("sgemm_peak_t1", "sgemm_gflops"))
loads = [float(r["load"]) for r in rows]
name = sys.argv[2].split("/")[-1].replace(".json", "")
print(f"\n{name}, 2 x {sys.argv[3]} tokens; load average during the runs {min(loads):.1f}..{max(loads):.1f}; "
      f"sgemm ceiling {peak:.1f} GFLOP/s ({prun})")
print("\n| tokens/s (wall, best thread count) | oprm fp32 | oprm bf16 | torch fp32 | torch bf16 | oprm fp32 / torch fp32 | oprm best / torch best | oprm bf16 / oprm fp32 | oprm fp32 GFLOP/s (% of the sgemm ceiling of its round and thread count) |")
print("|---|---|---|---|---|---|---|---|---|")
for k in ("train", "score"):
    key = k + "_tokens_per_s"
    of, ofr = best("oprm_f32", key); ob, obr = best("oprm_bf16", key)
    tf, tfr = best("torch_f32", key); tb, tbr = best("torch_bf16", key)
    # against the ceiling measured in the same round with the same thread count
    g, grun, gpk = max(((r["result"][k + "_gflops"], r["run"], r["ceiling"]) for r in rows
                        if r["run"].startswith("oprm_f32") and k + "_gflops" in r["result"]), default=(float("nan"), "-", float("nan")))
    print(f"| {k} | {of:.0f} ({ofr[-2:]}) | {ob:.0f} ({obr[-2:]}) | {tf:.0f} ({tfr[-2:]}) | {tb:.0f} ({tbr[-2:]}) "
          f"| **{of/tf:.2f}x** | **{max(of, ob)/max(tf, tb):.2f}x** | {ob/of:.2f}x | {g:.1f} ({g/gpk:.0%} of {gpk:.0f}, {grun[-2:]}) |")
if not any(r["run"].endswith("_t1") and not r["run"].startswith("sgemm") for r in rows):
    print("\n(no 1-thread runs in THREADS: no tokens per CPU-second table)")
    sys.exit(0)
print("\n| tokens per CPU-second (1 thread) | oprm fp32 | oprm bf16 | torch fp32 | torch bf16 | oprm fp32 / torch fp32 | oprm bf16 / torch bf16 | oprm bf16 / oprm fp32 |")
print("|---|---|---|---|---|---|---|---|")
for k in ("train", "score"):
    key = k + "_tokens_per_cpu_s"
    of, _ = best("oprm_f32_t1", key); ob, _ = best("oprm_bf16_t1", key)
    tf, _ = best("torch_f32_t1", key); tb, _ = best("torch_bf16_t1", key)
    print(f"| {k} | {of:.0f} | {ob:.0f} | {tf:.0f} | {tb:.0f} | {of/tf:.2f}x | {ob/tb:.2f}x | {ob/of:.2f}x |")
PY
echo "raw lines: $out"
