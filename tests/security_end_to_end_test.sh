#!/usr/bin/env bash
# End to end, securely configured: real binaries with a keys file made by
# `taskgrid keys create`, scopes and a key's selector enforced over gRPC and
# REST, the audit log exported as JSON lines, and a task's secret printed in
# every way a script might (one byte per write, on stderr, in base64) — then
# every log, every output and every API answer of the run is scanned for the
# secret. Usage: security_end_to_end_test.sh COORDINATOR AGENT GATEWAY CLI
set -uo pipefail
coordinator=$1 agent=$2 gateway=$3 cli=$4
source "$(dirname "$0")/lib.sh"

keys=$dir/keys
admin=$("$cli" keys create --file "$keys" --name admin --scope admin)
ci=$("$cli" keys create --file "$keys" --name ci --scope submit --selector env=staging \
  --types shell --max-running 5 --max-runtime 10m)
reader=$("$cli" keys create --file "$keys" --name reader --scope read)
slow=$("$cli" keys create --file "$keys" --name slow --scope submit --submit-rate 0.01)
check "keys create prints a fresh key" test "${#ci}" -eq 47
check "the keys file holds no key" sh -c "! grep -q -e '$admin' -e '$ci' -e '$reader' '$keys'"
check "keys list shows names and limits" sh -c "'$cli' keys list --file '$keys' | grep -q 'ci scopes=submit selector=env=staging types=shell'"
"$cli" keys create --file "$keys" --name ci --scope read >/dev/null 2>"$dir/err"; rc=$?
check "a taken name is a usage error" test "$rc" -eq 2
check "the error names the flag" grep -q -- "--name ci is taken" "$dir/err"

"$coordinator" --grpc_address=127.0.0.1:0 --metrics_address= --data_dir="$dir/data" \
  --keys_file="$keys" --agent_tokens=agent-token --port_file="$dir/c" --log_level=debug \
  2>"$dir/coordinator.log" & pids+=($!)
coordinator_pid=$!
wait_for 10 test -s "$dir/c" || { echo "coordinator did not start"; exit 1; }
export TASKGRID_COORDINATOR=127.0.0.1:$(sed -n 1p "$dir/c")
for env in staging prod; do
  TASKGRID_AGENT_TOKEN=agent-token "$agent" --agent_id=sec-$env --labels=env=$env \
    --metrics_address= --docker_socket= --log_level=debug 2>"$dir/agent-$env.log" & pids+=($!)
done
"$gateway" --coordinator="$TASKGRID_COORDINATOR" --http_address=127.0.0.1:0 --metrics_address= \
  --port_file="$dir/g" --api_key="$reader" --log_level=debug 2>"$dir/gateway.log" & pids+=($!)
wait_for 10 test -s "$dir/g" || { echo "gateway did not start"; exit 1; }
http=http://127.0.0.1:$(sed -n 1p "$dir/g")
wait_for 10 sh -c "[ \$('$cli' --api-key '$reader' agents | grep -c connected) -eq 2 ]" ||
  { echo "agents did not connect"; exit 1; }

# Scopes and the key's selector.
"$cli" agents >/dev/null 2>"$dir/err"; rc=$?
check "no key: refused" test "$rc" -eq 125
check "the refusal says the key is missing" grep -q "missing API key" "$dir/err"
"$cli" --api-key "$reader" run -- true </dev/null >/dev/null 2>"$dir/err"
check "a read key cannot submit, and is told why" grep -q "key reader has scopes read; task.submit needs submit" "$dir/err"
out=$("$cli" --api-key "$ci" run -- 'echo $TASKGRID_AGENT_ID' </dev/null)
check "the ci key's tasks run where its selector allows" test "$out" = "sec-staging"
"$cli" --api-key "$ci" run --selector env=prod -- true </dev/null >/dev/null 2>"$dir/err"
check "a selector outside the key's is refused, naming the rule" grep -q "only on agents with env=staging, not env=prod" "$dir/err"
"$cli" --api-key "$ci" run --timeout 1h -- true </dev/null >/dev/null 2>"$dir/err"
check "a timeout beyond the key's max_runtime is refused" grep -q "exceeds key ci's max_runtime of 10m" "$dir/err"
code=$(curl -s -o "$dir/body" -w '%{http_code}' -H "x-api-key: $ci" -H 'content-type: application/json' \
  -d '{"docker":{"image":"busybox"}}' "$http/api/tasks")
check "REST: a task type outside the key's is 403" test "$code" = 403
check "REST: the 403 names the rule" grep -q "may submit only shell tasks, not docker" "$dir/body"
for i in 1 2; do
  code=$(curl -s -o "$dir/body" -w '%{http_code}' -H "x-api-key: $slow" -H 'content-type: application/json' \
    -d '{"shell":{"command":"true"}}' "$http/api/tasks")
done
check "REST: beyond the key's submit rate is 429" test "$code" = 429
check "REST: the 429 names the rate" grep -q "key slow may submit 0.01 tasks per second" "$dir/body"

# A secret, printed one byte per write, on stderr, and in base64 at every alignment.
secret='Sup3r-s3cret-Value-$(x)'
export DEPLOY_TOKEN=$secret
script='printf %s "$DEPLOY_TOKEN" | fold -w1 | while IFS= read -r c; do printf %s "$c"; done; echo
        echo "to stderr: $DEPLOY_TOKEN" >&2
        printf %s "$DEPLOY_TOKEN" | base64; printf %s "x$DEPLOY_TOKEN" | base64; printf %s "xy$DEPLOY_TOKEN" | base64
        echo done'
id=$("$cli" --api-key "$ci" run --detach --secret-env DEPLOY_TOKEN -- "$script" </dev/null)
wait_for 20 sh -c "'$cli' --api-key '$reader' get '$id' | grep -q succeeded"
"$cli" --api-key "$reader" logs "$id" >"$dir/out" 2>"$dir/stderr"
check "the task ran with its secret" grep -q "^done" "$dir/out"
check "stdout shows where the secret was" grep -q "^\[REDACTED\]$" "$dir/out"
check "stderr shows where the secret was" grep -q "to stderr: \[REDACTED\]" "$dir/stderr"
check "a finished task keeps no secret" sh -c "! '$cli' --api-key '$reader' get --output json '$id' | grep -q secretEnv"
running=$("$cli" --api-key "$ci" run --detach --secret-env DEPLOY_TOKEN -- 'sleep 30' </dev/null)
check "get shows a running task's secret by name, not value" sh -c "'$cli' --api-key '$reader' get --output json '$running' | grep -q '\"DEPLOY_TOKEN\":\"\[REDACTED\]\"'"
"$cli" --api-key "$ci" cancel "$running" >/dev/null
curl -sf -H "x-api-key: $reader" "$http/api/tasks/$id" >"$dir/rest-task"
curl -sf -H "x-api-key: $reader" "$http/api/tasks" >"$dir/rest-list"
curl -sf -m 2 -H "x-api-key: $reader" "$http/api/events?after=0" >"$dir/rest-events"
"$cli" --api-key "$reader" watch --after 0 >"$dir/watch" 2>&1 & watch_pid=$!
wait_for 5 grep -q "$id" "$dir/watch"; kill "$watch_pid" 2>/dev/null

# Who did what: the audit log, exported as JSON lines.
"$cli" --api-key "$admin" --output json audit >"$dir/audit.jsonl"
check "audit: the refused submit, with its rule" grep -q '"actor":"key:reader","action":"task.submit".*"outcome":"PERMISSION_DENIED"' "$dir/audit.jsonl"
check "audit: the accepted submit, with the task" grep -q "\"actor\":\"key:ci\",\"action\":\"task.submit\",\"target\":\"$id\"" "$dir/audit.jsonl"
check "audit: the missing key" grep -q '"actor":"unknown-key".*"outcome":"UNAUTHENTICATED"' "$dir/audit.jsonl"
check "audit: agents connecting" grep -q '"actor":"agent:sec-prod","action":"agent.connect"' "$dir/audit.jsonl"
check "audit: the REST caller's address" grep -q '"peer":"127.0.0.1 via ipv4:127.0.0.1' "$dir/audit.jsonl"
check "audit: one JSON object per line" sh -c "python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' '$dir/audit.jsonl'"
"$cli" --api-key "$ci" audit >/dev/null 2>&1; rc=$?
check "audit needs admin" test "$rc" -eq 125
code=$(curl -s -o "$dir/rest-audit" -w '%{http_code}' -H "x-api-key: $admin" "$http/api/audit?format=jsonl&action=task.submit")
check "REST: audit as JSON lines" sh -c "[ '$code' = 200 ] && grep -q '\"action\":\"task.submit\"' '$dir/rest-audit'"

# Revoked on SIGHUP.
"$cli" keys revoke ci --file "$keys" 2>/dev/null
kill -HUP "$coordinator_pid"
wait_for 10 sh -c "! '$cli' --api-key '$ci' agents >/dev/null 2>&1"
"$cli" --api-key "$ci" agents >/dev/null 2>"$dir/err"
check "a revoked key is unknown after SIGHUP" grep -q "unknown API key" "$dir/err"
check "the reload is audited" sh -c "'$cli' --api-key '$admin' audit --action keys.reload | grep -q '3 keys'"

# The scan: no log, output or answer of this run holds the secret.
kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; pids=()
b64=$(printf %s "$secret" | base64)
leaks=$(grep -lF -e "$secret" -e "$b64" "$dir"/*.log "$dir"/out "$dir"/stderr "$dir"/rest-* \
  "$dir"/watch "$dir"/audit.jsonl 2>/dev/null)
check "no log, output or API answer holds the secret (scanned: $(ls "$dir"/*.log | wc -l) logs)" test -z "$leaks"
[ -n "$leaks" ] && echo "found in: $leaks"
check "the logs were written (debug level)" test "$(cat "$dir"/*.log | wc -l)" -gt 20

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
