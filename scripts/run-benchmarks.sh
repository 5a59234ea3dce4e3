#!/usr/bin/env bash
# Installs what is missing, builds optimized, and runs every benchmark
# (bench/README.md) several times: one JSON document on stdout, a table of
# medians, ceilings, ratios and goals on stderr, then every figure more than
# 15% worse than the committed bench/baseline.json. Arguments go to
# run_benchmarks, e.g. --runs=5, --only=throughput,gateway, --readme=README.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh" >&2
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
exec "$root/build/bench/run_benchmarks" --compare="$root/bench/baseline.json" "$@"
