#!/usr/bin/env bash
# Installs the Debian 12 packages taskgrid builds and tests with; does nothing
# when they are already there. Needs root (or sudo).
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config clang
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libspdlog-dev libgtest-dev libgmock-dev
  libbenchmark-dev libboost-dev libssl-dev openssl libsqlite3-dev libpq-dev postgresql libjemalloc-dev curl procps chromium wrk
  docker.io busybox-static prometheus python3-yaml
)
# The dashboard test runs on Node (any version with node:test, 18+).
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
