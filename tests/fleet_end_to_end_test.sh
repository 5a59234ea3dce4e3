#!/usr/bin/env bash
# End to end: fleet runs with the real binaries (a coordinator, four agents,
# a gateway) through the taskgrid CLI and REST: output prefixed by agent,
# exit codes, max_concurrency checked from the run's event stream,
# max_errors, skipped and waited-for offline agents, Ctrl-C, and errors.
# Usage: fleet_end_to_end_test.sh COORDINATOR AGENT GATEWAY CLI
set -uo pipefail
coordinator=$1 agent=$2 gateway=$3 cli=$4
source "$(dirname "$0")/lib.sh"

"$coordinator" --grpc_address=127.0.0.1:0 --metrics_address= --data_dir="$dir/data" \
  --port_file="$dir/ports" --heartbeat_interval=500ms --heartbeat_ttl=2s --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/ports" || { echo "coordinator did not start"; exit 1; }
export TASKGRID_COORDINATOR=127.0.0.1:$(sed -n 1p "$dir/ports")
start_agent() {  # start_agent ID LABELS: runs it in the background, its pid in $agent_pid.
  "$agent" --agent_id="$1" --labels="$2" --slots=2 --metrics_address= --docker_socket= \
    --log_level=warn & agent_pid=$!
  pids+=($agent_pid)
}
connected() { [ "$("$cli" agents | grep -c ' connected')" -eq "$1" ]; }
for i in 1 2 3; do start_agent "web-$i" role=web,env=staging; done
start_agent db-1 role=db,env=staging
wait_for 10 connected 4 || { echo "agents did not connect"; "$cli" agents; exit 1; }
"$gateway" --coordinator="$TASKGRID_COORDINATOR" --http_address=127.0.0.1:0 --metrics_address= \
  --port_file="$dir/g" --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/g" || { echo "gateway did not start"; exit 1; }
api=http://127.0.0.1:$(sed -n 1p "$dir/g")

# Each host's output, prefixed by its agent id, like pssh.
"$cli" run --selector role=web,env=staging --max-concurrency 34% -- \
  'echo hello from $TASKGRID_AGENT_ID; echo warn >&2' </dev/null >"$dir/out" 2>"$dir/err"; rc=$?
check "a fleet run succeeds on every target" test "$rc" -eq 0
for i in 1 2 3; do
  check "web-$i's line carries its id" grep -qx "web-$i  hello from web-$i" "$dir/out"
  check "web-$i's stderr goes to stderr" grep -qx "web-$i  warn" "$dir/err"
done
check "db-1 is not a target" sh -c "! grep -q db-1 '$dir/out'"
check "the summary says all succeeded" grep -q "succeeded: all 3 targets succeeded" "$dir/err"

# On a terminal, a live progress line (script gives the CLI one).
script -qec "'$cli' run --fleet --selector role=web --max-concurrency 1 -- 'sleep 0.2'" /dev/null \
  </dev/null >"$dir/tty"
check "a terminal gets a live progress line" grep -q "3/3 done  0 running  0 waiting  0 failed" "$dir/tty"
check "which counts targets as they finish" grep -q "1/3 done" "$dir/tty"

# max_concurrency at every moment, from the run's event stream (SSE).
id=$("$cli" run --selector role=web --max-concurrency 1 --detach -- 'sleep 0.3' </dev/null)
wait_for 20 sh -c "'$cli' runs '$id' | grep -q '^status: *succeeded'"
# Read until the run's final run:status (bounded), keeping the stream.
most=$(timeout 20 curl -sN "$api/api/runs/$id/events" | python3 -c '
import json, sys
state, most, block = {}, 0, {}
out = open(sys.argv[1], "w")
for line in sys.stdin:
    out.write(line)
    line = line.rstrip("\n")
    if line:
        if ": " in line:
            key, value = line.split(": ", 1)
            block[key] = value
        continue
    event, data = block.get("event"), block.get("data")
    block = {}
    if event == "task:status":
        task = json.loads(data)["task"]
        state[task["id"]] = task["status"]
        most = max(most, sum(s in ("TASK_STATUS_DISPATCHED", "TASK_STATUS_RUNNING") for s in state.values()))
    elif event == "run:status" and json.loads(data)["run"]["status"] == "TASK_STATUS_SUCCEEDED":
        break
out.close()
print(most, len(state))
' "$dir/sse")
check "the stream shows every target" test "${most#* }" -eq 3
check "never more than max_concurrency in progress" test "${most% *}" -eq 1
check "the stream opens with the run" grep -q "^event: initial_state" "$dir/sse"
check "the stream carries run:status" grep -q "^event: run:status" "$dir/sse"

# A target fails: exit 1, its line says why; max_errors stops the rest.
"$cli" run --fleet --selector role=web -- 'test $TASKGRID_AGENT_ID != web-2 || exit 4' </dev/null \
  >/dev/null 2>"$dir/err"; rc=$?
check "a failed target makes the run exit 1" test "$rc" -eq 1
check "the failed target is named with its exit" grep -q "web-2  \[failed: exit code 4\]" "$dir/err"
"$cli" run --selector role=web --max-concurrency 1 --max-errors 1 -- 'exit 3' </dev/null \
  >/dev/null 2>"$dir/err"; rc=$?
check "max_errors stops the run" grep -q "stopped after 1 target failed (max_errors 1); 1 failed, 2 cancelled" "$dir/err"
check "a stopped run exits 1" test "$rc" -eq 1

# JSON lines for scripts.
"$cli" run --fleet --selector role=db --output json -- 'echo json' </dev/null >"$dir/json"
check "--output json prints each line as JSON" grep -q '"line":"json"' "$dir/json"
check "--output json ends with the run" sh -c "tail -1 '$dir/json' | grep -q '\"type\":\"run\".*TASK_STATUS_SUCCEEDED'"

# Offline agents: skipped and said so, or waited for and started when they connect.
start_agent web-4 role=web
web4=$agent_pid
wait_for 10 connected 5
kill -9 "$web4"
wait_for 10 sh -c "'$cli' agents | grep web-4 | grep -qv ' connected'"
"$cli" run --fleet --selector role=web -- true </dev/null >/dev/null 2>"$dir/err"; rc=$?
check "an offline agent does not fail the run" test "$rc" -eq 0
check "the skipped agent is named" grep -q "skipped agent web-4 was offline" "$dir/err"
"$cli" run --selector role=web --include-offline --offline-timeout 20s -- 'echo ran on $TASKGRID_AGENT_ID' \
  </dev/null >"$dir/out" 2>&1 & run_cli=$!
wait_for 10 sh -c "'$cli' runs | grep -q running"
waiting=$("$cli" runs "$("$cli" runs --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])')")
check "the run says it waits for the offline agent" sh -c "echo \"\$0\" | grep -q 'waiting for offline agent web-4'" "$waiting"
start_agent web-4 role=web
wait "$run_cli"; rc=$?
check "the waited-for agent runs its target" grep -qx "web-4  ran on web-4" "$dir/out"
check "and the run succeeds" test "$rc" -eq 0

# A target's agent dies mid-run: that target is lost and the run says so.
start_agent web-5 role=doomed
web5=$agent_pid
wait_for 10 sh -c "'$cli' agents | grep web-5 | grep -q ' connected'"
"$cli" run --fleet --selector role=doomed -- 'echo up; sleep 30' </dev/null >"$dir/doomed" 2>&1 & run_cli=$!
wait_for 10 grep -q "web-5  up" "$dir/doomed"
kill -9 "$web5"
wait "$run_cli"; rc=$?
check "a lost target makes the run exit 1" test "$rc" -eq 1
check "the lost target says its agent went silent" grep -q "web-5  \[lost: agent web-5 silent" "$dir/doomed"
check "the run reports it lost" grep -q "failed: 1 lost of 1 target" "$dir/doomed"

# Ctrl-C cancels every target.
"$cli" run --fleet --selector role=web -- 'echo up; sleep 30' </dev/null >"$dir/long" 2>&1 & run_cli=$!
wait_for 10 sh -c "[ \$(grep -c up '$dir/long') -eq 4 ]"
kill -INT "$run_cli"; wait "$run_cli"; rc=$?
check "Ctrl-C cancels the run and exits 130" test "$rc" -eq 130
check "the cancelled run is listed" sh -c "'$cli' runs | grep -q cancelled"

# Errors name the field.
"$cli" run --selector role=nope --fleet -- true </dev/null >/dev/null 2>"$dir/err"; rc=$?
check "no matching agent is refused" test "$rc" -eq 125
check "the refusal names the selector" grep -q "spec.task.selector: no agent matches role=nope" "$dir/err"
"$cli" run --max-concurrency lots -- true </dev/null >/dev/null 2>"$dir/err"; rc=$?
check "a bad max_concurrency is refused" grep -q "spec.max_concurrency" "$dir/err"
code=$(curl -s -o "$dir/body" -w '%{http_code}' -XPOST "$api/api/runs" -H 'Content-Type: application/json' \
  -d '{"task":{"shell":{"command":"true"}},"maxErrors":"200%"}')
check "REST refuses a bad share with 400" test "$code" -eq 400
check "naming the field" grep -q '"field":"spec.max_errors"' "$dir/body"

# REST: create, read, list.
code=$(curl -s -o "$dir/body" -w '%{http_code}' -XPOST "$api/api/runs" -H 'Content-Type: application/json' \
  -d '{"task":{"shell":{"command":"echo rest"},"selector":{"role":"db"}},"maxConcurrency":"1"}')
check "POST /api/runs is 201" test "$code" -eq 201
rid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$dir/body")
wait_for 10 sh -c "curl -s '$api/api/runs/$rid' | grep -q '\"status\":\"TASK_STATUS_SUCCEEDED\"'"
check "GET /api/runs/{id} has the target row" sh -c "curl -s '$api/api/runs/$rid' | grep -q '\"agentId\":\"db-1\"'"
check "GET /api/runs lists it" sh -c "curl -s '$api/api/runs' | grep -q '$rid'"
check "GET /api/tasks?run= lists its target" sh -c "curl -s '$api/api/tasks?run=$rid' | grep -q '\"runId\":\"$rid\"'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
