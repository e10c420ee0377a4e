#!/usr/bin/env bash
# Runs every test binary in the given directory from the repo root, adds up the
# checks, and ends with the line CI reads: "N passed, N failed".
# Each binary prints "RESULT <passed> <failed>" on stdout; a binary that crashes
# or prints no RESULT counts as one failure. A part that cannot run here
# (e.g. no mpirun, no network namespaces) prints "SKIP <what>: <why>"; skips
# are listed and counted on their own line, never as passes.
set -u
dir=${1:?usage: tests/run.sh BUILD_TEST_DIR}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
passed=0; failed=0; skipped=0; broken=(); skips=()
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s%N)
  out=$("$t" 2>"$dir/$name.log"); rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 )); secs=$(printf "%d.%03d" $((ms / 1000)) $((ms % 1000)))
  line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n1)
  while IFS= read -r s; do
    [ -n "$s" ] && { skipped=$((skipped + 1)); skips+=("$name: ${s#SKIP }"); }
  done < <(printf '%s\n' "$out" | grep '^SKIP ')
  if [ -z "$line" ]; then
    failed=$((failed + 1)); broken+=("$name (exit $rc, no RESULT)")
    echo "CRASH $name (exit $rc) -- log:"; tail -n 30 "$dir/$name.log"
    continue
  fi
  p=$(echo "$line" | awk '{print $2}'); f=$(echo "$line" | awk '{print $3}')
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" != 0 ] || [ $rc != 0 ]; then
    [ "$f" = 0 ] && { failed=$((failed + 1)); f=1; }
    broken+=("$name")
    echo "FAIL  $name: $p passed, $f failed (${secs}s) -- log:"; grep -E 'FAIL|ERROR|Sanitizer|runtime error' "$dir/$name.log" | head -n 40
  else
    printf 'ok    %-28s %5d checks  %6.2fs\n' "$name" "$p" "$secs"
  fi
done
# A short run of every libFuzzer target (make test sets OPRM_FUZZ_SMOKE).
if [ -n "${OPRM_FUZZ_SMOKE:-}" ]; then
  out=$(FUZZ_SMOKE=1 fuzz/run.sh 2>&1); printf '%s\n' "$out" | grep -v '^RESULT '
  line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)); broken+=("fuzz smoke (no RESULT)")
  else
    p=$(echo "$line" | awk '{print $2}'); f=$(echo "$line" | awk '{print $3}')
    passed=$((passed + p)); failed=$((failed + f))
    [ "$f" != 0 ] && broken+=("fuzz smoke")
  fi
fi
[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}"
if [ "$skipped" -gt 0 ]; then
  echo "$skipped skipped:"; printf '  %s\n' "${skips[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
