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
# Training (issue 14), after those:
#   4. grad: the CUDA training engine's gradients against the PyTorch fixtures
#      (every architecture, full fine-tuning and the LoRA fixture, with and
#      without recomputation): per tensor cosine >= 0.999, relative norm error
#      <= 1e-2 (tests/cuda/cuda_check.c); adamw: one device AdamW step + download
#      against src/train/adamw.c on the same gradients (expected bit-exact);
#   5. train20: `oprm train` 20 steps on cpu and on cuda, same data, same random
#      weights (oprm init), full fine-tuning and LoRA (+ --gradient_checkpointing):
#      the logged loss within 2e-2 at every step; then the scorer check (cpu vs cuda) on the
#      checkpoint the GPU run wrote;
#   6. bench_train: `oprm bench --device cuda --mode train` against a PyTorch +
#      transformers reward training step (tools/cuda_bench_train.py) for the
#      0.5B shape (full) and the 7B shape (LoRA r 16, recomputation on both
#      sides): tokens/s, TFLOP/s, MFU against the measured BF16 matmul peak.
# Exit status 0 when every check passed.
# Usage: tools/cuda_check.sh [--no-bench] [--train-only]   (--train-only: build, then checks 4-6)
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
TRAIN_ONLY=0; NO_BENCH=0
for a in "$@"; do case "$a" in --train-only) TRAIN_ONLY=1;; --no-bench) NO_BENCH=1;; esac; done
# Both attention kernels (the engine's line names the one it ran: "... wmma attention").
for attn in wmma tiled; do
  [ $TRAIN_ONLY = 1 ] && break
  export OPRM_CUDA_ATTENTION=$attn
  run_check fixture tests/fixtures/engine/*/
  run_check random tools/cuda_configs/qwen2.5-0.5b-shape.json
  if [ -d "$SHARED/models/story-llama" ]; then run_check scorer "$SHARED/models/story-llama"
  else line "{\"check\":\"scorer\",\"skipped\":\"no story-llama under $SHARED/models (set OPRM_SHARED_DATA)\",\"pass\":false}"; fi
done
unset OPRM_CUDA_ATTENTION

# ---- Training (issue 14) ----
for attn in wmma tiled; do
  export OPRM_CUDA_ATTENTION=$attn
  run_check grad tests/fixtures/engine/*/
done
unset OPRM_CUDA_ATTENTION

# 20 steps, cpu against cuda, on the same random model and data.
TD=$(mktemp -d /tmp/oprm_cc_train.XXXX)
DATA="$SHARED/prefs/hhh.jsonl"
if [ ! -f "$DATA" ]; then
  line "{\"check\":\"train20\",\"skipped\":\"no $DATA (set OPRM_SHARED_DATA)\",\"pass\":false}"
elif ! build/release/oprm init --arch qwen2 --hidden 256 --layers 4 --heads 8 --kv-heads 2 --ffn 688 --seed 7 \
       --tie-embeddings --output "$TD/model" --force >"$TD/init.log" 2>&1; then
  line "{\"check\":\"train20\",\"error\":\"oprm init failed: $(tail -1 "$TD/init.log" | tr -d '"\\')\",\"pass\":false}"
else
  for mode in full lora; do
    extra="--learning_rate 2e-5"; gpu_extra=""
    if [ $mode = lora ]; then extra="--learning_rate 1e-4 --lora-rank 8"; gpu_extra="--gradient_checkpointing true"; fi
    for dev in cpu cuda; do
      x=""; [ $dev = cuda ] && x="$gpu_extra"
      # shellcheck disable=SC2086
      timeout 150 build/release/oprm train --model "$TD/model" --data "$DATA" --output "$TD/$mode-$dev" \
        --max_steps 20 --per_device_train_batch_size 4 --max-len 256 --save_steps 0 --seed 3 --no-progress \
        --device $dev $extra $x >"$TD/$mode-$dev.log" 2>&1
      echo $? >"$TD/$mode-$dev.rc"
    done
    line "$(python3 - "$TD" "$mode" <<'PY'
import json, sys
td, mode = sys.argv[1:3]
r = {"check": "train20", "mode": mode, "tol": "|loss_cpu - loss_cuda| <= 2e-2 at every step"}
def losses(dev):
    rc = open(f"{td}/{mode}-{dev}.rc").read().strip()
    if rc != "0":
        raise RuntimeError(f"{dev}: exit {rc}: " + open(f"{td}/{mode}-{dev}.log").read().strip().splitlines()[-1][:160])
    out = {}
    for l in open(f"{td}/{mode}-{dev}/train_log.jsonl"):
        o = json.loads(l)
        if "loss" in o and "step" in o and "eval" not in str(o.get("type", "")):
            out[o["step"]] = o["loss"]
    return out
try:
    c, g = losses("cpu"), losses("cuda")
    steps = sorted(set(c) & set(g))
    d = [abs(c[s] - g[s]) for s in steps]
    r.update(steps=len(steps), max_abs_diff=max(d), loss_cpu=[round(c[s], 5) for s in steps],
             loss_cuda=[round(g[s], 5) for s in steps])
    r["pass"] = len(steps) == 20 and max(d) <= 2e-2
except Exception as e:
    r.update(error=f"{type(e).__name__}: {e}".replace('"', "'"))
    r["pass"] = False
print(json.dumps(r))
PY
)"
    # The checkpoint the GPU run wrote (downloaded master weights; LoRA: merged) loads on the CPU
    # and scores as on the GPU (the scorer check's tolerances).
    if [ -f "$TD/$mode-cuda/config.json" ]; then run_check scorer "$TD/$mode-cuda"; fi
  done
fi

[ $NO_BENCH = 1 ] && exit $fail
peak=$(timeout 60 python3 tools/cuda_bench_hf.py --peak 2>/dev/null || echo 0)
# Training throughput: 0.5B full (16 x 512 tokens), 7B LoRA r 16 with recomputation (4 x 2048).
for spec in "qwen2.5-0.5b-shape 512 16 0 0" "qwen2.5-7b-shape 2048 4 16 1"; do
  set -- $spec
  cfg=tools/cuda_configs/$1.json; seq=$2; nseq=$3; lora=$4; rc_=$5
  ox=""; hx=""
  [ "$lora" != 0 ] && { ox="--lora-rank $lora"; hx="--lora $lora"; }
  [ "$rc_" = 1 ] && { ox="$ox --gradient_checkpointing 1"; hx="$hx --gradient_checkpointing"; }
  # shellcheck disable=SC2086
  o=$(timeout 150 build/release/oprm bench --device cuda --mode train --config "$cfg" --seq $seq --nseq $nseq \
      --steps 5 --warmup 2 $ox 2>"$TD/bench_oprm.err" | tail -1)
  # shellcheck disable=SC2086
  h=$(timeout 150 python3 tools/cuda_bench_train.py --config "$cfg" --seq $seq --nseq $nseq $hx 2>"$TD/bench_hf.err" | tail -1)
  line "$(python3 - "$cfg" "$seq" "$nseq" "$lora" "$peak" "$o" "$h" "$(tail -1 "$TD/bench_oprm.err")" <<'PY'
import json, sys
cfg, seq, nseq, lora, peak, o, h, oerr = sys.argv[1:9]
r = {"check": "bench_train", "config": cfg.split("/")[-1], "seq": int(seq), "nseq": int(nseq), "lora": int(lora)}
try:
    o = json.loads(o); h = json.loads(h)
    ot = o["train_gflops"] / 1e3
    r.update(oprm_tokens_per_s=o["train_tokens_per_s"], hf_tokens_per_s=h["tokens_per_s"],
             ratio=round(o["train_tokens_per_s"] / h["tokens_per_s"], 3), oprm_tflops=round(ot, 2),
             hf_tflops=round(h["tflops"], 2), bf16_matmul_peak_tflops=float(peak), device=o.get("device"),
             hf_peak_mem_gib=round(h["peak_mem_gib"], 2))
    if float(peak) > 0:
        r["oprm_mfu"] = round(ot / float(peak), 3)
        r["hf_mfu"] = round(h["tflops"] / float(peak), 3)
    # Goals (benchmark, not test): >= 1.2x transformers; MFU >= 50% on the 7B shape.
    r["goal_ratio_1.2"] = r["ratio"] >= 1.2
    r["pass"] = True
except Exception as e:
    r.update(error=f"{type(e).__name__}: {e}", oprm=str(o)[:200], oprm_stderr=oerr[:200], hf=str(h)[:200], **{"pass": False})
print(json.dumps(r))
PY
)"
done
rm -rf "$TD"
[ $TRAIN_ONLY = 1 ] && exit $fail

# Scoring throughput: ~16k tokens per batch (32 x 512, 8 x 2048), 2 warm-up + 5 timed steps.
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
