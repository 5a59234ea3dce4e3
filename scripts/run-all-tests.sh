#!/usr/bin/env bash
# Installs what is missing, then builds and runs every test three ways:
# GCC with -Werror (plus the dashboard in Chromium), Clang with
# -Wthread-safety -Werror, and ASan+UBSan; then runs each libFuzzer target
# for a bounded time (TASKGRID_FUZZ_SECONDS, 15 by default).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Every test runs once: a test that fails one time in ten is a race to find,
# not to retry (scripts/soak-tests.sh N runs the fault and cluster tests N
# times in a row to find one).
"$root/scripts/install-deps.sh"
cd "$root"

echo "== GCC, warnings as errors"
scripts/build.sh build-gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTASKGRID_WERROR=ON
(cd build-gcc && ctest --output-on-failure -j2 --timeout 300)

echo "== Clang, thread-safety analysis as errors"
scripts/build.sh build-clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
  -DTASKGRID_WERROR=ON -DTASKGRID_BUILD_BENCH=OFF -DTASKGRID_BROWSER_TESTS=OFF
(cd build-clang && ctest --output-on-failure -j2 --timeout 300)

echo "== ASan + UBSan"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DTASKGRID_SANITIZE="address;undefined" \
  -DTASKGRID_BUILD_BENCH=OFF -DTASKGRID_BROWSER_TESTS=OFF
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$root/scripts/lsan-suppressions.txt" \
  ctest --output-on-failure -j2 --timeout 600)

echo "== Fuzzing: libFuzzer with ASan+UBSan, ${TASKGRID_FUZZ_SECONDS:=15} s per target"
scripts/build.sh build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
  -DTASKGRID_SANITIZE="address;undefined" -DTASKGRID_FUZZ=ON -DTASKGRID_BUILD_TESTS=OFF \
  -DTASKGRID_BUILD_BENCH=OFF
for target in submit runs agent_messages rest_json http_requests; do
  corpus=$(mktemp -d)  # The seeds in fuzz/corpus stay as they are.
  cp fuzz/corpus/$target/* "$corpus"/
  build-fuzz/fuzz/${target}_fuzzer -max_total_time="$TASKGRID_FUZZ_SECONDS" \
    -artifact_prefix=build-fuzz/${target}- -print_final_stats=1 "$corpus" 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|==ERROR|^SUMMARY|^Done"
  rm -rf "$corpus"
done
