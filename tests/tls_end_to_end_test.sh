#!/usr/bin/env bash
# End to end over TLS with the real binaries and their flags: certificates
# from deploy/tls/make-dev-certs.sh, a coordinator with mutual TLS for agents,
# an agent with its client certificate, the CLI trusting the CA (from the
# environment), a gateway serving HTTPS, and bad start-up flags refused with
# the flag named. Usage: tls_end_to_end_test.sh COORDINATOR AGENT GATEWAY CLI
set -uo pipefail
coordinator=$1 agent=$2 gateway=$3 cli=$4
source "$(dirname "$0")/lib.sh"

refused() {  # refused RC PATTERN OUTPUT: the command failed and said PATTERN.
  [ "$1" -ne 0 ] && grep -q "$2" <<< "$3"
}
certs=$dir/certs
"$(dirname "$0")/../deploy/tls/make-dev-certs.sh" "$certs" e2e-1 >/dev/null || { echo "no certificates"; exit 1; }
before=$(stat -c %Y "$certs/server.pem")
"$(dirname "$0")/../deploy/tls/make-dev-certs.sh" "$certs" e2e-1 >/dev/null
check "the script is idempotent" test "$(stat -c %Y "$certs/server.pem")" = "$before"

out=$(timeout 10 "$coordinator" --grpc_address=127.0.0.1:0 --metrics_address= --store=memory \
  --tls_cert="$certs/server.pem" 2>&1); rc=$?
check "a certificate without key is refused" refused $rc "tls_key: is required" "$out"
out=$(timeout 10 "$gateway" --http_address=127.0.0.1:0 --metrics_address= \
  --coordinator_tls_ca="$dir/missing.pem" 2>&1); rc=$?
check "an unreadable CA is refused" refused $rc "coordinator_tls_ca: cannot read" "$out"
out=$(timeout 10 "$gateway" --http_address=0.0.0.0:0 --metrics_address= 2>&1); rc=$?
check "plain HTTP off loopback is refused" refused $rc "not loopback" "$out"
out=$(timeout 10 "$coordinator" --grpc_address=127.0.0.1:0 --metrics_address=0.0.0.0:0 \
  --store=memory 2>&1); rc=$?
check "metrics off loopback without keys are refused" refused $rc "metrics_address 0.0.0.0:0 is not loopback" "$out"

TASKGRID_TLS_CERT=$certs/server.pem TASKGRID_TLS_KEY=$certs/server.key \
  "$coordinator" --grpc_address=127.0.0.1:0 --metrics_address= --store=memory \
  --tls_client_ca="$certs/ca.pem" --port_file="$dir/ports" --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/ports" || { echo "coordinator did not start"; exit 1; }
port=$(sed -n 1p "$dir/ports")
export TASKGRID_COORDINATOR=localhost:$port TASKGRID_TLS_CA=$certs/ca.pem
"$agent" --coordinator="localhost:$port" --agent_id=e2e-1 --tls_ca="$certs/ca.pem" \
  --tls_cert="$certs/agent-e2e-1.pem" --tls_key="$certs/agent-e2e-1.key" \
  --metrics_address= --docker_socket= --log_level=warn & pids+=($!)
check "the agent connects with its certificate" wait_for 10 sh -c "'$cli' agents | grep e2e-1 | grep -q connected"
out=$("$cli" run -- 'echo over tls' </dev/null)
check "the CLI runs a task over TLS" test "$out" = "over tls"
check "the CLI without the CA fails" sh -c "! TASKGRID_TLS_CA= '$cli' agents >/dev/null 2>&1"

"$gateway" --http_address=127.0.0.1:0 --metrics_address= --coordinator="localhost:$port" \
  --coordinator_tls_ca="$certs/ca.pem" --tls_cert="$certs/server.pem" \
  --tls_key="$certs/server.key" --port_file="$dir/gw" --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/gw" || { echo "gateway did not start"; exit 1; }
gw=$(sed -n 1p "$dir/gw")
check "HTTPS with the CA answers" sh -c "curl -sf --cacert '$certs/ca.pem' https://localhost:$gw/api/agents | grep -q e2e-1"
check "HTTPS without the CA fails" sh -c "! curl -sf https://localhost:$gw/api/agents >/dev/null 2>&1"
out=$(timeout 20 "$gateway" --http_address=0.0.0.0:0 --metrics_address= --coordinator="localhost:$port" \
  --coordinator_tls_ca="$certs/ca.pem" --tls_cert="$certs/server.pem" \
  --tls_key="$certs/server.key" 2>&1); rc=$?
check "HTTPS off loopback in front of a coordinator without keys is refused" refused $rc "checks no API keys" "$out"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
