#!/usr/bin/env bash
# Runs the fault suite and the cluster tests N times in a row, stopping at
# the first failure: a race that fails one run in N shows up here.
#   scripts/soak-tests.sh [N=50] [build dir=build-gcc]
# The build must exist (scripts/run-all-tests.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-50}"
build="${2:-build-gcc}"
[[ -d "$build" ]] || { echo "soak: no build in $build; run scripts/run-all-tests.sh first" >&2; exit 2; }
cluster='^(ClusterTest|GatewayTest|GatewayTlsTest|GatewayEdgeTest|TlsTest|SecurityTest)\.'
for ((i = 1; i <= runs; i++)); do
  echo "soak: run $i of $runs"
  (cd "$build" && ctest -j2 --timeout 300 --output-on-failure -L faults) ||
    { echo "soak: the fault suite failed in run $i of $runs" >&2; exit 1; }
  (cd "$build" && ctest -j2 --timeout 300 --output-on-failure -R "$cluster") ||
    { echo "soak: the cluster tests failed in run $i of $runs" >&2; exit 1; }
done
echo "soak: $runs runs in a row passed"
