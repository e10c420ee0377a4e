#!/usr/bin/env bash
# The CUDA engine's device check (issue 13), for one GPU machine, <= 8 minutes
# on one H200. Builds for the GPU it finds, then prints one JSON line per check:
# Checks 1 and 2 run once per attention kernel (wmma, tiled).
#   1. fixture: the CUDA engine against the PyTorch fixtures of the CPU tests
#      (tests/fixtures/engine/*; BF16 tolerances in tests/cuda/cuda_check.c);
#   2. random / scorer: GPU against CPU oprm on the same random weights of the
#      Qwen2.5-0.5B shape, and through the whole scorer on story-llama
#      (nine digit probabilities and the mean within 2e-2);
#   3. bench: `oprm bench --device cuda` scoring tokens/s against Hugging Face
#      transformers (bf16, sdpa, same shapes and batch; tools/cuda_bench_hf.py)
#      for the 0.5B and 7B shapes at lengths 512 and 2048, random weights.
# Exit status 0 when every check passed. Usage: tools/cuda_check.sh [--no-bench]
set -u
cd "$(dirname "$0")/.."
SHARED=${OPRM_SHARED_DATA:-../shared/data}
[ -d "$SHARED" ] || SHARED=shared/data
fail=0
line() { echo "$1"; case "$1" in *'"pass":false'*) fail=1;; esac; }

cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
if [ -z "$cc" ]; then
  line '{"check":"gpu","error":"nvidia-smi finds no GPU","pass":false}'; exit 1
fi
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
line "{\"check\":\"gpu\",\"gpu\":\"$gpu\",\"sm\":\"$cc\",\"pass\":true}"
t0=$(date +%s)
# A machine without the C build dependencies can run binaries built elsewhere
# (sm_80 + sm_90; carry build/release): then the build line says so.
if make -j"$(nproc)" CUDA_GENCODE="-gencode arch=compute_$cc,code=sm_$cc" build/release/oprm build/release/cuda_check \
     >/tmp/oprm_cuda_build.log 2>&1; then
  line "{\"check\":\"build\",\"seconds\":$(( $(date +%s) - t0 )),\"pass\":true}"
elif [ -x build/release/oprm ] && [ -x build/release/cuda_check ]; then
  why=$(tail -1 /tmp/oprm_cuda_build.log | tr -d '"\\' | cut -c1-120)
  line "{\"check\":\"build\",\"note\":\"make failed ($why); using the prebuilt binaries\",\"pass\":true}"
else
  tail -20 /tmp/oprm_cuda_build.log >&2
  line '{"check":"build","pass":false}'; exit 1
fi

run_check() { # mode args... : forwards the driver's JSON lines
  local out
  out=$(timeout 240 build/release/cuda_check "$@" 2>/tmp/oprm_cuda_check.err) || true
  [ -n "$out" ] || out="{\"check\":\"$1\",\"args\":\"$*\",\"error\":\"no output: $(tail -1 /tmp/oprm_cuda_check.err | tr '"' "'")\",\"pass\":false}"
  while IFS= read -r l; do line "$l"; done <<<"$out"
}
# Both attention kernels (the engine's line names the one it ran: "... wmma attention").
for attn in wmma tiled; do
  export OPRM_CUDA_ATTENTION=$attn
  run_check fixture tests/fixtures/engine/*/
  run_check random tools/cuda_configs/qwen2.5-0.5b-shape.json
  if [ -d "$SHARED/models/story-llama" ]; then run_check scorer "$SHARED/models/story-llama"
  else line "{\"check\":\"scorer\",\"skipped\":\"no story-llama under $SHARED/models (set OPRM_SHARED_DATA)\",\"pass\":false}"; fi
done
unset OPRM_CUDA_ATTENTION

[ "${1:-}" = "--no-bench" ] && exit $fail
# Throughput: ~16k tokens per batch (32 x 512, 8 x 2048), 2 warm-up + 5 timed steps.
peak=$(timeout 60 python3 tools/cuda_bench_hf.py --peak 2>/dev/null || echo 0)
for cfg in tools/cuda_configs/qwen2.5-0.5b-shape.json tools/cuda_configs/qwen2.5-7b-shape.json; do
  for seq in 512 2048; do
    nseq=$(( 16384 / seq ))
    o=$(timeout 150 build/release/oprm bench --device cuda --mode score --config "$cfg" --seq $seq --nseq $nseq \
        --steps 5 --warmup 2 2>/dev/null | tail -1)
    h=$(timeout 150 python3 tools/cuda_bench_hf.py --config "$cfg" --seq $seq --nseq $nseq 2>/dev/null | tail -1)
    line "$(python3 - "$cfg" "$seq" "$nseq" "$peak" "$o" "$h" <<'PY'
import json, sys
cfg, seq, nseq, peak, o, h = sys.argv[1:7]
r = {"check": "bench", "config": cfg.split("/")[-1], "seq": int(seq), "nseq": int(nseq)}
try:
    o = json.loads(o); h = json.loads(h)
    r.update(oprm_tokens_per_s=o["score_tokens_per_s"], hf_tokens_per_s=h["tokens_per_s"],
             ratio=round(o["score_tokens_per_s"] / h["tokens_per_s"], 3), oprm_tflops=o["score_gflops"] / 1e3,
             bf16_matmul_peak_tflops=float(peak), device=o.get("device"))
    if float(peak) > 0: r["fraction_of_peak"] = round(o["score_gflops"] / 1e3 / float(peak), 3)
    # Goals (benchmark, not test): >= 1.5x transformers; >= 60% of peak on 7B at 2048.
    r["goal_ratio_1.5"] = r["ratio"] >= 1.5
    r["pass"] = True
except Exception as e:
    r.update(error=f"{type(e).__name__}: {e}", oprm=str(o)[:200], hf=str(h)[:200], **{"pass": False})
print(json.dumps(r))
PY
)"
  done
done
exit $fail
