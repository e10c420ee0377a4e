#!/bin/sh
# Fidelity to the Hugging Face stack (docs/huggingface.md): the round trips of an oprm checkpoint
# through transformers and PEFT, with the exact Python lines of docs/huggingface.md. Not part of
# `make test` (it needs torch, transformers and peft).
# Usage: tools/hf_check.sh [PYTHON]   (default: $OPRM_PYTHON, else python3; e.g. /work/venv-hf/bin/python)
set -eu
cd "$(dirname "$0")/.."
PY=${1:-${OPRM_PYTHON:-python3}}
"$PY" -c "import torch, transformers, peft, safetensors" 2>/dev/null || {
    echo "tools/hf_check.sh: $PY lacks torch/transformers/peft/safetensors (pip install torch transformers tokenizers peft safetensors)" >&2
    exit 2
}
[ -x build/release/oprm ] || make -j2 build/release/oprm
export OPRM_BIN="${OPRM_BIN:-build/release/oprm}"
export TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1
exec "$PY" -W ignore tools/hf_check.py
