#!/bin/sh
# TRL RewardTrainer vs oprm train --loss bt vs oprm train (OPRM) on story-llama and real pairs,
# same data/steps/batch/lr, this machine's CPU; prints one markdown table (bench/trl_compare.py).
# Usage: bench/trl_compare.sh [PYTHON] [--steps N --batch N --lr X --test N --threads N]
set -eu
cd "$(dirname "$0")/.."
PY=${OPRM_PYTHON:-python3}
case "${1:-}" in -*|"") ;; *) PY=$1; shift ;; esac
"$PY" -c "import torch, transformers, trl, datasets, tokenizers, safetensors" 2>/dev/null || {
    echo "bench/trl_compare.sh: $PY lacks torch/transformers/trl (pip install torch transformers tokenizers trl safetensors)" >&2
    exit 2
}
[ -x build/release/oprm ] || make -j2 build/release/oprm
export OPRM_BIN="${OPRM_BIN:-build/release/oprm}"
export TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
       HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1
exec "$PY" -W ignore bench/trl_compare.py "$@"
