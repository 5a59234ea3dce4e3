#!/usr/bin/env bash
# Installs what is missing, then builds and runs every test three ways:
# GCC with -Werror (plus the dashboard in Chromium), Clang with
# -Wthread-safety -Werror, and ASan+UBSan.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
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
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j2 --timeout 600)
