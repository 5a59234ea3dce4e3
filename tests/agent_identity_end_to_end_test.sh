#!/usr/bin/env bash
# End to end, the agent's token against its own tasks and against impostors:
# real binaries; agents given their token in a file, in the environment and
# (for development) on the command line; tasks that look for it in
# /proc/$PPID and in their own environment, as root and as another user;
# tokens bound to agent ids and labels, used for another id, other labels,
# or by a second process claiming a connected agent's id.
# Usage: agent_identity_end_to_end_test.sh COORDINATOR AGENT CLI
set -uo pipefail
coordinator=$1 agent=$2 cli=$3
source "$(dirname "$0")/lib.sh"
cd /  # Tasks run in the agent's directory; every user may enter this one.

file_token=file-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
env_token=env-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
cmd_token=cmd-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
cat >"$dir/tokens" <<EOF
# One token per host, bound to its id and its labels.
web1 sha256:$(sha "$file_token") agents=web-1 labels=env=staging
web2 sha256:$(sha "$env_token") agents=web-2 labels=env=staging
web3 sha256:$(sha "$cmd_token") agents=web-3
EOF
printf '%s\n' "$file_token" >"$dir/token"
chmod 600 "$dir/token"

"$coordinator" --grpc_address=127.0.0.1:0 --metrics_address= --store=memory \
  --agent_tokens_file="$dir/tokens" --port_file="$dir/c" 2>"$dir/coordinator.log" & pids+=($!)
coordinator_pid=$!
wait_for 10 test -s "$dir/c" || { echo "coordinator did not start"; exit 1; }
export TASKGRID_COORDINATOR=127.0.0.1:$(sed -n 1p "$dir/c")
common=(--metrics_address= --docker_socket= --spool_dir="$dir")
run_as=()
[ "$(id -u)" = 0 ] && run_as=(--run_as=nobody)
"$agent" --agent_id=web-1 --labels=env=staging --token_file="$dir/token" "${common[@]}" \
  2>"$dir/agent-1.log" & pids+=($!)
TASKGRID_AGENT_TOKEN=$env_token "$agent" --agent_id=web-2 --labels=env=staging "${run_as[@]}" \
  "${common[@]}" 2>"$dir/agent-2.log" & pids+=($!)
"$agent" --agent_id=web-3 --token="$cmd_token" "${common[@]}" 2>"$dir/agent-3.log" & pids+=($!)
wait_for 15 sh -c "[ \$('$cli' agents | grep -c connected) -eq 3 ]" ||
  { echo "agents did not connect"; cat "$dir"/agent-*.log; exit 1; }

# Each task looks for its agent's token wherever a process of the same user
# (or root) could read it.
snoop='echo "cmdline: $(tr "\0" " " </proc/$PPID/cmdline)"
       echo "environ: $(tr "\0" " " </proc/$PPID/environ 2>&1)"
       echo "env: $(env | tr "\n" " ")"
       echo "user: $(id -un)"'
for a in web-1 web-2 web-3; do
  "$cli" run --agent "$a" -- "$snoop" </dev/null >"$dir/snoop-$a" 2>&1
done
check "the tasks ran and read their agent's command line" grep -q "cmdline: .*taskgrid-agent --agent_id=web-3" "$dir/snoop-web-3"
check "no task saw any token" sh -c "! grep -q -e '$file_token' -e '$env_token' -e '$cmd_token' '$dir'/snoop-*"
check "a token given on the command line is overwritten there" grep -q -- "--token=\*\*\*\*" "$dir/snoop-web-3"
check "the agent warns about it" grep -q "agent_token_on_command_line" "$dir/agent-3.log"
if [ "$(id -u)" = 0 ]; then
  check "a root task reads the agent's environment, without the token" grep -q "environ: .*PATH=" "$dir/snoop-web-1"
  check "--run_as: the task runs as that user" grep -q "^user: nobody" "$dir/snoop-web-2"
  check "--run_as: it cannot read the agent's environment" grep -q "environ: .*Permission denied" "$dir/snoop-web-2"
fi

# A stolen token makes no other agent.
impostor() {  # NAME ARGS...: starts an agent that must be refused; waits for its refusal.
  local name=$1; shift
  "$agent" "$@" "${common[@]}" 2>"$dir/$name.log" & local pid=$!
  wait_for 10 grep -q "coordinator_refused" "$dir/$name.log"
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}
impostor other-id --agent_id=db-1 --labels=env=staging --token_file="$dir/token"
check "another agent id with web-1's token is refused, naming the binding" grep -q "token web1 may not claim" "$dir/other-id.log"
impostor other-labels --agent_id=web-1 --labels=env=prod --token_file="$dir/token"
check "other labels with web-1's token are refused" grep -q "labels.env: token web1 may not announce env=prod" "$dir/other-labels.log"
impostor twin --agent_id=web-1 --labels=env=staging --token_file="$dir/token"
check "a second process as connected web-1 is refused" grep -q "agent_id web-1 is connected" "$dir/twin.log"
out=$("$cli" run --agent web-1 -- 'echo still-me' </dev/null)
check "and the real web-1 keeps its stream" test "$out" = "still-me"
"$cli" --output json audit --action agent.connect >"$dir/audit" 2>&1
check "each refusal is audited" test "$(grep -c PERMISSION_DENIED "$dir/audit")" -ge 2
check "the twin's refusal is audited" grep -q ALREADY_EXISTS "$dir/audit"

# A revoked token (SIGHUP) ends its agent's stream and lets it in no more;
# so does a new secret under the same name.
sed -i '/^web3 /d' "$dir/tokens"
sed -i "s/^web2 sha256:[0-9a-f]*/web2 sha256:$(sha rotated)/" "$dir/tokens"
kill -HUP "$coordinator_pid"
check "a revoked token's agent is disconnected" wait_for 10 sh -c "'$cli' agents | grep web-3 | grep -qv connected"
check "and refused when it comes back" wait_for 10 grep -q "coordinator_refused.*agent token rejected" "$dir/agent-3.log"
check "a rotated secret's agent is disconnected too" wait_for 10 sh -c "'$cli' agents | grep web-2 | grep -qv connected"
check "the other stays" test "$("$cli" agents | grep -c connected)" -eq 1
check "the reload is audited" sh -c "'$cli' audit --action agent_tokens.reload | grep -q '2 agent tokens'"

# A token file others can read is refused before anything starts.
cp "$dir/token" "$dir/open-token"
chmod 644 "$dir/open-token"
"$agent" --agent_id=web-1 --token_file="$dir/open-token" "${common[@]}" 2>"$dir/err"; rc=$?
check "a token file readable by others is a usage error" test "$rc" -eq 2
check "the error says why" grep -q "lets other users read it (chmod 600" "$dir/err"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
