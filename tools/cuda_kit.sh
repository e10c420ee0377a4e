#!/usr/bin/env bash
# Prepares .devkit/ for tools/cuda_check.sh on a lent GPU machine that may lack
# oprm's C build dependencies (OpenBLAS, jansson, PCRE2, utf8proc, libmicrohttpd
# headers: its image is a CUDA + PyTorch one, with no network to apt-get them)
# and lacks ../shared/data (only the checkout travels):
# packed as .devkit/kit.tar.gz (unpacked there by cuda_check.sh):
#   bin/   oprm and cuda_check of the committed tree (HEAD), built here for
#          any x86-64-v3 CPU (not -march=native: the GPU machine's CPU
#          differs), sm_80 + sm_90, without MPI, debug info stripped;
#   lib/   the shared libraries they need beyond glibc, libstdc++ and CUDA
#          (cuBLASLt is found there by tools/cuda_check.sh);
#   data/  story-llama and prefs/hhh.jsonl from ../shared/data.
# cuda_check.sh builds on the machine first and falls back to .devkit/bin when
# that build fails. The folder is git-ignored (.gitignore); name it in the
# device tool's carry: run(command="tools/cuda_check.sh", carry=[".devkit"]).
# About 18 MB packed (55 unpacked, OpenBLAS 36 of them): the tree may carry 64 MiB.
# Usage: tools/cuda_kit.sh   (JOBS=N for make -jN, default 2)
set -eu
cd "$(dirname "$0")/.."
SHARED=${OPRM_SHARED_DATA:-../shared/data}
KIT=.devkit
W=$(mktemp -d /tmp/oprm_kit.XXXX)
trap 'rm -rf "$W"' EXIT
git archive HEAD | tar -x -C "$W"
make -C "$W" -j"${JOBS:-2}" NO_MPI=1 RELEASE_FLAGS="-O3 -march=x86-64-v3 -g" \
  CUDA_GENCODE="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90" \
  build/release/oprm build/release/cuda_check >"$W/build.log" 2>&1 || { tail -20 "$W/build.log"; exit 1; }
[ -e "$W/build/release/.backend-cuda" ] ||
  { echo "cuda_kit: the build has no CUDA engine (nvcc or cuBLASLt not found)" >&2; exit 1; }
K=$W/kit
mkdir -p "$K/bin" "$K/lib" "$K/data/models" "$K/data/prefs"
for b in oprm cuda_check; do strip -g -o "$K/bin/$b" "$W/build/release/$b"; done
# Libraries beyond the C runtime and CUDA (the GPU machine has its own of those).
ldd "$K/bin/oprm" "$K/bin/cuda_check" | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcublas[^/]*|libcudart[^/]*)\.so' |
  while read -r l; do cp -L "$l" "$K/lib/"; done
cp -r "$SHARED/models/story-llama" "$K/data/models/"
cp "$SHARED/prefs/hhh.jsonl" "$K/data/prefs/"
# One gzip'd tar (~18 MB against ~55 MB unpacked): cuda_check.sh unpacks it into .devkit/.
rm -rf "$KIT"
mkdir -p "$KIT"
tar -C "$K" -czf "$KIT/kit.tar.gz" bin lib data
echo "$(git rev-parse --short HEAD)" >"$KIT/commit"
ls -la "$KIT"
