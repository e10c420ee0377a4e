#!/usr/bin/env bash
# Runs every test binary in the given directory from the repo root, adds up the
# checks, and ends with the line CI reads: "N passed, N failed, N skipped".
# Each binary prints "RESULT <passed> <failed> [<skipped> [<device_skipped>]]" on
# stdout (tests/test.h; missing columns are 0) and a "SKIP ..." / "SKIP_DEVICE ..."
# line per skipped test; a binary that crashes or prints no RESULT counts as one
# failure, and a signal that ended it is named ("CRASH test_x: killed by signal
# 11 (SIGSEGV) before its RESULT line"), before or after its RESULT line. With CI=true (.ci/run) a SKIP fails the run: on CI every test must run;
# only SKIP_DEVICE (a check that needs a GPU the machine lacks) is allowed there.
set -u
dir=${1:?usage: tests/run.sh BUILD_TEST_DIR}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
passed=0; failed=0; skipped=0; dskipped=0; broken=(); skips=()
# How a binary ended: "exit N", or "killed by signal N (SIGSEGV)" past 128
# (what bash reports for a child a signal ended, e.g. 139 = 128 + SIGSEGV).
how_ended() {
  if [ "$1" -gt 128 ] && [ "$1" -lt 192 ]; then
    local n=$(($1 - 128)); echo "killed by signal $n (SIG$(kill -l "$n" 2>/dev/null || echo '?'))"
  else
    echo "exit $1"
  fi
}
# Adds the skip columns of a RESULT line ($1) and its SKIP lines ($2) to the totals.
count_skips() {
  local s d
  s=$(echo "$1" | awk '{print ($4 == "" ? 0 : $4)}'); d=$(echo "$1" | awk '{print ($5 == "" ? 0 : $5)}')
  skipped=$((skipped + s)); dskipped=$((dskipped + d))
  while IFS= read -r l; do [ -n "$l" ] && skips+=("$l"); done < <(printf '%s\n' "$2" | grep -E '^SKIP(_DEVICE)? ')
}
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s%N)
  out=$("$t" 2>"$dir/$name.log"); rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 )); secs=$(printf "%d.%03d" $((ms / 1000)) $((ms % 1000)))
  line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n1)
  ended=$(how_ended "$rc")
  if [ -z "$line" ]; then
    failed=$((failed + 1)); broken+=("$name ($ended, no RESULT)")
    echo "CRASH $name: $ended before its RESULT line (${secs}s) -- log $dir/$name.log ends:"; tail -n 30 "$dir/$name.log"
    continue
  fi
  p=$(echo "$line" | awk '{print $2}'); f=$(echo "$line" | awk '{print $3}')
  passed=$((passed + p)); failed=$((failed + f))
  count_skips "$line" "$out"
  if [ $rc -gt 128 ]; then
    # A RESULT line and then a crash (at exit: a destructor, a leak report).
    failed=$((failed + 1)); broken+=("$name ($ended after RESULT)")
    echo "CRASH $name: $ended after its RESULT line ($p passed, $f failed, ${secs}s) -- log $dir/$name.log ends:"
    tail -n 30 "$dir/$name.log"
  elif [ "$f" != 0 ] || [ $rc != 0 ]; then
    [ "$f" = 0 ] && { failed=$((failed + 1)); f=1; }
    broken+=("$name")
    echo "FAIL  $name: $p passed, $f failed, $ended (${secs}s) -- log:"; grep -E 'FAIL|ERROR|Sanitizer|runtime error' "$dir/$name.log" | head -n 40
  else
    ns=$(printf '%s\n' "$out" | grep -cE '^SKIP(_DEVICE)? ')
    if [ "$ns" != 0 ]; then
      printf 'ok    %-28s %5d checks  %6.2fs  (%d skipped)\n' "$name" "$p" "$secs" "$ns"
    else
      printf 'ok    %-28s %5d checks  %6.2fs\n' "$name" "$p" "$secs"
    fi
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
    count_skips "$line" "$out"
    [ "$f" != 0 ] && broken+=("fuzz smoke")
  fi
fi
for l in "${skips[@]+"${skips[@]}"}"; do echo "$l"; done
# On CI a skip is a failure, except a device (GPU) check on a machine without one.
if [ "${CI:-}" = true ] && [ "$skipped" != 0 ]; then
  failed=$((failed + skipped)); broken+=("$skipped skipped on CI (CI=true: every test but device checks must run)")
fi
[ "$dskipped" != 0 ] && echo "($dskipped of the skipped are device checks, allowed on CI)"
[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}"
echo "$passed passed, $failed failed, $((skipped + dskipped)) skipped"
[ "$failed" = 0 ]
