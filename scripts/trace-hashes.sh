#!/usr/bin/env bash
# The trace hash of every scenario over seeds 1..N (default 3): a refactoring that changes no behaviour
# leaves every line the same. Usage: scripts/trace-hashes.sh [N] [chorus-sim binary] > hashes.txt
# reports/trace-hashes.txt holds N=3 for commit 6a64d94 (issue 15 gave the workload replies, reactions,
# edits, deletes and files, migrations 9 and 10, and a scenario; issue 20 put request ids in error bodies);
# a refactoring since should give the same 69 lines: `scripts/trace-hashes.sh 3 | diff reports/trace-hashes.txt -`.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3}
sim=${2:-./build/release/chorus-sim}
for f in scenarios/*.yaml; do
  for s in $(seq 1 "$n"); do
    line=$("$sim" replay "$f" --seed "$s" 2>/dev/null | head -1 || true)
    echo "$(basename "$f" .yaml) $s ${line##*hash }"
  done
done
