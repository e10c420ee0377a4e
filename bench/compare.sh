#!/usr/bin/env bash
# Side-by-side speed run: oprm vs PyTorch (../shared/bench/torch_oprm_ref.py) on the
# same cores, in one run, plus the OpenBLAS sgemm ceiling (../shared/bench/sgemm_peak.c,
# compiled here at run time: it stays the team's shared anchor, not a copy in the repo).
#
# usage: bench/compare.sh CONFIG SEQ STEPS [ROUNDS]
#   e.g. bench/compare.sh ../shared/bench/configs/qwen2-small.json 256 3
# Each round runs, back to back: sgemm_peak, torch with 1 and 2 threads, oprm with 1 and
# 2 threads (interleaved, so load from other processes hits both sides alike). For each
# side the best tokens/s over thread settings and rounds is kept, as the bench README
# says for PyTorch. Prints every raw JSON line, then a markdown table.
# Env: OPRM_BIN (default build/release/oprm), CORES (taskset list, default 0,1),
#      PYTHON (default /usr/bin/python3), OUT (raw lines file, default build/bench/compare-*.jsonl).
set -euo pipefail
cfg=${1:?usage: bench/compare.sh CONFIG SEQ STEPS [ROUNDS]}
seq=${2:?seq}; steps=${3:?steps}; rounds=${4:-1}
bin=${OPRM_BIN:-build/release/oprm}
cores=${CORES:-0,1}
py=${PYTHON:-/usr/bin/python3}
shared=${SHARED_BENCH:-../shared/bench}
[ -x "$bin" ] || { echo "compare.sh: $bin not built (run make)" >&2; exit 1; }
mkdir -p build/bench
peak_bin=build/bench/sgemm_peak
cc -O2 -I/usr/include/x86_64-linux-gnu/openblas-openmp "$shared/sgemm_peak.c" -o "$peak_bin" -lopenblas
out=${OUT:-build/bench/compare-$(basename "$cfg" .json)-$seq-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
: > "$out"

pin() { taskset -c "$cores" "$@"; }
record() { # tag json
  local line; line=$(printf '%s' "$2" | tail -n1)
  echo "$1 $line"; echo "{\"run\": \"$1\", \"result\": $line}" >> "$out"
}
echo "# $(date -u +%FT%TZ) $(hostname) cores=$cores nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# config=$cfg seq=$seq steps=$steps rounds=$rounds bin=$bin ($(git rev-parse --short HEAD 2>/dev/null || echo ?))"
for r in $(seq 1 "$rounds"); do
  record "sgemm_peak" "$(pin "$peak_bin")"
  for t in 1 2; do
    record "torch_t$t" "$(OMP_NUM_THREADS=$t pin "$py" "$shared/torch_oprm_ref.py" "$cfg" "$seq" "$steps" "$t")"
    record "oprm_t$t" "$(pin "$bin" bench --config "$cfg" --seq "$seq" --steps "$steps" --threads "$t")"
  done
done
echo "# end $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py" - "$out" "$cfg" "$seq" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def best(prefix, key):
    c = [(r["result"][key], r["run"]) for r in rows if r["run"].startswith(prefix) and key in r["result"]]
    return max(c) if c else (float("nan"), "-")
peak, _ = best("sgemm_peak", "sgemm_gflops")
ot, otr = best("oprm", "train_tokens_per_s"); tt, ttr = best("torch", "train_tokens_per_s")
os_, osr = best("oprm", "score_tokens_per_s"); ts, tsr = best("torch", "score_tokens_per_s")
og = max((r["result"]["train_gflops"], r["run"]) for r in rows if r["run"].startswith("oprm"))
ogs = max((r["result"]["score_gflops"], r["run"]) for r in rows if r["run"].startswith("oprm"))
name = sys.argv[2].split("/")[-1].replace(".json", "")
print()
print(f"| {name}, seq {sys.argv[3]} x 2 | oprm | torch | oprm / torch | target |")
print("|---|---|---|---|---|")
print(f"| train tokens/s | {ot:.1f} ({otr}) | {tt:.1f} ({ttr}) | **{ot/tt:.2f}x** | >= 2.0x |")
print(f"| score tokens/s | {os_:.1f} ({osr}) | {ts:.1f} ({tsr}) | **{os_/ts:.2f}x** | >= 1.3x |")
print(f"| train GFLOP/s / sgemm_peak | {og[0]:.1f} ({og[1]}) / {peak:.1f} | | **{og[0]/peak:.0%}** | >= 50% |")
print(f"| score GFLOP/s / sgemm_peak | {ogs[0]:.1f} ({ogs[1]}) / {peak:.1f} | | {ogs[0]/peak:.0%} | |")
PY
echo "raw lines: $out"
