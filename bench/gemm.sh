#!/usr/bin/env bash
# Per-shape sgemm GFLOP/s for one layer of a config at SEQ tokens x 2 sequences.
# usage: bench/gemm.sh CONFIG SEQ [THREADS]
set -euo pipefail
cfg=${1:?usage: bench/gemm.sh CONFIG SEQ [THREADS]}; seq=${2:?seq}; threads=${3:-1}
mkdir -p build/bench
cc -O2 -I/usr/include/x86_64-linux-gnu/openblas-openmp bench/gemm_shapes.c -o build/bench/gemm_shapes -lopenblas
read -r d hq hk f < <(/usr/bin/python3 -c "
import json,sys; c=json.load(open('$cfg')); H=c['num_attention_heads']; hd=c.get('head_dim', c['hidden_size']//H)
print(c['hidden_size'], H*hd, c.get('num_key_value_heads', H)*hd, c['intermediate_size'])")
echo "# $(basename "$cfg") rows=$((2 * seq)) hidden=$d q_out=$hq kv_out=$hk ffn=$f threads=$threads"
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads build/bench/gemm_shapes $((2 * seq)) "$d" "$hq" "$hk" "$f" 5
