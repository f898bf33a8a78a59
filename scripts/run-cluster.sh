#!/usr/bin/env bash
# `make run`: a three-node Chorus cluster on loopback, on the embedded default (one SQLite file shared by
# the three processes), each node green in the cluster status. Prints each node's URL, an admin login
# and how to reach the cluster; Ctrl-C stops all three (gracefully: SIGTERM).
#
#   PORT_BASE=8065  API ports PORT_BASE..PORT_BASE+2; gossip ports PORT_BASE+9..PORT_BASE+11;
#                   Prometheus metrics on PORT_BASE+20..PORT_BASE+22; local-mode sockets build/run/node*.socket.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release/chorusd
DIR=build/run
PORT_BASE=${PORT_BASE:-8065}
[ -x "$BIN" ] || { echo "run-cluster: $BIN is missing (make release)"; exit 1; }

rm -rf "$DIR"
mkdir -p "$DIR/files"
cat > "$DIR/config.json" <<JSON
{
  "ServiceSettings": {"SiteURL": "http://127.0.0.1:${PORT_BASE}"},
  "SqlSettings": {"DriverName": "sqlite3", "DataSource": "$PWD/$DIR/chorus.db"},
  "ClusterSettings": {"Enable": true, "ClusterName": "local", "ReadOnlyConfig": true},
  "TeamSettings": {"EnableOpenServer": true},
  "FileSettings": {"Directory": "$PWD/$DIR/files/"},
  "LogSettings": {"ConsoleJson": false, "ConsoleLevel": "INFO", "EnableFile": false},
  "MetricsSettings": {"Enable": true}
}
JSON

pids=()
stop_all() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo; echo "stopping the cluster (SIGTERM)..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    echo "stopped. Logs: $DIR/node*.log"
  fi
}
trap stop_all INT TERM EXIT

for i in 0 1 2; do
  # What differs per node comes from the environment, which the config hash leaves out: all green.
  MM_SERVICESETTINGS_LISTENADDRESS="127.0.0.1:$((PORT_BASE + i))" \
  MM_CLUSTERSETTINGS_GOSSIPPORT="$((PORT_BASE + 9 + i))" \
  MM_CLUSTERSETTINGS_OVERRIDEHOSTNAME="127.0.0.1" \
  MM_CLUSTERSETTINGS_BINDADDRESS="127.0.0.1" \
  MM_METRICSSETTINGS_LISTENADDRESS="127.0.0.1:$((PORT_BASE + 20 + i))" \
  MM_SERVICESETTINGS_ENABLELOCALMODE=true \
  MM_SERVICESETTINGS_LOCALMODESOCKETLOCATION="$PWD/$DIR/node$i.socket" \
    "$BIN" --config "$DIR/config.json" >"$DIR/node$i.log" 2>&1 &
  pids+=($!)
done

api() { curl -s --max-time 5 "$@"; }
for i in 0 1 2; do
  for _ in $(seq 1 100); do
    if api "http://127.0.0.1:$((PORT_BASE + i))/api/v4/system/ping" | grep -q '"OK"'; then continue 2; fi
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then echo "node $((i + 1)) exited:"; cat "$DIR/node$i.log"; exit 1; fi
    sleep 0.1
  done
  echo "node $((i + 1)) does not answer its ping; see $DIR/node$i.log"; exit 1
done

# The first user of a new server becomes its system admin.
PASSWORD="admin-$(head -c 9 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')"
URL="http://127.0.0.1:${PORT_BASE}"
api -X POST "$URL/api/v4/users" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"email\":\"admin@example.com\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN=$(api -i -X POST "$URL/api/v4/users/login" -H 'Content-Type: application/json' \
  -d "{\"login_id\":\"admin\",\"password\":\"$PASSWORD\"}" | tr -d '\r' | sed -n 's/^[Tt]oken: //p')

# Wait (at most 10 s) until every node lists all three with one version and one config hash: green.
for _ in $(seq 1 100); do
  green=0
  for i in 0 1 2; do
    api -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$((PORT_BASE + i))/api/v4/cluster/status" >"$DIR/status$i.json" || true
    if python3 - "$DIR/status$i.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
ok = isinstance(rows, list) and len(rows) == 3 and all(r.get("status") == "green" for r in rows)
sys.exit(0 if ok else 1)
PY
    then green=$((green + 1)); fi
  done
  [ "$green" -eq 3 ] && break
  sleep 0.1
done

echo
echo "Chorus: a three-node cluster on loopback (SQLite: $DIR/chorus.db)"
python3 - "$DIR/status0.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
for r in sorted(rows, key=lambda r: r["id"]):
    colour = "green" if r.get("status") == "green" else "RED (" + r.get("reason", "") + ")"
    lead = "  leader" if r.get("leader") else ""
    print(f"  node {r['id']:<16} version {r['version']}  schema {r['schema_version']:<16} config {r['config_hash'][:12]}  {colour}{lead}")
PY
for i in 0 1 2; do
  echo "  node $((i + 1)) API: http://127.0.0.1:$((PORT_BASE + i))  metrics: http://127.0.0.1:$((PORT_BASE + 20 + i))/metrics  (log: $DIR/node$i.log)"
done
echo
echo "  HA console: $URL/admin/ha  (log in as the system admin below)"
echo "  System admin: admin / $PASSWORD"
echo "  Try: curl -H 'Authorization: Bearer $TOKEN' $URL/api/v4/cluster/status"
echo "       build/release/chorusctl --local --local-socket-path $DIR/node0.socket cluster status"
echo "  Put NGINX in front of the three: deploy/nginx.conf (upstream of the nodes, WebSockets, health check)."
echo "  Ctrl-C stops the cluster."
[ "$green" -eq 3 ] || echo "  WARNING: the nodes did not all report each other green within 10 s; see the logs."
wait "${pids[@]}"
