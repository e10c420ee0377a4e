#!/usr/bin/env bash
# Runs build/valgrind/tests/<name> for each name under valgrind (memcheck):
# any invalid read/write, use of uninitialised memory or definite/indirect
# leak fails it. Prints one line per test and "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p build/valgrind/logs
passed=0; failed=0
for name in "$@"; do
  bin=build/valgrind/tests/$name
  log=build/valgrind/logs/$name.log
  start=$(date +%s)
  valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 --log-file="$log" "$bin" >"$log.out" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  line=$(grep '^RESULT ' "$log.out" | tail -n1)
  if [ "$rc" = 0 ] && [ -n "$line" ]; then
    passed=$((passed + 1)); printf 'ok    %-26s %4ss  valgrind clean (%s)\n' "$name" "$secs" "$line"
  else
    failed=$((failed + 1)); printf 'FAIL  %-26s %4ss  exit %s (%s) -- %s:\n' "$name" "$secs" "$rc" "${line:-no RESULT}" "$log"
    head -n 40 "$log"
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
