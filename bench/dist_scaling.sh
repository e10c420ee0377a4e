#!/usr/bin/env bash
# Data-parallel scaling of `oprm train` on this machine (docs/distributed.md):
# tokens/s of 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread at
# the same global batch, the communication time per step, and the optimizer
# memory and peak RSS per rank with and without ZeRO-1. A random model of the
# bench config's shape (oprm init) trains on real hhh pairs.
# usage: bench/dist_scaling.sh [CONFIG] [STEPS] [MAX_LEN] [GLOBAL_BATCH]
# The machine is shared: run it more than once and read the spread.
set -uo pipefail
cfg=${1:-../shared/bench/configs/qwen2-small.json}
steps=${2:-4}; maxlen=${3:-128}; gb=${4:-8}
bin=${OPRM_BIN:-build/release/oprm}
data=${OPRM_SHARED_DATA:-../shared/data}/prefs/hhh.jsonl
work=build/bench/dist; mkdir -p "$work"
command -v mpirun >/dev/null || { echo "dist_scaling.sh: no mpirun (apt-get install openmpi-bin)" >&2; exit 1; }
j() { python3 -c "import json,sys; c=json.load(open('$cfg')); print(c.get('$1', ${2:-0}))"; }
model=$work/model
if [ ! -f "$model/config.json" ]; then
  arch=$(python3 -c "import json; a=json.load(open('$cfg'))['architectures'][0]; print(a.replace('ForCausalLM','').lower())")
  tie=""; [ "$(j tie_word_embeddings False)" = True ] && tie=--tie-embeddings
  "$bin" init --arch "$arch" --output "$model" --force --hidden "$(j hidden_size)" --layers "$(j num_hidden_layers)" \
    --heads "$(j num_attention_heads)" --kv-heads "$(j num_key_value_heads)" --ffn "$(j intermediate_size)" \
    --vocab "$(j vocab_size)" --max-pos "$(j max_position_embeddings 4096)" --rope-theta "$(j rope_theta 10000)" $tie \
    >/dev/null || exit 1
fi
echo "# $(date -u +%FT%TZ) $(hostname) $(nproc) cores, config=$cfg steps=$steps max_len=$maxlen global batch=$gb ($(git rev-parse --short HEAD 2>/dev/null || echo ?))"
echo
echo "| run | tokens/s | step s | comm s/step | wait s/step | optimizer MiB/rank | peak RSS MiB/rank |"
echo "|---|---|---|---|---|---|---|"
run() { # label ranks threads extra...
  local label=$1 ranks=$2 threads=$3; shift 3
  local slug; slug=$(printf '%s' "$label" | tr -c 'A-Za-z0-9' '_')
  local out=$work/out-$slug; rm -rf "$out" "$work"/time-"$slug".*
  local args=(train --model "$model" --data "$data" --output "$out" --per_device_train_batch_size $((gb / ranks))
              --max_length "$maxlen" --max_steps "$steps" --save_steps 0 --threads "$threads" --quiet
              --dataloader_num_workers 1 "$@")
  if [ "$ranks" -gt 1 ]; then
    OMP_NUM_THREADS=$threads mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$ranks" \
      -x OMP_NUM_THREADS /usr/bin/time -v -o "$work/time-$slug.%q{OMPI_COMM_WORLD_RANK}" "$bin" "${args[@]}" \
      2>"$work/$slug.err" || { echo "| $label | failed: $(tail -n1 "$work/$slug.err") |"; return; }
  else
    OMP_NUM_THREADS=$threads /usr/bin/time -v -o "$work/time-$slug.0" "$bin" "${args[@]}" 2>"$work/$slug.err" ||
      { echo "| $label | failed: $(tail -n1 "$work/$slug.err") |"; return; }
  fi
  local rss; rss=$(cat "$work"/time-"$slug".* 2>/dev/null | grep "Maximum resident" | awk '{print $NF}' | sort -n | tail -n1)
  python3 - "$out/train_log.jsonl" "$label" "${rss:-0}" "$steps" <<'EOF'
import json, sys
path, label, rss_kb, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = [json.loads(l) for l in open(path) if '"summary"' in l][-1]
print(f"| {label} | {s['tokens_per_s']:.0f} | {s['step_s'] / steps:.2f} | {s['comm_s'] / steps:.3f} | {s.get('comm_wait_s', 0) / steps:.3f} | "
      f"{s['optimizer_bytes_per_rank'] / 2**20:.0f} | {rss_kb / 1024:.0f} |")
EOF
}
run "1 rank x 1 thread" 1 1
run "1 rank x 2 threads" 1 2
run "2 ranks x 1 thread" 2 1
run "2 ranks x 1 thread, ZeRO-1" 2 1 --zero 1
