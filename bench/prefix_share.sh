#!/usr/bin/env bash
# Prompt-prefix sharing on vs off, side by side in one process (bench/prefix_share.c):
# training steps/s, best-of-8 scoring time, fraction of tokens saved, per data file.
# usage: bench/prefix_share.sh MODEL_DIR [prefix_share options] DATA...
#   e.g. bench/prefix_share.sh ../shared/data/models/story-llama ../shared/data/prefs/hhh.jsonl
#        bench/prefix_share.sh ../shared/data/models/story-llama --config ../shared/bench/configs/qwen2-small.json \
#          --steps 3 --batch 2 ../shared/data/prefs/hhh.jsonl
#        bench/prefix_share.sh MODEL_DIR [--config CFG] [--steps N] --sweep   (minimum-length sweep)
#   LIB=path/to/liboprm.a (default build/release/liboprm.a), OUT (binary path), THREADS (default 1).
set -euo pipefail
lib=${LIB:-build/release/liboprm.a}
bin=${OUT:-build/bench/prefix_share}
mkdir -p "$(dirname "$bin")"
extra=()
if [[ " $* " == *" --sweep "* ]]; then
  # The threshold sweep shares every prefix length: the engine's layout file is
  # compiled again with MODEL_PREFIX_MIN 1 and linked ahead of the library's.
  bin=${bin}-sweep
  extra=(-DMODEL_PREFIX_MIN=1 src/model/prefix.c)
fi
cc -std=c11 -D_GNU_SOURCE -O2 -fopenmp -Isrc -I/usr/include/x86_64-linux-gnu/openblas-openmp "${extra[@]}" \
  bench/prefix_share.c "$lib" -o "$bin" -fopenmp -lopenblas $(pkg-config --libs jansson libpcre2-8 libutf8proc) -lm
threads=${THREADS:-1}
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$bin" "$@" --threads "$threads"
