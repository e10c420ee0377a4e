#!/usr/bin/env bash
# The CUDA engine's device check (issues 13 and 14), prepared for ONE run on a lent
# GPU machine (one H200, 16 cores) inside a hard budget: 15 minutes of device time
# in all, machine start-up included, at most 10 minutes a command. So the checks
# run in priority order, each under its own `timeout`, all under a global deadline
# (--deadline, default 540 s = 9 minutes), and every check prints ONE JSON line the
# moment it completes, also appended to $OUT/cuda_check.jsonl (stderr of every step
# to $OUT/cuda_check.log), so partial results survive a kill. A check the deadline
# leaves no time for prints {"skipped":"deadline"}; the last line is a summary.
#
# Order (most valuable first):
#   1. fixture: the CUDA engine against the PyTorch fixtures of the CPU tests
#      (tests/fixtures/engine/*; BF16 tolerances in tests/cuda/cuda_check.c),
#      for each attention kernel (OPRM_CUDA_ATTENTION=wmma, tiled);
#   2. grad + adamw: the CUDA training engine's gradients against the fixtures
#      (full fine-tuning and LoRA, with and without recomputation; cosine >= 0.999,
#      relative norm error <= 1e-2), one device AdamW step against src/train/adamw.c
#      (expected bit-exact); each attention kernel;
#   3. random / scorer: GPU against CPU oprm on the same random weights of the
#      Qwen2.5-0.5B shape, and the whole scorer on story-llama (probabilities and
#      mean within 2e-2); wmma, then tiled;
#   4. train20: `oprm train` 20 steps on cpu and on cuda, same data and random
#      model: loss within 2e-2 at every step (full; LoRA + recomputation), then
#      the scorer check (cpu vs cuda) on the checkpoint the GPU run wrote;
#   (1-4 run with OPRM_CUDA_SYNC=1: a failing kernel or cuBLASLt call is named
#   with its layer and shapes, e.g. "attention_backward_dq_wmma (layer 3,
#   T=2048, D=896, H=14, KV=2, hd=64; train_cuda.cu:312): an illegal memory
#   access ..."; stderr also gets an "oprm: OPRM_CUDA_SYNC:" line)
#   5. benchmarks (not tests; "pass" means "measured"): bf16 matmul peak;
#      training tokens/s and MFU against PyTorch + transformers (7B LoRA r16 with
#      recomputation, 0.5B full); scoring tokens/s (7B and 0.5B at 2048 and 512).
#
# Time estimates (s). CPU parts measured on the 2-core build machine (dry run,
# `--dry-run` prints each check's "seconds") and divided by ~4 for 16 cores; GPU
# parts from FLOPs at a conservative 30% of the H200's measured ~790 TFLOP/s bf16
# (~240 TFLOP/s), plus ~3 s of CUDA context + cuBLASLt start per process and
# ~10 s of `import torch, transformers` per Python process:
#   build (make -j16, one gencode, 17 .cu + ~90 .c; 90 s on 2 cores here)   60
#   fixture x2  (6 tiny fixtures: start-up dominates)                          2 x 10
#   grad x2     (6 fixtures x 2 recompute modes, tiny)                         2 x 10
#   random x2   (0.5B shape: random init + a 2004-token CPU forward, 1.4 TFLOP;
#                the dry run, init + TWO CPU forwards, took 52-73 s on 2 shared
#                cores here -> one forward ~8 s on 16; GPU < 1 s)              2 x 15
#   scorer x2   (story-llama, 4 items; < 1 s on the CPU here)                  2 x 5
#   train20     (4 runs of 20 steps of a 4-layer 256-wide model; a CPU run
#                took ~7 s here; GPU run ~5 s with start-up) + 2 scorers        40
#   peak        (import torch + 23 8192^3 matmuls = 25 TFLOP)                   15
#   bench_train 7B LoRA rc (330 TFLOP/step -> ~1.4 s; 4 steps; 7.6e9-value
#                random init ~15 s; HF: import + init + 4 steps ~40 s)          70
#   bench_train 0.5B full (18 TFLOP/step -> 0.1 s; both sides ~30 s)            35
#   bench 7B@2048, 0.5B@512, 7B@512, 0.5B@2048 (16k tokens: 7B 215 TFLOP/step
#                -> ~1 s; init dominates: ~40 s a 7B pair, ~25 s a 0.5B pair)   130
#   total ~450 s: 90 s inside the 540 s deadline; the benchmarks come last so the
#   deadline only ever cuts measurements, never a correctness check.
#
# Usage: tools/cuda_check.sh [--dry-run] [--deadline S] [--no-bench] [--train-only]
#        tools/cuda_check.sh --summary FILE    (pass/fail logic over saved JSON lines)
#   --dry-run: no GPU needed. Builds, then runs every check with the CPU engine
#   standing in for the GPU (OPRM_CHECK_DEVICE=cpu, --device cpu), the Python
#   benchmarks on a tiny config with --device cpu, and the summary logic on a
#   canned GPU result (tools/cuda_check_canned.jsonl). PYTHON selects the
#   interpreter (default python3). Exit status 0 when every check passed.
set -u
cd "$(dirname "$0")/.."
START=$(date +%s)
DEADLINE=540; DRY=0; NO_BENCH=0; TRAIN_ONLY=0; SUMMARY_ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1;;
    --deadline) DEADLINE=$2; shift;;
    --no-bench) NO_BENCH=1;;
    --train-only) TRAIN_ONLY=1;;
    --summary) SUMMARY_ONLY=$2; shift;;
    *) echo "usage: tools/cuda_check.sh [--dry-run] [--deadline S] [--no-bench] [--train-only] | --summary FILE" >&2; exit 2;;
  esac
  shift
done
PY=${PYTHON:-python3}
jstr() { tr -d '\\' | tr '"\n\t' "'  " | cut -c1-${1:-200}; } # stdin -> a safe JSON string body
export PYTHONUNBUFFERED=1

# Pass/fail over a file of JSON lines: one summary line; exit 0 when no line has
# "pass": false and none was skipped for the deadline or a missing input.
summarize() { # FILE SECONDS
  local out rc
  out=$("$PY" - "$1" "$2" "$DEADLINE" "$DRY" 2>&1 <<'PY'
import json, sys
path, secs, deadline, dry = sys.argv[1:5]
n = {"passed": 0, "failed": 0, "skipped": 0, "unparsed": 0}
failed, skipped = [], []
for l in open(path):
    l = l.strip()
    if not l:
        continue
    try:
        o = json.loads(l)
    except ValueError:
        n["unparsed"] += 1
        failed.append("unparsed: " + l[:60])
        continue
    if o.get("check") == "summary":
        continue
    tag = o.get("check", "?") + ("/" + str(o["name"]) if "name" in o else "") + \
        ("/" + str(o["mode"]) if "mode" in o else "") + ("/" + str(o["attn"]) if "attn" in o else "")
    if o.get("pass") is True:
        n["passed"] += 1
    elif o.get("pass") is False:
        n["failed"] += 1
        failed.append(tag)
    else:
        n["skipped"] += 1
        skipped.append(tag + ": " + str(o.get("skipped", "?"))[:40])
ok = n["failed"] == 0 and n["skipped"] == 0 and n["unparsed"] == 0 and n["passed"] > 0
print(json.dumps({"check": "summary", **n, "failed_checks": failed[:30], "skipped_checks": skipped[:30],
                  "seconds": int(secs), "deadline_s": int(deadline), "dry_run": dry == "1", "pass": ok}))
sys.exit(0 if ok else 1)
PY
)
  rc=$?
  case "$out" in '{"check": "summary"'*) printf '%s\n' "$out";;
    *) echo "{\"check\":\"summary\",\"error\":\"summary script failed: $(printf '%s' "$out" | tail -1 | jstr)\",\"pass\":false}"; rc=1;; esac
  return $rc
}
if [ -n "$SUMMARY_ONLY" ]; then summarize "$SUMMARY_ONLY" 0; exit $?; fi

RDIR=${OUT:-/tmp/oprm_cuda_check}
mkdir -p "$RDIR"
RES=$RDIR/cuda_check.jsonl
ERR=$RDIR/cuda_check.log
: >"$RES"; : >"$ERR"
# tools/cuda_kit.sh's pack (prebuilt binaries, their libraries, the shared data), unpacked once.
if [ -f .devkit/kit.tar.gz ] && [ ! -x .devkit/bin/oprm ]; then
  tar -xzf .devkit/kit.tar.gz -C .devkit 2>>"$ERR" || echo "cuda_check: cannot unpack .devkit/kit.tar.gz" >>"$ERR"
fi
SHARED=${OPRM_SHARED_DATA:-../shared/data}
[ -d "$SHARED" ] || SHARED=shared/data
[ -d "$SHARED" ] || SHARED=.devkit/data # tools/cuda_kit.sh: only the checkout travels to the GPU machine
TD=$(mktemp -d /tmp/oprm_cc.XXXX)

# Every line gets "t": seconds since the start, when it was printed.
line() {
  local l=$1
  case "$l" in '{"'*) l="{\"t\":$(elapsed),${l#\{}";; esac
  printf '%s\n' "$l"; printf '%s\n' "$l" >>"$RES"
}
elapsed() { echo $(( $(date +%s) - START )); }
finish() {
  local s rc
  s=$(summarize "$RES" "$(elapsed)"); rc=$?
  line "$s"
  rm -rf "$TD"
  exit $rc
}
trap 'line "{\"check\":\"killed\",\"seconds\":$(elapsed),\"pass\":false}"; finish' TERM INT

# budget WANT: seconds a step may take (WANT, or what the deadline leaves less a
# 10 s margin for the summary); fails when under 15 s are left.
budget() {
  local left=$(( DEADLINE - $(elapsed) - 10 ))
  [ $left -ge 15 ] || return 1
  [ $1 -lt $left ] && echo $1 || echo $left
}
skip_line() { line "{\"check\":\"$1\"${2:+,$2},\"skipped\":\"deadline\",\"seconds\":$(elapsed)}"; }

# run_check MODE WANT EXTRA_JSON ARGS...: cuda_check's JSON lines, streamed as they come.
run_check() {
  local mode=$1 want=$2 extra=$3 t before after rc t0
  shift 3
  if ! t=$(budget "$want"); then skip_line "$mode" "$extra"; return; fi
  before=$(wc -l <"$RES"); t0=$(date +%s)
  echo "== cuda_check $mode $extra $* (timeout $t s)" >>"$ERR"
  timeout -k 5 "$t" build/release/cuda_check "$mode" "$@" 2>>"$ERR" | while IFS= read -r l; do
    case "$l" in '{'*) [ -n "$extra" ] && l="{$extra,${l#\{}"; line "$l";; *) echo "$l" >>"$ERR";; esac
  done
  rc=${PIPESTATUS[0]}
  after=$(wc -l <"$RES")
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    line "{\"check\":\"$mode\",$extra,\"error\":\"timeout after ${t} s ($((after - before)) lines before it)\",\"pass\":false}"
  elif [ "$rc" -gt 1 ] || [ "$after" = "$before" ]; then
    line "{\"check\":\"$mode\",$extra,\"error\":\"exit $rc after $((after - before)) lines: $(tail -1 "$ERR" | jstr 400)\",\"seconds\":$(( $(date +%s) - t0 )),\"pass\":false}"
  fi
}

# ---- GPU and build ----
if [ $DRY = 1 ]; then
  export OPRM_CHECK_DEVICE=cpu
  GDEV=cpu
  line "{\"check\":\"gpu\",\"dry_run\":true,\"note\":\"no GPU used: the CPU engine stands in (OPRM_CHECK_DEVICE=cpu)\",\"pass\":true}"
  MAKE_ARGS=()
else
  GDEV=cuda
  cc=$(timeout 20 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>>"$ERR" | head -1 | tr -d ' .')
  if [ -z "$cc" ]; then
    line '{"check":"gpu","error":"nvidia-smi finds no GPU","pass":false}'; finish
  fi
  gpu=$(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1 | jstr)
  line "{\"check\":\"gpu\",\"gpu\":\"$gpu\",\"sm\":\"$cc\",\"nvcc\":\"$(nvcc --version 2>/dev/null | tail -2 | head -1 | jstr 80)\",\"pass\":true}"
  MAKE_ARGS=(CUDA_GENCODE="-gencode arch=compute_$cc,code=sm_$cc")
fi
# cuBLASLt where this machine keeps it (the rpath names the build machine's CUDA):
# the toolkit's lib64, else the pip wheel nvidia-cublas that torch brings.
for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 \
         $("$PY" -c 'import nvidia, os; [print(os.path.join(p, q, "lib")) for p in nvidia.__path__ for q in ("cu13", "cublas")]' 2>/dev/null); do
  if [ -e "$d/libcublasLt.so.13" ]; then export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; break; fi
done
t0=$(date +%s)
if ! bt=$(budget 200); then bt=15; fi
if timeout -k 5 "$bt" make -j"$(nproc)" "${MAKE_ARGS[@]}" build/release/oprm build/release/cuda_check >"$RDIR/build.log" 2>&1; then
  line "{\"check\":\"build\",\"seconds\":$(( $(date +%s) - t0 )),\"cuda\":$([ -e build/release/.backend-cuda ] && echo true || echo false),\"pass\":true}"
elif [ -x .devkit/bin/oprm ] && [ -x .devkit/bin/cuda_check ]; then # built elsewhere by tools/cuda_kit.sh
  why=$(grep -m1 -E 'error:|fatal|No such file|not found|Error [0-9]' "$RDIR/build.log" | jstr 160)
  mkdir -p build/release && cp .devkit/bin/oprm .devkit/bin/cuda_check build/release/
  # Their libraries (only for them: a build made here links this machine's own, e.g. a newer libgomp).
  export LD_LIBRARY_PATH="$PWD/.devkit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  line "{\"check\":\"build\",\"note\":\"make failed ($why); using .devkit/bin (tools/cuda_kit.sh at $(cat .devkit/commit 2>/dev/null))\",\"seconds\":$(( $(date +%s) - t0 )),\"pass\":true}"
elif [ -x build/release/oprm ] && [ -x build/release/cuda_check ]; then
  why=$(grep -m1 -E 'error:|fatal|No such file|not found|Error [0-9]' "$RDIR/build.log" | jstr 160)
  line "{\"check\":\"build\",\"note\":\"make failed ($why); using the carried build/release binaries\",\"seconds\":$(( $(date +%s) - t0 )),\"pass\":true}"
else
  line "{\"check\":\"build\",\"error\":\"$(grep -m1 -E 'error:|fatal|No such file|not found|Error [0-9]' "$RDIR/build.log" | jstr 200)\",\"pass\":false}"; finish
fi
missing=$(ldd build/release/oprm build/release/cuda_check 2>&1 | grep 'not found' | sort -u | jstr 300)
if [ -n "$missing" ]; then
  line "{\"check\":\"libs\",\"error\":\"shared libraries not found: $missing\",\"pass\":false}"; finish
fi

FIX=(tests/fixtures/engine/*/)
# The correctness checks (1-4) run the CUDA engine in its debug mode: every kernel
# launch and cuBLASLt call synchronizes, and a failure names the kernel, the layer
# and the shapes instead of only the phase. Slower by a sync per launch (small
# next to these checks' start-up); the benchmarks (5) run without it.
export OPRM_CUDA_SYNC=1
# ---- 1, 2: correctness against the PyTorch fixtures ----
if [ $TRAIN_ONLY = 0 ]; then
  for attn in wmma tiled; do
    OPRM_CUDA_ATTENTION=$attn run_check fixture 60 "\"attn\":\"$attn\"" "${FIX[@]}"
  done
fi
for attn in wmma tiled; do
  OPRM_CUDA_ATTENTION=$attn run_check grad 90 "\"attn\":\"$attn\"" "${FIX[@]}"
done
# ---- 3: GPU against CPU ----
if [ $TRAIN_ONLY = 0 ]; then
  for attn in wmma tiled; do
    OPRM_CUDA_ATTENTION=$attn run_check random 90 "\"attn\":\"$attn\"" tools/cuda_configs/qwen2.5-0.5b-shape.json
    if [ -d "$SHARED/models/story-llama" ]; then
      OPRM_CUDA_ATTENTION=$attn run_check scorer 45 "\"attn\":\"$attn\"" "$SHARED/models/story-llama"
    else
      line "{\"check\":\"scorer\",\"attn\":\"$attn\",\"skipped\":\"no story-llama under $SHARED/models (set OPRM_SHARED_DATA)\"}"
    fi
  done
fi

# ---- 4: 20 training steps, cpu against cuda, same random model and data ----
DATA="$SHARED/prefs/hhh.jsonl"
if [ ! -f "$DATA" ]; then
  line "{\"check\":\"train20\",\"skipped\":\"no $DATA (set OPRM_SHARED_DATA)\"}"
elif ! build/release/oprm init --arch qwen2 --hidden 256 --layers 4 --heads 8 --kv-heads 2 --ffn 688 --seed 7 \
       --tie-embeddings --output "$TD/model" --force >"$TD/init.log" 2>&1; then
  line "{\"check\":\"train20\",\"error\":\"oprm init failed: $(tail -1 "$TD/init.log" | jstr)\",\"pass\":false}"
else
  for mode in full lora; do
    extra="--learning_rate 2e-5"; gpu_extra=""
    if [ $mode = lora ]; then extra="--learning_rate 1e-4 --lora-rank 8"; gpu_extra="--gradient_checkpointing true"; fi
    if ! budget 150 >/dev/null; then skip_line train20 "\"mode\":\"$mode\""; continue; fi
    t0=$(date +%s)
    for side in cpu gpu; do
      dev=cpu; x=""; [ $side = gpu ] && { dev=$GDEV; x="$gpu_extra"; }
      t=$(budget 75) || t=15
      # shellcheck disable=SC2086
      timeout -k 5 "$t" build/release/oprm train --model "$TD/model" --data "$DATA" --output "$TD/$mode-$side" \
        --max_steps 20 --per_device_train_batch_size 4 --max-len 256 --save_steps 0 --seed 3 --no-progress \
        --device $dev $extra $x >"$TD/$mode-$side.log" 2>&1
      echo $? >"$TD/$mode-$side.rc"
      { echo "== train20 $mode $side (device $dev $x)"; tail -5 "$TD/$mode-$side.log"; } >>"$ERR"
    done
    line "$("$PY" - "$TD" "$mode" "$(( $(date +%s) - t0 ))" <<'PY'
import json, sys
td, mode, secs = sys.argv[1:4]
r = {"check": "train20", "mode": mode, "seconds": int(secs), "tol": "|loss_cpu - loss_gpu| <= 2e-2 at every step"}
def losses(side):
    rc = open(f"{td}/{mode}-{side}.rc").read().strip()
    if rc != "0":
        tail = (open(f"{td}/{mode}-{side}.log").read().strip().splitlines() or [""])[-1][:400] # OPRM_CUDA_SYNC's names
        raise RuntimeError(f"{side}: exit {rc}" + (" (timeout)" if rc in ("124", "137") else "") + ": " + tail)
    out = {}
    for l in open(f"{td}/{mode}-{side}/train_log.jsonl"):
        o = json.loads(l)
        if "loss" in o and "step" in o and "eval" not in str(o.get("type", "")):
            out[o["step"]] = o["loss"]
    return out
try:
    c, g = losses("cpu"), losses("gpu")
    steps = sorted(set(c) & set(g))
    d = [abs(c[s] - g[s]) for s in steps] or [float("inf")]
    r.update(steps=len(steps), max_abs_diff=max(d), loss_cpu=[round(c[s], 5) for s in steps],
             loss_gpu=[round(g[s], 5) for s in steps])
    r["pass"] = len(steps) == 20 and max(d) <= 2e-2
except Exception as e:
    r.update(error=f"{type(e).__name__}: {e}".replace('"', "'"))
    r["pass"] = False
print(json.dumps(r))
PY
)"
    # The checkpoint the GPU run wrote (downloaded master weights; LoRA: merged) loads
    # on the CPU and scores as on the GPU (the scorer check's tolerances).
    if [ -f "$TD/$mode-gpu/config.json" ]; then run_check scorer 45 "\"mode\":\"checkpoint-$mode\"" "$TD/$mode-gpu"; fi
  done
fi

# ---- 5: benchmarks (last: the deadline may cut them) ----
unset OPRM_CUDA_SYNC # measured as used: no per-launch synchronization
if [ $NO_BENCH = 1 ]; then finish; fi
if [ $DRY = 1 ]; then # tiny shapes, CPU
  CFG7=tools/cuda_configs/tiny-qwen2.json; CFG05=$CFG7; S_LONG=64; S_SHORT=32; TOK=256; DEVFLAG="--device cpu"
else
  CFG7=tools/cuda_configs/qwen2.5-7b-shape.json; CFG05=tools/cuda_configs/qwen2.5-0.5b-shape.json
  S_LONG=2048; S_SHORT=512; TOK=16384; DEVFLAG=""
fi
peak=0
if t=$(budget 40); then
  # shellcheck disable=SC2086
  peak=$(timeout -k 5 "$t" "$PY" tools/cuda_bench_hf.py --peak $DEVFLAG 2>>"$ERR" | tail -1)
  case "$peak" in ''|*[!0-9.]*) line "{\"check\":\"peak\",\"error\":\"no number: $(tail -1 "$ERR" | jstr)\",\"pass\":false}"; peak=0;;
    *) line "{\"check\":\"peak\",\"bf16_matmul_tflops\":$peak,\"pass\":true}";; esac
else skip_line peak; fi

bench_train() { # CFG SEQ NSEQ LORA RECOMPUTE STEPS
  local cfg=$1 seq=$2 nseq=$3 lora=$4 rc_=$5 steps=$6 ox="" hx="" t o h odev="cuda" t0
  if ! t=$(budget 150); then skip_line bench_train "\"config\":\"${cfg##*/}\",\"seq\":$seq"; return; fi
  t0=$(date +%s)
  [ "$lora" != 0 ] && { ox="--lora-rank $lora"; hx="--lora $lora"; }
  [ "$rc_" = 1 ] && { ox="$ox --gradient_checkpointing 1"; hx="$hx --gradient_checkpointing"; }
  # The CPU train step scores one pair (--nseq 2) and takes no --gradient_checkpointing.
  [ $DRY = 1 ] && { odev=cpu; ox="${ox% --gradient_checkpointing 1}"; }
  echo "== bench_train $cfg $seq x $nseq $ox" >>"$ERR"
  # shellcheck disable=SC2086
  o=$(timeout -k 5 $(( t / 2 )) build/release/oprm bench --device $odev --mode train --config "$cfg" --seq "$seq" \
      $([ $DRY = 1 ] || echo "--nseq $nseq") --steps "$steps" --warmup 1 $ox 2>>"$ERR" | tail -1)
  t=$(budget $(( t / 2 ))) || t=15
  # shellcheck disable=SC2086
  h=$(timeout -k 5 "$t" "$PY" tools/cuda_bench_train.py --config "$cfg" --seq "$seq" --nseq "$nseq" --steps "$steps" \
      $hx $DEVFLAG 2>>"$ERR" | tail -1)
  line "$("$PY" - "$cfg" "$seq" "$nseq" "$lora" "$peak" "$o" "$h" "$(( $(date +%s) - t0 ))" <<'PY'
import json, sys
cfg, seq, nseq, lora, peak, o, h, secs = sys.argv[1:9]
r = {"check": "bench_train", "config": cfg.split("/")[-1], "seq": int(seq), "nseq": int(nseq), "lora": int(lora),
     "seconds": int(secs)}
try:
    r["oprm"] = "no output"; o = json.loads(o); r.pop("oprm")
    r["hf"] = "no output"; h = json.loads(h); r.pop("hf")
    ot = o["train_gflops"] / 1e3
    r.update(oprm_tokens_per_s=o["train_tokens_per_s"], hf_tokens_per_s=h["tokens_per_s"],
             ratio=round(o["train_tokens_per_s"] / h["tokens_per_s"], 3), oprm_tflops=round(ot, 2),
             hf_tflops=round(h["tflops"], 2), bf16_matmul_peak_tflops=float(peak), device=o.get("device"),
             hf_peak_mem_gib=round(h["peak_mem_gib"], 2), torch=h.get("torch"))
    if float(peak) > 0:
        r["oprm_mfu"] = round(ot / float(peak), 3)
        r["hf_mfu"] = round(h["tflops"] / float(peak), 3)
    # Goals (benchmark, not test): >= 1.2x transformers; MFU >= 50% on the 7B shape.
    r["goal_ratio_1.2"] = r["ratio"] >= 1.2
    r["pass"] = True
except Exception as e:
    r.update(error=f"{type(e).__name__}: {e}"[:200], **{"pass": False})
print(json.dumps(r))
PY
)"
}
bench_score() { # CFG SEQ
  local cfg=$1 seq=$2 nseq=$(( TOK / $2 )) t o h t0 odev=cuda
  if ! t=$(budget 120); then skip_line bench "\"config\":\"${cfg##*/}\",\"seq\":$seq"; return; fi
  t0=$(date +%s); [ $DRY = 1 ] && odev=cpu
  echo "== bench $cfg $seq x $nseq" >>"$ERR"
  o=$(timeout -k 5 $(( t / 2 )) build/release/oprm bench --device $odev --mode score --weights bf16 --config "$cfg" \
      --seq "$seq" --nseq "$nseq" --steps 5 --warmup 2 2>>"$ERR" | tail -1)
  t=$(budget $(( t / 2 ))) || t=15
  # shellcheck disable=SC2086
  h=$(timeout -k 5 "$t" "$PY" tools/cuda_bench_hf.py --config "$cfg" --seq "$seq" --nseq "$nseq" $DEVFLAG 2>>"$ERR" | tail -1)
  line "$("$PY" - "$cfg" "$seq" "$nseq" "$peak" "$o" "$h" "$(( $(date +%s) - t0 ))" <<'PY'
import json, sys
cfg, seq, nseq, peak, o, h, secs = sys.argv[1:8]
r = {"check": "bench", "config": cfg.split("/")[-1], "seq": int(seq), "nseq": int(nseq), "seconds": int(secs)}
try:
    r["oprm"] = "no output"; o = json.loads(o); r.pop("oprm")
    r["hf"] = "no output"; h = json.loads(h); r.pop("hf")
    r.update(oprm_tokens_per_s=o["score_tokens_per_s"], hf_tokens_per_s=h["tokens_per_s"],
             ratio=round(o["score_tokens_per_s"] / h["tokens_per_s"], 3), oprm_tflops=o["score_gflops"] / 1e3,
             bf16_matmul_peak_tflops=float(peak), device=o.get("device"), torch=h.get("torch"))
    if float(peak) > 0: r["fraction_of_peak"] = round(o["score_gflops"] / 1e3 / float(peak), 3)
    # Goals (benchmark, not test): >= 1.5x transformers; >= 60% of peak on 7B at 2048.
    r["goal_ratio_1.5"] = r["ratio"] >= 1.5
    r["pass"] = True
except Exception as e:
    r.update(error=f"{type(e).__name__}: {e}"[:200], **{"pass": False})
print(json.dumps(r))
PY
)"
}
# Most informative first: 7B LoRA training (4 x 2048, MFU goal), 7B scoring at 2048
# (60%-of-peak goal), 0.5B full training (16 x 512), then the other scoring shapes.
bench_train "$CFG7" "$S_LONG" 4 16 1 3
[ $TRAIN_ONLY = 1 ] || bench_score "$CFG7" "$S_LONG"
bench_train "$CFG05" "$S_SHORT" 16 0 0 5
if [ $TRAIN_ONLY = 0 ]; then
  bench_score "$CFG05" "$S_SHORT"
  bench_score "$CFG7" "$S_SHORT"
  bench_score "$CFG05" "$S_LONG"
fi

# ---- dry run: the pass/fail logic on a canned GPU result (one failure in it) ----
if [ $DRY = 1 ]; then
  s=$(summarize tools/cuda_check_canned.jsonl 0); rc=$?
  case "$s" in
    *'"failed": 1'*'"skipped": 1'*'"grad/llama_gqa/full/tiled"'*) [ $rc = 1 ] && ok=true || ok=false;;
    *) ok=false;;
  esac
  line "{\"check\":\"dryrun_summary_logic\",\"canned\":\"tools/cuda_check_canned.jsonl\",\"summary_exit\":$rc,\"pass\":$ok}"
fi
finish
