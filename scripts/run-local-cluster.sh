#!/usr/bin/env bash
# Installs what is missing, builds, and runs a local cluster: one coordinator
# (SQLite store in ./taskgrid-data, so tasks survive a restart), two agents and the gateway on 127.0.0.1, then a sample
# task and a sample fleet run. Stops everything on Ctrl-C. Ports: gRPC 7000, dashboard and REST
# 8080, metrics 9100 (coordinator), 9101-9102 (agents), 9103 (gateway).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
bin=$root/build/services
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

export TASKGRID_COORDINATOR=127.0.0.1:7000
"$bin/coordinator/taskgrid-coordinator" --grpc_address=$TASKGRID_COORDINATOR \
  --data_dir="$root/taskgrid-data" & pids+=($!)
for _ in $(seq 100); do "$bin/cli/taskgrid" agents >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/agent/taskgrid-agent" --agent_id=local-1 --labels=role=web --metrics_address=127.0.0.1:9101 & pids+=($!)
"$bin/agent/taskgrid-agent" --agent_id=local-2 --labels=role=db --metrics_address=127.0.0.1:9102 & pids+=($!)
"$bin/gateway/taskgrid-gateway" --http_address=127.0.0.1:8080 --metrics_address=127.0.0.1:9103 & pids+=($!)
for _ in $(seq 100); do
  [ "$("$bin/cli/taskgrid" agents 2>/dev/null | grep -c connected)" -eq 2 ] && break
  sleep 0.1
done
"$bin/cli/taskgrid" agents
echo "+ taskgrid run --selector role=web -- 'echo hello from \$TASKGRID_AGENT_ID; uname -sr'"
"$bin/cli/taskgrid" run --selector role=web -- 'echo hello from $TASKGRID_AGENT_ID; uname -sr' </dev/null
echo "+ taskgrid run --fleet --max-concurrency 1 -- uptime     # every agent, one at a time"
"$bin/cli/taskgrid" run --fleet --max-concurrency 1 -- uptime </dev/null
cat <<MSG

taskgrid is running. Dashboard: http://127.0.0.1:8080/  In another terminal:
  export TASKGRID_COORDINATOR=$TASKGRID_COORDINATOR PATH=$bin/cli:\$PATH
  taskgrid run -- 'for i in 1 2 3; do echo tick \$i; sleep 1; done'
  taskgrid run --fleet --selector role=web --max-errors 1 -- 'df -h /'; taskgrid runs
  taskgrid list; taskgrid stats; curl -s 127.0.0.1:9100/metrics | grep ^coordinator_
  curl -s -XPOST 127.0.0.1:8080/api/tasks -H 'Content-Type: application/json' -d '{"shell":{"command":"uptime"}}'
  curl -N 127.0.0.1:8080/api/events
Ctrl-C stops the cluster.
MSG
wait
