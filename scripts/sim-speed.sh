#!/usr/bin/env bash
# The simulator's speed (simulated seconds per wall second) for a 3-node cluster with 100 clients and a
# 9-node cluster with 1,000 clients, measured side by side in one run of the release build; Markdown on
# stdout (make report writes it to reports/sim-speed.md).
set -euo pipefail
cd "$(dirname "$0")/.."
sim=./build/release/chorus-sim
echo "# Simulator speed"
echo
echo "Measured $(date -u +%Y-%m-%d) on this machine ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
echo "release build, one process, seeds 1..3. Each run is a whole cluster of real node code with its"
echo "simulated databases, load balancer and clients, every checker on. Reproduce: \`make report\`."
echo
echo "| scenario | nodes | clients | posts/s | typing/s | simulated s | wall s | simulated s per wall s | after setup |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for f in bench/scenarios/speed-3-nodes-100-clients.yaml bench/scenarios/speed-3-nodes-100-clients-heavy.yaml bench/scenarios/speed-9-nodes-1000-clients.yaml; do
  out=$("$sim" run "$f" --seeds 1..3 2>/dev/null || true)  # a failing seed is reported below
  line=$(echo "$out" | grep -E "^speed-" | tail -1)
  name=$(echo "$line" | awk '{print $1}')
  simulated=$(echo "$line" | awk '{print $4}' | tr -d s)
  wall=$(echo "$line" | awk '{print $5}' | tr -d s)
  speed=$(echo "$line" | awk '{print $6}')
  after=$(echo "$line" | awk '{print $7}')
  posts=$(grep -m1 'post_rate:' "$f" | awk '{print $2}')
  typing=$(grep -m1 'typing_rate:' "$f" | awk '{print $2}')
  failed=$(echo "$line" | awk '{print $3}')
  nodes=$(grep -m1 'nodes:' "$f" | awk '{print $2}')
  clients=$(grep -m1 'users:' "$f" | awk '{print $2}')
  echo "| $name | $nodes | $clients | $posts | $typing | $simulated | $wall | $speed | $after |"
  if [ "$failed" != "0" ]; then echo; echo "**$name: $failed seeds failed** (see \`chorus-sim run $f --seeds 1..3\`)"; fi
done
echo
echo "\"After setup\" leaves out the wall time spent before the scenario's time 0 (creating the users with"
echo "bcrypt, the team, the channels and the logins through the API). Every client holds a WebSocket and gets"
echo "every post and typing event of its channels; the cost grows with that fan-out (posts/s x members)."
echo
echo "Targets (issue 6): at least 100x real time for 3 nodes and 100 clients. TigerBeetle's VOPR runs about 700x."
