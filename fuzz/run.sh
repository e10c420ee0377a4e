#!/usr/bin/env bash
# Runs libFuzzer targets (built by `make fuzz-build` into build/fuzz/) and
# prints one line per target: executions, coverage (cov = edges, ft =
# features) and crashes.
#   FUZZ_SECONDS=N fuzz/run.sh [fuzz_x ...] N seconds each (default: every target); new inputs are kept
#                                           in build/fuzz/corpus/<target>/
#   FUZZ_SMOKE=1 fuzz/run.sh fuzz_x ...     the test-suite run: FUZZ_SMOKE_SECONDS
#                                           (default 12) each on the committed
#                                           seeds, throwaway corpus, and a final
#                                           "RESULT passed failed skipped" line
#                                           (one check per target; a target not
#                                           built is a SKIP) for tests/run.sh.
# Crashing inputs land in build/fuzz/artifacts/[smoke/]<target>/; reproduce with
# build/fuzz/<target> FILE, and commit them to tests/fixtures/fuzz-regressions/<target>/.
set -u
cd "$(dirname "$0")/.."
smoke=${FUZZ_SMOKE:-0}
secs=${FUZZ_SECONDS:-60}
[ "$smoke" = 1 ] && secs=${FUZZ_SMOKE_SECONDS:-12}
export ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
passed=0; failed=0; skipped=0

max_len() {
  case $1 in
    fuzz_tokenizer_load) echo 65536 ;;
    fuzz_data) echo 16384 ;;
    *) echo 8192 ;;
  esac
}
dict_of() {
  case $1 in
    fuzz_safetensors) echo safetensors ;;
    fuzz_config) echo config ;;
    fuzz_tokenizer_load) echo tokenizer ;;
    fuzz_data) echo data ;;
    fuzz_serve_request) echo serve ;;
    fuzz_checkpoint) echo json ;;
    *) echo "" ;;
  esac
}

targets=("$@")
[ ${#targets[@]} = 0 ] && for c in fuzz/fuzz_*.c; do targets+=("$(basename "$c" .c)"); done
for t in "${targets[@]}"; do
  bin=build/fuzz/$t
  if [ ! -x "$bin" ]; then
    if [ "$smoke" = 1 ]; then
      skipped=$((skipped + 1)); echo "SKIP fuzz $t: $bin not built (no clang? make fuzz-build)"
    else
      echo "fuzz: $t not built (no clang?) -- skipped"
    fi
    continue
  fi
  # the smoke run keeps its own logs and artifacts, so it can run beside a long one
  sub=; [ "$smoke" = 1 ] && sub=smoke/
  art=build/fuzz/artifacts/$sub$t/
  mkdir -p "$art" build/fuzz/logs/$sub
  if [ "$smoke" = 1 ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/oprm-fuzz-$t.XXXXXX")
  else
    work=build/fuzz/corpus/$t
    mkdir -p "$work"
  fi
  dirs=("$work")
  [ -d fuzz/corpus/$t ] && dirs+=(fuzz/corpus/$t)
  [ -d tests/fixtures/fuzz-regressions/$t ] && dirs+=(tests/fixtures/fuzz-regressions/$t)
  d=$(dict_of "$t")
  dictarg=()
  [ -n "$d" ] && dictarg=(-dict=fuzz/dict/$d.dict)
  log=build/fuzz/logs/$sub$t.log
  before=$(ls "$art" | wc -l)
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 -max_len="$(max_len "$t")" \
    -print_final_stats=1 -artifact_prefix="$art" "${dictarg[@]}" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  after=$(ls "$art" | wc -l)
  crashes=$((after - before))
  execs=$(grep -ao 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -n1)
  covline=$(grep -aE '^#[0-9]+' "$log" | grep -ao 'cov: [0-9]* ft: [0-9]*' | tail -n1)
  corp=$(ls "$work" | wc -l)
  summary=$(printf '%-24s %4ss  execs %-10s %-22s corpus %-6s crashes %s (exit %s)' \
    "$t" "$secs" "${execs:-?}" "${covline:-cov: ? ft: ?}" "$corp" "$crashes" "$rc")
  echo "$summary"
  # long runs add up over a session: build/fuzz/history.txt keeps every one
  [ "$smoke" = 1 ] || echo "$(date -u +%FT%TZ) $summary" >>build/fuzz/history.txt
  if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
    failed=$((failed + 1))
    grep -aE 'ERROR|SUMMARY|invariant|runtime error|#[0-9]+ 0x' "$log" | head -n 25
  else
    passed=$((passed + 1))
  fi
  [ "$smoke" = 1 ] && rm -rf "$work"
done
[ "$smoke" = 1 ] && echo "RESULT $passed $failed $skipped"
[ "$failed" = 0 ]
