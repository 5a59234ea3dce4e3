#!/usr/bin/env bash
# Starts a coordinator, three agents and a gateway on free loopback ports, runs
# the dashboard test in Chromium, stops everything by PID.
# Usage: run-browser-test.sh COORDINATOR AGENT GATEWAY ARTIFACTS_DIR
set -uo pipefail
coordinator=$1 agent=$2 gateway=$3 artifacts=$4
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"

# Any agent process is larger than 1000 bytes: an alert to show and resolve.
# The host itself (a build beside the test, a nearly full disk) must not turn
# the agents degraded: no sample is above 100%.
"$coordinator" --grpc_address=127.0.0.1:0 --metrics_address= --data_dir="$dir/data" --port_file="$dir/c" \
  --heartbeat_interval=500ms --alert_process_memory_bytes=1000 --alert_cpu_critical=100 \
  --alert_memory_critical=100 --alert_disk_critical=100 \
  --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/c" || { echo "coordinator did not start"; exit 1; }
address=127.0.0.1:$(sed -n 1p "$dir/c")
"$agent" --coordinator="$address" --agent_id=browser-agent --docker_socket= --metrics_address= \
  --log_level=warn & pids+=($!)
# Two labelled agents for the fleet run tests.
for id in web-1 web-2; do
  "$agent" --coordinator="$address" --agent_id=$id --labels=role=web --docker_socket= \
    --metrics_address= --log_level=warn & pids+=($!)
done
"$gateway" --coordinator="$address" --http_address=127.0.0.1:0 --metrics_address= \
  --port_file="$dir/g" --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/g" || { echo "gateway did not start"; exit 1; }

[ -d "$here/node_modules/playwright-core" ] ||
  (cd "$here" && npm install --no-audit --no-fund --silent) || { echo "npm install failed"; exit 1; }
mkdir -p "$artifacts"
cd "$here" && GATEWAY_URL=http://127.0.0.1:$(sed -n 1p "$dir/g") ARTIFACTS="$artifacts" \
  node --test dashboard.test.mjs
