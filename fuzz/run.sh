#!/usr/bin/env bash
# The fuzz targets (fuzz/README.md): build them, write their seeds, run them, replay a crash.
#
#   fuzz/run.sh build                  configure build/fuzz (the fuzz preset) if needed; build the targets
#   fuzz/run.sh run SECONDS [TARGET..] each target (default: all) for SECONDS; summary in reports/fuzz.md
#   fuzz/run.sh smoke [SECONDS]        the regression inputs once each, then every target for a few seconds
#                                      (SECONDS in all, default 36: with start-up, under a minute); fails on a crash
#   fuzz/run.sh seeds                  rewrite fuzz/corpus/<target>/ from the targets' seed writers
#   fuzz/run.sh repro TARGET FILE..    run these inputs once (a crash's stack)
#
# Environment: JOBS (build jobs, default nproc), FUZZ_BUILD (default build/fuzz), FUZZ_REPORT (default
# reports/fuzz.md), FUZZ_FORK=0 (run: a target stops at its first crash, instead of going on in fork mode).
# What a run finds new goes to $FUZZ_BUILD/corpus/<target> (not the repository); crashes to
# $FUZZ_BUILD/artifacts/<target>/: keep one as fuzz/regressions/<target>/<name> once its bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${FUZZ_BUILD:-build/fuzz}
REPORT=${FUZZ_REPORT:-reports/fuzz.md}
JOBS=${JOBS:-$(nproc)}
TARGETS=(fuzz_frame fuzz_membership fuzz_messages fuzz_status fuzz_cluster_events fuzz_config fuzz_scenario
         fuzz_http fuzz_websocket)
# The first line of a crash's report worth quoting.
CRASH_LINE='runtime error|ERROR: AddressSanitizer|ERROR: libFuzzer: (timeout|out-of-memory)|fuzz property failed|assertion failed|uncaught exception|terminate called'
# Inputs past this size are not worth the time (requests and frames are small).
MAX_LEN=${FUZZ_MAX_LEN:-8192}

build() {
  if [ ! -f "$BUILD/build.ninja" ]; then
    cmake --preset fuzz -B "$BUILD" >/dev/null
  fi
  nice -n 10 cmake --build "$BUILD" -j "$JOBS" --target fuzzers
}

bin() { echo "$BUILD/fuzz/$1"; }

# libFuzzer's flags for a target: its dictionary, where crashes go, no leak check of the process-wide
# simulated node (fuzz_http, fuzz_websocket build it once and never free it).
flags() {
  local t=$1
  local f=(-max_len="$MAX_LEN" -timeout=25 -artifact_prefix="$BUILD/artifacts/$t/" -print_final_stats=1 -detect_leaks=0)
  [ -f "fuzz/dict/$t.dict" ] && f+=(-dict="fuzz/dict/$t.dict")
  mkdir -p "$BUILD/artifacts/$t" "$BUILD/corpus/$t"
  echo "${f[@]}"
}

# The corpus directories: the run's own first (libFuzzer writes new inputs there), then the seeds from the
# repository. (The regression inputs are replayed on their own: replay_regressions.)
corpora() {
  local t=$1 d=("$BUILD/corpus/$t")
  [ -d "fuzz/corpus/$t" ] && d+=("fuzz/corpus/$t")
  echo "${d[@]}"
}

# One target for `secs` seconds; prints a line and appends a row to $rows; returns non-zero when it crashed.
# `fork` (run): libFuzzer's fork mode, which goes on after a crash (each crash's input is kept) so one shallow
# bug does not end the target's time; otherwise (smoke) the first crash ends it.
run_one() {
  local t=$1 secs=$2 mode=${3:-} log="$BUILD/logs/$1.log" status=0 extra=()
  mkdir -p "$BUILD/logs"
  local before
  before=$(find "$BUILD/artifacts/$t" -type f 2>/dev/null | wc -l)
  touch "$log.start"
  [ "$mode" = fork ] && extra=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -print_funcs=0)
  # shellcheck disable=SC2046
  "$(bin "$t")" $(flags "$t") "${extra[@]}" -max_total_time="$secs" $(corpora "$t") >"$log" 2>&1 || status=$?
  local execs eps cov ft corp found
  if [ "$mode" = fork ]; then  # the parent's progress lines: "#N: cov: C ft: F corp: K exec/s E oom/timeout/crash: a/b/c ..."
    local last
    last=$(grep -a -E '^#[0-9]+: cov:' "$log" | tail -1)
    execs=$(sed -nE 's/^#([0-9]+):.*/\1/p' <<<"$last")
    eps=$(sed -nE 's/.*exec\/s ([0-9]+).*/\1/p' <<<"$last")
  else
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  fi
  cov=$(grep -a -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -a -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  corp=$(grep -a -oE 'corp: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  found=$(( $(find "$BUILD/artifacts/$t" -type f 2>/dev/null | wc -l) - before ))
  [ "$status" -ne 0 ] && [ "$found" -eq 0 ] && found=1
  if [ "$found" -ne 0 ]; then
    # What each new input does, replayed once (fork mode keeps the children's logs to itself).
    echo "  $t: $found crash(es); inputs in $BUILD/artifacts/$t/:"
    find "$BUILD/artifacts/$t" -type f -newer "$log.start" | while read -r f; do
      # shellcheck disable=SC2046
      "$(bin "$t")" $(flags "$t") "$f" 2>&1 | grep -a -m1 -E "$CRASH_LINE" | sed -E 's/^==[0-9]+== ?//' || true
    done | sort | uniq -c | sort -rn | head -8 | sed 's/^/    /' | tee -a "$BUILD/logs/crashes.txt"
  fi
  printf '  %-20s %5ss %11s execs %7s/s  cov %6s  ft %6s  corpus %5s  crashes %s\n' "$t" "$secs" "${execs:-?}" \
    "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$found"
  rows+=("| \`$t\` | $secs | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $found |")
  [ "$found" -eq 0 ]
}

# The regression inputs, each run once: a fixed bug that comes back fails here first.
replay_regressions() {
  local failed=0 t f
  for t in "${TARGETS[@]}"; do
    [ -d "fuzz/regressions/$t" ] || continue
    for f in "fuzz/regressions/$t"/*; do
      [ -f "$f" ] || continue
      # shellcheck disable=SC2046
      if ! "$(bin "$t")" $(flags "$t") "$f" >"$BUILD/logs/regression.log" 2>&1; then
        echo "  $f fails: $(grep -a -m1 -E "$CRASH_LINE" "$BUILD/logs/regression.log" | sed -E 's/^==[0-9]+== ?//' | cut -c1-200)"
        failed=1
      fi
    done
  done
  [ $failed -eq 0 ] && echo "  regression inputs: all pass"
  return $failed
}

cmd=${1:-}
shift || true
case "$cmd" in
  build)
    build
    ;;
  run)
    secs=${1:-600}
    shift || true
    [ $# -gt 0 ] && TARGETS=("$@")
    build
    mkdir -p "$BUILD/logs" "$(dirname "$REPORT")"
    rows=()
    crashed=()
    echo "fuzz: ${#TARGETS[@]} targets, ${secs}s each"
    mode=fork
    [ "${FUZZ_FORK:-1}" = 0 ] && mode=""
    for t in "${TARGETS[@]}"; do run_one "$t" "$secs" "$mode" || crashed+=("$t"); done
    {
      echo "# Fuzzing"
      echo
      echo "\`make fuzz\` (fuzz/run.sh run $secs) on $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d):"
      echo "each libFuzzer target for ${secs} s on one core (clang $(clang++-14 -dumpversion 2>/dev/null || echo '?'), ASan and UBSan)."
      if [ -n "$mode" ]; then
        echo "libFuzzer's fork mode (it goes on after a crash and keeps each crashing input; its \`cov\` counts"
        echo "differently from a plain run's). \`ft\`: features (edges, hit counts, comparisons); \`corpus\`: inputs kept,"
      else
        echo "\`cov\`: code edges reached; \`ft\`: features (edges, hit counts, comparisons); \`corpus\`: inputs kept,"
      fi
      echo "seeds included; \`crashes\`: inputs that crashed or broke a property. See fuzz/README.md."
      echo
      echo "| target | seconds | executions | exec/s | cov | ft | corpus | crashes |"
      echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
      printf '%s\n' "${rows[@]}"
      echo
      if [ ${#crashed[@]} -eq 0 ]; then
        echo "No crashes."
      else
        echo "Crashed: ${crashed[*]} (inputs in $BUILD/artifacts/<target>/, logs in $BUILD/logs/)."
      fi
    } >"$REPORT"
    echo "wrote $REPORT"
    [ ${#crashed[@]} -eq 0 ]
    ;;
  smoke)
    total=${1:-36}
    build
    mkdir -p "$BUILD/logs"
    start=$(date +%s)
    failed=0
    replay_regressions || failed=1
    each=$(( (total - ($(date +%s) - start)) / ${#TARGETS[@]} ))
    [ "$each" -lt 1 ] && each=1
    rows=()
    for t in "${TARGETS[@]}"; do run_one "$t" "$each" || failed=1; done
    echo "fuzz smoke: $(( $(date +%s) - start ))s"
    [ $failed -eq 0 ]
    ;;
  seeds)
    build
    for t in "${TARGETS[@]}"; do
      rm -rf "fuzz/corpus/$t"
      CHORUS_FUZZ_WRITE_SEEDS="fuzz/corpus/$t" "$(bin "$t")"
    done
    cp scenarios/*.yaml fuzz/corpus/fuzz_scenario/
    ;;
  repro)
    t=$1
    shift
    # shellcheck disable=SC2046
    "$(bin "$t")" $(flags "$t") "$@"
    ;;
  *)
    sed -n '2,15p' "$0"
    exit 2
    ;;
esac
