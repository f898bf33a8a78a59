#!/usr/bin/env bash
# CI's seed volume: random-faults over 2,000 seeds of a range that moves with every commit (derived from
# the commit's hash), so every CI run explores another part of a billion seeds, on the release build
# (with the always-on assertions) and on every core. A failing seed prints the commands that replay, trace and shrink it; the run fails.
#   CHORUS_CI_SEEDS=N overrides the count; CHORUS_CI_SEED_START=S the start (to replay a CI run's range).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${CHORUS_CI_SEEDS:-2000}
if [ -n "${CHORUS_CI_SEED_START:-}" ]; then
  start=$CHORUS_CI_SEED_START
else
  # 1,000,000 + (the first 7 hex digits of the commit) * 1,000: far from the seeds the scenario files and
  # the closing notes use, and a new range for every commit. A tree without git starts at 1,000,000.
  rev=$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0)
  start=$(( 1000000 + (16#$rev % 2000000) * 1000 ))
fi
last=$(( start + count - 1 ))
echo "ci-seeds: random-faults over seeds ${start}..${last} (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)), $(nproc) workers"
set +e
out=$(./build/release/chorus-sim run scenarios/random-faults.yaml --seeds "${start}..${last}" --jobs "$(nproc)")
status=$?
set -e
echo "$out"
failed=$(echo "$out" | awk '$1 == "random-faults" && $2 ~ /^[0-9]+$/ {print $3}' | tail -1)
failed=${failed:-$count}
echo "ci-seeds: $(( count - failed )) passed, ${failed} failed"
exit $status
