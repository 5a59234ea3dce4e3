#!/usr/bin/env bash
# deploy/ against the real services: promtool checks the Prometheus config
# and unit-tests the alerting rules; every metric name that deploy/ refers to
# must appear in a real scrape of a running coordinator, agent and gateway;
# the compose file and the Kubernetes manifests must be valid YAML.
# Usage: deploy_test.sh COORDINATOR AGENT GATEWAY CLI
set -uo pipefail
coordinator=$1 agent=$2 gateway=$3 cli=$4
here=$(cd "$(dirname "$0")" && pwd)
deploy=$here/../deploy
source "$here/lib.sh"
fail() { echo "FAIL: $*"; exit 1; }

command -v promtool >/dev/null || fail "promtool is missing (apt-get install prometheus)"
promtool check config "$deploy/prometheus/prometheus.yml" || fail "promtool check config"
(cd "$deploy/prometheus" && promtool test rules taskgrid-rules.test.yml) || fail "promtool test rules"
python3 - "$deploy" <<'PY' || fail "YAML"
import sys, yaml, json
d = sys.argv[1]
list(yaml.safe_load_all(open(f"{d}/k8s/taskgrid.yaml")))
yaml.safe_load(open(f"{d}/compose/docker-compose.yml"))
json.load(open(f"{d}/grafana/taskgrid-dashboard.json"))
PY

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cm=$(port) am=$(port) gm=$(port)
"$coordinator" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:$cm --data_dir="$dir/data" \
  --port_file="$dir/c" --heartbeat_interval=200ms --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/c" || fail "coordinator did not start"
address=127.0.0.1:$(sed -n 1p "$dir/c")
"$agent" --coordinator="$address" --agent_id=deploy-agent --metrics_address=127.0.0.1:$am \
  --docker_socket= --log_level=warn & pids+=($!)
"$gateway" --coordinator="$address" --http_address=127.0.0.1:0 --metrics_address=127.0.0.1:$gm \
  --port_file="$dir/g" --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/g" || fail "gateway did not start"
# A task and a request through, so their series have values too.
wait_for 10 "$cli" --coordinator="$address" run -- true </dev/null || fail "a task did not run"
curl -sf "http://127.0.0.1:$(sed -n 1p "$dir/g")/api/tasks/stats" >/dev/null || fail "gateway"
for p in $cm $am $gm; do curl -sf "http://127.0.0.1:$p/metrics"; done |
  grep -v '^#' | sed -E 's/[{ ].*//; s/_(bucket|sum|count)$//' | sort -u >"$dir/scraped"
grep -ohE '\b(coordinator|agent|gateway)_[a-z0-9_]+' "$deploy"/prometheus/*.yml "$deploy"/grafana/*.json |
  sed -E 's/_(bucket|sum|count)$//' | sort -u >"$dir/referenced"
missing=$(comm -23 "$dir/referenced" "$dir/scraped")
[ -z "$missing" ] || fail "deploy/ refers to metrics the services do not export: $missing"
echo "$(wc -l <"$dir/referenced") metric names in deploy/ all exported; promtool rules tests pass"
