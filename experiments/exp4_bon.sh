#!/bin/sh
# experiment 4, risk-aware Best-of-N (see docs/experiments.md).
# Work files: $OPRM_EXP_WORK (default /tmp/oprm-experiments); finished runs there are reused.
set -e
cd "$(dirname "$0")/.."
exec /usr/bin/python3 experiments/exp.py exp4 "$@"
