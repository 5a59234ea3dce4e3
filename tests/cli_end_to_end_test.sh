#!/usr/bin/env bash
# End to end: the real binaries (a coordinator and two agents) driven by the
# taskgrid CLI, checking output, exit codes, targeting, stdin, Ctrl-C and
# errors. Usage: cli_end_to_end_test.sh COORDINATOR AGENT CLI
set -uo pipefail
coordinator=$1 agent=$2 cli=$3
source "$(dirname "$0")/lib.sh"

"$coordinator" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --data_dir="$dir/data" --port_file="$dir/ports" --log_level=warn & pids+=($!)
wait_for 10 test -s "$dir/ports" || { echo "coordinator did not start"; exit 1; }
grpc_port=$(sed -n 1p "$dir/ports"); metrics_port=$(sed -n 2p "$dir/ports")
export TASKGRID_COORDINATOR=127.0.0.1:$grpc_port
"$agent" --agent_id=e2e-web --labels=role=web --metrics_address= --log_level=warn & pids+=($!)
"$agent" --agent_id=e2e-db --labels=role=db --metrics_address= --log_level=warn & pids+=($!)
wait_for 10 sh -c "[ \$('$cli' agents | grep -c connected) -eq 2 ]" || { echo "agents did not connect"; exit 1; }

out=$("$cli" run -- 'echo hello; echo oops >&2; exit 3' 2>"$dir/err" </dev/null); rc=$?
check "run streams stdout" test "$out" = "hello"
check "run streams stderr" grep -q oops "$dir/err"
check "run exits with the task's code" test "$rc" -eq 3

out=$("$cli" run --selector role=db -- 'echo $TASKGRID_AGENT_ID' </dev/null)
check "selector picks the matching agent" test "$out" = "e2e-db"

out=$("$cli" run --agent e2e-web --env GREETING=hi -- printf '%s|' a 'b c' '$GREETING' </dev/null)
check "argv runs without a shell" test "$out" = 'a|b c|$GREETING|'

out=$(echo piped | "$cli" run -- cat)
check "stdin is forwarded" test "$out" = "piped"

"$cli" run --timeout 1s -- 'sleep 30' </dev/null >/dev/null 2>&1; rc=$?
check "run timeout exits 124" test "$rc" -eq 124

"$cli" run -- 'echo started; sleep 30' </dev/null >"$dir/long" 2>&1 & cli_pid=$!
wait_for 10 grep -q started "$dir/long"
kill -INT "$cli_pid"; wait "$cli_pid"; rc=$?
check "Ctrl-C cancels and exits 130" test "$rc" -eq 130
check "the cancelled task is listed" sh -c "'$cli' list --status cancelled | grep -q 'sleep 30'"

id=$("$cli" run --detach --type report --tag nightly -- 'echo detached; exit 0' </dev/null)
wait_for 10 sh -c "'$cli' get '$id' | grep -q succeeded"
check "logs prints the output" test "$("$cli" logs "$id")" = "detached"
check "get --output json is proto JSON" sh -c "'$cli' get --output json '$id' | grep -q '\"status\":\"TASK_STATUS_SUCCEEDED\"'"
check "list filters by type and tag" sh -c "'$cli' list --type report --tag nightly | grep -q '$id'"
check "stats counts tasks" sh -c "'$cli' stats | grep -q 'succeeded='"
check "delete removes a finished task" "$cli" delete "$id"
"$cli" get "$id" >/dev/null 2>"$dir/err"; rc=$?
check "get of a deleted task fails with 125" test "$rc" -eq 125
check "the error names the task" grep -q "no task" "$dir/err"

"$cli" run --priority urgent -- true >/dev/null 2>"$dir/err"; rc=$?
check "bad flag value is a usage error" test "$rc" -eq 2
check "the usage error names the flag" grep -q -- "--priority" "$dir/err"
"$cli" run --agent nobody -- true </dev/null >/dev/null 2>"$dir/err"; rc=$?
check "unknown agent is refused" test "$rc" -eq 125
check "the refusal names the field" grep -q "spec.agent_id" "$dir/err"

curl -fsS "http://127.0.0.1:$metrics_port/metrics" >"$dir/metrics"
check "metrics count submitted tasks" grep -q '^coordinator_tasks_submitted_total [1-9]' "$dir/metrics"
check "metrics have build info" grep -q '^coordinator_build_info{' "$dir/metrics"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
