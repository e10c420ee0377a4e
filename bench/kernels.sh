#!/usr/bin/env bash
# CPU time per non-GEMM kernel and per AdamW step (bench/kernels.c) at one config's
# shapes, for A/B runs of two builds in the same minute on a shared machine.
# usage: bench/kernels.sh CONFIG SEQ [REPS] [THREADS]
#   LIB=path/to/liboprm.a (default build/release/liboprm.a), EXTRA_CFLAGS (e.g.
#   -DNO_FUSED_ZERO for a library without adamw_step_zero_grad), OUT (binary path).
set -euo pipefail
cfg=${1:?usage: bench/kernels.sh CONFIG SEQ [REPS] [THREADS]}; seq=${2:?seq}; reps=${3:-20}; threads=${4:-1}
lib=${LIB:-build/release/liboprm.a}
bin=${OUT:-build/bench/kernels}
mkdir -p "$(dirname "$bin")"
cc -std=c11 -D_GNU_SOURCE -O2 -fopenmp -Isrc -I/usr/include/x86_64-linux-gnu/openblas-openmp ${EXTRA_CFLAGS:-} \
  bench/kernels.c "$lib" -o "$bin" -fopenmp -lopenblas $(pkg-config --libs jansson libpcre2-8 libutf8proc) -lm
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$bin" "$cfg" "$seq" "$reps"
