#!/usr/bin/env bash
# Peak resident memory (/usr/bin/time -v "Maximum resident set size") of one step
# of `oprm bench` in the three settings issue 4 names, on the shape of
# Qwen2.5-0.5B-Instruct at 512 tokens per sequence (one chosen + one rejected):
#   full fine-tuning (fp32 weights, grads, AdamW m and v)   target <= 12 GiB
#   LoRA rank 16 with BF16 frozen base weights              target <=  4 GiB
#   scoring with BF16 weights                               target <=  1.5 GiB
# usage: bench/memory.sh [CONFIG] [SEQ] [THREADS]
# A setting the engine does not support yet is reported with its error message.
set -uo pipefail
cfg=${1:-../shared/bench/configs/qwen2.5-0.5b-shape.json}
seq=${2:-512}; threads=${3:-2}
bin=${OPRM_BIN:-build/release/oprm}
[ -x /usr/bin/time ] || { echo "memory.sh: /usr/bin/time missing (apt-get install -y time)" >&2; exit 1; }
mkdir -p build/bench
echo "# $(date -u +%FT%TZ) $(hostname) config=$cfg seq=$seq threads=$threads ($(git rev-parse --short HEAD 2>/dev/null || echo ?))"
echo
echo "| setting | peak RSS | target | wall | result |"
echo "|---|---|---|---|---|"
run() { # label target_gib args...
  local label=$1 target=$2; shift 2
  local log=build/bench/memory-$label.log
  /usr/bin/time -v "$bin" bench --config "$cfg" --seq "$seq" --threads "$threads" --steps 1 --warmup 0 "$@" \
    > build/bench/memory-$label.json 2> "$log"
  local rc=$?
  local kb; kb=$(grep "Maximum resident set size" "$log" | awk '{print $NF}')
  local wall; wall=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}')
  local gib; gib=$(awk -v k="${kb:-0}" 'BEGIN { printf "%.2f GiB", k / 1048576 }')
  if [ $rc -eq 0 ]; then
    local ok; ok=$(awk -v k="${kb:-0}" -v t="$target" 'BEGIN { print (k / 1048576 <= t) ? "meets target" : "OVER target" }')
    echo "| $label | $gib | <= $target GiB | $wall | $ok |"
  else
    echo "| $label | - | <= $target GiB | $wall | fails: $(grep -m1 '^oprm' "$log" | sed 's/|/\\|/g') |"
  fi
}
run full-finetune 12 --mode train --weights f32
run lora-r16-bf16 4 --mode train --weights bf16 --lora-rank 16
run score-bf16 1.5 --mode score --weights bf16
run score-f32 1.5 --mode score --weights f32
